"""Bridge between nvppl's Python objects and the compiled engines.

:func:`core_model` lays out one (model, parameters, covariates) as the arrays
the engines read (a :class:`nvppl._engine.model.CoreModel`);
:func:`simulate_compiled` runs the compiled simulation and builds
:class:`~nvppl.traces.Traces` directly from its arrays; :func:`engine` imports
one engine, saying how to build it when it is missing.
"""

from __future__ import annotations

import os

import numpy as np
from scipy.special import expit

from .._extension import load
from .._validate import seed64, thread_count
from ..traces import Traces

__all__ = ["engine", "core_model", "simulate_compiled"]


def engine(name: str):
    """The compiled engine ``nvppl._engine.<name>`` (``"model"``, ``"simulate"``,
    ``"filter"``, ``"relax"``); raises ImportError saying how to build it."""
    return load(f"nvppl._engine.{name}")


def _shared_axes(F: np.ndarray) -> np.ndarray:
    """Collapse the run and step axes of ``F`` to length 1 where every entry
    repeats (static covariates), so the tables stay small."""
    if F.shape[0] > 1 and np.array_equal(F, np.broadcast_to(F[:1], F.shape)):
        F = F[:1]
    if F.shape[1] > 1 and np.array_equal(F, np.broadcast_to(F[:, :1], F.shape)):
        F = F[:, :1]
    return F


def core_model(model, params, features):
    """The compiled core's view of ``model`` with ``params`` and covariates
    ``features (R, T, n, p)`` (a ``_core.CoreModel``)."""
    p = params
    sub = model.substrate
    n, K, M, dc = sub.n_nodes, model.n_types, sub.max_candidates, model.content_dim
    F = np.asarray(features, dtype=np.float64)
    F = F[:1, :1] if F.shape[-1] == 0 else _shared_axes(F)
    X = np.concatenate([np.ones(F.shape[:-1] + (1,)), F], axis=-1)
    z = np.einsum("rtnd,kd->rtnk", X, np.asarray(p.u, dtype=np.float64))
    lam = np.asarray(p.r_max) * expit(z) if model.emission_link == "sigmoid" else np.exp(z)
    zd = np.einsum("rtnd,kd->rtnk", X, np.asarray(p.w, dtype=np.float64))
    dock = zd if model.content_dependent_docking else expit(zd)
    score = np.einsum("rtnp,kp->rtnk", F, np.asarray(p.v)) if model.tilted and model.covariate_dim else \
        np.zeros_like(lam) if model.tilted else np.zeros(1)
    if dc:
        cloc = np.asarray(p.content_mean)[None, None, None] + np.einsum("rtnp,kpd->rtnkd", F, np.asarray(p.content_B))
    else:
        cloc = np.zeros(1)
    T = np.asarray(p.T, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        logT = np.where(T > 0, np.log(np.where(T > 0, T, 1.0)), -np.inf)
    budget = np.where(np.isinf(model.budget), -1, model.budget).astype(np.int32)
    arrays = {
        "cand": sub.candidates, "ncand": sub.n_candidates, "T": T, "logT": logT, "lam": lam,
        "elam": np.exp(-lam), "dock": dock, "score": score, "cloc": cloc,
        "delta": p.delta if p.delta is not None else np.zeros(K),
        "shape": p.shape if p.shape is not None else np.ones(K),
        "rate": p.rate if p.rate is not None else np.ones(K),
        "gamma": model.gamma, "cscale": p.content_scale if dc else np.zeros(1),
        "wc": p.w_c if dc and p.w_c is not None else np.zeros(max(K * dc, 1)),
        "budget": budget, "Q": p.Q if dc and model.tilted else np.zeros(max(K * n * dc, 1)),
        "absorb": p.a,
    }
    return engine("model").CoreModel(arrays, n, K, M, dc, int(model.lifetime == "countdown"), model.tilted,
                           model.content_dependent_docking, model.sigma_tau)


def simulate_compiled(model, params, features, n_steps: int, n_runs: int, key, n_threads=None) -> Traces:
    """Simulate with the compiled core (see :func:`nvppl.simulate`)."""
    cm = core_model(model, params, features)
    v, s = engine("simulate").simulate(cm, seed64(key), n_runs, n_steps, thread_count(n_threads))
    v["budget"] = model.budget[v["type"]]
    if model.lifetime != "countdown":
        del v["tau0"]
    F = features if model.covariate_dim else None
    return Traces(model.substrate, n_steps, n_runs, model.n_types, v, s, F, validate=False)
