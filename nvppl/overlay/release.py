r"""Release operators acting on a base network (paper §3.4, eq. 20–36; DESIGN §7).

Docked vesicles act on their site through four operators; the effects of the
vesicles that dock at a node add (eq. 36), so each depends on the docked set
only through its count ``n``, summed content ``S = Σ c`` and summed second moment
``S₂ = Σ c cᵀ`` per node and type (:mod:`nvppl.kernels.release`):

``act``
    FiLM on the site's pre-activation, ``h̃ = h + γ ⊙ h + β`` with
    ``(γ, β) = Σ_v W_act^κ c_v + b_act^κ`` (eq. 21–23, 36). The docked sums decay
    with ``act_tau``: a dock at step ``t`` acts fully on the forward pass of step
    ``t + 1`` and by ``e^{−k/act_tau}`` on that of step ``t + 1 + k``.
``param``
    Rank-one change of the site's weight (seen as a matrix ``H × D``),
    ``Δθ = Σ_v η_κ (U_κ c_v)(V_κ c_v)ᵀ`` (eq. 25–28), added to the weight.
``rule``
    The site's parameter update becomes ``α ⊙ u + β`` row by row (eq. 31–32) with
    ``α = 1 + Σ_v (W_α c_v + b_α)`` and ``β = Σ_v (W_β c_v + b_β)``: an optax
    transformation (:func:`rule_modulation`) after the optimiser's scaling by
    default, so that ``α`` multiplies the step actually taken.
``memory``
    A memory vector ``M`` per node, ``M ← ρ_M M + Σ_v W_write^κ c_v`` (eq. 33), read
    into the site's pre-activation as ``h̃ = h + R M`` (eq. 34–35, by addition).

For a layer site every map acts on all its units; for unit granularity a node
is one unit and the maps (shared by the units of a site) act on that unit.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..kernels import release as kr

__all__ = ["ReleaseParams", "OPERATORS", "init_release", "zero_release", "Modulated", "rule_modulation",
           "film", "rank_one", "rule_maps", "memory"]

#: The release operators, by name.
OPERATORS = ("act", "param", "rule", "memory")


class ReleaseParams(NamedTuple):
    """Trainable maps of the release operators, one entry per site (tuples over sites).

    Shapes for a site with ``h`` units per node, weight columns ``D``, ``K`` types,
    content dimension ``d_c`` and memory dimension ``m``: ``W_act (K, 2h, d_c)``,
    ``b_act (K, 2h)``, ``U (K, h, d_c)``, ``V (K, D, d_c)``, ``eta (K,)``,
    ``W_alpha, W_beta (K, h, d_c)``, ``b_alpha, b_beta (K, h)``,
    ``W_write (K, m, d_c)``, ``R (h, m)``.
    """

    W_act: tuple
    b_act: tuple
    U: tuple
    V: tuple
    eta: tuple
    W_alpha: tuple
    b_alpha: tuple
    W_beta: tuple
    b_beta: tuple
    W_write: tuple
    R: tuple


def _shapes(ov, s_i):
    s, K, dc, m = ov.sites[s_i], ov.model.n_types, ov.model.content_dim, ov.memory_dim
    h = int(ov.nodes.per_node[s_i])
    return dict(W_act=(K, 2 * h, dc), b_act=(K, 2 * h), U=(K, h, dc), V=(K, s.fan_in, dc), eta=(K,),
                W_alpha=(K, h, dc), b_alpha=(K, h), W_beta=(K, h, dc), b_beta=(K, h), W_write=(K, m, dc),
                R=(h, m))


def zero_release(ov) -> ReleaseParams:
    """Release maps that are all zero: docked vesicles change nothing."""
    fields = {f: tuple(jnp.zeros(_shapes(ov, i)[f], ov.dtype) for i in range(len(ov.sites)))
              for f in ReleaseParams._fields}
    return ReleaseParams(**fields)


def init_release(ov, key, scale: float = 0.1) -> ReleaseParams:
    """Small random release maps.

    ``W_act``, ``U``, ``V``, ``W_write`` are drawn ``Normal(0, scale²/d_c)`` (``V`` with
    ``scale²/(d_c D)`` so that a rank-one change is small against the weight);
    the biases, the rule maps, the read map ``R`` and the rank-one step size
    ``eta`` start at zero: the rule, the memory read and the parameter release
    start neutral and are learned. (A rank-one change ``η U (Σ c cᵀ) Vᵀ`` has the
    same sign pattern at every dock, since ``Σ c cᵀ`` is positive semi-definite, so
    a fixed non-zero ``η`` drifts the weights step after step.) All in the
    network's float type (``ov.dtype``).
    """
    from .._validate import as_jax_key

    key = as_jax_key(key)
    dc = max(ov.model.content_dim, 1)
    out = {f: [] for f in ReleaseParams._fields}
    for i in range(len(ov.sites)):
        sh = _shapes(ov, i)
        ks = jax.random.split(jax.random.fold_in(key, i), 4)
        for f in ReleaseParams._fields:
            out[f].append(jnp.zeros(sh[f]))
        out["W_act"][-1] = scale / np.sqrt(dc) * jax.random.normal(ks[0], sh["W_act"])
        out["U"][-1] = scale / np.sqrt(dc) * jax.random.normal(ks[1], sh["U"])
        out["V"][-1] = scale / np.sqrt(dc * sh["V"][1]) * jax.random.normal(ks[2], sh["V"])
        out["W_write"][-1] = 1.0 / np.sqrt(dc) * jax.random.normal(ks[3], sh["W_write"])
    return ReleaseParams(**{f: tuple(a.astype(ov.dtype) for a in v) for f, v in out.items()})


# --------------------------------------------------------------- per site

def _site_nodes(ov, s_i):
    a = int(ov.nodes.first[s_i])
    return slice(a, a + len(ov.sites[s_i].units) // int(ov.nodes.per_node[s_i]))


def _scatter(ov, s_i, per_node):
    """``(N_s, h)`` or ``(N_s, h, ...)`` values per node → the site's full width (zero elsewhere)."""
    s = ov.sites[s_i]
    v = per_node.reshape((-1,) + per_node.shape[2:])  # unit order
    if len(s.units) == s.width:
        return v
    return jnp.zeros((s.width,) + v.shape[1:], v.dtype).at[jnp.asarray(s.units)].set(v)


