"""Routes on the chip's mesh: dimension-ordered (XY) paths, hop counts and link loads.

This module implements the routing half of the section *Packets and routing*
of the guide page *The Darwin3-like event emulator*: dimension-ordered routes
split into segments of at most 15 hops per axis, and vectorised hop counts and
link loads for many packets at once.

Tiles are ``(x, y)`` pairs; core ids are ``y * width + x`` as in
:meth:`ChipConfig.core_id <nvppl.backend.chip.ChipConfig.core_id>`. Links
leave a tile in one of four directions (:class:`Direction`): 0 east (+x),
1 west (-x), 2 north (+y), 3 south (-y).
"""

from __future__ import annotations

import operator
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from ..chip import ChipConfig

__all__ = ["MAX_SEGMENT_HOPS", "Direction", "Route", "RoutingError", "check_tile", "hop_distance", "link_loads",
           "route", "waypoints"]

#: Largest offset a head flit can carry per axis (a 4-bit magnitude).
MAX_SEGMENT_HOPS = 15


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


def check_tile(chip: ChipConfig, name: str, tile) -> tuple[int, int]:
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


def waypoints(src, dst) -> list[tuple[int, int]]:
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
    src = check_tile(chip, "src", src)
    dst = check_tile(chip, "dst", dst)
    (sx, sy), (dx, dy) = src, dst
    x_dir = Direction.EAST if dx > sx else Direction.WEST
    y_dir = Direction.NORTH if dy > sy else Direction.SOUTH
    x_step = 1 if dx > sx else -1
    y_step = 1 if dy > sy else -1
    links = [(x, sy, x_dir) for x in range(sx, dx, x_step)]
    links += [(dx, y, y_dir) for y in range(sy, dy, y_step)]
    return Route(segments=waypoints(src, dst), hops=len(links), links=links)


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
