"""Release operators (paper §3.4, eq. 20–36).

When a vesicle of type ``κ`` with content ``c`` docks at node ``ℓ`` it acts on the
base network through release operators; the effects of several docked vesicles
add (eq. 36). These pure functions are applied wherever a base network is
attached (the density's expected release, the spiking substrate, the emulator).
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["film_coefficients", "activation_release", "total_activation_release",
           "rank_one_release", "rule_release", "memory_write", "memory_read",
           "film_from_sums", "rank_one_from_moment", "affine_from_sums"]


def film_coefficients(c, W_act, b_act):
    """FiLM coefficients ``(γ_ℓ, β_ℓ) = W_act^κ c + b_act^κ`` (eq. 21).

    Parameters
    ----------
    c : (..., d_c)
    W_act : (..., 2H, d_c)
    b_act : (..., 2H)

    Returns
    -------
    gamma, beta : (..., H)
    """
    gb = jnp.einsum("...hd,...d->...h", W_act, c) + b_act
    H = gb.shape[-1] // 2
    return gb[..., :H], gb[..., H:]


def activation_release(h, c, W_act, b_act):
    """Activation change of one docked vesicle, ``Δh = γ ⊙ h + β`` (eq. 22).

    Examples
    --------
    >>> dh = activation_release(jnp.array([2.0]), jnp.array([1.0]),
    ...                         jnp.array([[0.5], [1.0]]), jnp.zeros(2))
    >>> dh.tolist()
    [2.0]
    """
    gamma, beta = film_coefficients(c, W_act, b_act)
    return gamma * h + beta


def total_activation_release(h, contents, types, docked, W_act, b_act):
    """Summed activation change at one node (eq. 36).

    Parameters
    ----------
    h : (H,)
        Pre-activation at the node.
    contents : (N, d_c)
        Contents of the vesicles at the node.
    types : (N,) int
        Their types.
    docked : (N,) bool
        Which of them docked this step.
    W_act : (K, 2H, d_c), b_act : (K, 2H)
        Per-type FiLM maps.

    Returns
    -------
    (H,)
        ``Σ_{docked v} (γ_v ⊙ h + β_v)``; the updated activation is ``h + Δh`` (eq. 23).
    """
    per = activation_release(h, contents, W_act[types], b_act[types])
    return jnp.sum(jnp.where(docked[:, None], per, 0.0), axis=0)


def rank_one_release(c, U, V, eta):
    """Parameter change ``Δθ = η u vᵀ`` with ``u = U c`` and ``v = V c`` (eq. 25–27)."""
    return eta * jnp.outer(U @ c, V @ c)


def rule_release(g, c, W_alpha, b_alpha, W_beta, b_beta):
    """Vesicle-conditioned gradient ``g̃ = α(c) ⊙ g + β(c)`` with affine ``α`` and ``β`` (eq. 31).

    Where several vesicles dock, their effects ``g̃_v − g`` add (eq. 36); the
    overlay writes ``α(c) = 1 + W_α c + b_α`` so that zero maps leave ``g``
    unchanged (:func:`affine_from_sums`).
    """
    return (W_alpha @ c + b_alpha) * g + (W_beta @ c + b_beta)


def memory_write(M, c, W_write, retain=1.0):
    """External-memory write ``M ← retain·M + W_write c`` (eq. 33)."""
    return retain * M + W_write @ c


def memory_read(M, R):
    """External-memory read ``r = R M`` (eq. 34), to be concatenated to ``h`` (eq. 35)."""
    return R @ M


# ---------------------------------------------------------------------------
# Sums over the docked vesicles (eq. 36). Every operator above is affine in the
# content, or (rank-one) linear in its second moment, so the summed effect of a
# set of docked vesicles depends on it only through its count ``n``, its summed
# content ``S = Σ c`` and its summed second moment ``S₂ = Σ c cᵀ``. The explicit
# overlay sums over the vesicles that docked; the density mode uses the
# expectations of the same sums (eq. 53), which is exact for these operators.


def film_from_sums(S, n, W_act, b_act):
    """Summed FiLM coefficients of docked vesicles, ``Σ_v (W_act c_v + b_act)`` (eq. 21, 36).

    Parameters
    ----------
    S : (..., K, d_c)
        Summed content of the docked vesicles per type.
    n : (..., K)
        Their number per type.
    W_act : (K, 2H, d_c), b_act : (K, 2H)

    Returns
    -------
    gamma, beta : (..., H)
        So that ``Δh_total = γ ⊙ h + β`` (eq. 22, 36).

    Examples
    --------
    >>> g, b = film_from_sums(jnp.ones((1, 1)), jnp.ones(1), jnp.array([[[0.5], [1.0]]]), jnp.zeros((1, 2)))
    >>> g.tolist(), b.tolist()
    ([0.5], [1.0])
    """
    gb = affine_from_sums(S, n, W_act, b_act)
    H = gb.shape[-1] // 2
    return gb[..., :H], gb[..., H:]


def rank_one_from_moment(S2, U, V, eta):
    """Summed rank-one changes ``Σ_v η_κ (U_κ c_v)(V_κ c_v)ᵀ = Σ_κ η_κ U_κ S₂[κ] V_κᵀ`` (eq. 25–27, 36).

    Parameters
    ----------
    S2 : (..., K, d_c, d_c)
        Summed second moment ``Σ c cᵀ`` of the docked vesicles per type.
    U : (K, H, d_c), V : (K, D, d_c), eta : (K,)

    Returns
    -------
    (..., H, D)
    """
    return jnp.einsum("k,khd,...kde,kje->...hj", eta, U, S2, V)


def affine_from_sums(S, n, W, b=None):
    """``Σ_v (W_κ c_v + b_κ)`` over docked vesicles, shape ``(..., H)`` (the FiLM coefficients of
    eq. 21, the rule maps α − 1 and β of eq. 31, and without ``b`` the memory write of eq. 33)."""
    out = jnp.einsum("khd,...kd->...h", W, S)
    return out if b is None else out + jnp.einsum("kh,...k->...h", b, n)
