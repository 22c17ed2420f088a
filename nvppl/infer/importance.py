r"""Importance sampling from a density-SVI guide, weighted by the particle filter (``method="is"``).

The composite-likelihood posterior of :mod:`nvppl.infer.svi` is approximate.
Drawing :math:`θ_s \sim q` from its guide and weighting each draw by

.. math::

    \log w_s = \log p(θ_s) + \log \hat p(y \mid θ_s) - \log q(θ_s)

(prior and guide densities on the unconstrained parameters, :math:`\hat p` the
unbiased particle-filter likelihood, :func:`nvppl.smc.particle_filter`)
targets the exact posterior: with an unbiased likelihood estimate the weighted
draws are consistent, as with the exact likelihood (random-weight importance
sampling). Whether the weights can be trusted is judged by Pareto-smoothed
importance sampling (Vehtari et al. 2024): the shape :math:`\hat k` of a
generalised Pareto fit to the largest weights. Above 0.7 the weights' variance
is effectively infinite and the estimate unreliable, and :func:`fit_is`
refuses to return a posterior (:class:`~nvppl.errors.ImportanceSamplingError`,
which carries the weights for inspection).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..smc.guided import filter_name
from . import _arviz, _progress
from .._validate import as_jax_key, positive, positive_int
from ..errors import ImportanceSamplingError, ObservationError
from .svi import as_chains, check_observations

__all__ = ["fit_is", "ImportanceResult", "KHAT_MAX"]

#: Largest Pareto k̂ for which importance weights are accepted.
KHAT_MAX = 0.7


class ImportanceResult(NamedTuple):
    """The importance sample behind a ``method="is"`` fit.

    Attributes
    ----------
    draws : dict
        Constrained values of the inferred fields, one row per guide draw.
    log_weights : ndarray (S,)
        Raw log weights :math:`\\log p(θ) + \\log\\hat p(y\\mid θ) - \\log q(θ)`.
    smoothed_log_weights : ndarray (S,)
        Pareto-smoothed, normalised log weights.
    khat : float
        Pareto shape estimate (reliable below 0.7).
    ess : float
        Effective sample size ``1 / Σ w̃²`` of the smoothed weights.
    loglik : ndarray (S,)
        Particle-filter log-likelihood estimates.
    """

    draws: dict
    log_weights: np.ndarray
    smoothed_log_weights: np.ndarray
    khat: float
    ess: float
    loglik: np.ndarray


def _proposal_draws(fit, num_draws: int, rng, proposal: str, df: float, n_boot, key_boot):
    """Proposal draws: ``(constrained sites, log q, log prior)``.

    ``"guide"``: the SVI guide itself. ``"sandwich"``: a multivariate Student-t
    (``df`` degrees of freedom) centred at the composite MAP with the sandwich
    covariance of :func:`~nvppl.infer.svi.godambe_covariance`, widened where
    needed so that it is never narrower than the guide."""
    import numpyro.distributions as dist
    from numpyro.infer.util import potential_energy

    from .svi import godambe_covariance, guide_moments

    g, params = fit.extra["guide"], fit.extra["guide_params"]
    model = fit.model

    def prior():
        model.param_sites()

    if proposal == "guide":
        q = g.get_posterior(params)
    else:
        z0, V = godambe_covariance(fit, n_boot=n_boot, key=key_boot)
        _, C, _ = guide_moments(fit)
        w, U = np.linalg.eigh(0.5 * (V + V.T))
        V = (U * np.maximum(w, 0.0)) @ U.T
        # never narrower than the guide: V ← V + (C − V)_+ in the guide's eigenbasis
        wc, Uc = np.linalg.eigh(C)
        proj = Uc.T @ V @ Uc
        proj[np.diag_indices_from(proj)] = np.maximum(np.diag(proj), wc)
        V = Uc @ proj @ Uc.T
        L = np.linalg.cholesky(0.5 * (V + V.T) + 1e-12 * np.eye(len(V)))
        q = dist.MultivariateStudentT(df, jnp.asarray(z0), jnp.asarray(L))

    @jax.jit
    def sample(rng):
        z = q.sample(rng, (num_draws,))
        log_prior = jax.vmap(lambda zz: -potential_energy(prior, (), {}, g._unpack_latent(zz)))(z)
        return g._unpack_and_constrain(z, params), q.log_prob(z), log_prior

    values, log_q, log_prior = sample(rng)
    return {k: np.asarray(v) for k, v in values.items()}, np.asarray(log_q), np.asarray(log_prior)


def fit_is(model, obs, init=None, num_draws: int = 1000, num_samples: int | None = None, n_particles: int = 256,
           key=0, n_threads: int | None = None, khat_max: float = KHAT_MAX, covariates=None,
           filter_options: dict | None = None, svi_options: dict | None = None, progress_bar: bool = True,
           log_likelihood: bool = True, proposal: str = "sandwich", df: float = 7.0, n_boot: int | None = None,
           _particle_filter: Callable | None = None):
    r"""Importance sampling from an SVI guide with particle-filter weights; see :func:`nvppl.infer.fit`.

    Parameters
    ----------
    model : VesicleModel
    obs : Observations
    init : Fit, optional
        A ``method="svi"`` fit of the same model to the same observations, whose
        guide is the proposal. ``None`` runs :func:`~nvppl.infer.svi.fit_svi`
        first (with ``svi_options``).
    num_draws : int, default 1000
        Guide draws weighted by the particle filter (one filter run each).
    num_samples : int, optional
        Posterior draws returned, resampled (systematic resampling) from the
        weighted draws; default ``num_draws``.
    n_particles : int, default 256
        Particles per likelihood estimate.
    key : int or jax key
    n_threads : int, optional
        Threads of the particle filter.
    khat_max : float, default 0.7
        Largest acceptable Pareto :math:`\hat k`.
    covariates, filter_options
        Passed to the particle filter (and to SVI when it runs here).
    svi_options : dict, optional
        Keyword arguments of :func:`~nvppl.infer.svi.fit_svi` when ``init`` is None.
    progress_bar : bool, default True
    log_likelihood : bool, default True
        Store the filter's per-run, per-step increments of the returned draws.
    proposal : {"sandwich", "guide"}
        ``"sandwich"`` (default): a multivariate Student-t with ``df`` degrees of
        freedom at the composite MAP whose covariance is the sandwich (Godambe)
        covariance of the composite estimate (estimated from ``n_boot`` data
        sets simulated at the guide's mean, see
        :func:`~nvppl.infer.svi.godambe_covariance`), never narrower than the
        guide. It corrects the composite likelihood's overconfidence, which
        otherwise makes the guide too narrow for importance sampling.
        ``"guide"``: the SVI guide itself.
    df : float, default 7
    n_boot : int, optional
        Simulated data sets for the sandwich covariance.

    Returns
    -------
    Fit
        ``posterior``: ``num_samples`` resampled draws (four chains when a multiple of four);
        ``sample_stats``: ``loglik`` (filter estimate); ``log_likelihood``
        (``obs``: per run and step); ``fit.extra["importance"]``: the
        :class:`ImportanceResult`; ``khat`` and ``ess`` in the posterior's
        attributes.

    Raises
    ------
    ImportanceSamplingError
        When :math:`\hat k` > ``khat_max``: the guide misses regions where the
        exact posterior has mass (typically it is too narrow, as composite
        likelihoods make it), so the weights are dominated by a few draws. The
        error carries the :class:`ImportanceResult`; use ``method="pmmh"`` with
        ``init=<the svi fit>`` instead, which corrects any proposal.
    """
    from .fit import Fit
    from .svi import fit_svi

    check_observations(model, obs, "is")
    num_draws = positive_int(num_draws, "num_draws")
    positive_int(n_particles, "n_particles")
    num_samples = num_draws if num_samples is None else positive_int(num_samples, "num_samples")
    if khat_max != np.inf:  # inf turns the refusal off
        khat_max = positive(khat_max, "khat_max")
    rng = as_jax_key(key)
    k_svi, k_draw, k_pf, k_res = jax.random.split(rng, 4)
    if init is None:
        opts = {"progress_bar": progress_bar, "log_likelihood": False, **(svi_options or {})}
        init = fit_svi(model, obs, key=k_svi, covariates=covariates, **opts)
    if not isinstance(init, Fit) or init.method != "svi" or "guide" not in init.extra:
        raise TypeError("init must be a Fit from method='svi' (its guide is the proposal), got "
                        f"{type(init).__name__}" + (f" from method={init.method!r}" if isinstance(init, Fit) else ""))
    if init.model.to_json() != model.to_json():
        raise ValueError("init was fitted to a different model (specification, priors or graph)")
    pf = _particle_filter
    if pf is None:
        from ..smc import particle_filter as pf
    options = dict(filter_options or {})
    if covariates is not None:
        options["covariates"] = covariates
    if proposal not in ("sandwich", "guide"):
        raise ValueError(f"proposal must be 'sandwich' or 'guide', got {proposal!r}")
    k_draw, k_boot = jax.random.split(k_draw)
    values, log_q, log_prior = _proposal_draws(init, int(num_draws), k_draw, proposal, float(df), n_boot, k_boot)
    seeds = np.asarray(jax.random.randint(k_pf, (int(num_draws),), 0, np.iinfo(np.int32).max))
    loglik = np.empty(int(num_draws))
    steps = np.empty((int(num_draws), obs.n_runs, obs.n_steps))
    bar = _progress.progress_bar(progress_bar, int(num_draws), "is")
    names = tuple(model.inferred)
    for s in range(int(num_draws)):
        params = model.params_with({n: values[n][s] for n in names})
        try:
            res = pf(model, params, obs, n_particles=int(n_particles), key=int(seeds[s]), n_threads=n_threads,
                     trajectory=False, **options)
            loglik[s] = res.log_evidence
            steps[s] = res.log_increments
        except ObservationError:
            loglik[s] = -np.inf
            steps[s] = -np.inf
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    log_w = log_prior + loglik - log_q
    finite = np.isfinite(log_w)
    if not finite.any():
        raise ImportanceSamplingError("every guide draw has likelihood zero under the particle filter (or a "
                                      "non-finite weight); the guide does not cover the observations",
                                      khat=np.inf, result=None)
    smoothed, khat = _arviz.psis_log_weights(np.where(finite, log_w, -np.inf))
    w = np.exp(smoothed - np.max(smoothed))
    w /= w.sum()
    ess = float(1.0 / np.sum(w ** 2))
    result = ImportanceResult({n: values[n] for n in names}, log_w, smoothed, float(khat), ess, loglik)
    if not khat <= khat_max:
        raise ImportanceSamplingError(
            f"importance sampling from the SVI guide is unreliable: Pareto k̂ = {khat:.2f} > {khat_max} "
            f"(effective sample size {ess:.1f} of {num_draws}). The guide misses parts of the exact posterior "
            "(composite-likelihood guides are usually too narrow), so a few draws carry nearly all the weight and "
            "the estimate has no finite variance. Use method='pmmh' with init=<the svi fit> instead (it corrects "
            "any proposal), or improve the guide (more steps, guide='mvn').", khat=float(khat), result=result)
    idx = _systematic(np.asarray(jax.random.uniform(k_res)), w, num_samples)
    posterior = {n: as_chains(values[n][idx]) for n in names}
    sample_stats = {"loglik": as_chains(loglik[idx]), "log_weight": as_chains(smoothed[idx])}
    attrs = {"method": "is", "khat": float(khat), "ess": ess, "num_draws": int(num_draws), "proposal": proposal,
             "n_particles": int(n_particles), "detection": obs.detection, "nvppl_exactness": "exact in the limit",
             "filter_proposal": filter_name(model, obs, _particle_filter)}
    idata = _arviz.observations_to_inference_data(model, obs, posterior, sample_stats,
                                                       as_chains(steps[idx]) if log_likelihood else None, attrs)
    return Fit(idata, model, "is", importance=result, svi_fit=init)


def _systematic(u: float, w: np.ndarray, size: int) -> np.ndarray:
    """Systematic resampling indices of ``size`` draws with weights ``w`` (sum 1)."""
    c = np.cumsum(w)
    c[-1] = 1.0
    return np.searchsorted(c, (u + np.arange(size)) / size, side="right").clip(max=len(w) - 1)
