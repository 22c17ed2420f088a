"""NUTS on fully observed traces.

The likelihood program :func:`nvppl.programs.trace_model` is evaluated on
sufficient statistics, so once they are built the cost of a gradient does not
grow with the number of vesicle-steps (except for the per-step terms of tilted
migration and content-dependent docking).
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from .._validate import as_jax_key, nonneg_int, positive_int
from ..errors import CapacityError
from ..likelihood import needs_rows, vesicle_log_likelihood
from ..programs import PPC_STATISTICS, ModelKey, default_capacity, life_cycle
from ..covariates import features_for
from ..traces.suffstats import pad_rows, trace_data
from ..traces import Traces
from ._arviz import to_inference_data
from .fit import Fit
from ._hmc import NUTSSettings, run_chains

__all__ = ["fit_nuts", "likelihood_data", "pointwise_log_likelihood", "posterior_predictive_stats"]

#: Above this many (draw, vesicle) values the pointwise log-likelihood is skipped with a warning.
MAX_POINTWISE = 100_000_000
#: Per-step likelihoods over more vesicle-steps than this run chains in parallel by default.
HEAVY_ROWS = 20_000


def likelihood_data(data, model):
    """The data NUTS needs: per-step arrays padded (see :func:`nvppl.traces.suffstats.pad_rows`)
    when a term is evaluated per vesicle-step, dropped otherwise."""
    if needs_rows(model):
        return pad_rows(data)
    empty = {k: np.zeros((0,) + v.shape[1:], v.dtype) for k, v in data._asdict().items()
             if k.startswith("r_") or k.startswith("v_")}
    return data._replace(F=np.zeros((0, 0, 0, 0)), **empty)


def fit_nuts(model, traces: Traces, num_samples: int = 1000, num_warmup: int = 1000, num_chains: int = 4,
             key=0, progress_bar: bool = True, chain_method: str | None = None, log_likelihood: bool = True,
             posterior_predictive: bool = True, num_ppc: int = 100, target_accept_prob: float = 0.8,
             max_tree_depth: int = 10, thinning: int = 1, ppc_capacity: int | None = None,
             dense_mass: bool | None = None):
    """NUTS on fully observed traces; see :func:`nvppl.infer.fit`."""
    if not isinstance(traces, Traces):
        raise TypeError(f"method='nuts' fits fully observed Traces, got {type(traces).__name__}")
    if not model.inferred:
        raise ValueError("the model has no inferred parameter: every field is fixed")
    num_samples, num_chains = positive_int(num_samples, "num_samples"), positive_int(num_chains, "num_chains")
    num_warmup = nonneg_int(num_warmup, "num_warmup")
    rng = as_jax_key(key)
    k_mcmc, k_ppc = jax.random.split(rng)
    data = trace_data(model, traces)
    settings = NUTSSettings(num_warmup, num_samples, thinning, float(target_accept_prob), int(max_tree_depth),
                            dense_mass)
    heavy = needs_rows(model) and len(traces) > HEAVY_ROWS
    sites, info, valid = run_chains(model, likelihood_data(data, model), k_mcmc, num_chains, settings,
                                    chain_method or "auto", progress_bar, heavy)
    if not valid.all():
        bad = np.flatnonzero(~valid).tolist()
        raise RuntimeError(f"chain(s) {bad} found no initial point with a finite log-density; the data may be "
                           "impossible under the model's fixed parameters (e.g. an absorption at a node with "
                           "a = 0, or a move where T is 0)")
    posterior = {k: sites[k] for k in model.inferred}
    sample_stats = {
        "lp": -info.potential_energy, "energy": info.energy, "diverging": info.diverging,
        "acceptance_rate": info.accept_prob, "step_size": info.step_size,
        "n_steps": info.num_steps, "tree_depth": np.log2(info.num_steps + 1).astype(np.int64),
    }
    loglik = pointwise_log_likelihood(model, data, posterior) if log_likelihood else None
    ppc = None
    if posterior_predictive:
        ppc = posterior_predictive_stats(model, traces, sites, num_ppc, k_ppc, ppc_capacity)
    observed = traces.summary_statistics(model.n_types)
    idata = to_inference_data(model, posterior, sample_stats, loglik, ppc, observed,
                              attrs={"method": "nuts", "n_vesicle_steps": len(traces),
                                     "n_vesicles": traces.n_vesicles})
    return Fit(idata, model, "nuts")


def pointwise_log_likelihood(model, data, posterior: dict, batch_size: int = 64):
    """Per-vesicle log-likelihood for every draw, ``(chain, draw, vesicle)``, or
    ``None`` (with a warning) when it would exceed :data:`MAX_POINTWISE` values."""
    chains, draws = next(iter(posterior.values())).shape[:2]
    N = data.n_vesicles
    if chains * draws * N > MAX_POINTWISE:
        warnings.warn(f"the pointwise log-likelihood would hold {chains * draws * N:,} values; it was not "
                      "computed (pass fewer draws, thinning, or log_likelihood=False to silence this)",
                      stacklevel=3)
        return None
    flat = {k: np.asarray(v).reshape((chains * draws,) + v.shape[2:]) for k, v in posterior.items()}
    params = model.params_with(flat)
    out = _pointwise_program(ModelKey(model), batch_size)(jax.tree.map(jnp.asarray, params), data)
    return np.asarray(out).reshape(chains, draws, N)


@functools.lru_cache(maxsize=16)
def _pointwise_program(key, batch_size: int):
    def run(params, data):
        return jax.lax.map(lambda p: vesicle_log_likelihood(p, data, key.model), params, batch_size=batch_size)

    return jax.jit(run)


def posterior_predictive_stats(model, traces: Traces, sites: dict, num_ppc: int, key, capacity=None) -> dict:
    """Summary statistics of traces simulated from ``num_ppc`` posterior draws per
    chain (evenly spaced), with the traces' covariates, steps and runs; shapes
    ``(chain, num_ppc, ...)``."""
    chains, draws = next(iter(sites.values())).shape[:2]
    pick = np.unique(np.linspace(0, draws - 1, min(num_ppc, draws)).round().astype(int))
    F = features_for(model, traces)
    flat = {n: np.asarray(sites[n])[:, pick].reshape((-1,) + np.shape(sites[n])[2:]) for n in model.inferred}
    params = model.params_with(flat)
    total = chains * len(pick)
    if capacity is None:
        capacity = max(default_capacity(model, jax.tree.map(lambda x: x[i], params), F, traces.n_steps)
                       for i in range(total))
    run = _ppc_program(ModelKey(model), traces.n_steps, int(capacity))
    out = run(jax.random.split(key, total), jax.tree.map(jnp.asarray, params), jnp.asarray(F))
    over = np.asarray(out["overflow_step"])
    if (over >= 0).any():
        raise CapacityError(f"a posterior draw produced more than {capacity} vesicles at once in its "
                            f"predictive simulation; pass ppc_capacity={2 * capacity} (nothing was truncated)")
    return {name: np.asarray(out[name]).reshape((chains, len(pick)) + out[name].shape[1:]) for name in PPC_STATISTICS}


@functools.lru_cache(maxsize=16)
def _ppc_program(key, n_steps: int, capacity: int):
    def one(args, F):
        rng, params = args
        tr = handlers.trace(handlers.seed(life_cycle, rng)).get_trace(key.model, F, n_steps, capacity, params)
        return {name: tr[name]["value"] for name in PPC_STATISTICS + ("overflow_step",)}

    return jax.jit(lambda keys, params, F: jax.lax.map(lambda a: one(a, F), (keys, params)))
