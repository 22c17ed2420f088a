"""Random keys: every random entry point takes an int seed or a JAX key."""

from __future__ import annotations

import numpy as np


def as_jax_key(key):
    """Return a raw JAX PRNG key (``uint32[2]``) from an int seed or a JAX key.

    Examples
    --------
    >>> as_jax_key(0).shape
    (2,)
    """
    import jax

    if isinstance(key, (int, np.integer)):
        if key < 0:
            raise ValueError(f"key must be a non-negative integer seed, got {key}")
        return jax.random.PRNGKey(int(key))
    arr = key
    if hasattr(jax.dtypes, "prng_key") and jax.dtypes.issubdtype(
        getattr(arr, "dtype", None), jax.dtypes.prng_key
    ):
        arr = jax.random.key_data(arr)
    arr = np.asarray(arr)
    if arr.shape != (2,) or arr.dtype != np.uint32:
        raise TypeError(
            "key must be an int seed or a JAX PRNG key (jax.random.PRNGKey(seed)), "
            f"got {type(key).__name__} with shape {arr.shape}"
        )
    return jax.numpy.asarray(arr)


def as_numpy_rng(key) -> np.random.Generator:
    """Return a NumPy generator seeded from an int seed or a JAX key.

    Examples
    --------
    >>> float(as_numpy_rng(1).random()) == float(as_numpy_rng(1).random())
    True
    """
    if isinstance(key, (int, np.integer)):
        if key < 0:
            raise ValueError(f"key must be a non-negative integer seed, got {key}")
        return np.random.default_rng(int(key))
    data = np.asarray(as_jax_key(key), dtype=np.uint64)
    return np.random.default_rng([int(x) for x in data])


def seed64(key) -> int:
    """A 64-bit seed from an int seed or a JAX key (``PRNGKey(s)`` and ``s`` agree
    for ``s < 2**32``)."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if key < 0:
            raise ValueError(f"key must be a non-negative integer seed, got {key}")
        return int(key) % (1 << 64)
    hi, lo = (int(x) for x in np.asarray(as_jax_key(key), dtype=np.uint64))
    return (hi << 32) | lo
