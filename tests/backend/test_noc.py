"""Tests of nvppl.backend.noc: flits, packets and routing."""

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nvppl.backend.chip import ChipConfig
from nvppl.backend.noc import (
    Direction,
    Head,
    Packet,
    PacketClass,
    RoutingError,
    decode_head,
    decode_packet,
    encode_head,
    encode_packet,
    flits_per_packet,
    hop_distance,
    link_loads,
    route,
)

SPIKE_CLASSES = {
    PacketClass.SPIKE,
    PacketClass.SHORT_SPIKE,
    PacketClass.REWARD_SPIKE,
    PacketClass.REWARD_SHORT_SPIKE,
}
STEP = {
    Direction.EAST: (1, 0),
    Direction.WEST: (-1, 0),
    Direction.NORTH: (0, 1),
    Direction.SOUTH: (0, -1),
}


def manhattan(a, b):
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


# -- head flit ----------------------------------------------------------


def test_class_numbers():
    assert [(c.name, int(c)) for c in PacketClass] == [
        ("SPIKE", 0),
        ("WRITE", 1),
        ("READ", 2),
        ("FLOW", 3),
        ("SHORT_SPIKE", 4),
        ("REWARD_SPIKE", 5),
        ("REWARD_SHORT_SPIKE", 6),
        ("FLOW_ACK", 7),
    ]


def test_flits_per_packet():
    assert {c.name: flits_per_packet(c) for c in PacketClass} == {
        "SPIKE": 2,
        "WRITE": 4,
        "READ": 2,
        "FLOW": 1,
        "SHORT_SPIKE": 1,
        "REWARD_SPIKE": 2,
        "REWARD_SHORT_SPIKE": 1,
        "FLOW_ACK": 1,
    }
    with pytest.raises(ValueError, match="8"):
        flits_per_packet(8)


@pytest.mark.parametrize(
    ("head", "flit"),
    [
        (Head(PacketClass.FLOW_ACK, 0, 0, 0, 0, 0), 0xE0000000),
        (Head(PacketClass.SPIKE, -1, 0, 0, 0, 0), 0x11000000),
        (Head(PacketClass.SPIKE, 15, 0, 0, 0, 0), 0x0F000000),
        (Head(PacketClass.SPIKE, 0, -1, 0, 0, 0), 0x00880000),
        (Head(PacketClass.SPIKE, 0, 15, 0, 0, 0), 0x00780000),
        (Head(PacketClass.SPIKE, 0, 0, 31, 0, 0), 0x0007C000),
        (Head(PacketClass.SPIKE, 0, 0, 0, 31, 0), 0x00003E00),
        (Head(PacketClass.SPIKE, 0, 0, 0, 0, 511), 0x000001FF),
        (Head(PacketClass.WRITE, -15, 15, 31, 0, 0), 0x3F7FC000),
    ],
)
def test_head_bit_layout(head, flit):
    assert encode_head(head) == flit
    assert decode_head(flit) == head


heads = st.builds(
    Head,
    st.sampled_from(list(PacketClass)),
    st.integers(-15, 15),
    st.integers(-15, 15),
    st.integers(0, 31),
    st.integers(0, 31),
    st.integers(0, 511),
)


@given(heads)
@settings(max_examples=200)
def test_head_round_trip(head):
    flit = encode_head(head)
    assert 0 <= flit < 2**32
    decoded = decode_head(flit)
    assert decoded == head
    assert isinstance(decoded.cls, PacketClass)


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=200)
def test_every_word_decodes_or_is_a_negative_zero(flit):
    negative_zero_x = (flit >> 28) & 1 and not (flit >> 24) & 0xF
    negative_zero_y = (flit >> 23) & 1 and not (flit >> 19) & 0xF
    if negative_zero_x or negative_zero_y:
        with pytest.raises(ValueError, match="negative zero"):
            decode_head(flit)
    else:
        assert encode_head(decode_head(flit)) == flit


