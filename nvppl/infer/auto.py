r"""``method="auto"``: the right inference for the data, and a record of what ran.

- :class:`~nvppl.Traces` (fully observed): NUTS on the exact trace likelihood.
- :class:`~nvppl.Observations`: a guide, then a correction to the exact
  posterior, both recorded in the Fit:

  1. the density-SVI guide (:mod:`nvppl.infer.svi`, composite likelihood with
     its sandwich adjustment);
  2. the particle filter's particle count chosen so that the standard
     deviation of :math:`\log\hat Z` at the guide's mean is about
     ``target_loglik_sd`` (the guided filter where it applies, see
     :func:`nvppl.smc.particle_filter`);
  3. importance sampling from the guide with filter weights
     (:mod:`nvppl.infer.importance`), kept when the Pareto :math:`\hat k` is at
     most 0.7;
  4. otherwise particle-marginal Metropolis–Hastings started from and shaped
     by the guide, with correlated (block) filter seeds (:mod:`nvppl.infer.pmmh`).

The record is ``fit.idata.posterior.attrs["nvppl_auto"]`` (JSON): the steps
taken, :math:`\hat k`, the particle count and the measured
:math:`\operatorname{sd}(\log\hat Z)`, and for PMMH the largest
:math:`\hat R` and smallest bulk ESS.
"""

from __future__ import annotations

import json
import warnings

import jax
import numpy as np

from .._validate import as_jax_key, positive
from ..errors import ImportanceSamplingError
from ..traces import Observations

__all__ = ["fit_auto", "tune_particles"]


def tune_particles(model, params, obs, covariates=None, target_sd: float = 1.0, start: int = 64,
                   max_particles: int = 4096, repeats: int = 8, key=0, n_threads=None) -> tuple[int, float]:
    """Smallest particle count (doubling from ``start``) whose log-likelihood
    estimate at ``params`` has a standard deviation at most ``target_sd``,
    measured over ``repeats`` filter runs; returns ``(n_particles, sd)``
    (``max_particles`` and its sd when none reaches the target).

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(3)), n_types=1)
    >>> obs = nv.simulate(model, model.default_params(), n_steps=10, n_runs=1, key=0).observe(
    ...     detection="binomial", p_det=0.8, key=1)
    >>> n, sd = tune_particles(model, model.default_params(), obs)
    >>> n >= 64 and sd >= 0
    True
    """
    from ..smc import particle_filter

    target_sd = positive(target_sd, "target_sd")
    seeds = np.asarray(jax.random.randint(as_jax_key(key), (repeats,), 0, np.iinfo(np.int32).max))
    n = int(start)
    while True:
        ll = []
        for s in seeds:
            try:
                ll.append(particle_filter(model, params, obs, n_particles=n, key=int(s), n_threads=n_threads,
                                          covariates=covariates, trajectory=False).log_evidence)
            except Exception:  # a zero estimate: too few particles (or bad parameters)
                ll.append(-np.inf)
        ll = np.asarray(ll)
        sd = float(np.std(ll, ddof=1)) if np.all(np.isfinite(ll)) else float("inf")
        if sd <= target_sd or n >= max_particles:
            return n, sd
        n *= 2


def fit_auto(model, data, key=0, progress_bar: bool = True, covariates=None, num_samples: int = 1000,
             target_loglik_sd: float = 1.0, n_particles: int | None = None, n_threads: int | None = None,
             svi_options: dict | None = None, is_options: dict | None = None, pmmh_options: dict | None = None,
             posterior_predictive: bool = True, num_ppc: int = 100, **nuts_options):
    """Fit with the method the data call for; see the module docstring and :func:`nvppl.infer.fit`.

    Parameters
    ----------
    model : VesicleModel
    data : Traces or Observations
    key : int or jax key
    progress_bar : bool
    covariates : array, optional
        The observed runs' covariates (Observations).
    num_samples : int, default 1000
        Posterior draws (per chain for NUTS and PMMH).
    target_loglik_sd : float, default 1.0
        Standard deviation of the log-likelihood estimate that the particle count aims at.
    n_particles : int, optional
        Fix the particle count instead of tuning it.
    svi_options, is_options, pmmh_options : dict, optional
        Further arguments of each stage.
    posterior_predictive : bool, default True
    num_ppc : int, default 100
    **nuts_options
        Arguments of NUTS for Traces.

    Returns
    -------
    Fit
        With ``idata.posterior.attrs["nvppl_auto"]`` describing what ran.
    """
    from .importance import fit_is
    from .pmmh import fit_pmmh
    from .svi import fit_svi

    rng = as_jax_key(key)
    if not isinstance(data, Observations):
        from .nuts import fit_nuts

        fit = fit_nuts(model, data, key=rng, num_samples=num_samples, progress_bar=progress_bar,
                       posterior_predictive=posterior_predictive, num_ppc=num_ppc, **nuts_options)
        fit.idata.posterior.attrs["nvppl_auto"] = json.dumps({"steps": ["nuts"]})
        return fit
    obs = data
    k_svi, k_tune, k_is, k_pm, k_ppc = jax.random.split(rng, 5)
    report = {"steps": ["svi"]}
    svi = fit_svi(model, obs, key=k_svi, covariates=covariates, progress_bar=progress_bar,
                  **{"log_likelihood": False, **(svi_options or {})})
    centre = svi.posterior_mean()
    if n_particles is None:
        n_particles, sd = tune_particles(model, centre, obs, covariates, target_loglik_sd, key=k_tune,
                                         n_threads=n_threads)
        report["loglik_sd"] = sd
    report["n_particles"] = int(n_particles)
    try:
        fit = fit_is(model, obs, init=svi, num_samples=num_samples, n_particles=n_particles, key=k_is,
                     n_threads=n_threads, covariates=covariates, progress_bar=progress_bar, **(is_options or {}))
        report["steps"].append("is")
        report["khat"] = float(fit.idata.posterior.attrs["khat"])
    except ImportanceSamplingError as err:
        report["steps"].append("pmmh")
        report["khat"] = float(err.khat)
        opts = {"num_warmup": num_samples, "num_chains": 4, **(pmmh_options or {})}
        fit = fit_pmmh(model, obs, init=svi, num_samples=num_samples, n_particles=n_particles, key=k_pm,
                       n_threads=n_threads, covariates=covariates, progress_bar=progress_bar,
                       posterior_predictive=False, **opts)
        table = fit.summary()
        report["r_hat_max"] = float(table["r_hat"].max())
        report["ess_bulk_min"] = float(table["ess_bulk"].min())
        if report["r_hat_max"] > 1.01 or report["ess_bulk_min"] < 400:
            warnings.warn(f"method='auto' fell back to PMMH (importance sampling had k̂ = {err.khat:.2f}); its chains "
                          f"have r_hat up to {report['r_hat_max']:.3f} and bulk ESS down to "
                          f"{report['ess_bulk_min']:.0f}: run longer (pmmh_options={{'num_warmup': ..., "
                          "'num_samples': ...}})", stacklevel=2)
    if posterior_predictive:
        from ._replicate import attach_replicates

        attach_replicates(fit, obs, num_ppc, int(np.asarray(jax.random.randint(k_ppc, (), 0, 2**31 - 1))),
                          covariates)
    fit.idata.posterior.attrs["nvppl_auto"] = json.dumps(report)
    fit.extra["svi_fit"] = svi
    return fit
