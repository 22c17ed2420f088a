"""The two-sample battery that compares two simulators of one model.

Welch t-tests of occupancy and dock counts per run, node and type; chi-square
tests of homogeneity of moves, path lengths and death causes per type;
Kolmogorov-Smirnov tests of content at birth and initial lifetimes. Used to
check that the compiled core, the NumPyro program and the emulator draw from
one distribution; ``family`` gives one model per kernel family.
"""

import networkx as nx
import numpy as np
from scipy import stats

import nvppl as nv

#: Family-wise level of one battery (Bonferroni over its tests).
ALPHA = 1e-3


# --------------------------------------------------------------------------- the families
def family(name):
    """(model, params, covariates) of one kernel family."""
    if name == "geometric":  # log link, budgets, absorption, a sink (no stay), non-uniform T
        G = nx.DiGraph([(0, 1), (0, 2), (1, 2), (2, 0), (2, 3), (3, 0), (1, 4)])
        sub = nv.Substrate.from_networkx(G, allow_stay=False)
        model = nv.VesicleModel(sub, n_types=2, emission_link="log", budget=[2, None])
        p = model.default_params()
        T = np.array(p.T)
        T[:, 0, :2] = [[0.8, 0.2], [0.3, 0.7]]
        T[:, 1, :2] = [[0.6, 0.4], [0.5, 0.5]]
        params = p.replace(u=np.array([[-0.7], [-1.2]]), T=T, w=np.array([[-0.5], [-1.5]]),
                           a=np.array([0.0, 0.1, 0.0, 0.2, 0.0]), delta=np.array([0.1, 0.05]))
        return model, params, None
    if name == "countdown":  # Gamma lifetimes with noise, budget 1 on one type
        sub = nv.Substrate.from_networkx(nx.cycle_graph(4))
        model = nv.VesicleModel(sub, n_types=2, lifetime="countdown", sigma_tau=0.4, budget=[1, None])
        params = model.default_params().replace(shape=np.array([2.0, 4.0]), rate=np.array([0.4, 0.5]),
                                                w=np.array([[-1.0], [-2.0]]), a=np.array([0.05, 0.0, 0.0, 0.1]))
        return model, params, None
    if name == "content":  # covariates in emission/docking, content, tilt (v and Q), content-dependent docking
        G = nx.DiGraph([(0, 1), (0, 2), (1, 2), (2, 0), (2, 3), (3, 0)])
        sub = nv.Substrate.from_networkx(G)
        model = nv.VesicleModel(sub, n_types=2, content_dim=2, covariate_dim=1, tilt=True, gamma=[1.0, 0.5])
        F = np.random.default_rng(3).normal(size=(20, 4, 1))  # time-varying, shared by the runs
        params = model.default_params().replace(
            u=np.array([[-0.5, 0.8], [-1.0, -0.5]]), w=np.array([[-1.0, 0.5], [-1.5, 0.0]]),
            w_c=np.array([[0.6, -0.4], [0.0, 0.3]]), v=np.array([[0.7], [-0.4]]),
            Q=np.random.default_rng(4).normal(size=(2, 4, 2)), content_mean=np.array([[1.0, -1.0], [0.0, 0.5]]),
            content_B=np.array([[[0.5, 0.0]], [[0.0, -1.0]]]), content_scale=np.array([[0.5, 1.0], [1.5, 0.3]]),
            delta=np.array([0.12, 0.08]))
        return model, params, F
    raise KeyError(name)


def battery(model, a: nv.Traces, b: nv.Traces) -> dict:
    """p-values of the two-sample tests between traces ``a`` and ``b``."""
    pv = {}
    for what, get in (("occupancy", lambda tr: tr.counts().sum(1)), ("docks", lambda tr: tr.dock_counts().sum(1))):
        xa, xb = get(a), get(b)  # (R, n, K)
        for i in range(model.n_nodes):
            for k in range(model.n_types):
                if xa[:, i, k].std() + xb[:, i, k].std() > 0:
                    pv[f"{what}[{i},{k}]"] = stats.ttest_ind(xa[:, i, k], xb[:, i, k], equal_var=False).pvalue
    per_vesicle = [_per_vesicle(tr) for tr in (a, b)]
    for k in range(model.n_types):
        va, vb = (v[v.type == k] for v in per_vesicle)
        for col in ("moves", "away", "death_cause"):
            pv[f"{col}[{k}]"] = _homogeneity(va[col].to_numpy(), vb[col].to_numpy())
        cols = [f"content_{d}" for d in range(model.content_dim)] + (["tau0"] if "tau0" in va else [])
        for col in cols:
            pv[f"{col}[{k}]"] = stats.ks_2samp(va[col], vb[col]).pvalue
    return pv


def _per_vesicle(tr):
    v = tr.vesicles.copy()
    s = tr.steps
    key = ["run", "vesicle"]
    moves = s.groupby(key).size().rename("moves")
    away = (s.node_from != s.node_to).groupby([s.run, s.vesicle]).sum().rename("away")
    v = v.join(moves, on=key).join(away, on=key)
    v[["moves", "away"]] = v[["moves", "away"]].fillna(0).astype(int)
    v["death_cause"] = v.death_cause.astype(str)
    return v


def _homogeneity(xa, xb):
    """Chi-square test of homogeneity of two samples of a discrete variable (cells with < 5 expected pooled)."""
    values, inv = np.unique(np.concatenate([xa, xb]), return_inverse=True)
    table = np.stack([np.bincount(inv[: len(xa)], minlength=len(values)),
                      np.bincount(inv[len(xa):], minlength=len(values))])
    order = np.argsort(-table.sum(0))
    table = table[:, order]
    expected_small = table.sum(0) * min(len(xa), len(xb)) / (len(xa) + len(xb)) < 5
    if expected_small.any():
        table = np.concatenate([table[:, ~expected_small], table[:, expected_small].sum(1, keepdims=True)], 1)
    table = table[:, table.sum(0) > 0]
    if table.shape[1] < 2:
        return 1.0
    return stats.chi2_contingency(table)[1]