@pytest.mark.parametrize(
    ("flit", "message"),
    [
        (1 << 28, "x offset is a negative zero"),
        (1 << 23, "y offset is a negative zero"),
        (-1, "head flit = -1"),
        (2**32, "head flit = 4294967296"),
    ],
)
def test_invalid_head_words(flit, message):
    with pytest.raises(ValueError, match=message):
        decode_head(flit)


def test_head_word_must_be_an_integer():
    with pytest.raises(TypeError, match="head flit"):
        decode_head(1.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cls", 8),
        ("cls", -1),
        ("dx", 16),
        ("dx", -16),
        ("dy", 16),
        ("dy", -16),
        ("src_x", 32),
        ("src_x", -1),
        ("src_y", 32),
        ("route", 512),
        ("route", -1),
    ],
)
def test_invalid_head_field_is_named(field, value):
    head = Head(PacketClass.SPIKE, 0, 0, 0, 0, 0)._replace(**{field: value})
    name = "packet class" if field == "cls" else field
    with pytest.raises(ValueError, match=f"{name} = {value}"):
        encode_head(head)


# -- packets ------------------------------------------------------------


@st.composite
def chips(draw):
    width = draw(st.integers(1, 32))
    height = draw(st.integers(2 if width == 1 else 1, 32))
    controller = (draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1)))
    return ChipConfig(width=width, height=height, controller=controller)


def tiles(chip):
    return st.tuples(st.integers(0, chip.width - 1), st.integers(0, chip.height - 1))


def fields_of(cls):
    if cls in (PacketClass.SHORT_SPIKE, PacketClass.REWARD_SHORT_SPIKE):
        return st.fixed_dictionaries({"axon": st.integers(0, 511)})
    if cls in (PacketClass.SPIKE, PacketClass.REWARD_SPIKE):
        return st.fixed_dictionaries({"axon": st.integers(0, 2**24 - 1)})
    if cls == PacketClass.WRITE:
        return st.fixed_dictionaries(
            {"address": st.integers(0, 2**32 - 1), "payload": st.integers(0, 2**48 - 1)}
        )
    if cls == PacketClass.READ:
        return st.fixed_dictionaries({"address": st.integers(0, 2**32 - 1)})
    return st.fixed_dictionaries({"route": st.integers(0, 511)})


@st.composite
def chip_and_packet(draw, cls=None):
    chip = draw(chips())
    cls = draw(st.sampled_from(list(PacketClass))) if cls is None else cls
    src = draw(tiles(chip))
    dst = draw(tiles(chip))
    assume(not (cls in SPIKE_CLASSES and dst == chip.controller))
    return chip, Packet(cls, src, dst, **draw(fields_of(cls)))


def single_segment(packet):
    return max(abs(a - b) for a, b in zip(packet.src, packet.dst)) <= 15


@pytest.mark.parametrize("cls", list(PacketClass))
@given(data=st.data())
@settings(max_examples=40)
def test_packet_round_trip_every_class(cls, data):
    chip, packet = data.draw(chip_and_packet(cls))
    flits = encode_packet(packet, chip)
    assert len(flits) == flits_per_packet(cls)
    assert all(isinstance(f, int) and 0 <= f < 2**32 for f in flits)
    assert decode_packet(flits, chip, dst=packet.dst) == packet
    if single_segment(packet):
        assert decode_packet(flits, chip) == packet


@given(chip_and_packet())
@settings(max_examples=100)
def test_head_carries_the_first_segment(chip_packet):
    chip, packet = chip_packet
    head = decode_head(encode_packet(packet, chip)[0])
    first = route(chip, packet.src, packet.dst).segments[1]
    assert (head.src_x, head.src_y) == packet.src
    assert (head.dx, head.dy) == (first[0] - packet.src[0], first[1] - packet.src[1])
    assert head.cls == packet.cls


