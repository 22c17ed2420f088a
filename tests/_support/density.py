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


#: A 4-node digraph with stays: every node has two or three candidates (node 2 and 3: two).
FOUR_NODES = nx.DiGraph([(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3)])


def content_case(name, n_steps=12):
    """A model on :data:`FOUR_NODES` whose docking or migration depends on content strongly.

    ``"docking"``: d_c = 1, docking weight w_c = 2.5, content sd σ_c = 2 (so the
    docking logit varies by w_c·σ_c = 5 between vesicles), budget 1 (a dock removes).
    ``"tilt"``: d_c = 1, σ_c = 2, content tilt Q = ±2.5 on alternate nodes: vesicles
    of positive content head for nodes 0 and 2, the others for 1 and 3.
    ``"countdown-2d"``: d_c = 2, w_c = (2, −1.5), countdown lifetimes and a budget of 2.
    ``"covariates"`` / ``"covariates-static"``: d_c = 1, w_c = 2.5, σ_c = 1 and a birth
    mean that depends on one covariate (B = 1.5, F standard normal, changing over time
    or not); docking also depends on the covariate.
    Returns ``(model, params, F)`` (``F`` None without covariates)."""
    sub = nv.Substrate.from_networkx(FOUR_NODES)
    base = dict(u=np.array([[1.0]]), r_max=np.array([2.0]), w=np.array([[-2.0]]), content_scale=np.array([[2.0]]))
    F = None
    if name == "docking":
        model = nv.VesicleModel(sub, n_types=1, content_dim=1, budget=1, priors={"w_c": np.array([[2.5]])})
        params = model.default_params().replace(delta=np.array([0.05]), content_mean=np.array([[-0.5]]), **base)
    elif name == "tilt":
        model = nv.VesicleModel(sub, n_types=1, content_dim=1, tilt=True, priors={"w_c": 0.0, "v": 0.0})
        params = model.default_params().replace(delta=np.array([0.05]), content_mean=np.array([[0.0]]),
                                                Q=np.array([[[2.5], [-2.5], [2.5], [-2.5]]]), **base)
    elif name == "countdown-2d":
        model = nv.VesicleModel(sub, n_types=1, content_dim=2, budget=2, lifetime="countdown",
                                priors={"w_c": np.array([[2.0, -1.5]])})
        params = model.default_params().replace(shape=np.array([3.0]), rate=np.array([0.4]),
                                                content_mean=np.array([[-0.5, 0.3]]),
                                                **{**base, "content_scale": np.array([[2.0, 1.5]])})
    elif name in ("covariates", "covariates-static"):
        model = nv.VesicleModel(sub, n_types=1, content_dim=1, covariate_dim=1, budget=1,
                                priors={"w_c": np.array([[2.5]])})
        rng = np.random.default_rng(0)
        F = rng.normal(size=(n_steps, 4, 1)) if name == "covariates" else rng.normal(size=(4, 1))
        params = model.default_params().replace(
            delta=np.array([0.05]), content_mean=np.array([[-0.5]]), content_B=np.array([[[1.5]]]),
            u=np.array([[1.0, 0.0]]), r_max=np.array([2.0]), w=np.array([[-2.0, 0.5]]), content_scale=np.array([[1.0]]))
    else:
        raise ValueError(name)
    return model, params, F
