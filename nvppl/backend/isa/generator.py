"""The on-chip random generator, in NumPy: counter-based 16-bit draws.

``docs/guide/emulator.rst``, "The on-chip random generator": a unit (a
neuron's update, a synapse's weight update, a vesicle) at a tick starts from
a key :func:`unit_key` hashed from the seed, its core and its unit number, and
its n-th draw is :func:`draw`. The compiled engines hash with the same
finaliser (``splitmix`` of ``nvppl/_engine/_rng.pxd``), so they draw the same
numbers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_u64", "domain_key", "draw", "mix", "seed_key", "unit_key"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def as_u64(x, name: str) -> np.ndarray:
    """``x`` as unsigned 64-bit integers; a TypeError or ValueError naming ``name`` for other values.

    Examples
    --------
    >>> as_u64([1, 2], "seed").dtype
    dtype('uint64')
    >>> as_u64([-1], "seed")
    Traceback (most recent call last):
    ...
    ValueError: seed must be non-negative
    """
    a = np.asarray(x)
    if a.dtype == np.uint64:
        return a
    if a.dtype.kind == "O":
        a = np.asarray(x, dtype=np.uint64)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {a.dtype}")
    if a.dtype.kind == "i" and (a < 0).any():
        raise ValueError(f"{name} must be non-negative")
    return a.astype(np.uint64)


def mix(z) -> np.ndarray:
    """The splitmix64 finaliser on 64-bit unsigned integers (arithmetic mod 2⁶⁴).

    Examples
    --------
    >>> hex(int(mix(0)))
    '0xe220a8397b1dcdaf'
    """
    z = as_u64(z, "z")
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def unit_key(seed, core, unit, tick) -> np.ndarray:
    """The key ``h = mix(mix(mix(seed) ^ core) ^ (unit · 2³² + tick))`` of a unit at a tick.

    Arguments broadcast against each other. The unit is a neuron's index on
    its core, or 2³⁰ + a synapse's index in the core's synapse memory.

    Examples
    --------
    >>> h = unit_key(7, core=3, unit=np.arange(4), tick=10)
    >>> h.dtype, h.shape
    (dtype('uint64'), (4,))
    """
    seed, core = as_u64(seed, "seed"), as_u64(core, "core")
    unit, tick = as_u64(unit, "unit"), as_u64(tick, "tick")
    with np.errstate(over="ignore"):
        return mix(mix(mix(seed) ^ core) ^ ((unit << np.uint64(32)) + tick))


def draw(h, n) -> np.ndarray:
    """The n-th 16-bit draw ``u_n = mix(h + n) >> 48`` of units with keys ``h``.

    Examples
    --------
    >>> u = draw(unit_key(1, 1, 0, 0), np.arange(5))
    >>> bool(((u >= 0) & (u < 2**16)).all()), u.dtype
    (True, dtype('uint64'))
    """
    h, n = as_u64(h, "h"), as_u64(n, "n")
    with np.errstate(over="ignore"):
        return mix(h + n) >> np.uint64(48)


def seed_key(seed: int) -> int:
    """``mix(seed)`` of a 64-bit seed: the first round of :func:`unit_key`.

    Examples
    --------
    >>> seed_key(0) == int(mix(0))
    True
    """
    return int(mix(np.array([seed % (1 << 64)], dtype=np.uint64))[0])


def domain_key(seed: int, domain: int) -> int:
    """``mix(mix(seed) ^ domain)``: the first two rounds of :func:`unit_key`, for a ``domain`` of units.

    Examples
    --------
    >>> domain_key(7, 3) == int(mix(mix(7) ^ np.uint64(3)))
    True
    """
    return int(mix(np.uint64(seed_key(seed)) ^ np.uint64(domain)))
