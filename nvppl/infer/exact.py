r"""NUTS on the exact likelihood of partial observations (``method="exact"``).

Where :func:`nvppl.exact.exact_supported` admits the model and the observations
(geometric lifetimes, content that does not act, budgets 1 or infinite, exact or
binomial detection, small graphs), the likelihood of counts and docks seen
without identities is computed exactly by the forward algorithm of
:mod:`nvppl.exact`, and it is differentiable. NUTS then samples

.. math::

    p(θ \mid y, D) \propto p(θ)\, \exp\big(\log p(y, D \mid θ)\big)

directly — prior sites from :meth:`nvppl.VesicleModel.param_sites`, the
likelihood as one ``numpyro.factor`` — with no approximation beyond a
truncation whose share is measured at every kept draw.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.infer import MCMC, NUTS, init_to_median

from .._validate import as_jax_key, choice, nonneg_int, positive_int
from ..covariates import model_features
from ..exact import (DEFAULT_TOL, ExactForward, TruncationError, check_truncation, default_bounds, exact_forward,
                     exact_supported)
from ..traces import Observations
from . import _arviz

__all__ = ["fit_exact"]

#: Up to this many unconstrained dimensions NUTS adapts a dense mass matrix by default.
DENSE_MAX = 300
#: Without ``log_likelihood``, the truncation is checked at this many evenly spaced draws.
CHECKED_DRAWS = 200
_EXTRA = ("potential_energy", "energy", "diverging", "accept_prob", "num_steps", "adapt_state.step_size")


def fit_exact(model, obs, num_samples: int = 1000, num_warmup: int = 1000, num_chains: int = 4, key=0,
              progress_bar: bool = True, covariates=None, max_count: int | None = None, log_likelihood: bool = True,
              *, max_births: int | None = None, p_det: float | None = None, tol: float = DEFAULT_TOL,
              chain_method: str = "vectorized", thinning: int = 1, posterior_predictive: bool = True,
              num_ppc: int = 100, ppc_capacity: int | None = None, **nuts_options):
    r"""NUTS on the prior times the exact likelihood of partial observations.

    Parameters
    ----------
    model : VesicleModel
        Its priors say what is inferred; within the class of
        :func:`nvppl.exact.exact_supported`.
    obs : Observations
        Counts and/or dock counts, ``"exact"`` or ``"binomial"`` detection.
    num_samples, num_warmup, num_chains, thinning : int
    key : int or jax key
    progress_bar : bool, default True
    covariates : array, optional
        Covariates ``F`` of the observed runs, as for :func:`nvppl.simulate`.
    max_count, max_births : int, optional
        Bounds of the forward algorithm (count per node; births arriving at a
        node in a step). Default: :func:`nvppl.exact.default_bounds` from the
        observations, which the parameters do not change during sampling.
    log_likelihood : bool, default True
        Store :math:`\log p(y_t \mid y_{<t})` of every draw (``log_likelihood``
        group, variable ``obs``, dims ``run, step``), for LOO.
    p_det : float, optional
        Detection probability when ``obs.p_det`` is unknown.
    tol : float, default 1e-6
        Largest accepted summed truncation share of a run at a kept draw.
    chain_method : {"vectorized", "sequential", "parallel", "auto"}
        As in :class:`numpyro.infer.MCMC`; ``"vectorized"`` (default, also for
        ``"auto"``) advances the chains together, one compiled program.
    posterior_predictive : bool, default True
        Store observations replicated from ``num_ppc`` draws per chain
        (``posterior_predictive`` group, shaped like ``observed_data``;
        ``ppc_capacity``: vesicle capacity of those simulations).
    **nuts_options
        Passed to :class:`numpyro.infer.NUTS` (``target_accept_prob``,
        ``max_tree_depth``, ``dense_mass``, ...). ``dense_mass`` defaults to
        True up to 300 unconstrained dimensions.

    Returns
    -------
    Fit
        ``posterior`` (the inferred ``Params`` fields), ``sample_stats``,
        ``log_likelihood``, ``posterior_predictive`` and ``observed_data`` (``counts``/``docks``); the
        posterior attributes hold ``method="exact"``,
        ``nvppl_exactness="exact"``, the bounds and the largest truncation
        share found at a kept draw (``truncation_share``).

    Raises
    ------
    ValueError
        A case outside the exact class (saying why).
    TruncationError
        A kept draw puts more than ``tol`` of a run's likelihood beyond the
        bounds (naming the draw, run, step and type): pass larger bounds.

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.path_graph(2)), n_types=1,
    ...                         priors={"a": 0.0, "T": 0.5, "w": -1.0})
    >>> obs = nv.simulate(model, model.default_params(), n_steps=20, n_runs=2, key=0).observe(
    ...     counts=True, detection="binomial", p_det=0.8, key=1)
    >>> fit = fit_exact(model, obs, num_samples=100, num_warmup=100, num_chains=1,
    ...                 progress_bar=False)  # doctest: +SKIP
    >>> fit.idata.log_likelihood["obs"].dims  # doctest: +SKIP
    ('chain', 'draw', 'run', 'step')
    """
    from .fit import Fit

    reason = exact_supported(model, obs, p_det=p_det, max_count=max_count)
    if reason:
        raise ValueError(f"method='exact' does not apply: {reason}")
    if not model.inferred:
        raise ValueError("the model has no inferred parameter: every field is fixed")
    num_samples, num_chains = positive_int(num_samples, "num_samples"), positive_int(num_chains, "num_chains")
    num_warmup, thinning = nonneg_int(num_warmup, "num_warmup"), positive_int(thinning, "thinning")
    k_mcmc, k_ppc = jax.random.split(as_jax_key(key))
    B0, Bb0 = default_bounds(model, None, obs, p_det=p_det, tol=tol)
    B = B0 if max_count is None else max_count
    Bb = max(B, Bb0) if max_births is None else max_births
    F = model_features(model, covariates, obs.n_runs, obs.n_steps)
    bounds = dict(covariates=F, max_count=B, max_births=Bb, p_det=p_det)

    def program():  # the truncation is checked at the kept draws, not where the sampler passes
        params = model.param_sites()
        numpyro.factor("exact_loglik", exact_forward(model, params, obs, **bounds).log_increments.sum())

    if "dense_mass" not in nuts_options:
        from .svi import latent_dim

        nuts_options["dense_mass"] = latent_dim(model) <= DENSE_MAX
    kernel = NUTS(program, init_strategy=nuts_options.pop("init_strategy", init_to_median(num_samples=25)),
                  **nuts_options)
    chain_method = "vectorized" if chain_method == "auto" else choice(
        chain_method, ("vectorized", "sequential", "parallel"), "chain_method")
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples * thinning, num_chains=num_chains,
                thinning=thinning, chain_method=chain_method, progress_bar=progress_bar)
    mcmc.run(k_mcmc, extra_fields=_EXTRA)
    sites = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    info = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    posterior = {name: sites[name] for name in model.inferred}
    sample_stats = {
        "lp": -info["potential_energy"], "energy": info["energy"], "diverging": info["diverging"],
        "acceptance_rate": info["accept_prob"], "step_size": info["adapt_state.step_size"],
        "n_steps": info["num_steps"], "tree_depth": np.log2(info["num_steps"] + 1).astype(np.int64),
    }
    loglik, worst = _pointwise(model, obs, posterior, bounds, log_likelihood, tol)
    attrs = {"method": "exact", "nvppl_exactness": "exact", "max_count": int(B), "max_births": int(Bb),
             "truncation_share": worst, "num_warmup": num_warmup, "detection": obs.detection}
    idata = _arviz.observations_to_inference_data(model, obs, posterior, sample_stats, loglik, attrs)
    fit = Fit(idata, model, "exact", mcmc=mcmc)
    if posterior_predictive:
        from ._replicate import attach_replicates

        seen = obs if obs.p_det is not None or obs.detection == "exact" else \
            Observations(obs.counts, obs.docks, obs.detection, p_det=p_det)
        attach_replicates(fit, seen, num_ppc, k_ppc, covariates, ppc_capacity)
    return fit


def _pointwise(model, obs, posterior: dict, bounds: dict, keep: bool, tol: float):
    """Per-draw increments ``(chain, draw, run, step)`` (``None`` unless ``keep``) and the
    largest summed truncation share of a run; raises :class:`TruncationError` above ``tol``."""
    chains, draws = next(iter(posterior.values())).shape[:2]
    flat = {k: np.asarray(v).reshape((chains * draws,) + v.shape[2:]) for k, v in posterior.items()}
    pick = np.arange(chains * draws) if keep else \
        np.unique(np.linspace(0, chains * draws - 1, min(CHECKED_DRAWS, chains * draws)).round().astype(int))
    params = model.params_with({k: v[pick] for k, v in flat.items()})

    def one(p):
        res = exact_forward(model, p, obs, **bounds)
        return res.log_increments, res.lost, res.lost_births

    run = jax.jit(lambda ps: jax.lax.map(one, ps, batch_size=16))
    inc, lost, births = (np.asarray(x) for x in run(jax.tree.map(jnp.asarray, params)))
    shares = lost.sum(2)  # (draw, run, type)
    d = int(np.argmax(shares.reshape(len(pick), -1).max(1)))
    if not shares[d].max(initial=0.0) <= tol:
        c, i = divmod(int(pick[d]), draws)
        try:
            check_truncation(ExactForward(inc[d], lost[d], births[d], None, bounds["max_count"],
                                          bounds["max_births"]), tol)
        except TruncationError as err:
            raise TruncationError(f"posterior draw (chain {c}, draw {i}): {err}") from None
    return (inc.reshape((chains, draws) + inc.shape[1:]) if keep else None), float(shares.max(initial=0.0))
