r"""Particle-marginal Metropolis–Hastings (PMMH) on partially observed data.

The likelihood of :class:`~nvppl.traces.Observations` (counts and dock
counts without vesicle identities, DESIGN §2.2) is intractable, but the compiled
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
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import random
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer import MCMC, init_to_feasible
from numpyro.infer.hmc_util import build_adaptation_schedule
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import get_potential_fn, transform_fn
from numpyro.util import is_prng_key, not_jax_tracer

from .._validate import as_jax_key
from . import _arviz
from ..errors import ObservationError
from ..traces import check_fit_data

__all__ = ["PMMH", "PMMHState", "fit_pmmh"]

#: Default number of particles of the likelihood estimator.
DEFAULT_PARTICLES = 256
#: Up to this many unconstrained dimensions the proposal covariance is dense by default.
DENSE_MAX = 300
#: Initial proposal standard deviation per unconstrained coordinate (before the global scale).
INITIAL_STD = 0.1
#: During warm-up every NULL_EVERY-th proposal is a null move (z' = z) that measures the estimator noise.
NULL_EVERY = 4
#: Memory (in null moves) of the running estimate of the null acceptance rate.
NULL_MEMORY = 50
#: Robbins–Monro gains of the log-scale: (t + 1) ** -RM_EXPONENT.
RM_EXPONENT = 0.6
#: fit_pmmh warns when the warm-up estimate of the log-likelihood noise exceeds this standard deviation.
NOISY_SD = 2.5


def noise_sd(null_accept):
    """Standard deviation σ of a Gaussian log-likelihood estimator whose null moves are accepted
    at rate ``null_accept`` (``a₀ = 2Φ(−σ/√2)``).

    Examples
    --------
    >>> float(noise_sd(1.0)), round(float(noise_sd(0.2)), 2)
    (0.0, 1.81)
    """
    from scipy.stats import norm

    a0 = np.clip(np.asarray(null_accept, dtype=np.float64), 1e-12, 1.0)
    return np.maximum(-np.sqrt(2.0) * norm.ppf(a0 / 2), 0.0)


def noisy_target(target, null_accept):
    """Acceptance rate to aim at when the estimator's noise alone caps it at ``null_accept``.

    In the high-dimensional limit of Sherlock et al. (2015) a random walk of scale
    ``ℓ`` with Gaussian log-likelihood noise ``σ`` accepts at rate
    ``2Φ(−√(ℓ² + 2σ²)/2)`` and its optimal ``ℓ`` hardly depends on ``σ``. So the
    noise-free ``target`` fixes ``ℓ₀ = −2Φ⁻¹(target/2)`` and the target under noise
    is ``2Φ(−√(ℓ₀² + 2σ²)/2)`` with ``2σ² = 4Φ⁻¹(a₀/2)²``; without noise
    (``a₀ = 1``) it is ``target``.
    """
    from jax.scipy.stats import norm

    a0 = jnp.clip(null_accept, 0.01, 1.0)
    l0 = -2.0 * norm.ppf(target / 2)
    two_sigma2 = 4.0 * norm.ppf(a0 / 2) ** 2
    return 2.0 * norm.cdf(-jnp.sqrt(l0**2 + two_sigma2) / 2)


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
    log_scale : float
        Log of the global proposal scale :math:`s`.
    chol : array (d, d) or (d,)
        Cholesky factor :math:`L` of the proposal covariance (a vector of standard
        deviations for a diagonal proposal).
    log_scale_avg : float
        Running (Polyak) average of ``log_scale`` over the end of warm-up; the
        frozen scale of the sampling phase.
    cov_state : tuple
        Welford accumulators ``(mean, m2, n)`` of the warm-up draws in the current window.
    window_accepts : int
        Accepted proposals in the current adaptation window.
    null_accept : float
        Running mean acceptance probability of the warm-up's null proposals
        (:math:`z' = z`, a fresh estimate at the same point): the acceptance rate
        that the estimator's noise alone allows, :math:`a_0 = 2\Phi(-\sigma/\sqrt 2)`
        for a log-likelihood estimate with standard deviation :math:`\sigma`.
    null_count : int
        Null proposals made so far.
    rng_key : jax key
    """

    i: Any
    z: Any
    loglik: Any
    loglik_steps: Any
    log_prior: Any
    accept_prob: Any
    accepted: Any
    mean_accept_prob: Any
    log_scale: Any
    chol: Any
    log_scale_avg: Any
    cov_state: Any
    window_accepts: Any
    null_accept: Any
    null_count: Any
    rng_key: Any


