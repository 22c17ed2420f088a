r"""Particle-marginal Metropolis–Hastings (PMMH) on partially observed data.

The likelihood of :class:`~nvppl.traces.Observations` (counts and dock
counts without vesicle identities) is intractable, but the compiled
particle filter :func:`nvppl.smc.particle_filter` gives a non-negative,
**unbiased** estimate :math:`\hat p_\theta(y)` of it. PMMH (Andrieu, Doucet &
Holenstein 2010) is a Metropolis–Hastings chain on the unconstrained parameters
:math:`z` whose state carries the estimate of its current point. From
:math:`(z, \hat p(y \mid z))` it proposes :math:`z' = z + s L\varepsilon`,
:math:`\varepsilon \sim N(0, I)`, runs a fresh filter at :math:`z'` and accepts
with probability

.. math::

    \alpha = \min\left(1,\;
      \frac{\hat p(y \mid z')\, \pi(z')}{\hat p(y \mid z)\, \pi(z)}\right),

where :math:`\pi(z) = p(\theta(z))\,|\det J_\theta(z)|` is the prior in
unconstrained coordinates (the Jacobian included) and :math:`\hat p(y \mid z)`
is the **stored** estimate of the current state, never recomputed. The chain is
then an exact MH chain on the extended space (parameters × filter randomness)
whose :math:`z`-marginal is the exact posterior :math:`p(\theta \mid y)`, for any
number of particles; more particles only lower the estimator's variance and so
raise the acceptance rate (a log-likelihood standard deviation of about 1–1.5 at
the posterior mode is a good target, Doucet et al. 2015).

The proposal is a Gaussian random walk whose covariance and global scale adapt
during warm-up only and are frozen afterwards, so the kept draws come from a
valid (time-homogeneous) MH chain.

The parts: :class:`PMMH` and its state :class:`PMMHState` (the kernel, in
``_pmmh_kernel``), the warm-up adaptation as pure functions of a NamedTuple
state (``_pmmh_adapt``), the unconstrained coordinates, starting points and
initial proposal (``_pmmh_init``), the particle filter as a JAX function of the
point (``_pmmh_filter``), and :func:`fit_pmmh` here, which runs the kernel under
NumPyro's MCMC and builds the :class:`~nvppl.infer.Fit`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from jax import random
from numpyro.infer import MCMC

from .._validate import as_jax_key, choice, nonneg_int, positive_int
from ..smc.guided import filter_name
from . import _arviz
from ._pmmh_adapt import noise_sd
from ._pmmh_kernel import DEFAULT_PARTICLES, PMMH, PMMHState

__all__ = ["PMMH", "PMMHState", "fit_pmmh"]

#: fit_pmmh warns when the warm-up estimate of the log-likelihood noise exceeds this standard deviation.
NOISY_SD = 2.5


def fit_pmmh(model, obs, num_samples: int = 1000, num_warmup: int = 1000, num_chains: int = 4, key=0,
             n_particles: int = DEFAULT_PARTICLES, n_threads: int | None = None, progress_bar: bool = True,
             chain_method: str = "vectorized", thinning: int = 1, init=None, proposal_scale: float | None = None,
             proposal_cov=None, target_accept_prob: float | None = None, adapt: bool = True,
             dense: bool | None = None, log_likelihood: bool = True, max_init_tries: int = 20,
             covariates=None, filter_options: dict | None = None, correlated: bool | None = None,
             posterior_predictive: bool = True, num_ppc: int = 100, ppc_capacity: int | None = None,
             _particle_filter: Callable | None = None):
    r"""Particle-marginal Metropolis–Hastings on partial observations; see :func:`nvppl.infer.fit`.

    Runs :class:`PMMH` under :class:`numpyro.infer.MCMC` and returns a
    :class:`~nvppl.infer.Fit` with groups ``posterior`` (the inferred ``Params``
    fields, shapes ``(chain, draw, *field_shape)``), ``sample_stats`` (``lp`` =
    ``loglik + log_prior``, the stored estimate ``loglik`` of
    :math:`\log\hat p(y\mid\theta)`, ``log_prior`` in unconstrained coordinates,
    ``acceptance_rate`` (the acceptance probability), ``accepted``,
    ``proposal_scale``), ``log_likelihood`` (variable ``obs``, dims
    ``run, step``: the stored increments :math:`\log\hat p(y_t \mid y_{<t})` of
    each draw, summing to ``loglik``) and ``observed_data`` (``counts`` /
    ``docks``, dims ``run, step, node, type``).

    Parameters
    ----------
    model : VesicleModel
    obs : Observations
    num_samples, num_warmup, num_chains, thinning : int
    key : int or jax key
    n_particles : int, default 256
        Particles per likelihood estimate; aim for a log-likelihood standard
        deviation of about 1–1.5 near the posterior mode.
    n_threads : int, optional
        Threads of the particle filter.
    progress_bar : bool, default True
    chain_method : {"vectorized", "sequential"}
        As in :class:`numpyro.infer.MCMC`. ``"vectorized"`` (default): the chains
        advance together and their filter calls run one after the other (the
        filter itself runs particles on threads), from one compiled program
        (MCMC's ``"sequential"`` compiles its loop once per chain). NumPyro's
        ``"parallel"`` (``pmap`` over host devices) is not offered: on the CPU
        backend it has deadlocked and crashed with several forced host devices,
        and the filter already uses every core.
    init, proposal_scale, proposal_cov, target_accept_prob, adapt, dense, max_init_tries
        See :class:`PMMH`.
    covariates, filter_options, correlated
        Passed to the particle filter, see :class:`PMMH`.
    posterior_predictive : bool, default True
        Store ``num_ppc`` (default 100, shared out over the chains) replicated observations, seen
        through the data's detection model, in ``posterior_predictive``
        (variables ``counts``/``docks`` shaped like ``observed_data``).
    ppc_capacity : int, optional
        Vesicle capacity of the replicating simulations.
    log_likelihood : bool, default True
        Keep the per-run-step increments of every draw (the ``log_likelihood`` group).

    Returns
    -------
    Fit

    Notes
    -----
    The ``log_likelihood`` entries are one-step-ahead predictive terms of each
    run, and estimates: ``az.loo`` on them is an approximation (the terms are
    neither independent nor exact).

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(4)), n_types=1,
    ...                         priors={"a": 0.0, "u": 0.0})
    >>> obs = nv.simulate(model, model.default_params(), n_steps=30, n_runs=2, key=0).observe(
    ...     counts=True, detection="binomial", p_det=0.8, key=1)
    >>> fit = fit_pmmh(model, obs, num_samples=300, num_warmup=300, num_chains=2,
    ...                n_particles=256, progress_bar=False)  # doctest: +SKIP
    >>> fit.idata.log_likelihood["obs"].shape  # doctest: +SKIP
    (2, 300, 2, 30)
    >>> fit.summary()  # doctest: +SKIP
    """
    from .fit import Fit

    num_samples = positive_int(num_samples, "num_samples")
    num_warmup = nonneg_int(num_warmup, "num_warmup")
    num_chains = positive_int(num_chains, "num_chains")
    thinning = positive_int(thinning, "thinning")
    choice(chain_method, ("vectorized", "sequential"), "chain_method")
    rng = as_jax_key(key)
    kernel = PMMH(model, obs, n_particles=n_particles, n_threads=n_threads, init=init,
                  proposal_scale=proposal_scale, proposal_cov=proposal_cov, target_accept_prob=target_accept_prob,
                  adapt=adapt, dense=dense, max_init_tries=max_init_tries, covariates=covariates,
                  filter_options=filter_options, correlated=correlated, _particle_filter=_particle_filter)
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples * thinning, num_chains=num_chains,
                thinning=thinning, chain_method=chain_method, progress_bar=progress_bar)
    fields = ("loglik", "log_prior", "accept_prob", "accepted", "log_scale") + \
             (("loglik_steps",) if log_likelihood else ())
    try:
        mcmc.run(rng, extra_fields=fields)
    except Exception:
        if kernel.estimator.error is not None:
            raise kernel.estimator.error
        raise
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    estimator = kernel.estimator
    if estimator.n_invalid:
        warnings.warn(f"the particle filter returned a NaN or +inf log-likelihood {estimator.n_invalid} time(s); "
                      "those proposals were rejected", stacklevel=3)
    if not np.all(np.isfinite(extra["loglik"])):
        warnings.warn("some kept draws have a log-likelihood estimate of -inf: a chain never reached a point "
                      "with a finite estimate", stacklevel=3)
    last = mcmc.last_state
    sd = np.atleast_1d(noise_sd(np.asarray(last.adapt.null_accept)))
    measured = np.atleast_1d(np.asarray(last.adapt.null_count)) >= 20
    if measured.any() and np.median(sd[measured]) > NOISY_SD:
        warnings.warn(f"the log-likelihood estimate is very noisy: its standard deviation near the posterior is "
                      f"about {np.median(sd[measured]):.1f} (from the warm-up's null moves), so the chains mix "
                      f"slowly; PMMH works best at 1-1.5. Increase n_particles (now {kernel.n_particles}; the "
                      "variance of the log-estimate falls roughly like 1/n_particles)", stacklevel=3)
    posterior = {n: samples[n] for n in model.inferred}
    sample_stats = {
        "lp": extra["loglik"] + extra["log_prior"], "loglik": extra["loglik"], "log_prior": extra["log_prior"],
        "acceptance_rate": extra["accept_prob"], "accepted": extra["accepted"],
        "proposal_scale": np.exp(extra["log_scale"]),
    }
    attrs = {"method": "pmmh", "n_particles": kernel.n_particles, "num_warmup": num_warmup,
             "target_accept_prob": kernel.target_accept_prob, "n_filter_calls": int(estimator.n_calls),
             "loglik_sd_warmup": [float(x) if m else float("nan") for x, m in zip(sd, measured)],
             "detection": obs.detection, "correlated": int(kernel.correlated),
             "filter_proposal": filter_name(model, obs, _particle_filter), "nvppl_exactness": "exact"}
    ppc = None
    if posterior_predictive:
        from ._replicate import replicate_observations

        ppc = replicate_observations(model, obs, posterior, num_ppc, int(np.asarray(random.bits(rng, (), jnp.uint32))),
                                     covariates, ppc_capacity)
    idata = _arviz.observations_to_inference_data(model, obs, posterior, sample_stats, extra.get("loglik_steps"),
                                                  attrs, ppc)
    return Fit(idata, model, "pmmh", mcmc=mcmc)
