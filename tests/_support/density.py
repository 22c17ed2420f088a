"""Helpers of tests/test_density.py: cell sums over simulated traces and the
z-scores comparing them with the density."""

import networkx as nx
import numpy as np

import nvppl as nv


def random_digraph_substrate(n=24, p=0.12, seed=3, allow_stay=False):
    """A sparse random digraph; without ``allow_stay`` the nodes of out-degree 0 are sinks."""
    return nv.Substrate.from_networkx(nx.gnp_random_graph(n, p, seed=seed, directed=True), allow_stay=allow_stay)


def random_T(sub, n_types, rng):
    """Non-uniform migration rows on the candidate slots (all zero on sinks)."""
    mask = sub.candidate_mask[None]
    T = np.where(mask, rng.uniform(0.2, 1.0, (n_types,) + mask.shape[1:]), 0.0)
    s = T.sum(-1, keepdims=True)
    return np.where(s > 0, T / np.where(s > 0, s, 1.0), 0.0)


def dense_transpose(sub, T_row):
    """Dense ``Tᵀ`` (n × n) of one type's migration rows ``(n, M)``: ``(Tᵀ x)[j] = Σ_i T[i, j] x[i]``."""
    n = sub.n_nodes
    P = np.zeros((n, n))
    for i in range(n):
        for m, j in enumerate(sub.candidates[i]):
            if j >= 0:
                P[i, j] += T_row[i, m]
    return P.T


def _step_table(traces, sub):
    """Steps joined with their vesicle's type, content and death, node indices instead of labels."""
    index = {label: i for i, label in enumerate(sub.labels)}
    s = traces.steps.merge(traces.vesicles, on=["run", "vesicle"])
    s = s[s.node_to.notna()]
    node = s.node_to.map(index).to_numpy().astype(np.int64)
    # present after step t unless removed in step t (a censored vesicle was not removed)
    present = ((s.step != s.death_step) | (s.death_cause == "censored")).to_numpy()
    return s, node, present


def cell_sums(traces, sub, n_types, values=None, docked=False):
    """Sum over vesicles of ``values`` per (run, step, node, type[, column]).

    ``docked=False``: the vesicles present after each step; ``docked=True``: the
    vesicles that dock during the step. ``values`` is ``None`` (count them), a list
    of column names of ``traces.vesicles`` (one output column each) or a function
    of the joined step table returning an array ``(rows, d)``.
    """
    s, node, present = _step_table(traces, sub)
    sel = s.docked.to_numpy().astype(bool) if docked else present
    R, T = traces.n_runs, traces.n_steps
    n, K = sub.n_nodes, n_types
    flat = ((s.run.to_numpy() * T + s.step.to_numpy()) * n + node) * K + s.type.to_numpy()
    flat = flat[sel]
    if values is None:
        return np.bincount(flat, minlength=R * T * n * K).reshape(R, T, n, K).astype(float)
    w = s[values].to_numpy() if isinstance(values, list) else np.asarray(values(s))
    w = w[sel]
    out = np.stack([np.bincount(flat, weights=w[:, d], minlength=R * T * n * K) for d in range(w.shape[1])], -1)
    return out.reshape(R, T, n, K, w.shape[1])


def z_scores(samples, expected, var_floor):
    """``(mean over runs − expected) / SE`` per cell, with ``SE² = max(s², floor) / R``.

    ``s²`` is the sample variance over runs (axis 0). The floor is a lower bound
    on the true variance of the cell's value: ``ρ`` for a Poisson count (the
    density's one-time marginal), and for a compound-Poisson sum see
    :func:`compound_poisson_floor`. Without it, a cell with few events whose draw
    falls low also has a small sample variance, and its z-score is much
    heavier-tailed than normal: about a third of the seeds of a 1300-cell
    comparison then exceed |z| = 4, instead of a few percent.
    """
    R = samples.shape[0]
    mean = samples.mean(0)
    var = samples.var(0, ddof=1)
    se = np.sqrt(np.maximum(var, var_floor) / R)
    z = np.where(se > 0, (mean - expected) / np.where(se > 0, se, 1.0), 0.0)
    return z, var


def compound_poisson_floor(mean, rate, noise_var=0.0):
    """Least variance of a sum over a Poisson number (mean ``rate``) of independent
    values ``x`` whose sum has mean ``mean``, when each ``x`` has conditional
    variance at least ``noise_var`` around its own location:
    ``rate·E[x²] ≥ rate·(E[x]² + noise_var) = mean²/rate + rate·noise_var``
    (0 where the rate is 0)."""
    rate = np.broadcast_to(rate, np.shape(mean))
    safe = np.where(rate > 0, rate, 1.0)
    return np.where(rate > 0, mean ** 2 / safe + rate * noise_var, 0.0)
