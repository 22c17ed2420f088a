r"""Content classes: the density of content-dependent kernels as a sum over contents at birth.

A vesicle's content is drawn at birth and never changes, and its fate depends on
it only through the docking logit ``c·w^c_κ`` (eq. 19) and the migration score
``c·Q_κ[ℓ']`` (eq. 17). Vesicles of one content therefore follow a *linear*
recursion with their own docking probabilities and migration kernel, and the
expected count is an integral over the birth distribution
``Normal(m_κ + F·B_κ, diag σ_κ²)`` of these per-content recursions. It is
computed by quadrature: the population is split into **classes**, each a node
``z`` of a quadrature rule for the standard normal with weight ``w``, carrying
content ``c = m_κ + D_κ z`` and a share ``w`` of the births. Every class has a
single content, so each class's recursion is exact, and the only error is the
quadrature.

* **Grid.** With docking the only content-dependent kernel, docking sees only
  ``s = c·w^c_κ``, a normal variable of standard deviation
  ``τ_κ = ‖σ_κ ⊙ w^c_κ‖``: one dimension suffices for any ``d_c`` (``D_κ =
  σ_κ² ⊙ w^c_κ / τ_κ``, so that ``c`` is the conditional mean of the content
  given ``s``, which is what the summed content ``C`` needs). With a content
  tilt the grid is the tensor product over the ``d_c`` dimensions
  (``D_κ = diag σ_κ``).
* **Rule.** Below :data:`GH_BELOW` nodes per dimension, Gauss–Hermite (exact for
  polynomials of degree ``2q − 1``). From there on a uniform grid on
  ``[−L, L]`` with weights ``∝ exp(−z²/2)``: for integrands analytic in a strip
  it converges geometrically, and unlike Gauss–Hermite it stays accurate for
  steep logistic and softmax terms. Their poles lie at distance ``π/s`` from the
  real axis, ``s`` the steepness in ``z`` (``σ|w^c|``, or ``γσ·range(Q)`` for
  the tilt); ``L = min((2π²(q − 1)/s)^{1/3}, (π(q − 1)/1.5)^{1/2})`` balances the
  discretisation error ``exp(−2π²/(s h))`` against the truncation ``exp(−L²/2)``.
  Measured on a single logistic and on products of up to seven logistic factors
  (absolute error of an expectation of values in [0, 1]), 48 nodes give about
  ``1e-10`` at ``s = 1``, ``1e-9`` at ``s = 2``, ``6e-6`` at ``s = 5`` and
  ``1e-4`` at ``s = 10`` (Gauss–Hermite with 48 nodes: ``7e-4`` at ``s = 5``).
* **Birth means that depend on covariates** (``content_B`` in the model).
  Vesicles of one quadrature node born at different nodes or steps then have
  different contents. When the classes times the birth cohorts fit in
  :data:`MAX_COHORT_CLASSES`, the classes are split by birth node (covariates
  constant over time) or by birth step and node, each cohort with its own grid
  around its mean: exact up to quadrature, as without covariates. Otherwise one
  grid in standardised coordinates spans all birth means (``[min μ − L, max μ +
  L]``, ``μ = F·B/σ``) and every birth spreads over it with weights
  ``∝ exp(−|y − μ|²/2)`` (normalised): each class still has one content, and
  the only error is this quadrature of each birth distribution. It is as
  accurate as the grid without covariates while the node spacing ``h`` stays
  below about one standard deviation (a sampled Gaussian is off by about
  ``exp(−2π²/h²)``, ``h`` in units of ``σ``): with 48 nodes for birth means
  spread over up to about 40 ``σ`` per dimension, with 16 nodes per dimension
  over about 8 ``σ``. Beyond that it degrades, and a wider spread needs more
  nodes (``classes``).
* **Mean-field.** ``classes=1`` evaluates the kernels at the mean content
  ``C/ρ`` of the moving mass (eq. 53). It is also what remains when a content
  tilt has so many content dimensions that no grid of two nodes per dimension
  fits in :data:`MAX_GRID` classes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from numpy.polynomial.hermite_e import hermegauss

#: Nodes per dimension below which the rule is Gauss–Hermite.
GH_BELOW = 8
#: Default nodes per dimension for a one-dimensional grid.
MAX_PER_DIM = 48
#: Largest default grid; beyond two nodes per dimension the relaxation falls back to mean-field.
MAX_GRID = 256
#: Largest number of classes split by birth cohort (beyond it one grid spans all birth means).
MAX_COHORT_CLASSES = 1024


class Plan(NamedTuple):
    """How the relaxation treats content (static: decided from the model and horizon).

    ``use``: ``"none"`` (content-free kernels), ``"fixed"`` (each class has one
    content: exact up to quadrature) or ``"carried"`` (one class, kernels at the
    mean content ``C/ρ``: the mean-field recursion of eq. 53). ``rank``:
    dimensions of the grid; ``per_dim``: nodes per dimension; ``projection``: the
    grid lies along ``w_c``; ``births``: how births spread over the classes,
    ``"shared"`` (the same weights everywhere), ``"node"`` or ``"step-node"``
    (one grid per birth cohort) or ``"span"`` (one grid spanning all birth
    means); ``n_classes``: classes in the recursion."""

    use: str
    rank: int
    per_dim: int
    projection: bool
    births: str
    n_classes: int


def content_tilt(model) -> bool:
    """Whether migration depends on content (a content tilt ``Q``)."""
    if model.content_dim == 0:
        return False
    return model.tilt or bool(np.any(model.fixed.get("Q", 0) != 0))


def content_dependent(model) -> bool:
    """Whether docking or migration depends on a vesicle's content."""
    return content_tilt(model) or model.content_dependent_docking


