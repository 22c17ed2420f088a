"""Host devices for JAX: how many CPU devices parallel MCMC chains may use."""

from __future__ import annotations

from ._validate import positive_int

__all__ = ["set_host_device_count"]


def set_host_device_count(n: int) -> None:
    """Expose ``n`` CPU devices to JAX, so that ``chain_method="parallel"`` can run
    up to ``n`` MCMC chains at once (like :func:`numpyro.set_host_device_count`).

    JAX reads this when it starts its CPU backend, so call it at the start of
    the program, before any JAX computation. Importing nvppl changes no device
    setting by itself: without this call JAX sees one CPU device, and parallel
    chains run one after the other (with a warning saying so).

    Parameters
    ----------
    n : int
        Number of host devices, e.g. ``os.cpu_count()``.

    Raises
    ------
    RuntimeError
        If JAX has already started its backend with another number of devices.

    Examples
    --------
    >>> import nvppl as nv
    >>> nv.set_host_device_count(0)
    Traceback (most recent call last):
    ...
    ValueError: n must be a positive integer, got 0
    """
    import jax
    from jax._src import xla_bridge

    n = positive_int(n, "n")
    if xla_bridge.backends_are_initialized():
        have = jax.local_device_count()
        if have == n:
            return
        raise RuntimeError(
            f"JAX has already started with {have} host device(s); set_host_device_count({n}) must be called "
            "before any JAX computation (at the start of the program, right after importing nvppl)")
    jax.config.update("jax_num_cpu_devices", n)
