"""Packets on the chip's mesh: the head flit, the eight packet classes and their body flits.

This module implements the packet half of the section *Packets and routing* of
the guide page *The Darwin3-like event emulator*: a packet is a head flit
(class, the offsets of its route's first segment, source tile, route id) and
the body flits of its class. Routes are those of
:mod:`nvppl.backend.noc.routing`.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

from ..._validate import integer
from ..chip import ChipConfig
from .routing import MAX_SEGMENT_HOPS, RoutingError, check_tile, waypoints

__all__ = ["SHORT_AXONS", "Head", "Packet", "PacketClass", "decode_head", "decode_packet", "encode_head",
           "encode_packet", "flits_per_packet"]

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
    value = integer(value, name, None, error=TypeError)
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
    src = check_tile(chip, "src", packet.src)
    dst = check_tile(chip, "dst", packet.dst)
    _check_not_controller(chip, cls, dst)
    first = waypoints(src, dst)[1]
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
    dst = check_tile(chip, "dst", dst)
    first = waypoints(src, dst)[1]
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
    src = check_tile(chip, "src", (head.src_x, head.src_y))
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
