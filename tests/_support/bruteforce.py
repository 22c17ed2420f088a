"""An independent, loop-by-loop log-likelihood of traces for small cases.

Written directly from the model description (docs/design.rst, "The model") over the public
DataFrames, with SciPy densities, sharing no code with ``nvppl.likelihood``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def log_likelihood(model, params, traces, *, emission=True) -> float:
    """Total log-likelihood of ``traces`` under ``model`` and ``params``.

    With ``emission=False`` the Poisson birth term is left out, leaving the sum of
    the per-vesicle terms (life given birth).
    """
    sub = model.substrate
    labels = list(sub.labels)
    index = {lab: i for i, lab in enumerate(labels)}
    K, n = model.n_types, sub.n_nodes
    R, T = traces.n_runs, traces.n_steps
    X = traces.covariates  # (R, T, n, 1 + p)
    F = X[..., 1:]
    p = params
    ves = traces.vesicles
    steps = traces.steps
    total = 0.0

    if emission:
        births = np.zeros((R, T, n, K), dtype=int)
        for row in ves.itertuples():
            births[row.run, row.birth_step, index[row.birth_node], row.type] += 1
        for r in range(R):
            for t in range(T):
                for i in range(n):
                    for k in range(K):
                        z = float(X[r, t, i] @ p.u[k])
                        lam = p.r_max[k] * _sigmoid(z) if model.emission_link == "sigmoid" else math.exp(z)
                        total += stats.poisson.logpmf(births[r, t, i, k], lam)

    by_vesicle = {key: grp.sort_values("step") for key, grp in steps.groupby(["run", "vesicle"])}
    for v in ves.itertuples():
        k, r, b = v.type, v.run, v.birth_step
        node = index[v.birth_node]
        content = np.array([getattr(v, f"content_{j}") for j in range(model.content_dim)])
        if model.content_dim:
            loc = p.content_mean[k] + F[r, b, node] @ p.content_B[k]
            total += stats.norm.logpdf(content, loc, p.content_scale[k]).sum()
        rows = by_vesicle.get((r, v.vesicle))
        rows = [] if rows is None else list(rows.itertuples())
        docks = 0
        for age, row in enumerate(rows, start=1):
            t, i, j = row.step, index[row.node_from], index[row.node_to]
            # migration (eq. 15-17)
            cands = [c for c in sub.candidates[i] if c >= 0]
            weights = []
            for s, c in enumerate(cands):
                q = F[r, t, c] @ p.v[k] + (content @ p.Q[k, c] if model.content_dim else 0.0)
                weights.append(p.T[k, i, s] * math.exp(model.gamma[k] * q))
            total += math.log(weights[cands.index(j)] / sum(weights))
            # docking (eq. 18-19)
            z = X[r, t, j] @ p.w[k] + (content @ p.w_c[k] if model.content_dim else 0.0)
            pd = _sigmoid(z)
            total += math.log(pd) if row.docked else math.log(1.0 - pd)
            docks += int(row.docked)
            dies_here = row.step == v.death_step and v.death_cause != "censored"
            if dies_here and v.death_cause == "depleted":
                assert docks == v.budget
                continue
            # absorption (eq. 38)
            absorbed = dies_here and v.death_cause == "absorbed"
            total += math.log(p.a[j]) if absorbed else math.log1p(-p.a[j])
            if absorbed:
                continue
            # decay (eq. 37-38)
            expired = dies_here and v.death_cause == "expired"
            if model.lifetime == "geometric":
                h = p.delta[k]
            else:
                dist = stats.gamma(a=p.shape[k], scale=1.0 / p.rate[k])
                h = (dist.sf(age - 1) - dist.sf(age)) / dist.sf(age - 1)
            total += math.log(h) if expired else math.log1p(-h)
    return float(total)
