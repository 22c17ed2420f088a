"""Packets and routing on the chip's mesh network.

This package implements the section *Packets and routing* of the guide page
*The Darwin3-like event emulator*: the 32-bit head flit, the eight packet
classes and their body flits (:mod:`~nvppl.backend.noc.packets`),
dimension-ordered (XY) routes split into segments of at most 15 hops per axis,
and vectorised hop counts and link loads for many packets at once
(:mod:`~nvppl.backend.noc.routing`).

Tiles are ``(x, y)`` pairs; core ids are ``y * width + x`` as in
:meth:`ChipConfig.core_id <nvppl.backend.chip.ChipConfig.core_id>`. Links
leave a tile in one of four directions (:class:`Direction`): 0 east (+x),
1 west (-x), 2 north (+y), 3 south (-y).
"""

from .packets import (
    SHORT_AXONS,
    Head,
    Packet,
    PacketClass,
    decode_head,
    decode_packet,
    encode_head,
    encode_packet,
    flits_per_packet,
)
from .routing import MAX_SEGMENT_HOPS, Direction, Route, RoutingError, hop_distance, link_loads, route

__all__ = [
    "MAX_SEGMENT_HOPS",
    "SHORT_AXONS",
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