def test_long_route_without_dst_decodes_to_the_relay_tile():
    chip = ChipConfig(width=32, height=32)
    packet = Packet(PacketClass.READ, (0, 0), (20, 30), address=5)
    flits = encode_packet(packet, chip)
    assert decode_packet(flits, chip).dst == (15, 0)
    assert decode_packet(flits, chip, dst=(20, 30)) == packet


def test_body_flits_follow_the_guide():
    chip = ChipConfig(width=8, height=8)
    spike = encode_packet(
        Packet(PacketClass.SPIKE, (1, 1), (2, 2), axon=0xABCDEF), chip
    )
    assert spike[1] == 0xABCDEF
    short = encode_packet(
        Packet(PacketClass.SHORT_SPIKE, (1, 1), (2, 2), axon=300), chip
    )
    assert len(short) == 1 and short[0] & 0x1FF == 300
    flow = encode_packet(Packet(PacketClass.FLOW, (1, 1), (0, 0), route=9), chip)
    assert len(flow) == 1 and flow[0] & 0x1FF == 9
    write = encode_packet(
        Packet(
            PacketClass.WRITE,
            (0, 0),
            (3, 4),
            address=0xDEADBEEF,
            payload=0x1234_89ABCDEF,
        ),
        chip,
    )
    assert write[1:] == [0xDEADBEEF, 0x89ABCDEF, 0x1234]
    assert write[0] & 0x1FF == 0
    read = encode_packet(Packet(PacketClass.READ, (0, 0), (3, 4), address=7), chip)
    assert read[1:] == [7]


@pytest.mark.parametrize(
    ("packet", "field"),
    [
        (Packet(PacketClass.SPIKE, (1, 1), (2, 2)), "axon"),
        (Packet(PacketClass.SPIKE, (1, 1), (2, 2), axon=2**24), "axon = 16777216"),
        (Packet(PacketClass.SPIKE, (1, 1), (2, 2), axon=1, address=3), "address = 3"),
        (Packet(PacketClass.SPIKE, (1, 1), (2, 2), axon=1, route=3), "route = 3"),
        (Packet(PacketClass.SHORT_SPIKE, (1, 1), (2, 2), axon=512), "axon = 512"),
        (Packet(PacketClass.SHORT_SPIKE, (1, 1), (2, 2), axon=-1), "axon = -1"),
        (Packet(PacketClass.WRITE, (1, 1), (2, 2), address=1), "payload"),
        (
            Packet(PacketClass.WRITE, (1, 1), (2, 2), address=1, payload=2**48),
            "payload = 281474976710656",
        ),
        (Packet(PacketClass.READ, (1, 1), (2, 2), address=2**32), "address"),
        (Packet(PacketClass.READ, (1, 1), (2, 2), address=1, payload=0), "payload = 0"),
        (Packet(PacketClass.FLOW, (1, 1), (2, 2), route=512), "route = 512"),
        (Packet(PacketClass.FLOW_ACK, (1, 1), (2, 2), axon=4), "axon = 4"),
        (Packet(9, (1, 1), (2, 2)), "packet class = 9"),
    ],
)
def test_invalid_packet_field_is_named(packet, field):
    with pytest.raises((ValueError, TypeError), match=field):
        encode_packet(packet, ChipConfig(width=8, height=8))


@pytest.mark.parametrize(
    ("src", "dst", "name"),
    [((8, 0), (1, 1), r"src \(8, 0\)"), ((1, 1), (1, 8), r"dst \(1, 8\)")],
)
def test_packet_off_the_mesh(src, dst, name):
    chip = ChipConfig(width=8, height=8)
    with pytest.raises(RoutingError, match=name + ".*8x8"):
        encode_packet(Packet(PacketClass.READ, src, dst, address=0), chip)


