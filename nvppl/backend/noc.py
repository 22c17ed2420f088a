"""Packets and routing on the chip's mesh network.

This module implements the section *Packets and routing* of the guide page
*The Darwin3-like event emulator*: the 32-bit head flit, the eight packet
classes and their body flits, dimension-ordered (XY) routes split into
segments of at most 15 hops per axis, and vectorised hop counts and link loads
for many packets at once.

Tiles are ``(x, y)`` pairs; core ids are ``y * width + x`` as in
:meth:`ChipConfig.core_id <nvppl.backend.chip.ChipConfig.core_id>`. Links
leave a tile in one of four directions (:class:`Direction`): 0 east (+x),
1 west (-x), 2 north (+y), 3 south (-y).
"""

from __future__ import annotations

import numbers
import operator
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from nvppl.backend.chip import ChipConfig

__all__ = [
    "MAX_SEGMENT_HOPS",
    "Direction",
    "Head",
    "Packet",
    "PacketClass",
    "Route",
    "RoutingError",
    "decode_head",
    "decode_packet",
    "encode_head",
    "encode_packet",
    "flits_per_packet",
    "hop_distance",
    "link_loads",
    "route",
]

#: Largest offset a head flit can carry per axis (a 4-bit magnitude).
MAX_SEGMENT_HOPS = 15

#: Axons a short packet can address (its destination axon is the head's 9-bit route id).
SHORT_AXONS = 2**9

_FLIT_LIMIT = 2**32
_ROUTE_ID_LIMIT = SHORT_AXONS
_AXON_LIMIT = 2**24
_ADDRESS_LIMIT = 2**32
_PAYLOAD_LIMIT = 2**48
_SOURCE_LIMIT = 2**5


class PacketClass(IntEnum):
    """The 3-bit packet class of a head flit.

    Examples
    --------
    >>> PacketClass(4).name
    'SHORT_SPIKE'
    """

    SPIKE = 0
    WRITE = 1
    READ = 2
    FLOW = 3
    SHORT_SPIKE = 4
    REWARD_SPIKE = 5
    REWARD_SHORT_SPIKE = 6
    FLOW_ACK = 7


class Direction(IntEnum):
    """The direction in which a link leaves a tile.

    Examples
    --------
    >>> [d.name for d in Direction]
    ['EAST', 'WEST', 'NORTH', 'SOUTH']
    """

    EAST = 0
    WEST = 1
    NORTH = 2
    SOUTH = 3


class RoutingError(ValueError):
    """A packet cannot be routed: a tile off the mesh, an unknown core id, a
    spike addressed to the controller, or a head that does not lead to the
    given destination."""


_SHORT_SPIKES = (PacketClass.SHORT_SPIKE, PacketClass.REWARD_SHORT_SPIKE)
_LONG_SPIKES = (PacketClass.SPIKE, PacketClass.REWARD_SPIKE)
_SPIKES = _SHORT_SPIKES + _LONG_SPIKES
_FLOWS = (PacketClass.FLOW, PacketClass.FLOW_ACK)

_FLITS = {
    PacketClass.SPIKE: 2,
    PacketClass.WRITE: 4,
    PacketClass.READ: 2,
    PacketClass.FLOW: 1,
    PacketClass.SHORT_SPIKE: 1,
    PacketClass.REWARD_SPIKE: 2,
    PacketClass.REWARD_SHORT_SPIKE: 1,
    PacketClass.FLOW_ACK: 1,
}


