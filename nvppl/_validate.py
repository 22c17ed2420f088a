"""The argument checks shared by every part of nvppl, and random keys.

Each check returns the value in its canonical type or raises an error that
names the argument and shows the value it got. Booleans are never taken as
numbers, and neither are strings, complex numbers or NaN: nothing is coerced
silently.

Every random entry point of nvppl takes ``key``: an int seed or a JAX key;
:func:`as_jax_key`, :func:`as_numpy_rng` and :func:`seed64` turn it into what
each part needs.

Examples
--------
>>> positive_int(3, "n_steps")
3
>>> probability(0.2, "p_det", low_open=True)
0.2
>>> positive_int(True, "n_steps")
Traceback (most recent call last):
...
ValueError: n_steps must be a positive integer, got True
"""

from __future__ import annotations

import numbers
import os

import numpy as np

__all__ = [
    "integer", "positive_int", "nonneg_int", "real", "positive", "probability", "choice", "thread_count",
    "as_jax_key", "as_numpy_rng", "seed64", "show", "first",
]


def _is_int(x) -> bool:
    return isinstance(x, (numbers.Integral, np.integer)) and not isinstance(x, (bool, np.bool_))


def integer(x, name: str, minimum: int | None = 0, *, none_ok: bool = False, error=ValueError):
    """An integer ``>= minimum`` (``None`` too when ``none_ok``).

    Raises
    ------
    ValueError (or ``error``)
        Naming ``name``: a bool, a float, a string or an integer below ``minimum``.
    """
    if x is None and none_ok:
        return None
    if not _is_int(x) or (minimum is not None and x < minimum):
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, "an integer" if minimum is None else f"an integer >= {minimum}")
        raise error(f"{name} must be {what}{' or None' if none_ok else ''}, got {x!r}")
    return int(x)


def positive_int(x, name: str, *, none_ok: bool = False, error=ValueError):
    """An integer ``>= 1``; see :func:`integer`."""
    return integer(x, name, 1, none_ok=none_ok, error=error)


def nonneg_int(x, name: str, *, none_ok: bool = False, error=ValueError):
    """An integer ``>= 0``; see :func:`integer`."""
    return integer(x, name, 0, none_ok=none_ok, error=error)


def real(x, name: str, *, low=None, high=None, low_open: bool = False, high_open: bool = False,
         none_ok: bool = False, error=ValueError):
    """A finite real number in the interval given by ``low``/``high`` (open ends
    where ``low_open``/``high_open``), as a float.

    Examples
    --------
    >>> real(2, "scale", low=0, low_open=True)
    2.0
    >>> real(float("nan"), "scale")
    Traceback (most recent call last):
    ...
    ValueError: scale must be a finite real number, got nan
    """
    if x is None and none_ok:
        return None
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (numbers.Real, np.floating, np.integer)):
        raise error(f"{name} must be a real number, got {x!r}")
    value = float(x)
    if not np.isfinite(value):
        raise error(f"{name} must be a finite real number, got {value!r}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        if low is not None and high is not None:
            where = f"lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            where = f"be {'>' if low_open else '>='} {low:g}"
        else:
            where = f"be {'<' if high_open else '<='} {high:g}"
        raise error(f"{name} must {where}, got {x!r}")
    return value


def positive(x, name: str, *, none_ok: bool = False, error=ValueError):
    """A finite real number ``> 0``; see :func:`real`."""
    return real(x, name, low=0.0, low_open=True, none_ok=none_ok, error=error)


def probability(x, name: str, *, low_open: bool = False, high_open: bool = False, none_ok: bool = False,
                error=ValueError):
    """A probability in ``[0, 1]`` (ends open as asked); see :func:`real`."""
    return real(x, name, low=0.0, high=1.0, low_open=low_open, high_open=high_open, none_ok=none_ok,
                error=error)


def choice(x, choices, name: str, *, error=ValueError):
    """One of ``choices`` (compared by equality; a non-hashable value is refused too)."""
    try:
        ok = x in choices
    except TypeError:
        ok = False
    if not ok:
        raise error(f"{name} must be one of {tuple(choices)}, got {x!r}")
    return x


def thread_count(n_threads) -> int:
    """Threads to use: ``n_threads`` (a positive integer) or, when None, every CPU core."""
    if n_threads is None:
        return os.cpu_count() or 1
    return positive_int(n_threads, "n_threads", none_ok=True)


def show(x) -> str:
    """``repr`` of a value, with NumPy scalars shown as plain Python numbers
    (for error messages)."""
    return repr(x.item() if isinstance(x, np.generic) else x)


def first(mask) -> int | None:
    """Index of the first True entry of a boolean array, or None."""
    idx = np.flatnonzero(mask)
    return int(idx[0]) if len(idx) else None


# ------------------------------------------------------------------------- random keys
def _seed(key) -> int:
    if key < 0:
        raise ValueError(f"key must be a non-negative integer seed, got {key}")
    return int(key)


def as_jax_key(key):
    """A raw JAX PRNG key (``uint32[2]``) from an int seed or a JAX key.

    Examples
    --------
    >>> as_jax_key(0).shape
    (2,)
    """
    import jax

    if _is_int(key):
        return jax.random.PRNGKey(_seed(key))
    arr = key
    if hasattr(jax.dtypes, "prng_key") and jax.dtypes.issubdtype(getattr(arr, "dtype", None), jax.dtypes.prng_key):
        arr = jax.random.key_data(arr)
    arr = np.asarray(arr)
    if arr.shape != (2,) or arr.dtype != np.uint32:
        raise TypeError("key must be an int seed or a JAX PRNG key (jax.random.PRNGKey(seed)), "
                        f"got {type(key).__name__} with shape {arr.shape}")
    return jax.numpy.asarray(arr)


def as_numpy_rng(key) -> np.random.Generator:
    """A NumPy generator seeded from an int seed or a JAX key.

    Examples
    --------
    >>> float(as_numpy_rng(1).random()) == float(as_numpy_rng(1).random())
    True
    """
    if _is_int(key):
        return np.random.default_rng(_seed(key))
    data = np.asarray(as_jax_key(key), dtype=np.uint64)
    return np.random.default_rng([int(x) for x in data])


def seed64(key) -> int:
    """A 64-bit seed from an int seed or a JAX key (``PRNGKey(s)`` and ``s`` agree
    for ``s < 2**32``).

    Examples
    --------
    >>> seed64(7) == seed64(__import__("jax").random.PRNGKey(7))
    True
    """
    if _is_int(key):
        return _seed(key) % (1 << 64)
    hi, lo = (int(x) for x in np.asarray(as_jax_key(key), dtype=np.uint64))
    return (hi << 32) | lo
