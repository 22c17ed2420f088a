"""Replicated observations for the posterior predictive group of fits to
:class:`~nvppl.Observations`."""

from __future__ import annotations

import numpy as np

from .._validate import as_numpy_rng, positive_int

__all__ = ["replicate_observations"]


def replicate_observations(model, obs, posterior: dict, num_ppc: int, key, covariates=None,
                           capacity: int | None = None) -> dict:
    """Observations simulated from posterior draws, seen through the data's detection model.

    Parameters
    ----------
    model : VesicleModel
    obs : Observations
        The fitted data: its shape, what was observed and its detection model.
    posterior : dict
        Inferred fields, each ``(chain, draw, ...)``.
    num_ppc : int
        Posterior draws to replicate in all, shared out over the chains (at
        least one per chain) and evenly spaced over each chain's draws.
    key : int or jax key
    covariates : array, optional
        The observed runs' covariates.

    Returns
    -------
    dict
        ``counts`` and/or ``docks``: ``(chain, draw, run, step, node, type)``,
        the shape of ``observed_data`` after the sample dimensions.
    """
    from ..simulate import simulate

    num_ppc = positive_int(num_ppc, "num_ppc")
    first = next(iter(posterior.values()))
    chains, draws = first.shape[:2]
    per_chain = max(1, min(num_ppc // chains, draws))
    pick = np.unique(np.linspace(0, draws - 1, per_chain).round().astype(int))
    rng = as_numpy_rng(key)
    seeds = rng.integers(0, 2**62, size=(chains, len(pick), 2))
    kinds = [k for k in ("counts", "docks") if getattr(obs, k) is not None]
    out = {k: np.zeros((chains, len(pick)) + obs.shape, np.int64) for k in kinds}
    sim_options = {} if capacity is None else {"capacity": capacity}
    for c in range(chains):
        for j, d in enumerate(pick):
            params = model.check_params(model.params_with({n: np.asarray(v[c, d]) for n, v in posterior.items()}))
            tr = simulate(model, params, n_steps=obs.n_steps, n_runs=obs.n_runs, key=int(seeds[c, j, 0]),
                          covariates=covariates, **sim_options)
            rep = tr.observe(counts="counts" in kinds, docks="docks" in kinds, detection=obs.detection,
                             p_det=obs.p_det, key=int(seeds[c, j, 1]), floor=obs.floor)
            for k in kinds:
                out[k][c, j] = getattr(rep, k)
    return out


def attach_replicates(fit, obs, num_ppc: int, key, covariates=None, capacity: int | None = None):
    """Add a ``posterior_predictive`` group of replicated observations to ``fit``
    (see :func:`replicate_observations`); returns ``fit``."""
    from ._arviz import arviz

    post = fit.idata.posterior
    posterior = {n: post[n].values for n in fit.model.inferred if n in post}
    reps = replicate_observations(fit.model, obs, posterior, num_ppc, key, covariates, capacity)
    dims = {k: ["run", "step", "node", "type"] for k in reps}
    coords = {"run": np.arange(obs.n_runs), "step": np.arange(obs.n_steps),
              "node": [str(x) for x in fit.model.substrate.labels], "type": np.arange(obs.n_types)}
    if "node" in fit.idata.observed_data.coords:
        coords["node"] = fit.idata.observed_data.coords["node"].values
    extra = arviz().from_dict(posterior_predictive=reps, dims=dims, coords=coords)
    fit.idata.extend(extra)
    return fit
