r"""Density-relaxation variational inference on partial observations (``method="svi"``).

The likelihood of counts seen without identities is intractable in closed
form, but each *one-time* marginal is exact: the number of vesicles at
``(t, i, κ)`` is ``Poisson(ρ[t, i, κ])`` with ``ρ`` from
:func:`nvppl.density.relax` (:ref:`design-density`), and docks are
``Poisson(expected_docks)``. Thinned by the detection model these give the
composite log-likelihood (:func:`nvppl.density.composite_log_likelihood`)

.. math::

    \ell_c(θ) = \sum_{r,t,i,κ} \log p\big(y_{r,t,i,κ} \mid ρ_θ[t,i,κ]\big),

which treats the observations as independent. NumPyro's SVI fits an AutoGuide
``q(θ)`` (multivariate normal on the unconstrained parameters by default) to
``prior(θ)·exp(ℓ_c(θ))``; the density and its gradient come from the compiled
recursion, so a step costs a few relaxations.

The composite likelihood ignores the correlation of counts across time (a
vesicle seen at ``t`` is likely still there at ``t + 1``), so its curvature
overstates the information; its maximiser is still consistent. By default
(``adjust="sandwich"``) the posterior is therefore the **curvature-adjusted**
Gaussian :math:`\mathcal N(c, (G + P)^{-1})` in the unconstrained coordinates,
with the Godambe information :math:`G = H J^{-1} H` in place of the composite
curvature :math:`H` and the prior's curvature :math:`P`
(:mod:`nvppl.infer._adjust`). It is calibrated to first order and still an
**approximation**, recorded as such in the fit. The exact posterior is reached
with the particle filter: ``method="is"`` or ``method="pmmh"`` with ``init=<this fit>``.
"""

from __future__ import annotations

import functools
import json
import time
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer import autoguide
from numpyro.infer.initialization import init_to_feasible
from numpyro.distributions import biject_to
from numpyro.infer.util import get_potential_fn, potential_energy
from numpyro import handlers
from numpyro.optim import Adam

from .. import density
from . import _arviz, _progress
from ._adjust import adjust_fit, fd_hessian as _fd_hessian, godambe_covariance, simulate_observed
from .._validate import as_jax_key, choice, nonneg_int, positive, positive_int
from ..model import ModelKey
from ..covariates import model_features
from ..traces import Observations, check_fit_data

__all__ = ["fit_svi", "GUIDES", "ADJUSTMENTS", "guide_moments", "godambe_covariance"]

DENSE_MAX = 300
#: Posterior adjustments of :func:`fit_svi`.
ADJUSTMENTS = ("sandwich", "none")


