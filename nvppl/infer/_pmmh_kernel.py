r"""The PMMH transition kernel and its state (see :mod:`nvppl.infer.pmmh`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import random
from jax.flatten_util import ravel_pytree
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import is_prng_key, not_jax_tracer

from .._validate import positive, positive_int, probability
from ..traces import check_fit_data
from . import _pmmh_adapt as adaptation
from ._pmmh_filter import OWN_ARGUMENTS, FilterEstimate, default_filter
from ._pmmh_init import Layout, find_start, initial_chol, initial_values, prior_bank

__all__ = ["PMMH", "PMMHState"]

#: Default number of particles of the likelihood estimator.
DEFAULT_PARTICLES = 256
#: Up to this many unconstrained dimensions the proposal covariance is dense by default.
DENSE_MAX = 300


class PMMHState(NamedTuple):
    r"""State of a PMMH chain (a JAX pytree).

    Attributes
    ----------
    i : int
        Iterations done (warm-up included).
    z : dict
        Unconstrained values of the model's sample sites (the sample field).
    loglik : float
        The **stored** log-likelihood estimate :math:`\log\hat p(y \mid z)` of the
        current point, computed once when the point was proposed.
    loglik_steps : array (run, step)
        Its per-run-step increments :math:`\log\hat p(y_t \mid y_{<t})`.
    log_prior : float
        Log prior density of ``z`` in unconstrained coordinates (with the Jacobian).
    accept_prob : float
        Acceptance probability of the last proposal.
    accepted : bool
        Whether the last proposal was accepted.
    mean_accept_prob : float
        Mean acceptance probability over the current phase (warm-up or sampling).
    adapt : AdaptState
        The proposal :math:`(\log s, L)` and its warm-up adaptation
        (:class:`nvppl.infer._pmmh_adapt.AdaptState`: window accumulators,
        Polyak average, null-move acceptance rate :math:`a_0`).
    rng_key : jax key
    seeds : array (run, 2) of uint32
        The particle filter's seed of each run behind the stored estimate
        (correlated PMMH renews one run's seed per proposal).
    """

    i: Any
    z: Any
    loglik: Any
    loglik_steps: Any
    log_prior: Any
    accept_prob: Any
    accepted: Any
    mean_accept_prob: Any
    adapt: Any
    rng_key: Any
    seeds: Any

    @property
    def log_scale(self):
        """Log of the global proposal scale :math:`s`."""
        return self.adapt.log_scale

    @property
    def chol(self):
        """Cholesky factor :math:`L` of the proposal covariance (standard deviations if diagonal)."""
        return self.adapt.chol


class PMMH(MCMCKernel):
    r"""Particle-marginal Metropolis–Hastings kernel for NumPyro's :class:`~numpyro.infer.MCMC`.

    The chain moves on the unconstrained parameters of ``model`` (the sample sites
    of the prior-only program ``lambda: model.param_sites()``, available as
    :attr:`model` so that ``arviz.from_numpyro`` can convert a run). Each
    iteration proposes :math:`z' = z + s L \varepsilon`, estimates
    :math:`\log \hat p(y \mid z')` with a particle filter (called through
    :func:`jax.pure_callback`, seeded from the chain's key) and accepts with
    probability

    .. math::

        \alpha = \min\left(1, \exp\left[\log\hat p(y\mid z') + \log\pi(z')
                 - \log\hat p(y\mid z) - \log\pi(z)\right]\right)

    using the stored estimate of the current state. An estimate of
    :math:`-\infty` (every particle gave the observations probability zero, the
    filter raising :class:`~nvppl.ObservationError`) rejects the proposal.

    **Adaptation** (warm-up only, then frozen, so the kept draws come from one
    fixed MH kernel; ``docs/guide/smc.rst``, "Particle-marginal Metropolis–Hastings",
    and the pure functions of ``nvppl.infer._pmmh_adapt``). The covariance :math:`C = LL^\top`
    becomes, at the end of each of Stan's middle warm-up windows, the shrunk
    covariance :math:`\frac{n}{n+5} S + 10^{-3}\frac{5}{n+5} I` of the window's
    draws (Haario et al. 2001), :math:`s` changing so that :math:`\det(sL)` is
    kept. The scale follows :math:`\log s \mathrel{+}= (t+1)^{-0.6}(\alpha_t -
    \alpha^*)` (Robbins–Monro) and is frozen at its average over the end of
    warm-up. Every 4th warm-up proposal is a null move (:math:`z' = z`) whose
    acceptance rate :math:`a_0 = 2\Phi(-\sigma/\sqrt 2)` measures the noise
    :math:`\sigma` of the log-likelihood estimate; the target is then
    :math:`\alpha^* = 2\Phi(-\sqrt{\ell_0^2 + 2\sigma^2}/2)`, :math:`\ell_0 =
    -2\Phi^{-1}(\alpha^*_0/2)` (Sherlock et al. 2015), which is
    ``target_accept_prob`` :math:`=\alpha^*_0` without noise.

    Parameters
    ----------
    model : VesicleModel
    obs : Observations
    n_particles : int, default 256
    n_threads : int, optional
        Threads of the particle filter (``None``: its default).
    init : dict, Params, Fit or None
        Initial point. ``None``: the prior mean (per sample site, like
        ``init_to_mean``; a site without a finite mean starts at its feasible
        point), then, while the likelihood estimate is :math:`-\infty`, random
        points in ``(-2, 2)`` of the unconstrained space, then draws from the
        prior (see :meth:`init`). A dict (field name → constrained value) or
        :class:`~nvppl.Params` of inferred fields (fields not given start at the
        prior mean). A :class:`~nvppl.infer.Fit` (e.g. a NUTS or density-SVI
        fit): each chain starts at a random draw of its posterior, and unless
        ``proposal_cov`` is given the initial proposal covariance is the
        covariance of its draws (of its guide, for SVI) in unconstrained space.
    proposal_scale : float, optional
        Initial global scale :math:`s_0` (default :math:`2.38/\sqrt d`).
    proposal_cov : float, array (d,) or (d, d), optional
        Initial covariance :math:`C` of the unconstrained proposal before the
        scale (default ``0.01 I``; a float is an isotropic variance, a vector a
        diagonal). Coordinates are ordered as ``jax.flatten_util.ravel_pytree``
        orders the sample sites (alphabetically by site name).
    target_accept_prob : float, optional
        Noise-free target acceptance rate :math:`\alpha^*_0`: 0.44 in one
        dimension, 0.234 otherwise (Roberts & Rosenthal 2001).
    adapt : bool, default True
        Adapt the proposal during warm-up (a quarter of the warm-up iterations are
        then null moves); ``False`` keeps ``proposal_scale`` and ``proposal_cov``.
    dense : bool, optional
        Dense proposal covariance (default: when ``d <= 300``), diagonal otherwise.
    max_init_tries : int, default 20
        Initial points tried per round until the likelihood estimate is finite.
    covariates : array, optional
        User covariates ``F`` of the observed runs (as for :func:`nvppl.simulate`),
        passed to the particle filter.
    filter_options : dict, optional
        Further keyword arguments of the particle filter (e.g. ``ess_threshold``).
    correlated : bool, optional
        Block pseudo-marginal MH (Tran, Kohn, Quiroz & Villani 2016): the
        filter's random numbers are part of the chain's state, one seed per run,
        and each proposal renews the seed of one run chosen at random, so the
        estimates at the current and proposed points share the other runs'
        random numbers and their log-ratio is far less noisy; the chain still
        targets the exact posterior (the seeds' renewal is a Gibbs-type move on
        the auxiliary variables). Default: on with several runs and the
        built-in filter. With it, the null moves of the warm-up measure the
        noise of the log-ratio rather than of one estimate.

    Examples
    --------
    Driven by NumPyro's MCMC (needs the compiled particle filter):

    >>> import networkx as nx, jax, nvppl as nv
    >>> from numpyro.infer import MCMC
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.path_graph(3)), n_types=1,
    ...                         priors={"a": 0.0})
    >>> obs = nv.simulate(model, model.default_params(), n_steps=20, key=0).observe(
    ...     detection="binomial", p_det=0.8, key=1)
    >>> mcmc = MCMC(PMMH(model, obs, n_particles=128), num_warmup=200, num_samples=200,
    ...             progress_bar=False)  # doctest: +SKIP
    >>> mcmc.run(jax.random.PRNGKey(0), extra_fields=("loglik", "accept_prob"))  # doctest: +SKIP
    >>> sorted(mcmc.get_samples())  # doctest: +SKIP
    ['T', 'T_rows_2', 'T_rows_3', 'delta', 'u', 'w']

    Notes
    -----
    The filter's 63-bit integer seed for each call is drawn from the chain's JAX
    key (its ``split(rng_key, 4)[3]``, see ``nvppl.infer._pmmh_filter``), so a run
    is reproducible from its key and seeds do not repeat in practice.
    """

    sample_field = "z"

    def __init__(self, model, obs, n_particles: int = DEFAULT_PARTICLES, n_threads: int | None = None,
                 init=None, proposal_scale: float | None = None, proposal_cov=None,
                 target_accept_prob: float | None = None, adapt: bool = True, dense: bool | None = None,
                 max_init_tries: int = 20, covariates=None, filter_options: dict | None = None,
                 correlated: bool | None = None, _particle_filter: Callable | None = None):
        from ..model import VesicleModel

        if not isinstance(model, VesicleModel):
            raise TypeError(f"model must be an nvppl VesicleModel, got {type(model).__name__}")
        check_fit_data(model, obs, "pmmh", "the particle filter needs a known detection probability (or "
                       "observe with detection='exact' or 'poisson')")
        if not model.inferred:
            raise ValueError("the model has no inferred parameter: every field is fixed")
        self.n_particles = positive_int(n_particles, "n_particles")
        self.n_threads = positive_int(n_threads, "n_threads", none_ok=True)
        proposal_scale = positive(proposal_scale, "proposal_scale", none_ok=True)
        target_accept_prob = probability(target_accept_prob, "target_accept_prob", low_open=True, high_open=True,
                                         none_ok=True)
        self.max_init_tries = positive_int(max_init_tries, "max_init_tries")
        if correlated not in (None, True, False):
            raise ValueError(f"correlated must be True, False or None, got {correlated!r}")
        #: block pseudo-marginal: each proposal renews the filter's seed of one run only
        self.correlated = (obs.n_runs > 1 and _particle_filter is None) if correlated is None else bool(correlated)
        self.filter_options = dict(filter_options or {})
        clash = set(self.filter_options) & OWN_ARGUMENTS
        if clash:
            raise ValueError(f"filter_options cannot set {sorted(clash)}; they are PMMH's own arguments")
        if covariates is not None:
            self.filter_options["covariates"] = covariates
        self.vesicle_model, self.obs, self.names, self.adapt = model, obs, tuple(model.inferred), bool(adapt)
        self.layout = Layout(model)
        self.model, self.dim, self._flat = self.layout.prior, self.layout.dim, self.layout.flat
        #: The likelihood estimator (its ``n_calls``, ``n_invalid`` and ``error`` are read by fit_pmmh).
        self.estimator = FilterEstimate(model, obs, self.names, self.layout.postprocess,
                                        _particle_filter if _particle_filter is not None else default_filter(),
                                        self.n_particles, self.n_threads, self.filter_options)
        self._init_z, cov_from_init = initial_values(self.layout, init)
        d = self.dim
        self.dense = (d <= DENSE_MAX) if dense is None else bool(dense)
        self.target_accept_prob = target_accept_prob if target_accept_prob is not None else 0.44 if d == 1 else 0.234
        self.scale0 = proposal_scale if proposal_scale is not None else float(2.38 / np.sqrt(d))
        self.chol0 = initial_chol(proposal_cov if proposal_cov is not None else cov_from_init, d, self.dense)
        self._num_warmup = 0
        self._init_program = None
        self._vectorized = False
        self._windows = adaptation.schedule(0)

    def postprocess_fn(self, model_args, model_kwargs):
        """Unconstrained sites → constrained sites and the deterministic ``T``."""
        return self.layout.postprocess

    # -------------------------------------------------------------------------- init
    def _init_one(self, rng_key, init_params, bank=None):
        k_state, k_init = random.split(rng_key)
        z, log_prior, ll, steps = find_start(self.layout, self.estimator, k_init, self.max_init_tries,
                                             init_params, self._init_z, bank)
        k_state, k_seeds = random.split(k_state)
        seeds = self.estimator.run_bits(k_seeds)
        if self.correlated:  # the stored estimate must be the one of the stored seeds
            ll2, steps2 = self.estimator.with_seeds(z, seeds)
            ok = jnp.isfinite(ll2)
            ll, steps = jnp.where(ok, ll2, ll), jnp.where(ok, steps2, steps)
            seeds = jnp.where(ok, seeds, jnp.zeros_like(seeds))
        zero = jnp.zeros((), jnp.result_type(float))
        return PMMHState(jnp.array(0), z, ll, steps, log_prior, zero, jnp.array(False), zero,
                         adaptation.init(jnp.log(self.scale0), self.chol0), k_state, seeds)

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        """Initial state; the likelihood estimate of the starting point is computed here (once).

        The starting point is the first of up to ``max_init_tries`` candidates with a
        finite estimate: the prior mean, then random points in ``(-2, 2)``; when none
        is finite (and the key is concrete) a second round tries ``max_init_tries``
        draws from the prior.
        """
        self._num_warmup = int(num_warmup)
        self._windows = adaptation.schedule(self._num_warmup)
        if self._init_program is None:
            self._init_program = jax.jit(self._init_one)
        run = self._init_program
        self._vectorized = not is_prng_key(rng_key)  # chain_method="vectorized": a batch of chains
        axes = None if init_params is None else 0
        state = jax.vmap(run, in_axes=(0, axes))(rng_key, init_params) if self._vectorized \
            else run(rng_key, init_params)
        lp = state.loglik + state.log_prior
        if not not_jax_tracer(lp):
            return state
        failed = ~np.isfinite(np.asarray(lp))
        from_prior = init_params is None and self._init_z is None
        if failed.any() and from_prior:  # second round: prior draws (wider than (-2, 2), e.g. for Beta(2, 8))
            state = self._init_from_prior_draws(rng_key, state, failed)
            failed = ~np.isfinite(np.asarray(state.loglik + state.log_prior))
        if failed.any():
            raise RuntimeError(
                f"PMMH found no initial point with a finite likelihood estimate after "
                f"{(2 if from_prior else 1) * self.max_init_tries} tries: the particle filter gave the observations "
                "probability zero with every particle (e.g. counts larger than the model produces near its prior "
                "mean, or exact counts it cannot produce under its fixed parameters). Pass init=... (a dict of "
                "values, Params or a Fit, e.g. from method='svi'), raise max_init_tries or n_particles, or check "
                "the observations and the detection model.")
        return state

    def _init_from_prior_draws(self, rng_key, state, failed):
        """The chains of ``state`` that ``failed``, started again from prior draws."""
        run = self._init_program
        if not self._vectorized:
            return run(rng_key, None, jnp.asarray(prior_bank(self.layout, rng_key, self.max_init_tries)))
        banks = jnp.asarray(np.stack([prior_bank(self.layout, k, self.max_init_tries) for k in rng_key]))
        again = jax.vmap(run, in_axes=(0, None, 0))(rng_key, None, banks)
        pick = jnp.asarray(failed)
        return jax.tree.map(lambda a, b: jnp.where(pick.reshape(pick.shape + (1,) * (a.ndim - 1)), b, a),
                            state, again)

    # -------------------------------------------------------------------- transition
    def sample(self, state, model_args, model_kwargs):
        """One PMMH transition (a fresh estimate at the proposal, the stored one at the current point)."""
        if self._vectorized:
            return jax.vmap(self._transition)(state)
        return self._transition(state)

    def _transition(self, state):
        rng_key, k_prop, k_acc, k_pf = random.split(state.rng_key, 4)
        flat, _ = ravel_pytree(state.z)
        eps = random.normal(k_prop, flat.shape, flat.dtype)
        step = state.chol @ eps if self.dense else state.chol * eps
        t, nw = state.i, self._num_warmup
        adapting = self.adapt and nw > 0
        null = adaptation.is_null(t, nw) if adapting else jnp.array(False)
        flat_prop = flat + jnp.where(null, 0.0, jnp.exp(state.log_scale)) * step
        z_prop = self.layout.unravel(flat_prop)
        log_prior_prop = -self.layout.potential_fn(z_prop)
        if self.correlated:
            k_block, k_fresh = random.split(k_pf)
            block = random.randint(k_block, (), 0, self.estimator.R)
            seeds_prop = state.seeds.at[block].set(self.estimator.run_bits(k_fresh)[block])
            ll_prop, steps_prop = self.estimator.with_seeds(z_prop, seeds_prop)
        else:
            seeds_prop = state.seeds
            ll_prop, steps_prop = self.estimator(z_prop, k_pf)
        log_ratio = (ll_prop + log_prior_prop) - (state.loglik + state.log_prior)
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
        accepted = jnp.log(random.uniform(k_acc, dtype=flat.dtype)) < log_ratio

        def pick(new, old):
            return jnp.where(accepted, new, old)

        k = jnp.where(t < nw, t, t - nw)
        mean_accept = state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / (k + 1)
        adapt_state = state.adapt
        if adapting:
            adapted = adaptation.update(state.adapt, t, pick(flat_prop, flat), accept_prob, accepted, null,
                                        target=self.target_accept_prob, windows=self._windows)
            frozen, _ = adaptation.finalize(adapted)
            adapted = adapted._replace(log_scale=jnp.where(t == nw - 1, frozen, adapted.log_scale))
            adapt_state = jax.tree.map(lambda a, b: jnp.where(t < nw, a, b), adapted, state.adapt)
        return PMMHState(t + 1, jax.tree.map(pick, z_prop, state.z), pick(ll_prop, state.loglik),
                         pick(steps_prop, state.loglik_steps), pick(log_prior_prop, state.log_prior), accept_prob,
                         accepted, mean_accept, adapt_state, rng_key, pick(seeds_prop, state.seeds))

    def get_diagnostics_str(self, state):
        return f"acc. prob={float(state.mean_accept_prob):.2f}, scale={float(np.exp(state.log_scale)):.3g}"