def _int_in(name, value, lo, hi):
    """Return ``value`` as an ``int`` after checking ``lo <= value < hi``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = operator.index(value)
    if not lo <= value < hi:
        raise ValueError(f"{name} = {value} is outside {lo}..{hi - 1}")
    return value


def _packet_class(value) -> PacketClass:
    """Return ``value`` as a :class:`PacketClass`, or raise ValueError."""
    return PacketClass(_int_in("packet class", value, 0, len(PacketClass)))


def flits_per_packet(cls) -> int:
    """Return the number of 32-bit flits of a packet of class ``cls``.

    Short spikes and flow-control packets are a head flit only; spikes and
    READ add one flit, WRITE three.

    Raises
    ------
    ValueError
        If ``cls`` is not a packet class (0..7).

    Examples
    --------
    >>> [flits_per_packet(c) for c in PacketClass]
    [2, 4, 2, 1, 1, 2, 1, 1]
    """
    return _FLITS[_packet_class(cls)]


# -- head flit ----------------------------------------------------------


class Head(NamedTuple):
    """The fields of a head flit.

    Attributes
    ----------
    cls : PacketClass
        Packet class.
    dx, dy : int
        Signed offsets of this segment, -15..15 (negative: towards smaller x
        or y).
    src_x, src_y : int
        Source tile, 0..31 each.
    route : int
        Route id, 0..511: the destination axon of a short spike, the credit
        count of a flow-control packet, 0 otherwise.
    """

    cls: PacketClass
    dx: int
    dy: int
    src_x: int
    src_y: int
    route: int


def encode_head(head: Head) -> int:
    """Pack a :class:`Head` into a 32-bit head flit.

    Raises
    ------
    ValueError
        If a field is out of range; the message names it.
    TypeError
        If a field is not an integer.

    Examples
    --------
    >>> hex(encode_head(Head(PacketClass.SHORT_SPIKE, -2, 3, 1, 0, 17)))
    '0x92184011'
    >>> encode_head(Head(PacketClass.SPIKE, 16, 0, 0, 0, 0))
    Traceback (most recent call last):
    ...
    ValueError: head dx = 16 is outside -15..15
    """
    cls = _packet_class(head.cls)
    dx = _int_in("head dx", head.dx, -MAX_SEGMENT_HOPS, MAX_SEGMENT_HOPS + 1)
    dy = _int_in("head dy", head.dy, -MAX_SEGMENT_HOPS, MAX_SEGMENT_HOPS + 1)
    src_x = _int_in("head src_x", head.src_x, 0, _SOURCE_LIMIT)
    src_y = _int_in("head src_y", head.src_y, 0, _SOURCE_LIMIT)
    route_id = _int_in("head route", head.route, 0, _ROUTE_ID_LIMIT)
    return (
        int(cls) << 29
        | int(dx < 0) << 28
        | abs(dx) << 24
        | int(dy < 0) << 23
        | abs(dy) << 19
        | src_x << 14
        | src_y << 9
        | route_id
    )


def decode_head(flit: int) -> Head:
    """Unpack a 32-bit head flit into a :class:`Head`.

    Raises
    ------
    ValueError
        If ``flit`` is not in ``0 .. 2**32 - 1``, or an offset is a negative
        zero (sign bit set, magnitude 0), which no encoder produces.
    TypeError
        If ``flit`` is not an integer.

    Examples
    --------
    >>> decode_head(0x92184011)
    Head(cls=<PacketClass.SHORT_SPIKE: 4>, dx=-2, dy=3, src_x=1, src_y=0, route=17)
    >>> decode_head(1 << 28)
    Traceback (most recent call last):
    ...
    ValueError: head flit 0x10000000: the x offset is a negative zero
    """
    flit = _int_in("head flit", flit, 0, _FLIT_LIMIT)
    dx = _signed_offset(flit, 24, "x")
    dy = _signed_offset(flit, 19, "y")
    return Head(
        cls=PacketClass(flit >> 29),
        dx=dx,
        dy=dy,
        src_x=(flit >> 14) & 0x1F,
        src_y=(flit >> 9) & 0x1F,
        route=flit & 0x1FF,
    )


def _signed_offset(flit, shift, axis):
    """Read the sign-magnitude offset whose magnitude starts at bit ``shift``."""
    magnitude = (flit >> shift) & 0xF
    negative = (flit >> (shift + 4)) & 1
    if negative and magnitude == 0:
        raise ValueError(f"head flit {flit:#x}: the {axis} offset is a negative zero")
    return -magnitude if negative else magnitude


# -- routes -------------------------------------------------------------


class Route(NamedTuple):
    """A dimension-ordered route between two tiles.

    Attributes
    ----------
    segments : list of tuple of int
        Waypoints ``(x, y)`` from the source to the destination, both
        included: the source, every relay tile where the packet is re-headed,
        then the destination. A packet from a tile to itself has the one
        segment ``[src, src]``. Each segment moves at most 15 tiles per axis.
    hops : int
        Number of tile hops, the Manhattan distance from source to
        destination (relaying adds none).
    links : list of tuple of int
        The directed links crossed, in path order, each as ``(x, y,
        direction)`` with ``(x, y)`` the tile the packet leaves and
        ``direction`` a :class:`Direction`; ``len(links) == hops``.
    """

    segments: list
    hops: int
    links: list


def _tile(chip: ChipConfig, name: str, tile) -> tuple[int, int]:
    """Return ``tile`` as an ``(x, y)`` tuple, or raise RoutingError if it is
    not a pair of integers on the mesh."""
    try:
        x, y = tile
        x, y = operator.index(x), operator.index(y)
    except (TypeError, ValueError):
        raise RoutingError(
            f"{name} must be an (x, y) pair of integers, got {tile!r}"
        ) from None
    if not (0 <= x < chip.width and 0 <= y < chip.height):
        raise RoutingError(
            f"{name} ({x}, {y}) is off the {chip.width}x{chip.height} mesh: "
            f"x must be in 0..{chip.width - 1} and y in 0..{chip.height - 1}"
        )
    return (x, y)


def _step(remaining: int) -> int:
    """The signed part of ``remaining`` hops that one segment covers."""
    return max(-MAX_SEGMENT_HOPS, min(MAX_SEGMENT_HOPS, remaining))


def _waypoints(src, dst) -> list[tuple[int, int]]:
    """Split the XY path from ``src`` to ``dst`` into segments.

    Each segment covers up to 15 x hops; once x is done, the segment that
    finishes x also takes up to 15 y hops, and further segments the rest of y.
    """
    points = [src]
    x, y = src
    while True:
        x += _step(dst[0] - x)
        if x == dst[0]:
            y += _step(dst[1] - y)
        points.append((x, y))
        if (x, y) == dst:
            return points


def route(chip: ChipConfig, src, dst) -> Route:
    """Return the dimension-ordered route from tile ``src`` to tile ``dst``.

    All x hops come first, then all y hops. A leg longer than 15 tiles is
    split into segments at relay tiles on the same path.

    Raises
    ------
    RoutingError
        If ``src`` or ``dst`` is off the mesh; the message names the
        coordinate and the mesh size.

    Examples
    --------
    >>> chip = ChipConfig(width=24, height=24)
    >>> r = route(chip, (1, 2), (3, 1))
    >>> r.segments, r.hops
    ([(1, 2), (3, 1)], 3)
    >>> [(x, y, int(d)) for x, y, d in r.links]
    [(1, 2, 0), (2, 2, 0), (3, 2, 3)]
    >>> route(chip, (0, 0), (20, 18)).segments
    [(0, 0), (15, 0), (20, 15), (20, 18)]
    >>> try:
    ...     route(chip, (0, 0), (24, 0))
    ... except RoutingError as err:
    ...     print(err)
    dst (24, 0) is off the 24x24 mesh: x must be in 0..23 and y in 0..23
    """
    src = _tile(chip, "src", src)
    dst = _tile(chip, "dst", dst)
    (sx, sy), (dx, dy) = src, dst
    x_dir = Direction.EAST if dx > sx else Direction.WEST
    y_dir = Direction.NORTH if dy > sy else Direction.SOUTH
    x_step = 1 if dx > sx else -1
    y_step = 1 if dy > sy else -1
    links = [(x, sy, x_dir) for x in range(sx, dx, x_step)]
    links += [(dx, y, y_dir) for y in range(sy, dy, y_step)]
    return Route(segments=_waypoints(src, dst), hops=len(links), links=links)


# -- packets ------------------------------------------------------------


class Packet(NamedTuple):
    """A packet, independent of its flit encoding.

    Every class is expressible with a canonical form: fields a class does not
    carry are ``None`` (``route``: 0), and :func:`encode_packet` rejects
    anything else, so that decoding an encoded packet gives it back exactly.

    ==========================  =======================  =====================
    class                       carries                  head route id
    ==========================  =======================  =====================
    SPIKE, REWARD_SPIKE         ``axon`` < 2**24         0
    SHORT_SPIKE,                ``axon`` < 512           the axon
    REWARD_SHORT_SPIKE
    WRITE                       ``address`` < 2**32,     0
                                ``payload`` < 2**48
    READ                        ``address`` < 2**32      0
    FLOW, FLOW_ACK              ``route`` < 512          ``route``
    ==========================  =======================  =====================

    Attributes
    ----------
    cls : PacketClass
        Packet class.
    src, dst : tuple of int
        Source and destination tiles ``(x, y)``.
    axon : int or None
        Destination axon of a spike.
    address : int or None
        Memory address of a WRITE or READ.
    payload : int or None
        The 48-bit word a WRITE stores.
    route : int
        Credit (FLOW) or acknowledged count (FLOW_ACK); 0 for every other
        class, whose head route id is the short spike's axon or 0.

    Examples
    --------
    >>> Packet(PacketClass.SHORT_SPIKE, (1, 0), (2, 3), axon=17)
    Packet(cls=<PacketClass.SHORT_SPIKE: 4>, src=(1, 0), dst=(2, 3), axon=17, address=None, payload=None, route=0)
    """

    cls: PacketClass
    src: tuple
    dst: tuple
    axon: int | None = None
    address: int | None = None
    payload: int | None = None
    route: int = 0


def _carried_fields(cls: PacketClass) -> dict[str, int]:
    """Map each field a class carries to its exclusive upper bound."""
    if cls in _SHORT_SPIKES:
        return {"axon": _ROUTE_ID_LIMIT}
    if cls in _LONG_SPIKES:
        return {"axon": _AXON_LIMIT}
    if cls == PacketClass.WRITE:
        return {"address": _ADDRESS_LIMIT, "payload": _PAYLOAD_LIMIT}
    if cls == PacketClass.READ:
        return {"address": _ADDRESS_LIMIT}
    return {"route": _ROUTE_ID_LIMIT}


def _checked_fields(packet: Packet, cls: PacketClass) -> dict[str, int]:
    """Validate the class-dependent fields of ``packet``; return those carried."""
    carried = _carried_fields(cls)
    values = {}
    for name in ("axon", "address", "payload", "route"):
        value = getattr(packet, name)
        if name in carried:
            values[name] = _int_in(f"{cls.name} packet {name}", value, 0, carried[name])
        elif value != (0 if name == "route" else None):
            unused = "0" if name == "route" else "None"
            raise ValueError(
                f"{cls.name} packet {name} = {value!r}: a {cls.name} packet does "
                f"not carry a {name}, so it must be {unused}"
            )
    return values


def _check_not_controller(chip: ChipConfig, cls: PacketClass, dst) -> None:
    """Spikes may not be addressed to the controller, which holds no neurons."""
    if cls in _SPIKES and tuple(dst) == chip.controller:
        raise RoutingError(
            f"dst {tuple(dst)} is the controller, which holds no neurons: "
            f"it cannot receive a {cls.name} packet"
        )


def encode_packet(packet: Packet, chip: ChipConfig) -> list[int]:
    """Encode a packet as its flits.

    The head flit carries the offsets of the route's first segment: the whole
    way for a route of one segment, up to the first relay tile otherwise.

    Raises
    ------
    RoutingError
        If ``src`` or ``dst`` is off the mesh, or a spike is addressed to the
        controller.
    ValueError
        If a field is invalid for the packet's class; the message names it.
    TypeError
        If a field the class carries is not an integer.

    Examples
    --------
    >>> chip = ChipConfig(width=8, height=8)
    >>> flits = encode_packet(Packet(PacketClass.SPIKE, (1, 0), (2, 3), axon=70000), chip)
    >>> [hex(f) for f in flits]
    ['0x1184000', '0x11170']
    >>> encode_packet(Packet(PacketClass.SHORT_SPIKE, (1, 0), (2, 3), axon=512), chip)
    Traceback (most recent call last):
    ...
    ValueError: SHORT_SPIKE packet axon = 512 is outside 0..511
    """
    cls = _packet_class(packet.cls)
    values = _checked_fields(packet, cls)
    src = _tile(chip, "src", packet.src)
    dst = _tile(chip, "dst", packet.dst)
    _check_not_controller(chip, cls, dst)
    first = _waypoints(src, dst)[1]
    route_id = values["axon"] if cls in _SHORT_SPIKES else values.get("route", 0)
    head = Head(cls, first[0] - src[0], first[1] - src[1], src[0], src[1], route_id)
    flits = [encode_head(head)]
    if cls in _LONG_SPIKES:
        flits.append(values["axon"])
    elif cls in (PacketClass.WRITE, PacketClass.READ):
        flits.append(values["address"])
    if cls == PacketClass.WRITE:
        flits += [values["payload"] & 0xFFFFFFFF, values["payload"] >> 32]
    return flits


def _body_flit(flits, index: int, cls: PacketClass, free_bits: int) -> int:
    """Return body flit ``index`` after checking its unused high bits are 0."""
    flit = _int_in(f"{cls.name} packet flit {index}", flits[index], 0, _FLIT_LIMIT)
    if flit >> free_bits:
        raise ValueError(
            f"{cls.name} packet flit {index} = {flit:#x}: bits 31-{free_bits} "
            "must be zero"
        )
    return flit


def _destination(chip, head: Head, src, dst):
    """Return the destination of a packet whose head is ``head``.

    Without ``dst``, the head is taken as the route's only segment. With
    ``dst``, the head's offsets must be the first segment of the route there.
    """
    offsets = (head.dx, head.dy)
    if dst is None:
        reached = (src[0] + head.dx, src[1] + head.dy)
        if not (0 <= reached[0] < chip.width and 0 <= reached[1] < chip.height):
            raise RoutingError(
                f"head offsets {offsets} from src {src} lead to {reached}, off "
                f"the {chip.width}x{chip.height} mesh"
            )
        return reached
    dst = _tile(chip, "dst", dst)
    first = _waypoints(src, dst)[1]
    expected = (first[0] - src[0], first[1] - src[1])
    if offsets != expected:
        raise RoutingError(
            f"head offsets {offsets} do not lead from src {src} to dst {dst}: "
            f"the route's first segment has offsets {expected}"
        )
    return dst


def decode_packet(flits, chip: ChipConfig, dst=None) -> Packet:
    """Decode the flits of one packet.

    A head carries only the offsets of the route's first segment, so the
    destination is recovered as follows: without ``dst``, the head is taken as
    the whole route and the destination is the source plus the offsets (exact
    for every route of one segment, i.e. at most 15 hops per axis). For a
    longer route, pass the destination as ``dst``: it is checked against the
    head (the offsets must be the route's first segment) and returned in the
    packet.

    Raises
    ------
    ValueError
        If the number of flits does not match the class, a flit is out of
        range, or a field that must be zero is not; the message names it.
    RoutingError
        If the source or destination is off the mesh, the head does not lead
        to ``dst``, or a spike is addressed to the controller.

    Examples
    --------
    >>> chip = ChipConfig(width=8, height=8)
    >>> decode_packet([0x1184000, 0x11170], chip)
    Packet(cls=<PacketClass.SPIKE: 0>, src=(1, 0), dst=(2, 3), axon=70000, address=None, payload=None, route=0)
    >>> chip = ChipConfig(width=32, height=4)
    >>> p = Packet(PacketClass.READ, (0, 0), (20, 1), address=64)
    >>> decode_packet(encode_packet(p, chip), chip, dst=(20, 1)) == p
    True
    """
    flits = list(flits)
    if not flits:
        raise ValueError("a packet has at least one flit (the head), got none")
    head = decode_head(flits[0])
    cls = head.cls
    if len(flits) != _FLITS[cls]:
        raise ValueError(
            f"a {cls.name} packet has {_FLITS[cls]} flits, got {len(flits)}"
        )
    src = _tile(chip, "src", (head.src_x, head.src_y))
    dst = _destination(chip, head, src, dst)
    _check_not_controller(chip, cls, dst)
    if head.route and cls not in _SHORT_SPIKES + _FLOWS:
        raise ValueError(f"{cls.name} packet head route id = {head.route}: must be 0")
    fields = {}
    if cls in _SHORT_SPIKES:
        fields["axon"] = head.route
    elif cls in _FLOWS:
        fields["route"] = head.route
    elif cls in _LONG_SPIKES:
        fields["axon"] = _body_flit(flits, 1, cls, 24)
    else:
        fields["address"] = _body_flit(flits, 1, cls, 32)
    if cls == PacketClass.WRITE:
        low = _body_flit(flits, 2, cls, 32)
        high = _body_flit(flits, 3, cls, 16)
        fields["payload"] = high << 32 | low
    return Packet(cls, src, dst, **fields)


# -- many packets at once -----------------------------------------------


def _core_ids(chip: ChipConfig, name: str, ids) -> np.ndarray:
    """Return ``ids`` as an int64 array, or raise RoutingError naming the
    first id that is not a tile of the mesh."""
    ids = np.asarray(ids)
    if ids.size == 0:
        return ids.astype(np.int64)
    if ids.dtype.kind not in "iu":
        raise RoutingError(f"{name} must hold integer core ids, got dtype {ids.dtype}")
    bad = (ids < 0) | (ids >= chip.n_tiles)
    if bad.any():
        first = int(np.flatnonzero(bad.ravel())[0])
        where = tuple(int(i) for i in np.unravel_index(first, ids.shape))
        index = where[0] if len(where) == 1 else where
        raise RoutingError(
            f"{name}[{index}] = {ids.ravel()[first]} is not a core id of the "
            f"{chip.width}x{chip.height} mesh (0..{chip.n_tiles - 1})"
        )
    return ids.astype(np.int64)


def hop_distance(chip: ChipConfig, src_core_ids, dst_core_ids) -> np.ndarray:
    """Return the hop count (Manhattan distance) of each source-destination pair.

    Parameters
    ----------
    chip : ChipConfig
        The chip whose mesh the ids refer to.
    src_core_ids, dst_core_ids : array_like of int
        Core ids ``y * width + x``; broadcast against each other.

    Returns
    -------
    ndarray of int64
        Hops from each source to its destination.

    Raises
    ------
    RoutingError
        If an id is not a tile of the mesh; the message names the first one.

    Examples
    --------
    >>> chip = ChipConfig(width=4, height=4)
    >>> hop_distance(chip, [0, 5, 15], [15, 5, 0]).tolist()
    [6, 0, 6]
    """
    src = _core_ids(chip, "src_core_ids", src_core_ids)
    dst = _core_ids(chip, "dst_core_ids", dst_core_ids)
    sx, sy = np.divmod(src, chip.width)[::-1]
    dx, dy = np.divmod(dst, chip.width)[::-1]
    return np.abs(dx - sx) + np.abs(dy - sy)


def link_loads(chip: ChipConfig, src_core_ids, dst_core_ids, counts) -> np.ndarray:
    """Return how many packets leave each tile in each direction.

    Each ``(src, dst, count)`` triple sends ``count`` packets along the XY
    route from ``src`` to ``dst``; the loads are summed over all triples.

    Parameters
    ----------
    chip : ChipConfig
        The chip whose mesh the ids refer to.
    src_core_ids, dst_core_ids : array_like of int
        Core ids ``y * width + x``.
    counts : array_like of int or float
        Packets per pair, >= 0; broadcast against the ids. Float counts
        (e.g. expected rates) give float loads.

    Returns
    -------
    ndarray of shape (height, width, 4)
        ``loads[y, x, d]`` is the number of packets leaving tile ``(x, y)``
        in :class:`Direction` ``d``; int64 for integer counts, float64
        otherwise. Its total is ``sum(counts * hops)``.

    Raises
    ------
    RoutingError
        If an id is not a tile of the mesh.
    ValueError
        If a count is negative or not finite.

    Examples
    --------
    >>> chip = ChipConfig(width=3, height=2)
    >>> loads = link_loads(chip, [0, 5], [5, 0], [2, 1])
    >>> loads[0, :, Direction.EAST].tolist(), loads[:, 2, Direction.NORTH].tolist()
    ([2, 2, 0], [2, 0])
    >>> int(loads.sum())
    9
    """
    src = _core_ids(chip, "src_core_ids", src_core_ids)
    dst = _core_ids(chip, "dst_core_ids", dst_core_ids)
    counts = _counts(counts)
    src, dst, counts = (a.ravel() for a in np.broadcast_arrays(src, dst, counts))
    w, h = chip.width, chip.height
    sx, sy = src % w, src // w
    dx, dy = dst % w, dst // w
    loads = np.zeros(h * w * 4, dtype=counts.dtype)
    # x leg along row sy, then y leg along column dx
    pair, x = _leg(sx, dx)
    direction = np.where(dx[pair] > sx[pair], Direction.EAST, Direction.WEST)
    np.add.at(loads, (sy[pair] * w + x) * 4 + direction, counts[pair])
    pair, y = _leg(sy, dy)
    direction = np.where(dy[pair] > sy[pair], Direction.NORTH, Direction.SOUTH)
    np.add.at(loads, (y * w + dx[pair]) * 4 + direction, counts[pair])
    return loads.reshape(h, w, 4)


def _leg(start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand straight legs into the tiles a packet leaves along them.

    For each ``i``, the leg goes from ``start[i]`` to ``stop[i]`` along one
    axis. Returns, for every hop of every leg, the leg's index and the
    coordinate of the tile the hop leaves, legs in order.
    """
    length = np.abs(stop - start)
    step = np.sign(stop - start)
    pair = np.repeat(np.arange(len(start)), length)
    first_hop = np.repeat(np.cumsum(length) - length, length)
    k = np.arange(len(pair)) - first_hop
    return pair, start[pair] + k * step[pair]


def _counts(counts) -> np.ndarray:
    """Return packet counts as an int64 or float64 array, checked >= 0."""
    counts = np.asarray(counts)
    if counts.dtype.kind in "biu":
        counts = counts.astype(np.int64)
    elif counts.dtype.kind == "f":
        counts = counts.astype(np.float64)
        if not np.isfinite(counts).all():
            raise ValueError("counts must be finite")
    else:
        raise ValueError(f"counts must be numbers, got dtype {counts.dtype}")
    if (counts < 0).any():
        first = int(np.flatnonzero(counts.ravel() < 0)[0])
        raise ValueError(f"counts[{first}] = {counts.ravel()[first]} is negative")
    return counts
