"""The chip's fixed-point arithmetic: saturation and the rounding shift ``shr``.

``docs/guide/emulator.rst``, "Rounding": every result saturates at its word
width, and a right shift rounds down, to the nearest (half up) or
stochastically with a 16-bit draw of the on-chip generator.
"""

from __future__ import annotations

import operator

import numpy as np

from ..._validate import choice
from .opcodes import ROUNDINGS

__all__ = ["check_rounding", "saturate", "shr", "signed_bounds"]


def check_rounding(rounding) -> str:
    """``rounding`` when it is one of :data:`~nvppl.backend.isa.ROUNDINGS`, else a ValueError naming it."""
    return choice(rounding, ROUNDINGS, "rounding")


def signed_bounds(bits: int) -> tuple:
    """``(lo, hi)`` of the signed ``bits``-bit range.

    Examples
    --------
    >>> signed_bounds(8)
    (-128, 127)
    """
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def saturate(v, bits: int) -> np.ndarray:
    """Clamp to the signed ``bits``-bit range [−2^(bits−1), 2^(bits−1) − 1].

    Examples
    --------
    >>> saturate([-40000, -5, 40000], 16).tolist()
    [-32768, -5, 32767]
    """
    lo, hi = signed_bounds(operator.index(bits))
    return np.clip(np.asarray(v, dtype=np.int64), lo, hi)


def shr(v, k: int, rounding: str, draws=None) -> np.ndarray:
    """Divide by 2ᵏ with a rounding mode, on int64.

    ``"floor"``: ⌊v / 2ᵏ⌋; ``"nearest"``: ⌊(v + 2ᵏ⁻¹) / 2ᵏ⌋ (half up);
    ``"stochastic"``: ⌊(v + u mod 2ᵏ) / 2ᵏ⌋ with ``u`` the 16-bit ``draws``.
    ``shr(v, 0)`` is ``v`` and uses no draw.

    Parameters
    ----------
    v : array_like of int
    k : int
        Shift, 0–62.
    rounding : {"floor", "nearest", "stochastic"}
    draws : array_like of int, optional
        One 16-bit random number per element; required for stochastic
        rounding with k ≥ 1.

    Examples
    --------
    >>> v = np.array([-3, -2, 2, 3])
    >>> shr(v, 1, "floor").tolist(), shr(v, 1, "nearest").tolist()
    ([-2, -1, 1, 1], [-1, -1, 1, 2])
    >>> shr(v, 1, "stochastic", draws=[0, 1, 0, 1]).tolist()
    [-2, -1, 1, 2]
    """
    check_rounding(rounding)
    k = operator.index(k)
    if not 0 <= k <= 62:
        raise ValueError(f"shift k = {k} out of range 0–62")
    v = np.asarray(v, dtype=np.int64)
    if k == 0:
        return v.copy()
    if rounding == "floor":
        return v >> k
    if rounding == "nearest":
        return (v + (1 << (k - 1))) >> k
    if draws is None:
        raise ValueError("stochastic rounding needs draws")
    u = np.asarray(draws).astype(np.int64)
    return (v + (u & ((1 << k) - 1))) >> k