@pytest.mark.parametrize("cls", sorted(SPIKE_CLASSES))
def test_spike_to_the_controller_is_refused(cls):
    chip = ChipConfig(width=8, height=8, controller=(2, 3))
    packet = Packet(cls, (0, 0), (2, 3), axon=1)
    with pytest.raises(RoutingError, match="controller"):
        encode_packet(packet, chip)
    good = encode_packet(packet._replace(dst=(2, 4)), chip)
    head = decode_head(good[0])
    wrong = [encode_head(head._replace(dy=3)), *good[1:]]
    with pytest.raises(RoutingError, match="controller"):
        decode_packet(wrong, chip)


def test_controller_may_send_spikes_and_receive_reads():
    chip = ChipConfig(width=8, height=8)
    spike = Packet(PacketClass.SPIKE, (0, 0), (5, 5), axon=3)
    assert decode_packet(encode_packet(spike, chip), chip) == spike
    read = Packet(PacketClass.READ, (5, 5), (0, 0), address=3)
    assert decode_packet(encode_packet(read, chip), chip) == read


def test_decode_checks_the_flit_count():
    chip = ChipConfig(width=8, height=8)
    flits = encode_packet(
        Packet(PacketClass.WRITE, (0, 0), (1, 1), address=1, payload=2), chip
    )
    with pytest.raises(ValueError, match="WRITE packet has 4 flits, got 3"):
        decode_packet(flits[:3], chip)
    with pytest.raises(ValueError, match="SHORT_SPIKE packet has 1 flits, got 2"):
        decode_packet([0x80000000 | 1 << 24, 0], chip)
    with pytest.raises(ValueError, match="none"):
        decode_packet([], chip)


def test_decode_checks_reserved_bits():
    chip = ChipConfig(width=8, height=8)
    spike = encode_packet(Packet(PacketClass.SPIKE, (0, 0), (1, 1), axon=1), chip)
    with pytest.raises(ValueError, match="flit 1"):
        decode_packet([spike[0], spike[1] | 1 << 24], chip)
    write = encode_packet(
        Packet(PacketClass.WRITE, (0, 0), (1, 1), address=1, payload=2), chip
    )
    with pytest.raises(ValueError, match="flit 3"):
        decode_packet([*write[:3], 1 << 16], chip)
    with pytest.raises(ValueError, match="flit 2 = 4294967296"):
        decode_packet([write[0], write[1], 2**32, write[3]], chip)
    with pytest.raises(ValueError, match="route id = 5"):
        decode_packet([spike[0] | 5, spike[1]], chip)


def test_decode_checks_the_source_and_destination():
    chip = ChipConfig(width=4, height=4)
    head = Head(PacketClass.FLOW, 0, 0, 6, 0, 1)
    with pytest.raises(RoutingError, match=r"src \(6, 0\)"):
        decode_packet([encode_head(head)], chip)
    head = Head(PacketClass.FLOW, 5, 0, 1, 0, 1)
    with pytest.raises(RoutingError, match=r"\(6, 0\).*4x4"):
        decode_packet([encode_head(head)], chip)
    head = Head(PacketClass.FLOW, 2, 0, 1, 0, 1)
    with pytest.raises(RoutingError, match="offsets"):
        decode_packet([encode_head(head)], chip, dst=(3, 1))
    assert decode_packet([encode_head(head)], chip, dst=(3, 0)).dst == (3, 0)


# -- routes -------------------------------------------------------------


@st.composite
def chip_src_dst(draw):
    chip = draw(chips())
    return chip, draw(tiles(chip)), draw(tiles(chip))


@given(chip_src_dst())
@settings(max_examples=100)
def test_route_hops_are_the_manhattan_distance(csd):
    chip, src, dst = csd
    r = route(chip, src, dst)
    assert r.hops == manhattan(src, dst) == len(r.links)