def covariate_content(model) -> bool:
    """Whether the birth mean of the content depends on covariates (``content_B`` inferred or non-zero)."""
    if model.content_dim == 0 or model.covariate_dim == 0:
        return False
    return "content_B" in model.priors or bool(np.any(model.fixed["content_B"] != 0))


def default_per_dim(rank: int) -> int:
    """Nodes per dimension of the default grid: the most with at most :data:`MAX_GRID`
    classes, up to :data:`MAX_PER_DIM`; 0 when even two per dimension are too many."""
    q = min(MAX_PER_DIM, int(math.floor(MAX_GRID ** (1.0 / rank) + 1e-9)))
    return q if q >= 2 else 0


def plan(model, n_steps: int | None = None, varying: bool = False, classes: int | None = None) -> Plan:
    """The content treatment of :func:`~nvppl.density.relax` for ``model``.

    ``classes`` is the number of quadrature nodes per dimension (default
    :func:`default_per_dim`); ``classes=1`` is the mean-field recursion of eq. 53.
    ``n_steps`` is needed to split time-varying covariates by birth cohort."""
    if not content_dependent(model):
        return Plan("none", 0, 1, False, "shared", 1)
    dc = model.content_dim
    projection = dc >= 2 and not content_tilt(model)
    rank = 1 if projection else dc
    per_dim = default_per_dim(rank) if classes is None else int(classes)
    if per_dim <= 1:
        return Plan("carried", rank, 1, projection, "shared", 1)
    grid_size = per_dim ** rank
    if not covariate_content(model):
        return Plan("fixed", rank, per_dim, projection, "shared", grid_size)
    n = model.n_nodes
    if not varying and n * grid_size <= MAX_COHORT_CLASSES:
        return Plan("fixed", rank, per_dim, projection, "node", n * grid_size)
    if varying and n_steps is not None and n * int(n_steps) * grid_size <= MAX_COHORT_CLASSES:
        return Plan("fixed", rank, per_dim, projection, "step-node", n * int(n_steps) * grid_size)
    return Plan("fixed", rank, per_dim, projection, "span", grid_size)


def describe(pl: Plan) -> str:
    """The accuracy statement of a plan (see :func:`~nvppl.density.accuracy`)."""
    if pl.use == "none":
        return "exact in the mean"
    if pl.use == "carried":
        return "mean-field approximation"
    if pl.births == "span":
        return f"quadrature ({pl.n_classes} classes on one grid spanning the birth means F·B)"
    return f"quadrature ({pl.n_classes} classes)"


def _half_width(q: int, steep):
    """Half-width ``L`` of a uniform ``q``-node grid for integrands of steepness ``steep``."""
    s = jnp.maximum(steep, 1e-6)
    return jnp.minimum(jnp.cbrt(2.0 * np.pi ** 2 * (q - 1) / s), math.sqrt(np.pi * (q - 1) / 1.5))