class _PrototypeFromTrace(autoguide.AutoGuide):
    """Sets an AutoGuide up from one trace of the model: initial values from the
    init strategy, transforms from the supports. NumPyro's own setup also
    searches for a valid point by evaluating the potential and its gradient op by
    op, which compiles every operation separately (seconds per model); the
    starting point here is replaced by the composite MAP anyway."""

    def _setup_prototype(self, *args, **kwargs):
        rng_key = numpyro.prng_key()
        with handlers.block():
            tr = handlers.trace(handlers.substitute(handlers.seed(self.model, rng_key),
                                                    substitute_fn=self.init_loc_fn)).get_trace(*args, **kwargs)
        self.prototype_trace = tr
        sites = {n: s for n, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
        transforms = {n: biject_to(s["fn"].support) for n, s in sites.items()}
        self._potential_fn, postprocess = get_potential_fn(self.model, transforms, replay_model=True,
                                                           model_args=args, model_kwargs=kwargs)
        self._postprocess_fn = handlers.seed(postprocess, rng_seed=0)
        self._init_locs = {n: transforms[n].inv(s["value"]) for n, s in sites.items()}
        self._prototype_frames = {}
        self._prototype_plate_sizes = {}
        for name, site in tr.items():
            if site["type"] == "sample" and not site["is_observed"]:
                for frame in site["cond_indep_stack"]:
                    self._prototype_frames.setdefault(frame.name, frame)
            elif site["type"] == "plate":
                self._prototype_frame_full_sizes[name] = site["args"][0]


class AutoMultivariateNormal(autoguide.AutoMultivariateNormal, _PrototypeFromTrace):
    """:class:`numpyro.infer.autoguide.AutoMultivariateNormal` set up from one model trace."""


class AutoLowRankMultivariateNormal(autoguide.AutoLowRankMultivariateNormal, _PrototypeFromTrace):
    """:class:`numpyro.infer.autoguide.AutoLowRankMultivariateNormal` set up from one model trace."""


class AutoDiagonalNormal(autoguide.AutoDiagonalNormal, _PrototypeFromTrace):
    """:class:`numpyro.infer.autoguide.AutoDiagonalNormal` set up from one model trace."""


#: Guide families: ``"auto"`` is ``"mvn"`` up to :data:`DENSE_MAX` unconstrained
#: dimensions and ``"lowrank"`` above.
GUIDES = {"mvn": AutoMultivariateNormal, "lowrank": AutoLowRankMultivariateNormal, "diag": AutoDiagonalNormal}


class _Spec(NamedTuple):
    """Static description of the observations (part of the compiled program's key)."""

    counts: bool
    docks: bool
    detection: str
    scale: float     # p_det for binomial detection, 1 otherwise
    floor: float
    n_mix: int
    n_runs: int
    summed: bool     # y summed over runs (the density is shared by the runs)
    n_steps: int
    varying: bool    # covariates vary over steps
    max_age: int


class _Data(NamedTuple):
    F: jax.Array      # (1 or R, T, n, p)
    y: jax.Array      # counts (1 or R, T, n, K); zeros when not observed
    d: jax.Array      # docks likewise


def check_observations(model, obs, method: str) -> None:
    """Observations and model for a density method (``"svi"``, ``"is"``)."""
    check_fit_data(model, obs, method, "the counts identify only p_det times the emission rate")
    if model.lifetime == "countdown" and model.sigma_tau > 0:
        raise ValueError("countdown lifetimes with sigma_tau > 0 have no closed-form density; "
                         f"method={method!r} needs sigma_tau = 0")
    if not model.inferred:
        raise ValueError("the model has no inferred parameter: every field is fixed")


def _prepare(model, obs, covariates, max_age):
    R, T = obs.n_runs, obs.n_steps
    F = model_features(model, covariates, R, T)
    per_run = not np.array_equal(F, np.broadcast_to(F[:1], F.shape))
    varying = not np.array_equal(F, np.broadcast_to(F[:, :1], F.shape))
    summed = obs.detection != "poisson" and not per_run
    A = T if model.lifetime == "countdown" else 1
    if max_age is not None and model.lifetime == "countdown":
        A = min(int(max_age), T)
    top = max(int(np.max(getattr(obs, k))) for k in ("counts", "docks") if getattr(obs, k) is not None)
    spec = _Spec(obs.counts is not None, obs.docks is not None, obs.detection,
                 float(obs.p_det) if obs.detection == "binomial" else 1.0, float(obs.floor),
                 _n_mix(obs.detection, top), R, summed, T, varying, A)
    empty = (1, T, model.n_nodes, model.n_types)
    data = _Data(jnp.asarray(F if per_run else F[:1]), _lay(obs.counts, summed, empty),
                 _lay(obs.docks, summed, empty))
    return spec, data


def _lay(x, summed: bool, empty: tuple):
    """Observed counts ``(..., R, T, n, K)`` as the program takes them: summed over
    the runs when these share the density, zeros of shape ``empty`` when not observed."""
    if x is None:
        return jnp.zeros(empty)
    x = np.asarray(x, dtype=np.float64)
    return jnp.asarray(x.sum(-4, keepdims=True) if summed else x)


def _n_mix(detection: str, top: int) -> int:
    """Terms of the Poisson-detection mixture for counts up to ``top``: a power of
    two (at least 16), so that data sets of similar size share one compiled
    program; 1 for the other detection models, which do not use it."""
    return 1 if detection != "poisson" else int(2 ** max(4, int(np.ceil(np.log2(top + 1)))))


def _batch(spec: _Spec, data: _Data, counts, docks) -> _Data:
    """Simulated data sets ``(B, R, T, n, K)`` laid out like ``data``, batched on axis 0."""
    empty = (len(counts if counts is not None else docks),) + data.y.shape
    return _Data(data.F, _lay(counts, spec.summed, empty), _lay(docks, spec.summed, empty))


def _composite(spec: _Spec, rho, docks, data: _Data):
    """Composite log-likelihood (up to the constant ``−Σ log y!``) of the observations."""
    from jax.scipy.special import xlogy

    total = 0.0
    for on, base, y in ((spec.counts, rho, data.y), (spec.docks, docks, data.d)):
        if not on:
            continue
        if spec.detection == "poisson":
            total = total + density.poisson_mix(y, base, spec.floor, spec.n_mix).sum()
        else:
            mu = spec.scale * base
            weight = spec.n_runs if spec.summed else 1.0
            total = total + jnp.sum(xlogy(y, mu)) - weight * jnp.sum(mu)
    return total


def _program(model, spec: _Spec):
    run = density.relaxer(ModelKey(model), spec.n_steps, spec.max_age, spec.varying)

    def composite_program(data: _Data):
        params = model.param_sites()
        p = params.to_dict()
        out = jax.vmap(run, in_axes=(None, 0))(p, data.F)
        numpyro.factor("composite", _composite(spec, out[0], out[1], data))

    return composite_program


def latent_dim(model) -> int:
    """Number of unconstrained coordinates of the inferred parameters."""
    def prior():
        model.param_sites()

    tr = handlers.trace(handlers.substitute(handlers.seed(prior, 0), substitute_fn=init_to_feasible)).get_trace()
    return int(sum(np.prod(biject_to(s["fn"].support).inverse_shape(np.shape(s["value"])))
                   for s in tr.values() if s["type"] == "sample" and not s["is_observed"]))


@functools.lru_cache(maxsize=16)
def _compiled(key: ModelKey, spec: _Spec, guide: str, rank, learning_rate: float, num_steps: int,
              num_particles: int, chunk: int):
    """SVI object, guide, a compiled loop of ``chunk`` updates, the compiled
    potential ``z ↦ (U, ∇U)`` in the guide's coordinates, the prior's gradient,
    the batched scores of simulated data sets and the constraining map, shared
    by fits of one specification.

    The guide is built on the prior-only program (the same sample sites), so
    that setting it up does not evaluate the density op by op."""
    model = key.model
    program = _program(model, spec)

    def prior_program(data=None):
        model.param_sites()

    kwargs = {"rank": rank} if guide == "lowrank" and rank is not None else {}
    g = GUIDES[guide](prior_program, init_loc_fn=init_to_feasible, **kwargs)
    half = num_steps // 2

    def schedule(i):  # constant, then geometric decay to a tenth over the second half
        frac = jnp.clip((i - half) / max(num_steps - half, 1), 0.0, 1.0)
        return learning_rate * 0.1 ** frac

    svi = SVI(program, g, Adam(schedule), Trace_ELBO(num_particles=num_particles))

    @jax.jit
    def loop(state, data):
        return jax.lax.scan(lambda s, _: svi.update(s, data), state, None, length=chunk)

    @functools.partial(jax.jit, static_argnums=2)
    def draw(state, rng, num_samples):
        params = svi.get_params(state)
        post = g.get_posterior(params)
        z = post.sample(rng, (num_samples,))
        return params, z, post.log_prob(z), g._unpack_and_constrain(z, params)

    @jax.jit
    def init(rng, data, init_params):
        return svi.init(rng, data, init_params=init_params)

    def energy(z, data):
        return potential_energy(program, (data,), {}, g._unpack_latent(z))

    potential = jax.jit(jax.value_and_grad(energy))
    prior_grad = jax.jit(jax.grad(lambda z: potential_energy(prior_program, (None,), {}, g._unpack_latent(z))))

    @jax.jit
    def scores(z, batch: _Data):  # gradients of the potential, one per data set of the batch
        return jax.lax.map(lambda yd: jax.grad(energy)(z, _Data(batch.F, *yd)), (batch.y, batch.d),
                           batch_size=min(32, batch.y.shape[0]))

    @jax.jit
    def constrain(z, params):
        return g._unpack_and_constrain(z, params)

    return _Programs(svi, g, loop, potential, init, draw, prior_grad, scores, constrain)


#: Compiled programs of one SVI specification (see :func:`_compiled`).
_Programs = NamedTuple("_Programs", [(name, object) for name in (
    "svi", "guide", "loop", "potential", "init", "draw", "prior_grad", "scores", "constrain")])


def _programs(model, spec: _Spec, data: _Data, guide: str, rank, learning_rate: float, num_steps: int,
              num_particles: int, chunk: int) -> _Programs:
    """:func:`_compiled` with the guide's layout set up (from one trace of the prior)."""
    progs = _compiled(ModelKey(model), spec, guide, rank, float(learning_rate), int(num_steps),
                      int(num_particles), int(chunk))
    if progs.guide.prototype_trace is None:
        with handlers.seed(rng_seed=0):
            progs.guide._setup_prototype(data)
    return progs


def _laplace(potential, z0, data, dense: bool, max_iter: int):
    """Composite MAP (L-BFGS on the unconstrained potential) and, for ``dense``, the
    Laplace covariance from a finite-difference Hessian ``H`` of the gradient:
    ``(z, cov, result, H)``."""
    from scipy.optimize import minimize

    def fun(z):
        v, gr = potential(jnp.asarray(z), data)
        v, gr = float(v), np.asarray(gr, dtype=np.float64)
        if not np.isfinite(v):
            return np.inf, np.zeros_like(gr)
        return v, gr

    if max_iter == 0:
        return np.asarray(z0, dtype=np.float64), None, None, None
    res = minimize(fun, np.asarray(z0, dtype=np.float64), jac=True, method="L-BFGS-B",
                   options={"maxiter": int(max_iter), "gtol": 1e-8, "ftol": 1e-14})
    z = res.x
    if not dense or not np.all(np.isfinite(z)):
        return z, None, res, None
    H = _fd_hessian(lambda x: fun(x)[1], z)
    if not np.all(np.isfinite(H)):
        return z, None, res, None
    w, V = np.linalg.eigh(H)
    w = np.maximum(w, 1e-8 * max(w.max(), 1.0))
    return z, (V / w) @ V.T, res, H


def as_chains(x: np.ndarray) -> np.ndarray:
    """Independent draws ``(S, ...)`` as ``(chain, draw, ...)``: four chains when ``S``
    is a multiple of four (at least 8), so that ArviZ's between-chain diagnostics
    apply (R-hat near one, ESS near ``S`` for independent draws), else one."""
    S = x.shape[0]
    chains = 4 if S % 4 == 0 and S >= 8 else 1
    return x.reshape((chains, S // chains) + x.shape[1:])


def _converged(losses: np.ndarray) -> tuple[bool, str]:
    """Whether the loss has levelled off: the mean of its last tenth is not
    below the mean of the tenth before by more than three standard errors of
    the difference (the ELBO estimate is noisy)."""
    n = len(losses)
    w = max(n // 10, 5)
    if n < 2 * w or not np.all(np.isfinite(losses[-2 * w:])):
        return False, "the loss is not finite" if not np.all(np.isfinite(losses[-2 * w:])) else "too few steps"
    last, prev = losses[-w:], losses[-2 * w:-w]
    drop = prev.mean() - last.mean()
    se = np.sqrt(last.var(ddof=1) / w + prev.var(ddof=1) / w)
    ok = drop <= 3 * se + 1e-6 * abs(last.mean())
    return bool(ok), f"the loss still fell by {drop:.4g} (± {se:.2g}) over the last {w} steps"


def guide_moments(fit, adjusted: bool = True):
    """Mean and covariance in unconstrained space of the distribution an SVI fit's
    posterior draws come from, and the guide's unpacking function.

    Parameters
    ----------
    fit : Fit
        A ``method="svi"`` fit.
    adjusted : bool, default True
        The curvature-adjusted Gaussian when the fit carries one (the default
        posterior, see :func:`fit_svi`); ``False``, or a fit without adjustment:
        the fitted guide itself (``fit.extra["guide"]``).

    Returns
    -------
    (loc, cov, unpack) : ndarray (d,), ndarray (d, d), callable
        ``unpack(vector)`` maps a latent vector of the guide to site values
        (the coordinates are ordered like the guide's latent vector).
    """
    g, params = fit.extra["guide"], fit.extra["guide_params"]
    adj = fit.extra.get("adjustment")
    if adjusted and adj is not None and adj.applied:
        return np.asarray(adj.center), np.asarray(adj.cov), g._unpack_latent
    post = g.get_posterior(params)
    loc = np.asarray(post.mean)
    cov = np.asarray(post.covariance_matrix) if hasattr(post, "covariance_matrix") else np.diag(
        np.asarray(post.variance))
    return loc, cov, g._unpack_latent


def fit_svi(model, obs, num_steps: int = 2000, key=0, guide: str = "auto", rank: int | None = None,
            learning_rate: float = 0.01, num_samples: int = 1000, num_particles: int = 1, covariates=None,
            max_age: int | None = None, progress_bar: bool = True, log_likelihood: bool = True,
            map_iter: int | None = None, adjust: str = "sandwich", n_boot: int | None = None,
            center: str = "adjusted"):
    r"""Variational inference with the density's composite likelihood; see :func:`nvppl.infer.fit`.

    Parameters
    ----------
    model : VesicleModel
    obs : Observations
        Counts and/or docks; binomial detection needs a known ``p_det``.
    num_steps : int, default 2000
        Optimisation steps (Adam: ``learning_rate`` for the first half, then
        decaying geometrically to a tenth of it).
    key : int or jax key
    guide : {"auto", "mvn", "lowrank", "diag"}
        NumPyro AutoGuide on the unconstrained parameters:
        ``AutoMultivariateNormal`` (``"mvn"``), ``AutoLowRankMultivariateNormal``
        (``"lowrank"``, rank ``rank``) or ``AutoDiagonalNormal`` (``"diag"``).
        ``"auto"``: ``"mvn"`` up to 300 dimensions, ``"lowrank"`` above.
    learning_rate : float, default 0.01
    num_samples : int, default 1000
        Posterior draws stored (four chains when a multiple of four).
    num_particles : int, default 1
        Monte Carlo samples per ELBO gradient.
    covariates : array, optional
        Covariates of the observed runs, as for :func:`nvppl.simulate`.
    max_age : int, optional
        Countdown lifetimes: ages tracked by the density (see :func:`nvppl.density.relax`).
    progress_bar : bool, default True
    log_likelihood : bool, default True
        Store the composite log-likelihood terms per run and step of every
        draw (``log_likelihood`` group, variable ``obs``); costs one relaxation per draw.
    map_iter : int, optional
        L-BFGS iterations of the composite MAP search that starts the guide
        (default 1000 up to 300 unconstrained dimensions, 100 above; 0 starts
        from the prior's feasible point instead). Up to 300 dimensions the
        guide's initial covariance is the Laplace one at that point.
    adjust : {"sandwich", "none"}
        ``"sandwich"`` (default): draws from the curvature-adjusted Gaussian
        :math:`\mathcal N(c, (G + P)^{-1})` (:mod:`nvppl.infer._adjust`;
        :math:`J` from ``n_boot`` data sets simulated at the composite MAP).
        It needs the MAP search and at most 300 unconstrained dimensions;
        where it cannot be applied (or :math:`J` is singular or estimated from
        too few data sets) the guide's draws are kept, with an
        :class:`~nvppl.errors.ApproximationWarning`. ``"none"``: the guide's
        draws (too narrow).
    n_boot : int, optional
        Simulated data sets for :math:`J` (default ``max(200, 2d + 50)`` for
        ``d`` unconstrained dimensions); all are simulated in one call of the
        compiled simulator and scored by one compiled, batched gradient.
    center : {"adjusted", "map", "guide"}
        Centre of the adjusted Gaussian: the mode of the prior times the
        adjusted likelihood (default, one Newton step from the composite MAP,
        which gives the prior its due weight), the composite MAP, or the
        guide's mean.

    Returns
    -------
    Fit
        ``posterior`` (Params names), ``sample_stats`` (``log_q``: the log
        density of the draw under the distribution it was drawn from, in
        unconstrained space; ``composite``: the composite log-likelihood of the
        draw when ``log_likelihood``), ``observed_data``. The posterior's
        attributes record ``nvppl_exactness = "approximate"`` and
        ``nvppl_adjustment`` (a JSON string: whether the adjustment was
        applied, ``n_boot``, its cost in seconds, the range of the ratio of
        adjusted to unadjusted standard deviations, notes). ``fit.extra``
        holds the fitted ``guide`` and ``guide_params`` (the unadjusted
        guide), ``adjustment`` (:class:`~nvppl.infer._adjust.Adjustment` or
        None), ``map_latent``, ``composite``, the ``elbo`` trace (one value
        per step) and ``converged``. A warning is raised when the loss has not
        levelled off.

    Examples
    --------
    >>> import json, networkx as nx, nvppl as nv
    >>> sub = nv.Substrate.from_networkx(nx.cycle_graph(5))
    >>> uniform_T = nv.VesicleModel(sub, n_types=1).default_params().T
    >>> model = nv.VesicleModel(sub, n_types=1, priors={"a": 0.0, "T": uniform_T})
    >>> obs = nv.simulate(model, model.default_params(), n_steps=30, n_runs=4, key=0).observe(
    ...     counts=True, docks=True, detection="exact")
    >>> fit = fit_svi(model, obs, num_steps=500, num_samples=200, progress_bar=False)
    >>> fit.extra["elbo"].shape, sorted(fit.idata.posterior.data_vars)
    ((500,), ['delta', 'u', 'w'])
    >>> attrs = fit.idata.posterior.attrs
    >>> attrs["nvppl_exactness"], json.loads(attrs["nvppl_adjustment"])["applied"]
    ('approximate', True)
    """
    from .fit import Fit

    check_observations(model, obs, "svi")
    for name, val in (("num_steps", num_steps), ("num_samples", num_samples), ("num_particles", num_particles)):
        positive_int(val, name)
    learning_rate = positive(learning_rate, "learning_rate")
    choice(adjust, ADJUSTMENTS, "adjust")
    choice(center, ("adjusted", "map", "guide"), "center")
    n_boot = positive_int(n_boot, "n_boot", none_ok=True)
    d = latent_dim(model)
    if guide == "auto":
        guide = "mvn" if d <= DENSE_MAX else "lowrank"
    choice(guide, ("auto",) + tuple(sorted(GUIDES)), "guide")
    rank = positive_int(rank, "rank", none_ok=True)
    if guide == "lowrank" and rank is None:
        rank = int(min(20, max(1, d // 2)))
    spec, data = _prepare(model, obs, covariates, max_age)
    chunk = int(np.gcd(int(num_steps), 100)) if num_steps >= 100 else int(num_steps)
    options = (guide, rank, float(learning_rate), int(num_steps), int(num_particles), chunk)
    progs = _programs(model, spec, data, *options)
    g = progs.guide
    rng = as_jax_key(key)
    k_init, k_post = jax.random.split(rng)
    if map_iter is None:
        map_iter = 1000 if d <= DENSE_MAX else 100
    map_iter = nonneg_int(map_iter, "map_iter")
    dense = d <= DENSE_MAX and (guide != "lowrank" or adjust != "none")
    z_map, cov, res, H = _laplace(progs.potential, g._init_latent, data, dense, int(map_iter))
    if not np.all(np.isfinite(z_map)):
        raise ValueError("the composite MAP search left the parameter space (non-finite values); check the "
                         "observations against the model")
    init_params = {f"{g.prefix}_loc": jnp.asarray(z_map)}
    if cov is not None and guide == "mvn":
        init_params[f"{g.prefix}_scale_tril"] = jnp.asarray(np.linalg.cholesky(cov))
    elif cov is not None and guide == "diag":
        init_params[f"{g.prefix}_scale"] = jnp.asarray(np.sqrt(np.diag(cov)))
    state = progs.init(k_init, data, init_params)
    losses = []
    bar = _progress.progress_bar(progress_bar, int(num_steps), "svi")
    for _ in range(int(num_steps) // chunk):
        state, chunk_losses = progs.loop(state, data)
        losses.append(np.asarray(chunk_losses))
        if bar is not None:
            bar.update(chunk)
            bar.set_postfix_str(f"loss {float(losses[-1][-1]):.4g}")
    if bar is not None:
        bar.close()
    losses = np.concatenate(losses)
    params, z, log_q, draws = progs.draw(state, k_post, int(num_samples))
    converged, why = _converged(losses)
    if not converged:
        warnings.warn(f"SVI has not converged after {num_steps} steps: {why}. Run more steps "
                      "(num_steps=...) or change learning_rate", stacklevel=3)
    comp = _Composite(progs.potential, spec, data, obs, covariates, max_age, progs, options)
    comp = comp._replace(boot=functools.partial(_boot_scores, model, comp))
    adjustment, record = None, {"method": "none", "applied": False}
    if adjust == "sandwich":
        mean = np.asarray(g.get_posterior(params).mean)
        adjustment, record = adjust_fit(model, comp, params, z_map, H, map_iter, n_boot,
                                        jax.random.fold_in(rng, 1), center, mean, DENSE_MAX)
        if adjustment is not None and adjustment.applied:
            mvn = numpyro.distributions.MultivariateNormal(jnp.asarray(adjustment.center),
                                                           jnp.asarray(adjustment.cov))
            z = mvn.sample(k_post, (int(num_samples),))
            log_q, draws = mvn.log_prob(z), progs.constrain(z, params)
    log_q = np.asarray(log_q)
    posterior = {n: as_chains(np.asarray(draws[n])) for n in model.inferred}
    sample_stats = {"log_q": as_chains(log_q)}
    loglik = None
    if log_likelihood:
        loglik = _draw_loglik(model, obs, spec, data, {n: draws[n] for n in model.inferred})
        sample_stats["composite"] = as_chains(loglik.sum((1, 2)))
        loglik = as_chains(loglik)
    attrs = {"method": "svi", "guide": guide, "latent_dim": d, "num_steps": int(num_steps),
             "learning_rate": float(learning_rate), "final_loss": float(losses[-1]), "converged": int(converged),
             "detection": obs.detection, "nvppl_exactness": "approximate",
             "nvppl_adjustment": json.dumps(record)}
    if rank is not None:
        attrs["rank"] = int(rank)
    idata = _arviz.observations_to_inference_data(model, obs, posterior, sample_stats, loglik, attrs)
    return Fit(idata, model, "svi", guide=g, guide_params=params, elbo=-losses, converged=converged, svi=progs.svi,
               state=state, map_latent=z_map, map_result=res, adjustment=adjustment, composite=comp)


class _Composite(NamedTuple):
    """What an SVI fit needs to revisit its composite likelihood."""

    potential: object   # jitted (z, data) -> (U, grad U) in the guide's coordinates
    spec: _Spec
    data: _Data
    obs: Observations
    covariates: object
    max_age: object
    programs: object = None   # _Programs of the fit
    options: tuple = ()       # (guide, rank, learning_rate, num_steps, num_particles, chunk)
    boot: object = None       # (z, sites, n_boot, key) -> (scores (B, d), seconds), see _boot_scores


def _boot_scores(model, comp: _Composite, z, sites, n_boot: int, key):
    """Composite scores at ``z`` of ``n_boot`` data sets simulated at ``sites``
    (constrained values of the inferred fields): ``(scores (B, d), seconds)``."""
    params = model.params_with({n: np.asarray(sites[n]) for n in model.inferred})
    counts, docks, t_sim = simulate_observed(model, params, comp.obs, n_boot, key, comp.covariates)
    spec, progs = comp.spec, comp.programs
    if spec.detection == "poisson":  # simulated counts may need more mixture terms
        top = max(int(np.max(x)) for x in (counts, docks) if x is not None)
        if _n_mix("poisson", top) > spec.n_mix:
            spec = spec._replace(n_mix=_n_mix("poisson", top))
            progs = _programs(model, spec, comp.data, *comp.options)
    start = time.perf_counter()
    grads = progs.scores(jnp.asarray(z), _batch(spec, comp.data, counts, docks))
    scores = -np.asarray(grads, dtype=np.float64)  # the prior's part is the same in every row
    return scores, {"simulate": t_sim, "scores": time.perf_counter() - start}


def _draw_loglik(model, obs, spec: _Spec, data: _Data, values: dict) -> np.ndarray:
    """Composite log-likelihood terms ``(draw, run, step)`` of guide draws."""
    run = density.relaxer(ModelKey(model), spec.n_steps, spec.max_age, spec.varying)
    fixed = {k: jnp.asarray(v) for k, v in model.params_with({}).to_dict().items()}
    shared = data.F.shape[0] == 1

    @jax.jit
    def one(vals):
        p = {**fixed, **vals}
        out = jax.vmap(run, in_axes=(None, 0))(p, data.F)
        if shared:
            out = jax.tree.map(lambda x: x[0], out)
        return density.composite_log_likelihood(density.Density(*out), obs, n_mix=spec.n_mix)

    return np.asarray(jax.lax.map(one, {k: jnp.asarray(v) for k, v in values.items()}))