def _default_filter():
    try:
        from ..smc import particle_filter
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise ImportError("method='pmmh' needs the compiled particle filter nvppl.smc.particle_filter, "
                          f"which could not be imported ({exc})") from exc
    return particle_filter


class PMMH(MCMCKernel):
    r"""Particle-marginal Metropolis–Hastings kernel for NumPyro's :class:`~numpyro.infer.MCMC`.

    The chain moves on the unconstrained parameters of ``model`` (the sample sites
    of the prior-only program ``lambda: model.param_sites()``, available as
    :attr:`model` so that ``arviz.from_numpyro`` can convert a run). Each
    iteration proposes :math:`z' = z + s L \varepsilon`, estimates
    :math:`\log \hat p(y \mid z')` with a particle filter (called through
    :func:`jax.pure_callback`, so MCMC's compiled loop works with and without a
    progress bar) and accepts with probability

    .. math::

        \alpha = \min\left(1, \exp\left[\log\hat p(y\mid z') + \log\pi(z')
                 - \log\hat p(y\mid z) - \log\pi(z)\right]\right)

    using the stored estimate of the current state. An estimate of
    :math:`-\infty` (every particle gave the observations probability zero, the
    filter raising :class:`~nvppl.ObservationError`) rejects the proposal.

    **Adaptation** (warm-up only, then frozen, so the kept draws come from one
    fixed MH kernel). The warm-up is cut into Stan's windows
    (:func:`numpyro.infer.hmc_util.build_adaptation_schedule`: an initial buffer,
    doubling windows, a terminal buffer).

    * *Covariance* (Haario et al. 2001): at the end of each middle window
      :math:`C` becomes the shrunk empirical covariance of that window's draws,
      :math:`\frac{n}{n+5} S + 10^{-3}\frac{5}{n+5} I`, if at least ``d + 1`` of its
      proposals were accepted; :math:`s` is rescaled so that the proposal keeps its
      volume (:math:`\det(sL)` unchanged) and only its shape changes.
    * *Scale* (Robbins–Monro, Andrieu & Thoms 2008): after each proposal,
      :math:`\log s \mathrel{+}= (t+1)^{-0.6}\,(\alpha_t - \alpha^*)`. At the
      end of warm-up :math:`\log s` is frozen at its average over the second half
      of the terminal buffer.
    * *Noise-aware target*: every 4th warm-up proposal is a null move
      (:math:`z' = z`, a fresh estimate at the same point), whose acceptance rate
      :math:`a_0 = 2\Phi(-\sigma/\sqrt 2)` measures the standard deviation
      :math:`\sigma` of the log-likelihood estimator. A noisy estimator caps the
      acceptance rate, and aiming at the noise-free rate would shrink :math:`s`
      toward zero; the target is therefore :math:`\alpha^* =
      2\Phi(-\sqrt{\ell_0^2 + 2\sigma^2}/2)` with :math:`\ell_0 =
      -2\Phi^{-1}(\alpha^*_0/2)` (the high-dimensional limit of Sherlock et al.
      2015, whose optimal scale hardly depends on :math:`\sigma`), which is
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
        prior (see :meth:`init`). A dict (field name →
        constrained value) or :class:`~nvppl.Params` of inferred fields (fields
        not given start at the prior mean). A :class:`~nvppl.infer.Fit` (e.g. a NUTS or
        density-SVI fit): each chain starts at a random draw of its posterior,
        and unless ``proposal_cov`` is given the initial proposal covariance is
        the covariance of its draws in unconstrained space.
    proposal_scale : float, optional
        Initial global scale :math:`s_0` (default :math:`2.38/\sqrt d`).
    proposal_cov : float, array (d,) or (d, d), optional
        Initial covariance :math:`C` of the unconstrained proposal before the
        scale (default ``0.01 I``; a float is an isotropic variance, a vector a
        diagonal). Coordinates are ordered as ``jax.flatten_util.ravel_pytree``
        orders the sample sites (alphabetically by site name).
    target_accept_prob : float, optional
        Noise-free target acceptance rate :math:`\alpha^*_0` of the scale
        adaptation: 0.44 in one dimension, 0.234 otherwise (Roberts & Rosenthal
        2001); lowered automatically for the estimator's noise (see above).
    adapt : bool, default True
        Adapt the proposal during warm-up (a quarter of the warm-up iterations are
        then null moves); ``False`` keeps ``proposal_scale`` and ``proposal_cov``
        throughout.
    dense : bool, optional
        Dense proposal covariance (default: when ``d <= 300``), diagonal otherwise.
    max_init_tries : int, default 20
        Initial points tried per round until the likelihood estimate is finite.
    covariates : array, optional
        User covariates ``F`` of the observed runs (as for :func:`nvppl.simulate`),
        passed to the particle filter.
    filter_options : dict, optional
        Further keyword arguments of the particle filter (e.g. ``ess_threshold``,
        ``capacity``).

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
    The filter's integer seed for each call is drawn from the chain's JAX key:
    ``k_pf = split(rng_key)[3]``, two ``uint32`` words from
    ``jax.random.bits(k_pf, (2,))``, seed ``= (w0 mod 2^31)·2^32 + w1`` (63 bits), so
    a run is reproducible from its key and seeds do not repeat in practice.
    """

    sample_field = "z"

    def __init__(self, model, obs, n_particles: int = DEFAULT_PARTICLES, n_threads: int | None = None,
                 init=None, proposal_scale: float | None = None, proposal_cov=None,
                 target_accept_prob: float | None = None, adapt: bool = True, dense: bool | None = None,
                 max_init_tries: int = 20, covariates=None, filter_options: dict | None = None,
                 _particle_filter: Callable | None = None):
        from ..model import VesicleModel

        if not isinstance(model, VesicleModel):
            raise TypeError(f"model must be an nvppl VesicleModel, got {type(model).__name__}")
        check_fit_data(model, obs, "pmmh", "the particle filter needs a known detection probability (or "
                       "observe with detection='exact' or 'poisson')")
        if not model.inferred:
            raise ValueError("the model has no inferred parameter: every field is fixed")
        if isinstance(n_particles, bool) or not isinstance(n_particles, (int, np.integer)) or n_particles < 1:
            raise ValueError(f"n_particles must be a positive integer, got {n_particles!r}")
        if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer))
                                      or n_threads < 1):
            raise ValueError(f"n_threads must be a positive integer or None, got {n_threads!r}")
        if proposal_scale is not None and not (np.isfinite(proposal_scale) and proposal_scale > 0):
            raise ValueError(f"proposal_scale must be a positive number, got {proposal_scale!r}")
        if target_accept_prob is not None and not (0.0 < target_accept_prob < 1.0):
            raise ValueError(f"target_accept_prob must lie in (0, 1), got {target_accept_prob!r}")
        if isinstance(max_init_tries, bool) or not isinstance(max_init_tries, (int, np.integer)) \
                or max_init_tries < 1:
            raise ValueError(f"max_init_tries must be a positive integer, got {max_init_tries!r}")
        self.vesicle_model = model
        self.obs = obs
        self.n_particles = int(n_particles)
        self.n_threads = None if n_threads is None else int(n_threads)
        self.names = tuple(model.inferred)
        self.adapt = bool(adapt)
        self.max_init_tries = int(max_init_tries)
        self._particle_filter = _particle_filter if _particle_filter is not None else _default_filter()
        self.filter_options = dict(filter_options or {})
        clash = set(self.filter_options) & {"model", "params", "obs", "n_particles", "key", "n_threads", "trajectory",
                                            "covariates"}
        if clash:
            raise ValueError(f"filter_options cannot set {sorted(clash)}; they are PMMH's own arguments")
        if covariates is not None:
            self.filter_options["covariates"] = covariates
        self.model = _prior_program(model)
        self._lock = threading.Lock()
        self.n_calls = 0  # filter calls (host side)
        self.n_invalid = 0  # estimates that were NaN or +inf (treated as -inf)
        self.error = None  # the last exception raised by the filter
        self._setup()
        self._init_z, cov_from_init = self._initial_values(init)
        d = self.dim
        self.dense = (d <= DENSE_MAX) if dense is None else bool(dense)
        self.target_accept_prob = float(target_accept_prob if target_accept_prob is not None
                                        else (0.44 if d == 1 else 0.234))
        self.scale0 = float(proposal_scale if proposal_scale is not None else 2.38 / np.sqrt(d))
        cov = proposal_cov if proposal_cov is not None else cov_from_init
        self.chol0 = self._initial_chol(cov)
        self._num_warmup = 0
        self._init_program = None
        self._vectorized = False
        self._windows = self._windows_for(0)

    # ------------------------------------------------------------------ setup
    def _setup(self):
        """Prior potential, constraining post-processing and the unconstrained layout.

        The same functions ``numpyro.infer.util.initialize_model`` builds, without
        its eager search for an initial point (slow op by op)."""
        tr = handlers.trace(handlers.substitute(handlers.seed(self.model, 0),
                                                substitute_fn=init_to_feasible)).get_trace()
        sites = {n: s for n, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
        self._transforms = {n: biject_to(s["fn"].support) for n, s in sites.items()}
        self._potential_fn, self._postprocess = get_potential_fn(self.model, self._transforms, replay_model=True)
        self._site_names = tuple(sorted(sites))
        self._prototype = {n: jnp.zeros(self._transforms[n].inverse_shape(jnp.shape(sites[n]["value"])))
                           for n in self._site_names}
        flat, self._unravel = ravel_pytree(self._prototype)
        self.dim = int(flat.size)
        if self.dim == 0:
            raise ValueError(f"the model has no free parameter: {list(self.names)} are inferred but have no "
                             "free coordinate (e.g. rows of T with a single candidate)")
        self.R, self.T = self.obs.n_runs, self.obs.n_steps
        self._z_center = self._center_flat(sites)

    def _to_sites(self, values: dict) -> dict:
        """Constrained field values → constrained sample-site values (``T`` → ``T_rows_<m>``)."""
        out = {}
        for name, value in values.items():
            if name == "T":
                prior = self.vesicle_model.priors["T"]
                for m, nodes in prior.groups.items():
                    if m >= 2:
                        out[f"T_rows_{m}"] = jnp.asarray(value)[..., nodes, :m]
            else:
                out[name] = jnp.asarray(value)
        return out

    def _unconstrain(self, values: dict) -> dict:
        """Constrained field values → unconstrained site values (no leading axes)."""
        sites = self._to_sites(values)
        return transform_fn(self._transforms, {k: sites[k] for k in self._site_names}, invert=True)

    def _flat(self, values: dict):
        """Flat unconstrained vector of constrained field values."""
        return ravel_pytree(self._unconstrain(values))[0]

    def _initial_values(self, init):
        """``(init_z, cov)``: fixed initial unconstrained point(s) (``None``: prior mean)
        and an initial proposal covariance from a fit (or ``None``).

        This is the hook for starting from another fit: any :class:`~nvppl.infer.Fit`
        whose posterior holds the inferred fields (NUTS, density SVI) works as is.
        """
        from ..params import Params
        from .fit import Fit

        if init is None:
            return None, None
        model = self.vesicle_model
        if isinstance(init, Fit):
            post = init.idata.posterior
            missing = [n for n in self.names if n not in post]
            if missing:
                raise ValueError(f"init: the fit's posterior has no {missing}")
            draws = {n: post[n].values.reshape((-1,) + post[n].shape[2:]) for n in self.names}
            for n, v in draws.items():
                if v.shape[1:] != model.field_shape(n):
                    raise ValueError(f"init: the fit's {n!r} has shape {v.shape[1:]}, the model "
                                     f"expects {model.field_shape(n)}")
            zs = np.asarray(jax.vmap(self._flat)(draws))
            zs = zs[np.all(np.isfinite(zs), axis=1)]
            if len(zs) == 0:
                raise ValueError("init: no draw of the fit maps to a finite unconstrained point")
            cov = None
            if init.method == "svi" and "guide" in init.extra:
                return jnp.asarray(zs), self._guide_covariance(init)
            if len(zs) > self.dim:  # the windows' shrinkage, so that a constant coordinate does no harm
                n = len(zs)
                cov = n / (n + 5) * np.cov(zs, rowvar=False).reshape(self.dim, self.dim) \
                    + 1e-3 * 5 / (n + 5) * np.eye(self.dim)
            return jnp.asarray(zs), cov
        if isinstance(init, Params):
            init = {n: getattr(init, n) for n in self.names}
        if not isinstance(init, dict):
            raise TypeError(f"init must be None, a dict of constrained values, Params or a Fit, "
                            f"got {type(init).__name__}")
        unknown = set(init) - set(self.names)
        if unknown:
            fixed = sorted(unknown & set(model.fixed))
            raise ValueError(f"init gives values for {sorted(unknown)}, which are not inferred"
                             + (f" ({fixed} fixed in the model)" if fixed else "")
                             + f"; inferred fields are {list(self.names)}")
        values = {}
        center = self._postprocess(self._unravel(self._z_center))
        for n in self.names:
            if n in init:
                arr = np.asarray(init[n], dtype=np.float64)
                if arr.shape != model.field_shape(n):
                    raise ValueError(f"init value of {n!r} has shape {arr.shape}, expected {model.field_shape(n)}")
                values[n] = arr
            else:
                values[n] = np.asarray(center[n])
        model.check_params(model.params_with(values))
        z = self._unconstrain(values)
        bad = sorted({"T" if k.startswith("T_rows_") else k for k, v in z.items() if not np.all(np.isfinite(v))})
        if bad:
            raise ValueError(f"init value(s) of {bad} lie on the boundary of the support (e.g. a probability "
                             "of exactly 0 or 1, a zero in a row of T); move them inside")
        return ravel_pytree(z)[0], None

    def _guide_covariance(self, fit):
        """The covariance of an SVI fit's guide, in this kernel's coordinates.

        The guide's latent vector and this kernel's flat vector hold the same
        unconstrained sample sites (both come from ``model.param_sites()``) in
        different orders; unpacking the index vector ``0, 1, …, d−1`` through the
        guide's layout and flattening it in this kernel's order gives the
        permutation."""
        from .svi import guide_moments

        _, cov, unpack = guide_moments(fit)
        if cov.shape != (self.dim, self.dim):
            raise ValueError(f"init: the SVI guide has {cov.shape[0]} latent dimensions, this model {self.dim}")
        sites = unpack(jnp.arange(self.dim, dtype=jnp.float64))
        perm = np.asarray(ravel_pytree({k: sites[k] for k in self._site_names})[0]).round().astype(int)
        return cov[np.ix_(perm, perm)]

    def _initial_chol(self, cov):
        d = self.dim
        if cov is None:
            return jnp.full(d, INITIAL_STD) if not self.dense else INITIAL_STD * jnp.eye(d)
        cov = np.asarray(cov, dtype=np.float64)
        if cov.ndim == 0:
            cov = np.full(d, float(cov))
        if cov.shape not in ((d,), (d, d)):
            raise ValueError(f"proposal_cov must be a number, a vector of {d} variances or a {d}×{d} matrix "
                             f"(the unconstrained dimension is {d}), got shape {cov.shape}")
        if not np.all(np.isfinite(cov)):
            raise ValueError("proposal_cov must be finite")
        if cov.ndim == 1:
            if np.any(cov <= 0):
                raise ValueError("proposal_cov variances must be positive")
            return jnp.asarray(np.sqrt(cov)) if not self.dense else jnp.diag(jnp.sqrt(cov))
        if not np.allclose(cov, cov.T):
            raise ValueError("proposal_cov must be symmetric")
        if not self.dense:
            if np.any(np.diag(cov) <= 0):
                raise ValueError("proposal_cov variances must be positive")
            return jnp.asarray(np.sqrt(np.diag(cov)))
        chol = np.linalg.cholesky(cov + 1e-10 * np.eye(d)) if np.all(np.linalg.eigvalsh(cov) > 0) else None
        if chol is None:
            raise ValueError("proposal_cov must be positive definite")
        return jnp.asarray(chol)

    # ---------------------------------------------------------------- filter
    def _host_loglik(self, values, bits):
        """Run the particle filter on the host (called through ``pure_callback``)."""
        R, T = self.R, self.T
        w0, w1 = (int(b) for b in np.asarray(bits))  # NumPy first: indexing a jax Array dispatches an op
        seed = ((w0 & 0x7FFFFFFF) << 32) | w1
        params = self.vesicle_model.params_with({n: np.asarray(values[n], dtype=np.float64) for n in self.names})
        with self._lock:
            self.n_calls += 1
        try:
            result = self._particle_filter(self.vesicle_model, params, self.obs, n_particles=self.n_particles,
                                           key=seed, n_threads=self.n_threads, trajectory=False,
                                           **self.filter_options)
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

    def _estimate(self, z, key):
        """``(log p̂(y | z), per-run-step increments)`` with a filter seeded from ``key``."""
        constrained = self._postprocess(z)
        values = {n: constrained[n] for n in self.names}
        bits = random.bits(key, (2,), jnp.uint32)
        dtype = jnp.result_type(float)
        shapes = (jax.ShapeDtypeStruct((), dtype), jax.ShapeDtypeStruct((self.R, self.T), dtype))
        return jax.pure_callback(self._host_loglik, shapes, values, bits, vmap_method="sequential")

    # ------------------------------------------------------------ MCMCKernel
    def postprocess_fn(self, model_args, model_kwargs):
        """Unconstrained sites → constrained sites and the deterministic ``T``."""
        return self._postprocess

    def _windows_for(self, num_warmup: int):
        """Ends of the covariance windows, start of the first, end of the last, and the
        first iteration of the scale average."""
        sched = build_adaptation_schedule(num_warmup)[1:-1] if num_warmup >= 20 else []
        if not sched:
            return np.zeros(0, np.int64), -1, -1, num_warmup // 2
        last = sched[-1].end
        return np.array([w.end for w in sched], np.int64), sched[0].start, last, last + 1 + (num_warmup - last) // 2

    def _center_flat(self, sites: dict):
        """Unconstrained prior mean: each site's mean where it is finite and in the support
        (the site's feasible point otherwise); computed once, eagerly, without sampling."""
        values = {}
        for name, site in sites.items():
            fn, value = site["fn"], site["value"]
            try:
                mean = jnp.broadcast_to(fn.mean, jnp.shape(value))
                if bool(jnp.all(jnp.isfinite(mean))) and bool(jnp.all(fn.support(mean))):
                    value = mean
            except (NotImplementedError, ValueError, TypeError):
                pass
            values[name] = value
        flat = ravel_pytree(transform_fn(self._transforms, values, invert=True))[0]
        return jnp.where(jnp.isfinite(flat), flat, 0.0)

    def _initial_z(self, key, tries, init_params, bank):
        """Starting point of attempt ``tries``: the given one, a draw of an init fit, or
        the prior mean first and then uniform points in ``(-2, 2)`` (``bank`` is
        ``None``) or the rows of ``bank`` (prior draws, see :meth:`init`)."""
        if init_params is not None:
            return init_params
        if self._init_z is not None:
            if self._init_z.ndim == 1:
                return self._unravel(self._init_z)
            return self._unravel(self._init_z[random.randint(key, (), 0, self._init_z.shape[0])])
        if bank is not None:
            return self._unravel(bank[tries % bank.shape[0]])
        flat = jnp.where(tries == 0, self._z_center, random.uniform(key, (self.dim,), minval=-2.0, maxval=2.0))
        return self._unravel(flat)

    def _init_one(self, rng_key, init_params, bank=None):
        k_state, k_init = random.split(rng_key)

        def attempt(key, tries):
            k_z, k_pf = random.split(key)
            z = self._initial_z(k_z, tries, init_params, bank)
            log_prior = -self._potential_fn(z)
            ll, steps = self._estimate(z, k_pf)
            return z, log_prior, ll, steps

        def cond(c):
            return (~jnp.isfinite(c[3] + c[4])) & (c[0] < self.max_init_tries)

        def body(c):
            tries, key = c[0], c[1]
            key, sub = random.split(key)
            return (tries + 1, key) + attempt(sub, tries)

        key, sub = random.split(k_init)
        first = (jnp.array(1), key) + attempt(sub, jnp.array(0))
        _, _, z, log_prior, ll, steps = jax.lax.while_loop(cond, body, first)
        d = self.dim
        log_scale = jnp.log(self.scale0)
        cov_state = (jnp.zeros(d), jnp.zeros((d, d) if self.dense else d), jnp.array(0))
        dtype = jnp.result_type(float)
        return PMMHState(jnp.array(0), z, ll, steps, log_prior, jnp.zeros((), dtype), jnp.array(False),
                         jnp.zeros((), dtype), log_scale, self.chol0, log_scale, cov_state, jnp.array(0),
                         jnp.ones((), dtype), jnp.array(0), k_state)

    def _prior_bank(self, rng_key):
        """``max_init_tries`` prior draws (flat, unconstrained) for a chain's second round
        of initial points; from the model's compiled prior sampler."""
        seeds = np.asarray(random.randint(random.fold_in(rng_key, 1), (self.max_init_tries,), 0, 2**31 - 1))
        draws = [self.vesicle_model.sample_params(int(k)) for k in seeds]
        stacked = {n: np.stack([getattr(p, n) for p in draws]) for n in self.names}
        bank = np.asarray(jax.jit(jax.vmap(self._flat))(stacked))
        return np.where(np.all(np.isfinite(bank), axis=1, keepdims=True), bank, np.asarray(self._z_center))

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        """Initial state; the likelihood estimate of the starting point is computed here (once).

        The starting point is the first of up to ``max_init_tries`` candidates with a
        finite estimate: the prior mean, then random points in ``(-2, 2)``; when none
        is finite (and the key is concrete) a second round tries ``max_init_tries``
        draws from the prior.
        """
        self._num_warmup = int(num_warmup)
        self._windows = self._windows_for(self._num_warmup)
        if self._init_program is None:
            self._init_program = jax.jit(self._init_one)
        run = self._init_program
        self._vectorized = not is_prng_key(rng_key)  # chain_method="vectorized": a batch of chains
        axes = None if init_params is None else 0
        if not self._vectorized:
            state = run(rng_key, init_params)
        else:
            state = jax.vmap(run, in_axes=(0, axes))(rng_key, init_params)
        lp = state.loglik + state.log_prior
        if not not_jax_tracer(lp):
            return state
        failed = ~np.isfinite(np.asarray(lp))
        if failed.any() and init_params is None and self._init_z is None:
            # second round: draws from the prior (wider than (-2, 2) where the prior is, e.g. Beta(2, 8))
            if not self._vectorized:
                state = run(rng_key, None, jnp.asarray(self._prior_bank(rng_key)))
            else:
                banks = jnp.asarray(np.stack([self._prior_bank(k) for k in rng_key]))
                again = jax.vmap(run, in_axes=(0, None, 0))(rng_key, None, banks)
                pick = jnp.asarray(failed)
                state = jax.tree.map(lambda a, b: jnp.where(pick.reshape(pick.shape + (1,) * (a.ndim - 1)), b, a),
                                     state, again)
            failed = ~np.isfinite(np.asarray(state.loglik + state.log_prior))
        if failed.any():
            rounds = 2 if (init_params is None and self._init_z is None) else 1
            raise RuntimeError(
                f"PMMH found no initial point with a finite likelihood estimate after {rounds * self.max_init_tries} "
                "tries: the particle filter gave the observations probability zero with every particle (e.g. "
                "counts larger than the model produces near its prior mean, or exact counts it cannot produce "
                "under its fixed parameters). Pass init=... (a dict of values, Params or a Fit, e.g. from "
                "method='svi'), raise max_init_tries or n_particles, or check the observations and the detection "
                "model.")
        return state

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
        t = state.i
        nw = self._num_warmup
        null = (t < nw) & (t % NULL_EVERY == NULL_EVERY - 1) if (self.adapt and nw > 0) else jnp.array(False)
        flat_prop = flat + jnp.where(null, 0.0, jnp.exp(state.log_scale)) * step
        z_prop = self._unravel(flat_prop)
        log_prior_prop = -self._potential_fn(z_prop)
        ll_prop, steps_prop = self._estimate(z_prop, k_pf)
        log_ratio = (ll_prop + log_prior_prop) - (state.loglik + state.log_prior)
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
        accepted = jnp.log(random.uniform(k_acc, dtype=flat.dtype)) < log_ratio

        def pick(new, old):
            return jnp.where(accepted, new, old)

        z = jax.tree.map(pick, z_prop, state.z)
        flat_new = pick(flat_prop, flat)
        k = jnp.where(t < nw, t, t - nw)
        mean_accept = state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / (k + 1)
        new = state._replace(
            i=t + 1, z=z, loglik=pick(ll_prop, state.loglik), loglik_steps=pick(steps_prop, state.loglik_steps),
            log_prior=pick(log_prior_prop, state.log_prior), accept_prob=accept_prob, accepted=accepted,
            mean_accept_prob=mean_accept, rng_key=rng_key)
        if self.adapt and nw > 0:
            adapted = self._adapt(new, t, flat_new, null)
            new = jax.tree.map(lambda a, b: jnp.where(t < nw, a, b), adapted, new)
        return new

    def _adapt(self, state, t, flat, null):
        """Warm-up adaptation after iteration ``t`` (see the class docstring); ``null``:
        whether this iteration was a null proposal."""
        ends, first, last, avg_start = self._windows
        d = self.dim
        # noise level: running acceptance rate of the null proposals
        weight = jnp.maximum(1.0 / (state.null_count + 1), 1.0 / NULL_MEMORY)
        null_accept = jnp.where(null, state.null_accept + weight * (state.accept_prob - state.null_accept),
                                state.null_accept)
        null_count = state.null_count + null
        # Robbins–Monro step of the log-scale toward the (noise-adjusted) target acceptance rate
        target = noisy_target(self.target_accept_prob, null_accept)
        gain = (t + 1.0) ** -RM_EXPONENT
        log_scale = jnp.where(null, state.log_scale, state.log_scale + gain * (state.accept_prob - target))
        # Welford accumulation of the draws of the current covariance window
        mean, m2, n = state.cov_state
        in_window = (t >= first) & (t <= last)
        n1 = n + 1
        delta = flat - mean
        mean1 = mean + delta / n1
        m21 = m2 + (jnp.outer(flat - mean1, delta) if self.dense else (flat - mean1) * delta)
        mean, m2, n = (jnp.where(in_window, a, b) for a, b in ((mean1, mean), (m21, m2), (n1, n)))
        window_accepts = state.window_accepts + (in_window & state.accepted & ~null)
        chol = state.chol
        if len(ends):
            at_end = jnp.any(t == jnp.asarray(ends))
            nf = jnp.maximum(n, 2).astype(flat.dtype)
            cov = (nf / (nf + 5)) * m2 / (nf - 1)
            shrink = 1e-3 * 5 / (nf + 5)
            if self.dense:
                new_chol = jnp.linalg.cholesky(cov + shrink * jnp.eye(d))
                log_diag_old, log_diag_new = jnp.log(jnp.diag(chol)), jnp.log(jnp.diag(new_chol))
            else:
                new_chol = jnp.sqrt(cov + shrink)
                log_diag_old, log_diag_new = jnp.log(chol), jnp.log(new_chol)
            ok = at_end & (window_accepts >= d + 1) & jnp.all(jnp.isfinite(new_chol))
            chol = jnp.where(ok, new_chol, chol)
            # keep the volume of the proposal: only its shape comes from the new covariance
            log_scale = log_scale + jnp.where(ok, jnp.mean(log_diag_old) - jnp.mean(log_diag_new), 0.0)
            mean, m2 = jnp.where(at_end, 0.0, mean), jnp.where(at_end, 0.0, m2)
            n = jnp.where(at_end, 0, n)
            window_accepts = jnp.where(at_end, 0, window_accepts)
        # Polyak average over the end of warm-up, frozen for sampling
        k = jnp.maximum(t - avg_start + 1, 1)
        avg = jnp.where(t >= avg_start, state.log_scale_avg + (log_scale - state.log_scale_avg) / k, log_scale)
        log_scale = jnp.where(t == self._num_warmup - 1, avg, log_scale)
        return state._replace(log_scale=log_scale, chol=chol, log_scale_avg=avg, cov_state=(mean, m2, n),
                              window_accepts=window_accepts, null_accept=null_accept, null_count=null_count)

    def get_diagnostics_str(self, state):
        return f"acc. prob={float(state.mean_accept_prob):.2f}, scale={float(np.exp(state.log_scale)):.3g}"


def _prior_program(model):
    def prior():
        model.param_sites()

    return prior


def fit_pmmh(model, obs, num_samples: int = 1000, num_warmup: int = 1000, num_chains: int = 4, key=0,
             n_particles: int = DEFAULT_PARTICLES, n_threads: int | None = None, progress_bar: bool = True,
             chain_method: str = "vectorized", thinning: int = 1, init=None, proposal_scale: float | None = None,
             proposal_cov=None, target_accept_prob: float | None = None, adapt: bool = True,
             dense: bool | None = None, log_likelihood: bool = True, max_init_tries: int = 20,
             covariates=None, filter_options: dict | None = None, _particle_filter: Callable | None = None):
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
    covariates, filter_options
        Passed to the particle filter, see :class:`PMMH`.
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

    for name, val in (("num_samples", num_samples), ("num_warmup", num_warmup), ("num_chains", num_chains),
                      ("thinning", thinning)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < (0 if name == "num_warmup"
                                                                                     else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'num_warmup' else 'positive'} "
                             f"integer, got {val!r}")
    if chain_method not in ("sequential", "vectorized"):
        raise ValueError(f"chain_method must be 'vectorized' or 'sequential', got {chain_method!r}")
    rng = as_jax_key(key)
    kernel = PMMH(model, obs, n_particles=n_particles, n_threads=n_threads, init=init,
                  proposal_scale=proposal_scale, proposal_cov=proposal_cov, target_accept_prob=target_accept_prob,
                  adapt=adapt, dense=dense, max_init_tries=max_init_tries, covariates=covariates,
                  filter_options=filter_options, _particle_filter=_particle_filter)
    mcmc = MCMC(kernel, num_warmup=int(num_warmup), num_samples=int(num_samples) * int(thinning),
                num_chains=int(num_chains), thinning=int(thinning), chain_method=chain_method,
                progress_bar=progress_bar)
    fields = ("loglik", "log_prior", "accept_prob", "accepted", "log_scale") + \
             (("loglik_steps",) if log_likelihood else ())
    try:
        mcmc.run(rng, extra_fields=fields)
    except Exception:
        if kernel.error is not None:
            raise kernel.error
        raise
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    if kernel.n_invalid:
        warnings.warn(f"the particle filter returned a NaN or +inf log-likelihood {kernel.n_invalid} time(s); "
                      "those proposals were rejected", stacklevel=3)
    if not np.all(np.isfinite(extra["loglik"])):
        warnings.warn("some kept draws have a log-likelihood estimate of -inf: a chain never reached a point "
                      "with a finite estimate", stacklevel=3)
    last = mcmc.last_state
    sd = np.atleast_1d(noise_sd(np.asarray(last.null_accept)))
    measured = np.atleast_1d(np.asarray(last.null_count)) >= 20
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
    attrs = {"method": "pmmh", "n_particles": kernel.n_particles, "num_warmup": int(num_warmup),
             "target_accept_prob": kernel.target_accept_prob, "n_filter_calls": int(kernel.n_calls),
             "loglik_sd_warmup": [float(x) if m else float("nan") for x, m in zip(sd, measured)],
             "detection": obs.detection}
    idata = _arviz.observations_to_inference_data(model, obs, posterior, sample_stats,
                                                       extra.get("loglik_steps"), attrs)
    return Fit(idata, model, "pmmh", mcmc=mcmc)