def _rule(q: int, steep):
    """Nodes and weights ``(q, *steep.shape)`` of a rule for the standard normal; the
    uniform grid's half-width follows the steepness ``steep`` (see the module notes)."""
    expand = (slice(None),) + (None,) * np.ndim(steep)
    if q < GH_BELOW:
        x, w = hermegauss(q)
        shape = (q,) + tuple(np.shape(steep))
        return (jnp.broadcast_to(jnp.asarray(x)[expand], shape),
                jnp.broadcast_to(jnp.asarray(w / w.sum())[expand], shape))
    z = jnp.asarray(np.linspace(-1.0, 1.0, q))[expand] * _half_width(q, steep)
    w = jnp.exp(-0.5 * z * z)
    return z, w / w.sum(0)


def _tensor(z1, w1, r: int):
    """Tensor product of per-dimension nodes ``(q, K, r)`` → nodes ``(q^r, K, r)``, weights ``(q^r, K)``."""
    q = z1.shape[0]
    idx = np.indices((q,) * r).reshape(r, -1).T  # (G0, r)
    z = jnp.stack([z1[idx[:, d], :, d] for d in range(r)], axis=-1)
    w = w1[idx[:, 0], :, 0]
    for d in range(1, r):
        w = w * w1[idx[:, d], :, d]
    return z, w


def grid(model, pl: Plan, p, loc=None):
    """Quadrature classes of the birth content for parameters ``p`` (a dict of arrays).

    Returns ``z (G0, K, r)``, ``w (G0, K)``, ``D (K, d_c, r)`` and ``mu``: class
    ``g`` of type ``κ`` has content ``m_κ + D_κ z[g, κ]``. For births spread
    over a grid of their own (``pl.births`` other than ``"span"``), ``z`` is the
    offset from each birth's mean and ``w`` its share of the births, and ``mu``
    is None; for ``"span"``, ``z`` spans the standardised birth means
    ``mu (..., K, r)`` of the birth contents ``loc (..., K, d_c)`` (spread them
    with :func:`span_weights`) and ``w`` is None."""
    dc, r, q = model.content_dim, pl.rank, pl.per_dim
    sigma = jnp.asarray(p["content_scale"])  # (K, dc)
    w_c = jnp.asarray(p["w_c"])
    if pl.projection:
        tau2 = jnp.sum((sigma * w_c) ** 2, -1)  # (K,)
        pos = tau2 > 0
        tau = jnp.where(pos, jnp.sqrt(jnp.where(pos, tau2, 1.0)), 0.0)
        safe_tau = jnp.where(pos, tau, 1.0)[:, None]
        D = jnp.where(pos[:, None], sigma ** 2 * w_c / safe_tau, 0.0)[:, :, None]
        steep = tau[:, None]  # (K, 1)
    else:
        D = sigma[:, :, None] * jnp.eye(dc)  # (K, dc, dc)
        slope = jnp.zeros_like(sigma)
        if model.content_dependent_docking:
            slope = jnp.abs(w_c)
        if content_tilt(model):
            Q = jnp.asarray(p["Q"])  # (K, n, dc)
            slope = jnp.maximum(slope, jnp.asarray(model.gamma)[:, None] * (Q.max(1) - Q.min(1)))
        steep = sigma * slope  # (K, dc)
    if pl.births != "span":
        z, w = _tensor(*_rule(q, steep), r)
        return z, w, D, None
    dev = loc - p["content_mean"]  # (..., K, dc)
    if pl.projection:
        mu = jnp.where(pos[:, None], jnp.sum(dev * w_c, -1, keepdims=True) / safe_tau, 0.0)  # (..., K, 1)
    else:
        mu = dev / sigma
    flat = mu.reshape((-1,) + mu.shape[-2:])  # (births, K, r)
    lo, hi = flat.min(0), flat.max(0)  # (K, r)
    half = 0.5 * (hi - lo) + _half_width(q, steep)
    z1 = 0.5 * (hi + lo) + jnp.asarray(np.linspace(-1.0, 1.0, q))[:, None, None] * half  # (q, K, r)
    z, _ = _tensor(z1, jnp.ones_like(z1), r)
    return z, None, D, mu


def span_weights(mu, z):
    """Shares ``(K, n, G0)`` of births with standardised means ``mu (n, K, r)`` on the
    spanning grid ``z (G0, K, r)``: ``∝ exp(−|z − μ|²/2)``, normalised over the grid."""
    d2 = jnp.sum((jnp.moveaxis(z, 0, -2)[:, None] - jnp.swapaxes(mu, 0, 1)[:, :, None]) ** 2, -1)  # (K, n, G0)
    logw = -0.5 * d2
    logw = logw - logw.max(-1, keepdims=True)
    w = jnp.exp(logw)
    return w / w.sum(-1, keepdims=True)
