"""Sufficient statistics of fully observed traces.

:func:`trace_data` turns :class:`~nvppl.traces.Traces` into the arrays the
likelihood needs. Each kernel's statistics are aggregated so that the cost of
evaluating the likelihood does not grow with the number of vesicle-steps:

- emission: birth counts and exposures per distinct covariate row and type;
- content at birth: per type ``n``, ``Σ xxᵀ``, ``Σ x cᵀ``, ``Σ c²`` (a normal regression);
- migration: move counts per (type, node, candidate slot);
- docking: trials and docks per distinct covariate row and type;
- absorption: trials and absorptions per node;
- decay: trials and expirations per type (and per age for countdown lifetimes).

Per vesicle-step arrays (``rows``) are kept too: they give the per-vesicle
log-likelihood (for LOO) and the likelihood terms that depend on content or on
the migration tilt, which cannot be aggregated.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import gammaln

from ..covariates import features_for
from ..errors import TraceError
from .checks import ABSORBED, DEPLETED, EXPIRED

__all__ = ["TraceData", "trace_data", "pad_rows", "check_compatible"]


class TraceData(NamedTuple):
    """Arrays for the trace likelihood (a JAX pytree; see the module docstring)."""

    # emission
    em_X: np.ndarray         # (m, d_x) distinct design rows
    em_births: np.ndarray    # (m, K)
    em_exposure: np.ndarray  # (m,) cells with this row
    em_log_fact: np.ndarray  # () sum of log N! over cells
    # content at birth
    c_n: np.ndarray          # (K,)
    c_xx: np.ndarray         # (K, d_x, d_x)
    c_xc: np.ndarray         # (K, d_x, d_c)
    c_cc: np.ndarray         # (K, d_c)
    # migration
    mig_counts: np.ndarray   # (K, n, M)
    # docking
    dk_X: np.ndarray         # (m, d_x)  (same rows as emission)
    dk_trials: np.ndarray    # (m, K)
    dk_docks: np.ndarray     # (m, K)
    # absorption
    ab_trials: np.ndarray    # (n,)
    ab_absorbed: np.ndarray  # (n,)
    # decay
    dc_trials: np.ndarray    # (K, A): A = 1 (geometric) or n_steps (countdown, age 1..A)
    dc_expired: np.ndarray   # (K, A)
    # per vesicle-step rows
    r_vrow: np.ndarray       # (S,) row in the vesicle arrays
    r_type: np.ndarray       # (S,)
    r_run: np.ndarray        # (S,)
    r_step: np.ndarray       # (S,)
    r_from: np.ndarray       # (S,)
    r_slot: np.ndarray       # (S,)
    r_to: np.ndarray         # (S,)
    r_docked: np.ndarray     # (S,) float 0/1
    r_ab_trial: np.ndarray   # (S,) float 0/1: reached the absorption stage
    r_absorbed: np.ndarray   # (S,)
    r_dc_trial: np.ndarray   # (S,) reached the decay stage
    r_expired: np.ndarray    # (S,)
    r_age: np.ndarray        # (S,) 1-based age of the step
    r_mask: np.ndarray       # (S,) 1 for a real row, 0 for padding
    # per vesicle
    v_type: np.ndarray       # (N,)
    v_X: np.ndarray          # (N, d_x) design row at birth
    v_content: np.ndarray    # (N, d_c)
    # covariates (for tilt and content-dependent docking)
    F: np.ndarray            # (R, T, n, p)

    @property
    def n_vesicles(self) -> int:
        return int(self.v_type.shape[0])


def check_compatible(model, traces) -> None:
    """Raise :class:`TraceError` unless ``traces`` can be explained by ``model``."""
    if not model.substrate.same_as(traces.substrate):
        raise TraceError("the traces were recorded on a different substrate than the model's")
    if traces.n_types > model.n_types:
        raise TraceError(f"the traces have {traces.n_types} types but the model has {model.n_types}")
    if traces.content_dim != model.content_dim:
        raise TraceError(f"the traces have content dimension {traces.content_dim} but the model has "
                         f"{model.content_dim}")
    v = traces._v
    mismatch = v["budget"] != model.budget[v["type"]]
    if mismatch.any():
        i = int(np.flatnonzero(mismatch)[0])
        raise TraceError(f"budget {v['budget'][i]:g} differs from the model's budget "
                         f"{model.budget[v['type'][i]]:g} for type {v['type'][i]}",
                         run=int(v["run"][i]), vesicle=int(v["vesicle"][i]))
    if model.lifetime == "countdown" and model.sigma_tau > 0:
        raise ValueError("the trace likelihood of countdown lifetimes needs sigma_tau = 0 (with lifetime "
                         "noise the first-passage time has no closed form); fit a model with sigma_tau=0")


def trace_data(model, traces) -> TraceData:
    """Sufficient statistics and per-step arrays of ``traces`` under ``model``.

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.path_graph(3)), n_types=1)
    >>> traces = nv.simulate(model, model.default_params(), n_steps=30, key=1)
    >>> data = trace_data(model, traces)
    >>> int(data.mig_counts.sum()) == len(traces)
    True
    """
    check_compatible(model, traces)
    v, s = traces._v, traces._s
    K, n = model.n_types, model.n_nodes
    M = model.substrate.max_candidates
    R, T = traces.n_runs, traces.n_steps
    F = features_for(model, traces)
    p = F.shape[-1]

    # distinct design rows over all cells (run, step, node)
    if p == 0:
        uid = np.zeros(R * T * n, dtype=np.int64)
        rows_X = np.ones((1, 1))
    else:
        flatF = F.reshape(R * T * n, p)
        uniq, uid = np.unique(flatF, axis=0, return_inverse=True)
        uid = uid.reshape(-1)
        rows_X = np.concatenate([np.ones((len(uniq), 1)), uniq], 1)
    m = len(rows_X)

    def cell(run, step, node):
        return (run * T + step) * n + node

    vtype = v["type"]
    bcell = cell(v["run"], v["birth_step"], v["birth_node"])
    births_cell = np.bincount(bcell * K + vtype, minlength=R * T * n * K).reshape(R * T * n, K)
    em_births = np.zeros((m, K))
    np.add.at(em_births, uid, births_cell)
    exposure = np.bincount(uid, minlength=m).astype(float)
    log_fact = float(gammaln(births_cell + 1.0).sum())

    # content at birth: a normal regression per type
    v_X = rows_X[uid[bcell]] if len(bcell) else np.zeros((0, rows_X.shape[1]))
    dc = traces.content_dim
    c = v["content"]
    c_n = np.bincount(vtype, minlength=K).astype(float)
    c_xx = np.zeros((K, 1 + p, 1 + p))
    c_xc = np.zeros((K, 1 + p, dc))
    c_cc = np.zeros((K, dc))
    for k in range(K):
        sel = vtype == k
        Xk, ck = v_X[sel], c[sel]
        c_xx[k], c_xc[k], c_cc[k] = Xk.T @ Xk, Xk.T @ ck, (ck * ck).sum(0)

    # per-row stages
    vr = s["vrow"]
    rtype = vtype[vr]
    rstep = s["step"]
    is_death_row = rstep == v["death_step"][vr]
    cause = np.where(is_death_row, v["death_cause"][vr], -1)
    ab_trial = cause != DEPLETED
    absorbed = cause == ABSORBED
    dc_trial = ab_trial & ~absorbed
    expired = cause == EXPIRED
    age = rstep - v["birth_step"][vr] + 1  # a removal at a sink has no row, so no stage to count

    mig = np.bincount((rtype * n + s["node_from"]) * M + s["slot"], minlength=K * n * M).reshape(K, n, M)
    rcell = cell(v["run"][vr], rstep, s["node_to"])
    ru = uid[rcell] if len(rcell) else np.zeros(0, np.int64)
    dk_trials = np.bincount(ru * K + rtype, minlength=m * K).reshape(m, K).astype(float)
    dk_docks = np.bincount(ru * K + rtype, weights=s["docked"].astype(float), minlength=m * K).reshape(m, K)
    ab_trials = np.bincount(s["node_to"], weights=ab_trial.astype(float), minlength=n)
    ab_absorbed = np.bincount(s["node_to"], weights=absorbed.astype(float), minlength=n)
    if model.lifetime == "geometric":
        A, aidx = 1, np.zeros_like(age)
    else:
        A, aidx = T, age - 1
    dc_trials = np.bincount(rtype * A + aidx, weights=dc_trial.astype(float), minlength=K * A).reshape(K, A)
    dc_expired = np.bincount(rtype * A + aidx, weights=expired.astype(float), minlength=K * A).reshape(K, A)

    f = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731
    i = lambda x: np.asarray(x, dtype=np.int32)  # noqa: E731
    return TraceData(
        em_X=f(rows_X), em_births=f(em_births), em_exposure=f(exposure), em_log_fact=f(log_fact),
        c_n=f(c_n), c_xx=f(c_xx), c_xc=f(c_xc), c_cc=f(c_cc),
        mig_counts=f(mig),
        dk_X=f(rows_X), dk_trials=f(dk_trials), dk_docks=f(dk_docks),
        ab_trials=f(ab_trials), ab_absorbed=f(ab_absorbed),
        dc_trials=f(dc_trials), dc_expired=f(dc_expired),
        r_vrow=i(vr), r_type=i(rtype), r_run=i(v["run"][vr]), r_step=i(rstep), r_from=i(s["node_from"]),
        r_slot=i(s["slot"]), r_to=i(s["node_to"]), r_docked=f(s["docked"]), r_ab_trial=f(ab_trial),
        r_absorbed=f(absorbed), r_dc_trial=f(dc_trial), r_expired=f(expired), r_age=i(age),
        r_mask=np.ones(len(vr)),
        v_type=i(vtype), v_X=f(v_X), v_content=f(c), F=f(F),
    )


def pad_rows(data: TraceData, multiple_of: int = 1024) -> TraceData:
    """Pad the per-step and per-vesicle arrays to the next power of two (at least
    ``multiple_of``) with masked rows, so that data sets of similar size share one
    compiled likelihood. Padded rows have ``r_mask = 0`` and contribute nothing."""
    def target(n):
        return max(multiple_of, 1 << max(0, int(np.ceil(np.log2(max(n, 1))))))

    S, N = len(data.r_mask), len(data.v_type)
    tS, tN = target(S), target(N)
    out = {}
    for k, v in data._asdict().items():
        if k.startswith("r_") and tS > S:
            fill = 1 if k == "r_age" else 0
            v = np.concatenate([v, np.full((tS - S,) + v.shape[1:], fill, v.dtype)])
        elif k.startswith("v_") and tN > N:
            v = np.concatenate([v, np.zeros((tN - N,) + v.shape[1:], v.dtype)])
        out[k] = v
    return TraceData(**out)
