r"""The density mode of the overlay: expected docks and their content sums (eq. 46–53).

The population is replaced by its expectation per node and type: the mass
``ρ`` (expected number of vesicles), the summed content ``C = E[Σ c]`` and the
summed second moment ``S₂ = E[Σ c cᵀ]``. One step follows §1.3 in order:

.. math::

    ρ^+ = ρ + λ_t, \quad C^+ = C + λ_t m_t, \quad S_2^+ = S_2 + λ_t (m_t m_tᵀ + \operatorname{diag} σ_c^2)

(emission with content mean ``m_t`` and scale ``σ_c``), migration of all three by
``P_t`` (eq. 15–17, the tilt by covariates included), docking at the destination
with ``p_t = σ(X_t w)`` — the expected docks are ``D = p ρ^{mv}``, with content sums
``p C^{mv}`` and ``p S_2^{mv}`` — and survival by ``(1 − p [budget = 1])(1 − a)(1 − δ)``.
This is exact in the mean (:func:`nvppl.density.exact_in_mean`) for geometric
lifetimes, a budget of 1 or infinity, and docking and migration that do not
depend on the content, which are the models the density mode accepts. Because
every release operator is affine in the docked sums (:mod:`nvppl.kernels.release`),
the expected release is the release of the expected sums: exact too, and
differentiable in every vesicle parameter.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels import docking, emission, migration

__all__ = ["DensityState", "unsupported", "init", "step"]


class DensityState(NamedTuple):
    """Expected population after a step: mass, summed content and summed second moment per node and type."""

    rho: jax.Array   # (n, K)
    C: jax.Array     # (n, K, d_c)
    S2: jax.Array    # (n, K, d_c, d_c)


def unsupported(model) -> str | None:
    """Why the density mode cannot follow ``model`` exactly in the mean, or ``None``."""
    if model.lifetime != "geometric":
        return "countdown lifetimes need the age-structured density; use mode='explicit'"
    finite = np.isfinite(model.budget)
    if np.any(model.budget[finite] > 1):
        return "a release budget of 2 or more needs the density split by budget; use budget=1 or None"
    if model.content_dim and model.content_dependent_docking:
        return "content-dependent docking selects on content (the density is then mean-field only)"
    if model.content_dim and model.tilt:
        return "content-tilted migration selects on content (the density is then mean-field only)"
    return None


def init(model) -> DensityState:
    """No vesicles."""
    n, K, dc = model.n_nodes, model.n_types, model.content_dim
    return DensityState(jnp.zeros((n, K)), jnp.zeros((n, K, dc)), jnp.zeros((n, K, dc, dc)))


def _move_probs(model, p, F_t, cand, mask):
    """``P[κ, i, m]``: probability of moving from node ``i`` to its candidate slot ``m``."""
    if not model.tilted:
        return jnp.where(mask, p.T, 0.0)
    cand_c = jnp.maximum(cand, 0)
    score = jnp.einsum("nmp,kp->knm", F_t[cand_c], p.v)
    lp = migration.move_log_probs(p.T, mask, jnp.asarray(model.gamma)[:, None], score)
    return jnp.where(mask, jnp.exp(lp), 0.0)


def step(model, p, state: DensityState, F_t):
    """One expected step with covariates ``F_t (n, p)``; returns ``(state, (D, S, S₂))``, the expected docks ``(n, K)`` and
    their summed content ``(n, K, d_c)`` and second moment ``(n, K, d_c, d_c)``."""
    sub = model.substrate
    n, dc = sub.n_nodes, model.content_dim
    cand = jnp.asarray(sub.candidates)
    mask = cand >= 0
    X_t = emission.design_matrix(F_t)
    lam = emission.emission_rate(X_t, p.u, p.r_max, model.emission_link)  # (n, K)
    rho = state.rho + lam
    C, S2 = state.C, state.S2
    if dc:
        loc = emission.content_loc(F_t, p.content_mean, p.content_B)  # (n, K, dc)
        C = C + lam[..., None] * loc
        S2 = S2 + lam[..., None, None] * (loc[..., :, None] * loc[..., None, :]
                                          + jnp.eye(dc) * (p.content_scale ** 2)[None, :, None, :])
    P = _move_probs(model, p, F_t, cand, mask)  # (K, n, M)
    seg = jnp.where(mask, cand, n).reshape(-1)

    def move(q):  # (n, K, ...) -> (n, K, ...)
        Pt = jnp.moveaxis(P, 0, 2)  # (n, M, K)
        f = q[:, None] * Pt.reshape(Pt.shape + (1,) * (q.ndim - 2))  # (n, M, K, ...)
        f = f.reshape((-1,) + f.shape[2:])
        return jax.ops.segment_sum(f, seg, num_segments=n + 1)[:n]

    rho, C, S2 = move(rho), move(C), move(S2)
    pd = docking.dock_prob(X_t[:, None, :], p.w)  # (n, K)
    D, Sd, S2d = pd * rho, pd[..., None] * C, pd[..., None, None] * S2
    keep = (1.0 - p.a)[:, None] * (1.0 - p.delta)[None, :]
    one = jnp.asarray(np.isfinite(model.budget) & (model.budget == 1))
    keep = keep * jnp.where(one[None, :], 1.0 - pd, 1.0)
    new = DensityState(keep * rho, keep[..., None] * C, keep[..., None, None] * S2)
    return new, (D, Sd, S2d)