def film(ov, rp: ReleaseParams, S, n):
    """Per site ``(γ, β)`` over its full width from docked sums ``S (n, K, d_c)``, ``n (n, K)``."""
    out = []
    for i in range(len(ov.sites)):
        sl = _site_nodes(ov, i)
        g, b = kr.film_from_sums(S[sl], n[sl], rp.W_act[i], rp.b_act[i])
        out.append((_scatter(ov, i, g), _scatter(ov, i, b)))
    return out


def rank_one(ov, rp: ReleaseParams, S2):
    """Per site the summed rank-one change ``(width, D)`` from ``S₂ (n, K, d_c, d_c)``."""
    out = []
    for i in range(len(ov.sites)):
        sl = _site_nodes(ov, i)
        d = kr.rank_one_from_moment(S2[sl], rp.U[i], rp.V[i], rp.eta[i])  # (N_s, h, D)
        out.append(_scatter(ov, i, d))
    return out


def rule_maps(ov, rp: ReleaseParams, S, n):
    """Per site ``(α − 1, β)`` over its full width (eq. 31 summed, eq. 36)."""
    out = []
    for i in range(len(ov.sites)):
        sl = _site_nodes(ov, i)
        a = kr.affine_from_sums(S[sl], n[sl], rp.W_alpha[i], rp.b_alpha[i])
        b = kr.affine_from_sums(S[sl], n[sl], rp.W_beta[i], rp.b_beta[i])
        out.append((_scatter(ov, i, a), _scatter(ov, i, b)))
    return out


def memory(ov, rp: ReleaseParams, Mc):
    """Memory read per site over its full width and the memory norm per node.

    ``Mc (n, K, d_c)`` is the decayed sum of docked content; the memory is
    ``M = Σ_κ W_write^κ Mc[κ]`` (eq. 33 unrolled) and the read ``R M`` (eq. 34).
    """
    reads, norms = [], []
    for i in range(len(ov.sites)):
        sl = _site_nodes(ov, i)
        M = kr.affine_from_sums(Mc[sl], None, rp.W_write[i])  # (N_s, m)
        reads.append(_scatter(ov, i, jax.vmap(kr.memory_read, (0, None))(M, rp.R[i])))
        norms.append(jnp.sqrt(jnp.sum(M * M, axis=-1)))
    return reads, jnp.concatenate(norms)


