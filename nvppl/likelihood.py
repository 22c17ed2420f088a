"""Log-likelihood of fully observed traces (:ref:`design-model`, exact for both lifetime families).

The likelihood of one run factorises over the kernels of the life cycle:

.. math::

    \\log p = \\underbrace{\\textstyle\\sum_{t,i,κ} \\log \\mathrm{Poisson}(N_{tiκ}; λ_{tiκ})}_{\\text{emission, eq. 10}}
      + \\underbrace{\\textstyle\\sum_v \\log \\mathcal N(c_v; m_κ + F B_κ, σ_κ^2)}_{\\text{content, eq. 11}}
      + \\sum_{\\text{vesicle-steps}} \\big[\\log P(ℓ'|ℓ,c) + \\log P(d) + \\log P(\\text{absorb}) + \\log P(\\text{decay})\\big].

A step ends at the first removal in the order migration (sink), docking
(budget spent: ``depleted``), absorption, decay, so a vesicle contributes an
absorption factor only when it was not depleted, and a decay factor only when it
was not absorbed either. Decay factors use the per-age hazard
``h_k`` of :mod:`nvppl.kernels.decay`: constant ``δ_κ`` for geometric lifetimes,
the discretised Gamma hazard for countdown lifetimes; a censored vesicle
contributes survival factors up to the last step, which is exact under
right-censoring.

The terms are evaluated on sufficient statistics (see :mod:`nvppl.traces.suffstats`)
except the migration term when the model is tilted and the docking term when
docking depends on content, which are evaluated per vesicle-step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.nn import log_sigmoid

from .kernels import decay, docking, emission, migration

__all__ = ["log_likelihood_terms", "log_likelihood", "row_log_likelihood", "vesicle_log_likelihood",
           "needs_rows"]


def needs_rows(model) -> bool:
    """Whether some term must be evaluated per vesicle-step."""
    return model.tilted or model.content_dependent_docking


def _emission(p, d, model):
    log_lam = emission.log_emission_rate(d.em_X, p.u, p.r_max, model.emission_link)  # (m, K)
    return jnp.sum(d.em_births * log_lam) - jnp.sum(d.em_exposure[:, None] * jnp.exp(log_lam)) - d.em_log_fact


def _content(p, d, model):
    if model.content_dim == 0:
        return jnp.zeros(())
    beta = jnp.concatenate([p.content_mean[:, None, :], p.content_B], axis=1)  # (K, dx, dc)
    quad = (d.c_cc - 2.0 * jnp.einsum("kxd,kxd->kd", beta, d.c_xc)
            + jnp.einsum("kxd,kxy,kyd->kd", beta, d.c_xx, beta))
    sigma = p.content_scale
    return jnp.sum(-d.c_n[:, None] * (jnp.log(sigma) + 0.5 * jnp.log(2.0 * jnp.pi)) - 0.5 * quad / sigma**2)


def _content_per_vesicle(p, d, model):
    if model.content_dim == 0:
        return jnp.zeros(d.v_type.shape[0])
    k = d.v_type
    loc = p.content_mean[k] + jnp.einsum("vp,vpd->vd", d.v_X[:, 1:], p.content_B[k])
    return emission.content_log_prob(d.v_content, loc, p.content_scale[k])


def _row_migration(p, d, model):
    sub = model.substrate
    cand = jnp.asarray(sub.candidates)
    c_nodes = jnp.maximum(cand[d.r_from], 0)  # (S, M)
    mask = cand[d.r_from] >= 0
    score = None
    if model.tilted:
        F_cand = d.F[d.r_run[:, None], d.r_step[:, None], c_nodes]  # (S, M, p)
        dc = model.content_dim
        content = d.v_content[d.r_vrow] if dc else None
        Q_cand = p.Q[d.r_type[:, None], c_nodes] if dc else None
        score = migration.tilt_score(F_cand, p.v[d.r_type], content, Q_cand)
    logp = migration.move_log_probs(p.T[d.r_type, d.r_from], mask, jnp.asarray(model.gamma)[d.r_type], score)
    return jnp.take_along_axis(logp, d.r_slot[:, None], axis=1)[:, 0]


def _row_docking(p, d, model):
    X_to = emission.design_matrix(d.F[d.r_run, d.r_step, d.r_to])
    dc = model.content_dim
    z = docking.dock_logit(X_to, p.w[d.r_type], d.v_content[d.r_vrow] if dc else None,
                           p.w_c[d.r_type] if dc else None)
    return docking.dock_log_prob(d.r_docked, z)


def _row_absorb_decay(p, d, model):
    ab = d.r_ab_trial * decay.absorption_log_prob(d.r_absorbed, p.a[d.r_to])
    if model.lifetime == "geometric":
        lh, ls = decay.geometric_log_hazard(p.delta[d.r_type])
    else:
        lh, ls = decay.countdown_log_hazard(d.r_age, p.shape[d.r_type], p.rate[d.r_type])
    dec = jnp.where(d.r_dc_trial > 0, jnp.where(d.r_expired > 0, lh, ls), 0.0)
    return ab + dec


def row_log_likelihood(params, data, model):
    """Log-likelihood of each vesicle-step row (migration, docking, absorption,
    decay); zero on padding rows."""
    data = jax.tree.map(jnp.asarray, data)
    total = (_row_migration(params, data, model) + _row_docking(params, data, model)
             + _row_absorb_decay(params, data, model))
    return jnp.where(data.r_mask > 0, total, 0.0)


def vesicle_log_likelihood(params, data, model):
    """Log-likelihood of each vesicle's life given its birth (content at birth and
    every step), shape ``(N,)``: the pointwise log-likelihood used for LOO.

    The emission term (births as a Poisson field) is not a per-vesicle quantity
    and is left out here; it is part of :func:`log_likelihood`.
    """
    data = jax.tree.map(jnp.asarray, data)
    rows = row_log_likelihood(params, data, model)
    per = jax.ops.segment_sum(rows, data.r_vrow, num_segments=data.v_type.shape[0])
    return per + _content_per_vesicle(params, data, model)


def log_likelihood_terms(params, data, model) -> dict:
    """The log-likelihood of traces, split by kernel (a dict of scalars)."""
    p = params
    data = jax.tree.map(jnp.asarray, data)
    terms = {"emission": _emission(p, data, model), "content": _content(p, data, model)}
    if model.tilted:
        terms["migration"] = jnp.sum(jnp.where(data.r_mask > 0, _row_migration(p, data, model), 0.0))
    else:
        moved = data.mig_counts > 0
        terms["migration"] = jnp.sum(jnp.where(moved, data.mig_counts * jnp.log(jnp.where(moved, p.T, 1.0)), 0.0))
    if model.content_dependent_docking:
        terms["docking"] = jnp.sum(jnp.where(data.r_mask > 0, _row_docking(p, data, model), 0.0))
    else:
        z = data.dk_X @ p.w.T  # (m, K)
        terms["docking"] = jnp.sum(data.dk_docks * log_sigmoid(z) + (data.dk_trials - data.dk_docks) * log_sigmoid(-z))
    terms["absorption"] = jnp.sum(decay.binomial_log_kernel(data.ab_absorbed, data.ab_trials, p.a))
    if model.lifetime == "geometric":
        terms["decay"] = jnp.sum(decay.binomial_log_kernel(data.dc_expired, data.dc_trials, p.delta[:, None]))
    else:
        A = data.dc_trials.shape[1]
        ages = jnp.arange(1, A + 1)
        lh, ls = decay.countdown_log_hazard(ages[None, :], p.shape[:, None], p.rate[:, None])
        survived = data.dc_trials - data.dc_expired
        terms["decay"] = jnp.sum(jnp.where(data.dc_expired > 0, data.dc_expired * lh, 0.0)
                                 + jnp.where(survived > 0, survived * ls, 0.0))
    return terms


def log_likelihood(params, data, model):
    """Total log-likelihood of traces (the sum of :func:`log_likelihood_terms`)."""
    return sum(log_likelihood_terms(params, data, model).values())
