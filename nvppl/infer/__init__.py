"""Inference for vesicle models.

:func:`fit` dispatches on the method: ``"nuts"`` fits fully observed
:class:`~nvppl.traces.Traces` with NUTS on the exact likelihood. Partial
:class:`~nvppl.traces.Observations` are fitted by ``"svi"`` (variational
inference with the density relaxation's composite likelihood, fast and
approximate, :mod:`nvppl.infer.svi`), ``"is"`` (importance sampling from the SVI
guide weighted by the particle filter, checked by Pareto k̂,
:mod:`nvppl.infer.importance`) and ``"pmmh"`` (particle-marginal
Metropolis–Hastings on the particle filter's likelihood estimate, exact,
:mod:`nvppl.infer.pmmh`). Results are :class:`Fit` objects wrapping an ArviZ
``InferenceData``.
"""

from __future__ import annotations

from .fit import Fit, load_fit

__all__ = ["METHODS", "Fit", "fit", "load_fit"]

#: Inference methods and the data each takes.
METHODS = {"auto": "Traces or Observations", "nuts": "Traces", "svi": "Observations", "is": "Observations",
           "pmmh": "Observations", "exact": "Observations"}


def fit(model, data, method: str = "auto", **kwargs) -> Fit:
    """Fit a vesicle model to data.

    Parameters
    ----------
    model : VesicleModel
        The model; its priors say what is inferred and fixed values what is not.
    data : Traces or Observations
        Fully observed traces (``method="nuts"``) or partial observations
        (``method="pmmh"``).
    method : {"auto", "nuts", "svi", "is", "pmmh", "exact"}
        ``"auto"`` (default): NUTS for Traces; for Observations the SVI guide,
        then importance sampling with the particle filter, and PMMH from the
        guide when importance sampling is refused; what ran is recorded in
        ``fit.idata.posterior.attrs["nvppl_auto"]`` (see
        :func:`nvppl.infer.auto.fit_auto`). ``"exact"``: NUTS on the exact
        likelihood of the observations, for the small models where it exists
        (:mod:`nvppl.exact`).
        ``"nuts"``: the No-U-Turn sampler on the exact trace likelihood.
        ``"svi"``: stochastic variational inference whose likelihood is the
        density relaxation's composite likelihood (one-time Poisson marginals of
        the counts and docks, :func:`nvppl.density.relax`); an approximation, see
        :func:`nvppl.infer.svi.fit_svi` (options ``num_steps``, ``guide``,
        ``learning_rate``, ``num_samples``, ...).
        ``"is"``: importance sampling from an SVI guide (``init=<svi fit>``, or
        one fitted first) with particle-filter likelihood weights, refused when
        the Pareto k̂ exceeds 0.7; see :func:`nvppl.infer.importance.fit_is`.
        ``"pmmh"``: particle-marginal Metropolis–Hastings — an adaptive Gaussian
        random walk on the unconstrained parameters whose acceptance ratio
        ``p̂(y | θ') p(θ') / (p̂(y | θ) p(θ))`` uses the unbiased particle-filter
        estimate ``p̂`` (:func:`nvppl.smc.particle_filter`) of the proposal and the
        stored estimate of the current state, so it samples the exact posterior
        (see :func:`nvppl.infer.pmmh.fit_pmmh`).
    num_samples, num_warmup : int, default 1000
        Draws kept and warm-up iterations per chain.
    num_chains : int, default 4
        Chains. NUTS: by default they run one after the other when the
        likelihood is evaluated on sufficient statistics (compilation dominates),
        and in parallel over host devices when it runs over many vesicle-steps
        (expose them with :func:`nvppl.set_host_device_count`; on one device
        parallel chains run one after the other, with a warning). PMMH: one after the other (the filter runs
        its particles on threads).
    key : int or jax key, default 0
    progress_bar : bool, default True
    chain_method : {"auto", "parallel", "sequential", "vectorized"}, optional
    log_likelihood : bool, default True
        Keep the pointwise log-likelihood of every draw (for LOO): per vesicle
        (NUTS) or per run and step (PMMH, the filter's increments).

    Other Parameters
    ----------------
    n_particles : int, default 256
        PMMH: particles per likelihood estimate.
    n_threads : int, optional
        PMMH: threads of the particle filter.
    init : dict, Params or Fit, optional
        PMMH: starting point (default: the prior median); a ``Fit`` (e.g. from
        ``method="svi"``) also sets the initial proposal covariance (for an SVI
        fit, the guide's covariance). IS: the SVI fit whose guide is the proposal.
    proposal_scale, proposal_cov, target_accept_prob, adapt, dense, max_init_tries
        PMMH proposal options, see :class:`nvppl.infer.pmmh.PMMH`.
    covariates, filter_options
        PMMH: the observed runs' covariates and further options of the particle filter.
    posterior_predictive : bool, default True
        Simulate ``num_ppc`` (default 100) draws per chain and store in
        ``posterior_predictive`` their summary statistics (Traces), or
        ``num_ppc`` draws in all as replicated observations shaped like
        ``observed_data`` (Observations, every method).
    target_accept_prob : float, optional
        NUTS: default 0.8. PMMH: acceptance rate the proposal scale adapts to
        (default 0.44 in one dimension, 0.234 otherwise).
    max_tree_depth : int, default 10
    thinning : int, default 1
    dense_mass : bool, optional
        Adapt a dense mass matrix during warm-up. By default dense when there are
        at most 300 unconstrained parameters (it removes the long trajectories
        that correlated directions cause, e.g. the common shift of the content
        tilt ``Q``, which the likelihood does not see), diagonal otherwise.
    ppc_capacity : int, optional
        Vesicle capacity of the posterior predictive simulations.
    identifiability : bool, default True
        Compare the posterior with the prior afterwards and name weakly
        identified or confounded parameters in a
        :class:`~nvppl.errors.WeakIdentificationWarning` and in
        ``fit.idata.posterior.attrs["nvppl_weak_directions"]``
        (:func:`nvppl.infer.identify.check_identifiability`).

    Returns
    -------
    Fit

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(4)), n_types=1)
    >>> traces = nv.simulate(model, model.default_params(), n_steps=40, n_runs=2, key=0)
    >>> fit = nv.infer.fit(model, traces, num_samples=100, num_warmup=100, num_chains=2,
    ...                    progress_bar=False)
    >>> sorted(fit.idata.groups())[:3]
    ['log_likelihood', 'observed_data', 'posterior']

    Partial observations with PMMH (needs the compiled particle filter):

    >>> obs = traces.observe(counts=True, detection="binomial", p_det=0.8, key=1)
    >>> fit = nv.infer.fit(model, obs, method="pmmh", num_samples=200, num_warmup=200,
    ...                    num_chains=2, n_particles=128, progress_bar=False)  # doctest: +SKIP
    >>> fit.idata.log_likelihood["obs"].dims  # doctest: +SKIP
    ('chain', 'draw', 'run', 'step')
    """
    from ..model import VesicleModel

    if not isinstance(model, VesicleModel):
        raise TypeError(f"model must be an nvppl VesicleModel, got {type(model).__name__}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; available: {sorted(METHODS)}")
    identify = kwargs.pop("identifiability", True)
    result = _dispatch(model, data, method, kwargs)
    if identify:
        from .identify import check_identifiability

        check_identifiability(result)
    return result


def _dispatch(model, data, method: str, kwargs: dict) -> Fit:
    if method == "auto":
        from .auto import fit_auto

        return fit_auto(model, data, **kwargs)
    if method == "pmmh":
        from .pmmh import fit_pmmh

        return fit_pmmh(model, data, **kwargs)
    if method == "exact":
        from .exact import fit_exact

        return fit_exact(model, data, **kwargs)
    if method in ("svi", "is"):
        from ._replicate import attach_replicates

        ppc = kwargs.pop("posterior_predictive", True)
        num_ppc = kwargs.pop("num_ppc", 100)
        capacity = kwargs.pop("ppc_capacity", None)
        if method == "svi":
            from .svi import fit_svi as run
        else:
            from .importance import fit_is as run
        result = run(model, data, **kwargs)
        if ppc:
            attach_replicates(result, data, num_ppc, kwargs.get("key", 0), kwargs.get("covariates"), capacity)
        return result
    from .nuts import fit_nuts

    return fit_nuts(model, data, **kwargs)