@given(chip_src_dst())
@settings(max_examples=100)
def test_links_form_an_xy_path_to_dst(csd):
    chip, src, dst = csd
    links = route(chip, src, dst).links
    here = src
    directions = []
    for x, y, d in links:
        assert (x, y) == here
        step = STEP[Direction(d)]
        here = (x + step[0], y + step[1])
        assert 0 <= here[0] < chip.width and 0 <= here[1] < chip.height
        directions.append(d in (Direction.NORTH, Direction.SOUTH))
    assert here == dst
    assert directions == sorted(directions)  # every x hop before any y hop
    assert len({d for _, _, d in links}) <= 2


@given(chip_src_dst())
@settings(max_examples=100)
def test_segments_split_the_xy_path(csd):
    chip, src, dst = csd
    r = route(chip, src, dst)
    segments = r.segments
    assert segments[0] == src and segments[-1] == dst
    assert len(segments) >= 2
    visited = [src] + [
        (x + STEP[Direction(d)][0], y + STEP[Direction(d)][1]) for x, y, d in r.links
    ]
    positions = [visited.index(p) for p in segments[1:-1]]
    assert positions == sorted(positions)
    for a, b in pairwise(segments):
        assert abs(b[0] - a[0]) <= 15 and abs(b[1] - a[1]) <= 15
        assert a != b or len(segments) == 2
    needed = max(1, -(-abs(dst[0] - src[0]) // 15), -(-abs(dst[1] - src[1]) // 15))
    assert len(segments) - 1 <= needed + 1


def test_route_examples():
    chip = ChipConfig(width=32, height=32)
    assert route(chip, (3, 4), (3, 4)) == ([(3, 4), (3, 4)], 0, [])
    assert route(chip, (0, 0), (31, 0)).segments == [(0, 0), (15, 0), (30, 0), (31, 0)]
    assert route(chip, (31, 31), (0, 0)).segments == [
        (31, 31),
        (16, 31),
        (1, 31),
        (0, 16),
        (0, 1),
        (0, 0),
    ]
    assert route(chip, (2, 2), (1, 4)).links == [
        (2, 2, Direction.WEST),
        (1, 2, Direction.NORTH),
        (1, 3, Direction.NORTH),
    ]


@pytest.mark.parametrize(
    ("src", "dst", "pattern"),
    [
        ((5, 0), (0, 0), r"src \(5, 0\) is off the 5x3 mesh"),
        ((0, 3), (0, 0), r"src \(0, 3\) is off the 5x3 mesh"),
        ((0, 0), (-1, 0), r"dst \(-1, 0\) is off the 5x3 mesh"),
        ((0, 0), (2, 7), r"dst \(2, 7\) is off the 5x3 mesh"),
        ((0, 0), (1,), "dst must be an"),
    ],
)
def test_route_off_the_mesh(src, dst, pattern):
    with pytest.raises(RoutingError, match=pattern):
        route(ChipConfig(width=5, height=3), src, dst)


# -- many packets -------------------------------------------------------


@st.composite
def chip_and_pairs(draw, max_pairs=40):
    chip = draw(chips())
    n = draw(st.integers(0, max_pairs))
    ids = st.lists(st.integers(0, chip.width * chip.height - 1), min_size=n, max_size=n)
    counts = st.lists(st.integers(0, 1000), min_size=n, max_size=n)
    return (
        chip,
        np.array(draw(ids), dtype=np.int64),
        np.array(draw(ids), dtype=np.int64),
        np.array(draw(counts), dtype=np.int64),
    )


@given(chip_and_pairs())
@settings(max_examples=100)
def test_hop_distance_matches_route(case):
    chip, src, dst, _ = case
    hops = hop_distance(chip, src, dst)
    assert hops.shape == src.shape and hops.dtype == np.int64
    expected = [
        route(chip, chip.core_xy(s), chip.core_xy(d)).hops for s, d in zip(src, dst)
    ]
    assert hops.tolist() == expected


def test_hop_distance_broadcasts():
    chip = ChipConfig(width=4, height=4)
    assert hop_distance(chip, 0, [0, 1, 5, 15]).tolist() == [0, 1, 2, 6]


@pytest.mark.parametrize(
    ("src", "dst", "pattern"),
    [
        ([0, 16, 17], [0, 0, 0], r"src_core_ids\[1\] = 16 .*4x4"),
        ([0, 1], [3, -2], r"dst_core_ids\[1\] = -2"),
        ([[0, 1], [2, 99]], 0, r"src_core_ids\[\(1, 1\)\] = 99"),
        ([0.0, 1.0], [0, 1], "integer"),
    ],
)
def test_bad_core_ids_are_named(src, dst, pattern):
    chip = ChipConfig(width=4, height=4)
    with pytest.raises(RoutingError, match=pattern):
        hop_distance(chip, src, dst)
    with pytest.raises(RoutingError, match=pattern):
        link_loads(chip, src, dst, 1)


def brute_force_loads(chip, src, dst, counts):
    loads = np.zeros((chip.height, chip.width, 4), dtype=np.asarray(counts).dtype)
    for s, d, c in zip(src, dst, counts):
        for x, y, direction in route(chip, chip.core_xy(s), chip.core_xy(d)).links:
            loads[y, x, direction] += c
    return loads


@given(chip_and_pairs())
@settings(max_examples=100)
def test_link_loads_match_the_routes(case):
    chip, src, dst, counts = case
    loads = link_loads(chip, src, dst, counts)
    assert loads.shape == (chip.height, chip.width, 4)
    assert loads.dtype == np.int64
    np.testing.assert_array_equal(loads, brute_force_loads(chip, src, dst, counts))
    assert loads.sum() == (counts * hop_distance(chip, src, dst)).sum()
    assert (loads >= 0).all()


def test_link_loads_float_counts():
    chip = ChipConfig(width=5, height=5)
    src, dst = np.array([0, 24, 7, 1, 2]), np.array([24, 0, 7, 4, 3])
    counts = np.array([0.25, 1.5, 3.0, 0.1, 0.2])
    loads = link_loads(chip, src, dst, counts)
    assert loads.dtype == np.float64
    brute = brute_force_loads(chip, src, dst, counts)
    np.testing.assert_allclose(loads, brute)
    assert (loads[brute == 0] == 0).all()
    assert loads[0, 0, Direction.EAST] == 0.25
    assert loads[4, 4, Direction.WEST] == 1.5


def test_link_loads_edges_of_the_mesh():
    chip = ChipConfig(width=3, height=2)
    loads = link_loads(chip, [chip.core_id(2, 1)], [chip.core_id(0, 0)], [4])
    assert loads[1, 2, Direction.WEST] == loads[1, 1, Direction.WEST] == 4
    assert loads[1, 0, Direction.SOUTH] == 4
    assert loads.sum() == 12


@pytest.mark.parametrize("counts", [[-1, 2], [1.0, np.nan], [np.inf, 0.0]])
def test_link_loads_rejects_bad_counts(counts):
    with pytest.raises(ValueError, match="counts"):
        link_loads(ChipConfig(width=4, height=4), [0, 1], [2, 3], counts)


def test_link_loads_many_pairs():
    chip = ChipConfig()
    rng = np.random.default_rng(0)
    src = rng.integers(0, 576, size=20_000)
    dst = rng.integers(0, 576, size=20_000)
    counts = rng.integers(0, 50, size=20_000)
    loads = link_loads(chip, src, dst, counts)
    assert loads.sum() == (counts * hop_distance(chip, src, dst)).sum()
    subset = slice(0, 300)
    np.testing.assert_array_equal(
        link_loads(chip, src[subset], dst[subset], counts[subset]),
        brute_force_loads(chip, src[subset], dst[subset], counts[subset]),
    )
    # no link leaves the mesh
    assert loads[:, -1, Direction.EAST].sum() == 0
    assert loads[:, 0, Direction.WEST].sum() == 0
    assert loads[-1, :, Direction.NORTH].sum() == 0
    assert loads[0, :, Direction.SOUTH].sum() == 0
