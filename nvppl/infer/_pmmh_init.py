r"""Coordinates, starting points and initial proposal of the PMMH kernel.

The chain of :class:`~nvppl.infer.pmmh.PMMH` moves on a flat vector
:math:`z \in \mathbb R^d`: the sample sites of the prior-only program
``model.param_sites()`` (``T`` as its rows ``T_rows_<m>``), each mapped to the
real line by :func:`numpyro.distributions.transforms.biject_to` of its support
and concatenated as :func:`jax.flatten_util.ravel_pytree` orders them
(alphabetically by site name). :class:`Layout` holds that map; the functions
below turn the kernel's ``init`` and ``proposal_cov`` arguments into starting
points and a Cholesky factor, and search a starting point whose likelihood
estimate is finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import random
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer import init_to_feasible
from numpyro.infer.util import get_potential_fn, transform_fn

from ._pmmh_adapt import SHRINK_PRIOR, SHRINK_TARGET

__all__ = ["Layout", "prior_program", "initial_values", "guide_covariance", "initial_chol", "find_start",
           "prior_bank"]

#: Initial proposal standard deviation per unconstrained coordinate (before the global scale).
INITIAL_STD = 0.1


def prior_program(model):
    """The NumPyro program of the prior alone: ``model.param_sites()``."""
    def prior():
        model.param_sites()

    return prior


class Layout:
    r"""The unconstrained coordinates of a model's inferred fields.

    The same functions ``numpyro.infer.util.initialize_model`` builds, without its
    eager search for an initial point (slow op by op).

    Attributes
    ----------
    model : VesicleModel
    names : tuple of str
        The inferred fields.
    prior : callable
        The prior-only program (:func:`prior_program`).
    transforms : dict
        Site name → bijection from the real line to its support.
    potential_fn : callable
        :math:`z \mapsto -\log\pi(z)`, the prior in unconstrained coordinates
        (with the Jacobian); ``z`` a dict of sites.
    postprocess : callable
        Unconstrained sites → constrained sites and the deterministic ``T``.
    site_names : tuple of str
    unravel : callable
        Flat vector → dict of unconstrained sites.
    dim : int
        :math:`d`.
    center : array (d,)
        The unconstrained prior mean: each site's mean where it is finite and in
        the support, its feasible point otherwise (computed once, eagerly).
    """

    def __init__(self, model):
        self.model = model
        self.names = tuple(model.inferred)
        self.prior = prior_program(model)
        tr = handlers.trace(handlers.substitute(handlers.seed(self.prior, 0),
                                                substitute_fn=init_to_feasible)).get_trace()
        sites = {n: s for n, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
        self.transforms = {n: biject_to(s["fn"].support) for n, s in sites.items()}
        self.potential_fn, self.postprocess = get_potential_fn(self.prior, self.transforms, replay_model=True)
        self.site_names = tuple(sorted(sites))
        prototype = {n: jnp.zeros(self.transforms[n].inverse_shape(jnp.shape(sites[n]["value"])))
                     for n in self.site_names}
        flat, self.unravel = ravel_pytree(prototype)
        self.dim = int(flat.size)
        if self.dim == 0:
            raise ValueError(f"the model has no free parameter: {list(self.names)} are inferred but have no "
                             "free coordinate (e.g. rows of T with a single candidate)")
        self.center = self._center(sites)

    def _center(self, sites: dict):
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
        flat = ravel_pytree(transform_fn(self.transforms, values, invert=True))[0]
        return jnp.where(jnp.isfinite(flat), flat, 0.0)

    def to_sites(self, values: dict) -> dict:
        """Constrained field values → constrained sample-site values (``T`` → ``T_rows_<m>``)."""
        out = {}
        for name, value in values.items():
            if name == "T":
                prior = self.model.priors["T"]
                for m, nodes in prior.groups.items():
                    if m >= 2:
                        out[f"T_rows_{m}"] = jnp.asarray(value)[..., nodes, :m]
            else:
                out[name] = jnp.asarray(value)
        return out

    def unconstrain(self, values: dict) -> dict:
        """Constrained field values → unconstrained site values (no leading axes)."""
        sites = self.to_sites(values)
        return transform_fn(self.transforms, {k: sites[k] for k in self.site_names}, invert=True)

    def flat(self, values: dict):
        """Flat unconstrained vector :math:`z` of constrained field values."""
        return ravel_pytree(self.unconstrain(values))[0]


# ------------------------------------------------------------------ init and proposal_cov
def initial_values(layout: Layout, init):
    """``(init_z, cov)``: fixed initial unconstrained point(s) (``None``: prior mean)
    and an initial proposal covariance from a fit (or ``None``).

    ``init`` is ``None``, a dict of constrained values or :class:`~nvppl.Params`
    (a point ``(d,)``; fields not given take the prior mean), or any
    :class:`~nvppl.infer.Fit` whose posterior holds the inferred fields (NUTS,
    density SVI): its finite draws ``(n, d)`` and the covariance of its guide
    (SVI) or of its draws, shrunk like a warm-up window's (if ``n > d``).
    """
    from ..params import Params
    from .fit import Fit

    if init is None:
        return None, None
    model, names, d = layout.model, layout.names, layout.dim
    if isinstance(init, Fit):
        post = init.idata.posterior
        missing = [n for n in names if n not in post]
        if missing:
            raise ValueError(f"init: the fit's posterior has no {missing}")
        draws = {n: post[n].values.reshape((-1,) + post[n].shape[2:]) for n in names}
        for n, v in draws.items():
            if v.shape[1:] != model.field_shape(n):
                raise ValueError(f"init: the fit's {n!r} has shape {v.shape[1:]}, the model "
                                 f"expects {model.field_shape(n)}")
        zs = np.asarray(jax.vmap(layout.flat)(draws))
        zs = zs[np.all(np.isfinite(zs), axis=1)]
        if len(zs) == 0:
            raise ValueError("init: no draw of the fit maps to a finite unconstrained point")
        cov = None
        if init.method == "svi" and "guide" in init.extra:
            return jnp.asarray(zs), guide_covariance(layout, init)
        if len(zs) > d:  # the windows' shrinkage, so that a constant coordinate does no harm
            n = len(zs)
            cov = n / (n + SHRINK_PRIOR) * np.cov(zs, rowvar=False).reshape(d, d) \
                + SHRINK_TARGET * SHRINK_PRIOR / (n + SHRINK_PRIOR) * np.eye(d)
        return jnp.asarray(zs), cov
    if isinstance(init, Params):
        init = {n: getattr(init, n) for n in names}
    if not isinstance(init, dict):
        raise TypeError(f"init must be None, a dict of constrained values, Params or a Fit, "
                        f"got {type(init).__name__}")
    unknown = set(init) - set(names)
    if unknown:
        fixed = sorted(unknown & set(model.fixed))
        raise ValueError(f"init gives values for {sorted(unknown)}, which are not inferred"
                         + (f" ({fixed} fixed in the model)" if fixed else "")
                         + f"; inferred fields are {list(names)}")
    values = {}
    center = layout.postprocess(layout.unravel(layout.center))
    for n in names:
        if n in init:
            arr = np.asarray(init[n], dtype=np.float64)
            if arr.shape != model.field_shape(n):
                raise ValueError(f"init value of {n!r} has shape {arr.shape}, expected {model.field_shape(n)}")
            values[n] = arr
        else:
            values[n] = np.asarray(center[n])
    model.check_params(model.params_with(values))
    z = layout.unconstrain(values)
    bad = sorted({"T" if k.startswith("T_rows_") else k for k, v in z.items() if not np.all(np.isfinite(v))})
    if bad:
        raise ValueError(f"init value(s) of {bad} lie on the boundary of the support (e.g. a probability "
                         "of exactly 0 or 1, a zero in a row of T); move them inside")
    return ravel_pytree(z)[0], None


def guide_covariance(layout: Layout, fit):
    """The covariance of an SVI fit's guide, in the layout's coordinates.

    The guide's latent vector and the layout's flat vector hold the same
    unconstrained sample sites (both come from ``model.param_sites()``) in
    different orders; unpacking the index vector ``0, 1, …, d−1`` through the
    guide's layout and flattening it in this one's order gives the permutation."""
    from .svi import guide_moments

    d = layout.dim
    _, cov, unpack = guide_moments(fit)
    if cov.shape != (d, d):
        raise ValueError(f"init: the SVI guide has {cov.shape[0]} latent dimensions, this model {d}")
    sites = unpack(jnp.arange(d, dtype=jnp.float64))
    perm = np.asarray(ravel_pytree({k: sites[k] for k in layout.site_names})[0]).round().astype(int)
    return cov[np.ix_(perm, perm)]


def initial_chol(cov, d: int, dense: bool):
    """Cholesky factor (``dense``) or standard deviations of the initial proposal covariance.

    ``cov``: ``None`` (``INITIAL_STD² I``), a number (an isotropic variance), a
    vector of ``d`` variances or a ``d × d`` symmetric positive definite matrix
    (only its diagonal when not ``dense``)."""
    if cov is None:
        return jnp.full(d, INITIAL_STD) if not dense else INITIAL_STD * jnp.eye(d)
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
        return jnp.asarray(np.sqrt(cov)) if not dense else jnp.diag(jnp.sqrt(cov))
    if not np.allclose(cov, cov.T):
        raise ValueError("proposal_cov must be symmetric")
    if not dense:
        if np.any(np.diag(cov) <= 0):
            raise ValueError("proposal_cov variances must be positive")
        return jnp.asarray(np.sqrt(np.diag(cov)))
    if not np.all(np.linalg.eigvalsh(cov) > 0):
        raise ValueError("proposal_cov must be positive definite")
    return jnp.asarray(np.linalg.cholesky(cov + 1e-10 * np.eye(d)))


# ------------------------------------------------------------------------ starting points
def _candidate(layout: Layout, key, tries, init_params, init_z, bank):
    """Starting point of attempt ``tries``: the given one, a draw of an init fit, or
    the prior mean first and then uniform points in ``(-2, 2)`` (``bank`` is
    ``None``) or the rows of ``bank``."""
    if init_params is not None:
        return init_params
    if init_z is not None:
        if init_z.ndim == 1:
            return layout.unravel(init_z)
        return layout.unravel(init_z[random.randint(key, (), 0, init_z.shape[0])])
    if bank is not None:
        return layout.unravel(bank[tries % bank.shape[0]])
    flat = jnp.where(tries == 0, layout.center, random.uniform(key, (layout.dim,), minval=-2.0, maxval=2.0))
    return layout.unravel(flat)


def find_start(layout: Layout, estimate, key, max_tries: int, init_params=None, init_z=None, bank=None):
    r"""The first of up to ``max_tries`` candidate points whose
    :math:`\log\hat p(y \mid z) + \log\pi(z)` is finite (the last one tried if none is).

    Parameters
    ----------
    layout : Layout
    estimate : callable
        ``estimate(z, key) -> (loglik, loglik_steps)``.
    key : jax key
    max_tries : int
    init_params : dict, optional
        A given starting point (unconstrained sites), tried alone.
    init_z : array (d,) or (n, d), optional
        A fixed point, or points among which each attempt draws one.
    bank : array (k, d), optional
        Points tried in turn (e.g. prior draws, :func:`prior_bank`); without it,
        the prior mean, then uniform points in :math:`(-2, 2)^d`.

    Returns
    -------
    z, log_prior, loglik, loglik_steps
    """
    def attempt(key, tries):
        k_z, k_pf = random.split(key)
        z = _candidate(layout, k_z, tries, init_params, init_z, bank)
        log_prior = -layout.potential_fn(z)
        ll, steps = estimate(z, k_pf)
        return z, log_prior, ll, steps

    def cond(c):
        return (~jnp.isfinite(c[3] + c[4])) & (c[0] < max_tries)

    def body(c):
        tries, key = c[0], c[1]
        key, sub = random.split(key)
        return (tries + 1, key) + attempt(sub, tries)

    key, sub = random.split(key)
    first = (jnp.array(1), key) + attempt(sub, jnp.array(0))
    return jax.lax.while_loop(cond, body, first)[2:]


def prior_bank(layout: Layout, rng_key, n: int):
    """``n`` prior draws (flat, unconstrained; the prior mean where a draw is not finite)
    from the model's compiled prior sampler, seeded from ``rng_key``."""
    seeds = np.asarray(random.randint(random.fold_in(rng_key, 1), (n,), 0, 2**31 - 1))
    draws = [layout.model.sample_params(int(k)) for k in seeds]
    stacked = {name: np.stack([getattr(p, name) for p in draws]) for name in layout.names}
    bank = np.asarray(jax.jit(jax.vmap(layout.flat))(stacked))
    return np.where(np.all(np.isfinite(bank), axis=1, keepdims=True), bank, np.asarray(layout.center))
