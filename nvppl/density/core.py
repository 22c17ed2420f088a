"""Entry points of the density relaxation: :func:`relax`, the cached :func:`relaxer`
and the statements of what is exact (:func:`exact_in_mean`, :func:`accuracy`)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import positive_int
from ..covariates import model_features
from ..model import ModelKey
from . import classes as _classes
from .general import general_relaxer
from .linear import linear_relaxer
from .result import Density


def exact_in_mean(model) -> bool:
    """Whether :func:`relax` is exact in the mean for ``model``.

    True unless migration depends on content (a content tilt ``Q``) or docking
    does (weights ``w_c``). Then :func:`relax` integrates over the content at
    birth by quadrature, which is exact only up to the quadrature error (or it
    is the mean-field recursion of eq. 53 with ``classes=1``); :func:`accuracy`
    says which.

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> sub = nv.Substrate.from_networkx(nx.cycle_graph(4))
    >>> exact_in_mean(nv.VesicleModel(sub, n_types=1))
    True
    >>> exact_in_mean(nv.VesicleModel(sub, n_types=1, content_dim=1, priors={"w_c": 0.5}))
    False
    """
    return not _classes.content_dependent(model)


def accuracy(model, n_steps: int | None = None, covariates=None, classes: int | None = None) -> str:
    """How exact :func:`relax` is for ``model``: one of

    * ``"exact in the mean"``: content-free kernels (:func:`exact_in_mean`);
    * ``"quadrature (G classes)"``: content-dependent docking or migration,
      integrated over the content at birth with ``G`` classes; exact up to the
      quadrature error (:mod:`nvppl.density.classes`);
    * ``"quadrature (G classes on one grid spanning the birth means F·B)"``: the
      same when the birth mean depends on covariates (``content_B``) and the
      classes are too many to split by birth cohort; the error stays that of the
      quadrature while the birth means spread over less than about 40 content
      standard deviations per dimension (48 nodes; about 8 with 16 nodes per
      dimension), and grows beyond;
    * ``"mean-field approximation"``: the kernels are evaluated at the mean
      content ``C/ρ`` (eq. 53): with ``classes=1``, or when no grid fits (a
      content tilt with ``d_c ≥ 9``).

    ``n_steps`` and ``covariates`` matter only with ``content_B``: covariates
    that change over time split the classes by birth step as well, which costs
    ``n_steps`` times more (covariates constant in time are assumed when none
    are given). ``classes`` is the argument of :func:`relax`.

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> sub = nv.Substrate.from_networkx(nx.cycle_graph(4))
    >>> accuracy(nv.VesicleModel(sub, n_types=1))
    'exact in the mean'
    >>> accuracy(nv.VesicleModel(sub, n_types=1, content_dim=1, priors={"w_c": 0.5}))
    'quadrature (48 classes)'
    >>> accuracy(nv.VesicleModel(sub, n_types=1, content_dim=1, priors={"w_c": 0.5}), classes=1)
    'mean-field approximation'
    """
    varying = np.ndim(covariates) >= 3 and _varying(np.asarray(covariates))
    if classes is not None:
        classes = positive_int(classes, "classes")
    return _classes.describe(_classes.plan(model, n_steps, varying, classes))


def _varying(F) -> bool:
    """Whether covariates ``(..., T, n, p)`` change over time."""
    return not np.array_equal(F, np.broadcast_to(F[..., :1, :, :], F.shape))


def relax(model, params, n_steps: int, covariates=None, max_age: int | None = None,
          classes: int | None = None) -> Density:
    r"""Relax the vesicle process to its density: expected counts, docks and content.

    Parameters
    ----------
    model : VesicleModel
    params : Params
        Parameters (NumPy or JAX arrays; ``jax.grad`` and ``jax.jit`` work through
        this function in every field).
    n_steps : int
        Horizon ``T``.
    covariates : array, optional
        User covariates ``F``: ``(n, p)``, ``(T, n, p)`` or ``(R, T, n, p)`` (the
        result then has a leading run axis), as for :func:`nvppl.simulate`.
    max_age : int, optional
        Countdown lifetimes only: ages tracked separately. The default, ``T``, is
        exact. A smaller value pools older vesicles into one class that expires
        with the hazard of age ``max_age`` (exact when the hazard is constant
        from there on, an approximation otherwise).
    classes : int, optional
        Content-dependent kernels only: quadrature nodes per dimension of the
        content classes (default: 48 for one dimension, fewer for more, at most
        256 classes; see :mod:`nvppl.density.classes`). ``classes=1`` is the
        mean-field recursion of eq. 53.

    Returns
    -------
    Density
        ``rho``, ``expected_docks``, ``arrivals``, ``content_total``,
        ``docked_content`` and the derived ``content_mean``.

    Raises
    ------
    ValueError
        ``n_steps`` or ``classes`` not a positive integer, invalid parameters
        (named by :meth:`VesicleModel.check_params`), covariates of the wrong
        shape, or countdown lifetimes with noise ``σ_τ > 0`` (no closed-form hazard).

    Notes
    -----
    Exact in the mean (eq. 46–52 with the process's order of events) when the
    kernels do not depend on content. Otherwise the population is split into
    content classes (:mod:`nvppl.density.classes`), each relaxed exactly, and
    the result is exact up to the quadrature error (``classes=1``: the
    mean-field recursion of eq. 53); :func:`accuracy` states which for a model.

    Examples
    --------
    A single node with a self-loop: births ``λ = 0.5`` per step, survival
    ``0.95`` per step, so :math:`ρ_t = 0.95 (ρ_{t-1} + 0.5)`, tending to 9.5.

    >>> import networkx as nx, nvppl as nv
    >>> G = nx.DiGraph([(0, 0)])
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(G), n_types=1)
    >>> dens = relax(model, model.default_params(), n_steps=200)
    >>> dens.rho.shape
    (200, 1, 1)
    >>> round(float(dens.rho[0, 0, 0]), 6), round(float(dens.rho[-1, 0, 0]), 3)
    (0.475, 9.5)
    >>> round(float(dens.expected_docks[0, 0, 0]), 6)  # p_dock = 0.2 of the 0.5 arrivals
    0.1
    """
    n_steps = positive_int(n_steps, "n_steps")
    if classes is not None:
        classes = positive_int(classes, "classes")
    if model.lifetime == "countdown" and model.sigma_tau > 0:
        raise ValueError("the density of countdown lifetimes with noise sigma_tau > 0 has no closed-form "
                         "hazard; use sigma_tau=0 or estimate the density by simulation")
    if max_age is None or model.lifetime == "geometric":
        A = n_steps if model.lifetime == "countdown" else 1
    else:
        A = min(positive_int(max_age, "max_age"), n_steps)
    if not _traced(params):
        params = model.check_params(params)
    per_run = covariates is not None and np.ndim(covariates) == 4
    if isinstance(covariates, jax.core.Tracer):
        F = covariates if per_run else jnp.broadcast_to(covariates, (n_steps,) + covariates.shape[-2:])[None]
    else:
        F = model_features(model, covariates, np.shape(covariates)[0] if per_run else 1, n_steps)
    p = {k: jnp.asarray(v) for k, v in params.to_dict().items() if v is not None}
    varying = isinstance(F, jax.core.Tracer) or _varying(np.asarray(F))
    run = relaxer(ModelKey(model), n_steps, A, bool(varying), classes)
    out = jax.vmap(run, in_axes=(None, 0))(p, jnp.asarray(F))
    if not per_run:
        out = jax.tree.map(lambda x: x[0], out)
    return Density(*out)


def fast_path(model) -> bool:
    """Whether :func:`relax` runs the compiled linear recursion for ``model``:
    geometric lifetimes, budgets of 1 or infinite, content-independent kernels
    (the general recursion in JAX handles the rest)."""
    budgets_ok = bool(np.all((model.budget == 1) | np.isinf(model.budget)))
    return model.lifetime == "geometric" and budgets_ok and exact_in_mean(model)


def _traced(params) -> bool:
    return any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(params))


@functools.lru_cache(maxsize=32)
def relaxer(key: ModelKey, n_steps: int, A: int, varying: bool, classes: int | None = None):
    """The compiled relaxation of one run: ``(params, F (T, n, p)) → tuple of arrays``
    (the fields of :class:`Density`). ``A``: ages tracked (countdown lifetimes, else 1);
    ``varying``: whether ``F`` changes over time; ``classes``: see :func:`relax`."""
    model = key.model
    if fast_path(model):
        return linear_relaxer(model, n_steps, varying)
    return general_relaxer(model, n_steps, A, varying, _classes.plan(model, n_steps, varying, classes))