# --------------------------------------------------------------- the wrapper

@jax.custom_vjp
def _tap(h, probe):
    return h


def _tap_fwd(h, probe):
    return h, h


def _tap_bwd(h, ct):
    axes = tuple(range(1, h.ndim))
    count = jnp.full(h.shape[:1], float(np.prod(h.shape[1:], dtype=np.int64)), h.dtype)
    stats = jnp.stack([jnp.sum(h * h, axis=axes), jnp.sum(ct * ct, axis=axes), count])
    return ct, stats


_tap.defvjp(_tap_fwd, _tap_bwd)


class Modulated(eqx.Module):
    """A site's layer with its activation release applied: ``h̃ = h + γ ⊙ h + β + r``.

    ``γ``, ``β`` (FiLM, eq. 22–23) and ``r`` (memory read, eq. 35) are per unit
    (output feature or channel, broadcast over a convolution's positions), or
    ``None`` when the operator is off. ``probe`` is a zero array ``(3, width)``
    whose gradient returns, per unit, the sums of ``h̃²``, of ``(∂L/∂h̃)²`` and the
    number of values: the activation and gradient statistics of the covariates
    (DESIGN §7), computed in the same backward pass as the training gradient.
    """

    inner: eqx.Module
    gamma: jax.Array | None
    beta: jax.Array | None
    read: jax.Array | None
    probe: jax.Array | None

    def __call__(self, x, *, key=None):
        h = self.inner(x)
        shape = h.shape[:1] + (1,) * (h.ndim - 1)
        if self.gamma is not None:
            h = h + self.gamma.reshape(shape).astype(h.dtype) * h + self.beta.reshape(shape).astype(h.dtype)
        if self.read is not None:
            h = h + self.read.reshape(shape).astype(h.dtype)
        if self.probe is not None:
            h = _tap(h, self.probe)
        return h


# --------------------------------------------------------------- the rule as optax

class RuleState(NamedTuple):
    """:func:`rule_modulation` keeps no state."""


def rule_modulation() -> optax.GradientTransformationExtraArgs:
    r"""The rule release as an optax transformation (eq. 31–32).

    ``update(updates, state, params=None, *, rule_scale=None, rule_shift=None)``
    returns ``rule_scale ⊙ updates + rule_shift`` leaf by leaf, where
    ``rule_scale`` and ``rule_shift`` are pytrees like ``updates`` (``None``
    leaves, or a missing argument, leave a leaf unchanged). Chain it after the
    optimiser (``optax.chain(optax.adam(1e-3), rule_modulation())``, the overlay's
    default) so that ``α`` scales the step actually taken: Adam divides each
    coordinate by the running root-mean-square of its gradients, so a factor
    ``α`` applied to the gradient *before* Adam is divided out again once the
    moments have adapted (Adam is invariant to a constant rescaling of the
    gradient), and a shift ``β`` before Adam turns into a step of nearly fixed
    size whatever ``β``'s magnitude.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> tx = rule_modulation()
    >>> u, _ = tx.update({"w": jnp.ones(2)}, tx.init(None), rule_scale={"w": jnp.array([2.0, 0.5])})
    >>> u["w"].tolist()
    [2.0, 0.5]
    """
    def init(params):
        del params
        return RuleState()

    def update(updates, state, params=None, *, rule_scale=None, rule_shift=None, **extra):
        del params, extra

        def one(u, a, b):
            if u is None:
                return None
            if a is not None:
                u = a.astype(u.dtype) * u
            if b is not None:
                u = u + b.astype(u.dtype)
            return u

        is_none = lambda x: x is None  # noqa: E731
        if rule_scale is None:
            rule_scale = jax.tree.map(lambda _: None, updates)
        if rule_shift is None:
            rule_shift = jax.tree.map(lambda _: None, updates)
        return jax.tree.map(one, updates, rule_scale, rule_shift, is_leaf=is_none), state

    return optax.GradientTransformationExtraArgs(init, update)
