r"""The particle filter as a JAX function of the unconstrained point, for PMMH.

:class:`FilterEstimate` maps an unconstrained point :math:`z` and a JAX key to
the particle filter's estimate :math:`\log\hat p(y \mid \theta(z))` and its
per-run-step increments :math:`\log\hat p(y_t \mid y_{<t})`. The filter runs on
the host through :func:`jax.pure_callback`, so the PMMH kernel stays a JAX
program (NumPyro's compiled loop works with and without a progress bar).

The filter's integer seed is drawn from the key: two ``uint32`` words
``w0, w1 = jax.random.bits(key, (2,))`` give the 63-bit seed
``(w0 mod 2^31)·2^32 + w1``, so a run is reproducible from its key and seeds do
not repeat in practice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import random

from ..errors import ObservationError

__all__ = ["FilterEstimate", "default_filter"]

#: Arguments of the particle filter that PMMH sets itself.
OWN_ARGUMENTS = frozenset({"model", "params", "obs", "n_particles", "key", "n_threads", "trajectory", "covariates"})


def default_filter() -> Callable:
    """The compiled particle filter :func:`nvppl.smc.particle_filter`."""
    try:
        from ..smc import particle_filter
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise ImportError("method='pmmh' needs the compiled particle filter nvppl.smc.particle_filter, "
                          f"which could not be imported ({exc})") from exc
    return particle_filter


class FilterEstimate:
    r"""Likelihood estimates of ``obs`` under ``model`` at unconstrained points.

    Parameters
    ----------
    model : VesicleModel
    obs : Observations
    names : tuple of str
        The inferred fields.
    postprocess : callable
        Unconstrained sites → constrained sites (the fields ``names`` among them).
    particle_filter : callable
        ``particle_filter(model, params, obs, n_particles=, key=, n_threads=,
        trajectory=False, **options)`` returning ``log_evidence`` and
        ``log_increments`` of shape ``(runs, steps)``.
    n_particles : int
    n_threads : int or None
    options : dict
        Further keyword arguments of the filter.

    Attributes
    ----------
    n_calls : int
        Filter calls so far.
    n_invalid : int
        Estimates that were NaN or :math:`+\infty` (taken as :math:`-\infty`).
    error : Exception or None
        The last exception raised by the filter (an :class:`~nvppl.ObservationError`
        aside, which is an estimate of :math:`-\infty`).
    """

    def __init__(self, model, obs, names, postprocess, particle_filter, n_particles, n_threads, options):
        self.model, self.obs, self.names, self.postprocess = model, obs, tuple(names), postprocess
        self.particle_filter, self.n_particles, self.n_threads = particle_filter, n_particles, n_threads
        self.options = options
        self.R, self.T = obs.n_runs, obs.n_steps
        self._lock = threading.Lock()
        self.n_calls = 0
        self.n_invalid = 0
        self.error = None

    def host(self, values, bits):
        """Run the filter on the host at constrained ``values`` with the seed of ``bits``
        (two words, or one pair per run: one seed per run, see :meth:`with_seeds`)."""
        R, T = self.R, self.T
        bits = np.asarray(bits)  # NumPy first: indexing a jax Array dispatches an op
        seeds = [((int(w0) & 0x7FFFFFFF) << 32) | int(w1) for w0, w1 in bits.reshape(-1, 2)]
        params = self.model.params_with({n: np.asarray(values[n], dtype=np.float64) for n in self.names})
        options = dict(self.options)
        if bits.ndim == 2:
            options["run_keys"] = seeds
        with self._lock:
            self.n_calls += 1
        try:
            result = self.particle_filter(self.model, params, self.obs, n_particles=self.n_particles, key=seeds[0],
                                          n_threads=self.n_threads, trajectory=False, **options)
        except ObservationError:
            return np.float64(-np.inf), np.full((R, T), -np.inf)
        except Exception as exc:  # kept so that fit_pmmh can re-raise it unwrapped
            self.error = exc
            raise
        ll = np.float64(result.log_evidence)
        steps = np.asarray(result.log_increments, dtype=np.float64)
        if steps.shape != (R, T):
            self.error = ValueError(f"the particle filter returned log_increments of shape {steps.shape}, "
                                    f"expected (runs, steps) = {(R, T)}")
            raise self.error
        if np.isnan(ll) or ll == np.inf:
            with self._lock:
                self.n_invalid += 1
            return np.float64(-np.inf), np.full((R, T), -np.inf)
        return ll, steps

    def run_bits(self, key):
        """One seed per run (``(R, 2)`` words) drawn from ``key``."""
        return random.bits(key, (self.R, 2), jnp.uint32)

    def __call__(self, z, key):
        """``(log p̂(y | z), per-run-step increments)`` with a filter seeded from ``key``."""
        return self.with_seeds(z, random.bits(key, (2,), jnp.uint32))

    def with_seeds(self, z, bits):
        """The estimate at ``z`` with the filter seeded by ``bits``: two ``uint32``
        words, or ``(R, 2)`` words that seed each run separately (so that renewing
        one run's words leaves the other runs' estimates as they were: block
        pseudo-marginal MCMC)."""
        constrained = self.postprocess(z)
        values = {n: constrained[n] for n in self.names}
        dtype = jnp.result_type(float)
        shapes = (jax.ShapeDtypeStruct((), dtype), jax.ShapeDtypeStruct((self.R, self.T), dtype))
        return jax.pure_callback(self.host, shapes, values, bits, vmap_method="sequential")
