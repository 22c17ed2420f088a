"""The compiled linear recursion (:mod:`nvppl._engine.relax`) behind :func:`~nvppl.density.relax`
for geometric lifetimes, budgets of 1 or infinite and content-independent kernels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._engine.bridge import engine
from ..kernels import docking, emission, migration


def recursion(sub, n_steps: int):
    """The compiled linear recursion ``a = rec(P, src, S)`` of :mod:`nvppl._engine.relax` as a JAX
    function with a custom adjoint, both run on the host through ``pure_callback``.
    Layouts: ``P (T|1, n, M, K)``, ``src (T|1, Ch, n, K)``, ``S (T|1, n, K)`` → ``a (T, Ch, n, K)``."""
    core = engine("relax")
    cand = np.ascontiguousarray(sub.candidates, dtype=np.int64)
    n_cand = np.ascontiguousarray(sub.n_candidates, dtype=np.int64)
    ptr, esrc, slot = core.incoming(cand, n_cand)

    def c64(x):
        return np.ascontiguousarray(np.asarray(x, dtype=np.float64))

    def host_fwd(P, src, S):
        return core.forward(c64(P), c64(src), c64(S), ptr, esrc, slot, n_steps)

    def host_bwd(P, src, S, a, a_bar):
        return core.backward(c64(P), c64(src), c64(S), c64(a), c64(a_bar), cand, n_cand)

    def call_fwd(P, src, S):
        shape = jax.ShapeDtypeStruct((n_steps,) + src.shape[1:], jnp.float64)
        return jax.pure_callback(host_fwd, shape, P, src, S, vmap_method="sequential")

    @jax.custom_vjp
    def rec(P, src, S):
        return call_fwd(P, src, S)

    def fwd(P, src, S):
        a = call_fwd(P, src, S)
        return a, (P, src, S, a)

    def bwd(res, a_bar):
        P, src, S, a = res
        shapes = tuple(jax.ShapeDtypeStruct(x.shape, jnp.float64) for x in (P, src, S))
        return jax.pure_callback(host_bwd, shapes, P, src, S, a, a_bar, vmap_method="sequential")

    rec.defvjp(fwd, bwd)
    return rec


def linear_relaxer(model, n_steps: int, varying: bool):
    """Relaxation through the compiled linear recursion (:func:`~nvppl.density.fast_path` models):
    ``a_t = Pᵀ(S_{t−1} ⊙ a_{t−1} + src_t)``, ``ρ_t = S_t ⊙ a_t``, docks ``p_dock ⊙ a_t``.
    Without time-varying covariates every input is shared by the steps."""
    sub = model.substrate
    rec = recursion(sub, n_steps)
    dc = model.content_dim
    # constants as NumPy arrays: this factory may first run inside a trace, and its result is cached
    mask = np.asarray(sub.candidate_mask)
    cand_safe = np.maximum(sub.candidates, 0)
    gamma = np.asarray(model.gamma)
    one = np.asarray(model.budget == 1)  # (K,): a dock depletes

    def run(p, F):
        if not varying:
            F = F[:1]
        X = emission.design_matrix(F)  # (Tv, n, dx)
        lam = emission.emission_rate(X, p["u"], p["r_max"], model.emission_link)  # (Tv, n, K)
        src = lam[:, None]  # (Tv, 1, n, K)
        if dc:
            loc = emission.content_loc(F, p["content_mean"], p["content_B"])  # (Tv, n, K, dc)
            src = jnp.concatenate([src, jnp.moveaxis(loc, -1, 1) * src], axis=1)
        pd = jax.nn.sigmoid(docking.dock_logit(X[:, :, None, :], p["w"]))  # (Tv, n, K)
        S = (1.0 - p["a"])[:, None] * (1.0 - p["delta"]) * jnp.where(one, 1.0 - pd, 1.0)
        if model.tilted:
            score = jnp.einsum("tnp,kp->tkn", F, p["v"])[:, :, cand_safe]  # (Tv, K, n, M)
            logp = migration.move_log_probs(p["T"][None], mask, gamma[None, :, None], score)
            P = jnp.moveaxis(jnp.where(mask, jnp.exp(logp), 0.0), 1, -1)  # (Tv, n, M, K)
        else:
            P = jnp.moveaxis(p["T"], 0, -1)[None]  # (1, n, M, K)
        a = rec(P, src, S)  # (T, Ch, n, K)
        mass, cont = a[:, 0], jnp.moveaxis(a[:, 1:], 1, -1)  # (T, n, K), (T, n, K, dc)
        return S * mass, pd * mass, mass, S[..., None] * cont, pd[..., None] * cont

    return jax.jit(run)
