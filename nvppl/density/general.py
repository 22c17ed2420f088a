r"""The general recursion of :func:`~nvppl.density.relax` in JAX: release budgets,
countdown ages and content classes (:mod:`nvppl.density.classes`).

The state of one step is an array ``(A, B, Ch, K, n, G)``: age (countdown
lifetimes), remaining budget level, channel (the mass, then its summed content
when the content is carried), type, node and content class. The classes never
exchange mass, so a step is the same linear map for every class with the
class's own docking probabilities and migration kernel, evaluated for all
classes at once; the class axis is innermost, so that the gathers of the
migration and the sums over classes run over contiguous memory. Without
content-dependent kernels there is no class axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels import decay, docking, emission, migration
from . import classes
from .graph import graph, inflow


def general_relaxer(model, n_steps: int, A: int, varying: bool, pl: classes.Plan):
    """The relaxation of one run, ``(params, F (T, n, p)) → (ρ, docks, arrivals, C, C_dock)``."""
    sub = model.substrate
    g = graph(sub)
    flow_in = inflow(g)
    n, K, dc = sub.n_nodes, model.n_types, model.content_dim
    # constants as NumPy arrays: this factory may first run inside a trace, and its result is cached
    mask = g.mask
    cand_c = g.cand_pad.clip(max=n - 1)
    gamma = np.asarray(model.gamma)
    finite = np.isfinite(model.budget)
    B = int(np.max(model.budget[finite])) if finite.any() else 1
    birth_level = np.asarray(np.stack([np.where(finite, model.budget, B) - 1 == b for b in range(B)]),
                              dtype=float)  # (B, K)
    finite_j = finite[:, None]  # (K, 1)
    tilted = model.tilted
    use = pl.use
    c_tilt = use != "none" and classes.content_tilt(model)
    c_dock = use != "none" and model.content_dependent_docking
    fixed = use == "fixed"
    countdown = model.lifetime == "countdown"
    carry = not fixed or (pl.births == "span" and pl.projection)  # content channels in the state
    Ch = 1 + dc if carry else 1
    eye = np.eye(n)
    cx = use != "none"  # a class axis (innermost)
    level = birth_level[:, None, :, None, None] if cx else birth_level[:, None, :, None]

    def run(p, F):
        T = F.shape[0]
        X = emission.design_matrix(F)  # (T, n, dx)
        lam = jnp.swapaxes(emission.emission_rate(X, p["u"], p["r_max"], model.emission_link), -1, -2)  # (T, K, n)
        loc = emission.content_loc(F, p["content_mean"], p["content_B"]) if dc else jnp.zeros((T,))  # (T, n, K, dc)
        zlog = jnp.swapaxes(docking.dock_logit(X[:, :, None, :], p["w"]), -1, -2)  # (T, K, n)
        keep = (1.0 - p["a"])[None, :]  # (1, n)
        if countdown:
            ages = jnp.arange(1, A + 1, dtype=lam.dtype)[:, None]
            _, log_keep = decay.countdown_log_hazard(ages, p["shape"][None], p["rate"][None])  # (A, K)
            surv = jnp.exp(log_keep)[:, None, None, :, None] * keep  # (A, 1, 1, K, n)
        else:
            surv = ((1.0 - p["delta"])[:, None] * keep)[None, None, None]  # (1, 1, 1, K, n)
        if cx:
            surv = surv[..., None]
        T_rows = p["T"]  # (K, n, M)
        Fv = jnp.einsum("tnp,kp->tkn", F, p["v"]) if tilted else jnp.zeros((T,))  # (T, K, n)
        Q_cand = p["Q"][:, cand_c] if c_tilt else None  # (K, n, M, dc)

        def moves(Fv_t, extra=None):  # extra: content score (K, n, G, M) → probabilities (K, n, M, G | 1)
            if not tilted:
                return T_rows[..., None] if cx else T_rows
            score = jnp.where(mask, Fv_t[:, cand_c], 0.0)  # (K, n, M)
            if not cx:
                return jnp.where(mask, jnp.exp(migration.move_log_probs(T_rows, mask, gamma[:, None], score)), 0.0)
            score = score[:, :, None, :]  # (K, n, 1, M)
            if extra is not None:
                score = score + extra
            logp = migration.move_log_probs(T_rows[:, :, None], mask[:, None], gamma[:, None, None], score)
            return jnp.moveaxis(jnp.where(mask[:, None], jnp.exp(logp), 0.0), -2, -1)

        mu = jnp.zeros((T,))
        if fixed:
            z, wq, D, mu_all = classes.grid(model, pl, p, loc)  # (G0, K, r), (G0, K) | None, (K, dc, r)
            off = jnp.einsum("kdr,gkr->gkd", D, z)  # (G0, K, dc): content of each class less m or loc
            if pl.births == "span":
                mu = mu_all  # (T, n, K, r): standardised birth means
            else:
                share_w = wq.T[:, None, :]  # (K, 1, G0)
            if pl.births == "node":  # F is the same at every step
                cont = (loc[0][:, None] + off[None]).reshape((-1, K, dc))
            elif pl.births == "step-node":
                cont = (loc.reshape((-1, 1, K, dc)) + off[None]).reshape((-1, K, dc))
            else:
                cont = p["content_mean"][None] + off  # (G, K, dc)
            dz = jnp.einsum("gkd,kd->kg", cont, p["w_c"])[:, None, :] if c_dock else 0.0  # (K, 1, G)
            tz = jnp.einsum("knmd,gkd->kngm", Q_cand, cont) if c_tilt else None  # (K, n, G, M)
            P_static = None if (tilted and varying) else moves(Fv[0] if tilted else None, tz)
            ones = jnp.ones(cont.shape[:-1] + (1,), cont.dtype)
            class_weights = jnp.swapaxes(jnp.concatenate([ones, cont], -1), 0, 1)  # (K, G, 1 + dc)

        def births(t, lam_t, loc_t, mu_t):  # → (Ch, K, n[, G])
            if not fixed:
                mass = lam_t[..., None] if cx else lam_t  # (K, n[, 1])
                if not dc:
                    return mass[None]
                locT = jnp.transpose(loc_t, (2, 1, 0))  # (dc, K, n)
                return jnp.concatenate([mass[None], mass[None] * (locT[..., None] if cx else locT)], axis=0)
            if pl.births == "span":
                mass = lam_t[..., None] * classes.span_weights(mu_t, z)  # (K, n, G)
                if not carry:
                    return mass[None]
                # the expected content of a birth in class g: loc + D (z_g − μ) (conditional mean)
                dev = jnp.moveaxis(z, 0, -2)[:, None] - jnp.swapaxes(mu_t, 0, 1)[:, :, None]  # (K, n, G, r)
                c_in = jnp.transpose(loc_t, (2, 1, 0))[..., None] + jnp.einsum("kdr,kngr->dkng", D, dev)
                return jnp.concatenate([mass[None], mass[None] * c_in], axis=0)
            mass = lam_t[..., None] * share_w  # (K, n, G0)
            if pl.births == "shared":
                return mass[None]
            per_node = mass[:, :, None, :] * eye[None, :, :, None]  # (K, n, n_b, G0): born at node b
            if pl.births == "step-node":
                per_node = per_node[:, :, None] * jax.nn.one_hot(t, T, dtype=mass.dtype)[:, None, None]
            return per_node.reshape((1, K, n, -1))

        def mean_content(x):  # (A, B, Ch, K, n, G) → (dc, K, n, G): C/ρ pooled over ages and levels
            mass = x[:, :, 0].sum((0, 1))
            return x[:, :, 1:].sum((0, 1)) / jnp.where(mass > 0, mass, 1.0)

        def step(state, xs):
            t, lam_t, loc_t, mu_t, z_t, Fv_t = xs
            b_t = births(t, lam_t, loc_t, mu_t)[None] * level  # (B, Ch, K, n[, G])
            if countdown:
                pre = jnp.concatenate([b_t[None], state[:-1]], axis=0)
                pre = pre.at[-1].add(state[-1]) if A > 1 else pre + state
            else:
                pre = state + b_t[None]
            if fixed:
                P = moves(Fv_t, tz) if P_static is None else P_static
            elif c_tilt:
                P = moves(Fv_t, jnp.einsum("knmd,dkng->kngm", Q_cand, mean_content(pre)))
            else:
                P = moves(Fv_t)
            arr = flow_in(pre[..., None, :] * P) if cx else flow_in((pre[..., None] * P)[..., None])[..., 0]
            if cx:
                z_t = z_t[..., None]  # (K, n, 1)
            if fixed:
                z_t = z_t + dz
            elif c_dock:
                z_t = z_t + jnp.einsum("dkng,kd->kng", mean_content(arr), p["w_c"])
            docked = arr * jax.nn.sigmoid(z_t)
            after = arr
            if finite.any():
                down = jnp.concatenate([docked[:, 1:], jnp.zeros_like(docked[:, :1])], axis=1)
                after = jnp.where(finite_j[..., None] if cx else finite_j, arr - docked + down, arr)
            new = after * surv
            if not carry:  # class sums with the content of each class: one contraction
                masses = jnp.stack([x[:, :, 0].sum((0, 1)) for x in (new, docked, arr)])  # (3, K, n, G)
                sums = jnp.einsum("xkng,kgj->xjkn", masses, class_weights)  # (3, 1 + dc, K, n)
                return new, (sums[0, 0], sums[1, 0], sums[2, 0], sums[0, 1:], sums[1, 1:])
            axes = (0, 1, -1) if cx else (0, 1)
            outs = tuple(x[:, :, 0].sum(axes) for x in (new, docked, arr))  # (K, n) each
            return new, outs + tuple(x[:, :, 1:].sum(axes) for x in (new, docked))  # (dc, K, n)

        G = pl.n_classes
        init = jnp.zeros((A, B, Ch, K, n) + ((G,) if cx else ()), lam.dtype)
        xs = (jnp.arange(T), lam, loc, mu, zlog, Fv)
        _, (rho, docks, arrivals, cont_t, dcont) = jax.lax.scan(step, init, xs)
        tr = lambda x: jnp.swapaxes(x, -1, -2)  # (T, K, n) → (T, n, K)  # noqa: E731
        tc = lambda x: jnp.transpose(x, (0, 3, 2, 1))  # (T, dc, K, n) → (T, n, K, dc)  # noqa: E731
        return tr(rho), tr(docks), tr(arrivals), tc(cont_t), tc(dcont)

    return jax.jit(run)
