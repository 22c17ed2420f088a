"""``simulate``: sample vesicle trajectories as :class:`~nvppl.traces.Traces`."""

from __future__ import annotations

import functools

import jax
import numpy as np
from numpyro import handlers

from ._validate import as_jax_key, positive_int, thread_count
from .covariates import model_features
from .errors import CapacityError
from .programs import ModelKey, default_capacity, life_cycle
from ._engine.bridge import simulate_compiled
from .traces import Traces

__all__ = ["simulate", "records_to_traces", "BACKENDS"]

BACKENDS = ("auto", "numpyro", "compiled")


def _sampler(model, n_steps: int, capacity: int):
    return _cached_sampler(ModelKey(model), n_steps, capacity)


@functools.lru_cache(maxsize=32)
def _cached_sampler(key, n_steps: int, capacity: int):
    def run(rng, F, params):
        final, records = handlers.seed(life_cycle, rng)(key.model, F, n_steps, capacity, params)
        return final.overflow_step, records

    return jax.jit(run)


def simulate(model, params, n_steps: int = 200, n_runs: int = 4, key=0, covariates=None,
             backend: str = "auto", n_threads: int | None = None, capacity: int | None = None) -> Traces:
    """Simulate independent runs of the vesicle process (:ref:`design-model`).

    Parameters
    ----------
    model : VesicleModel
    params : Params
        Parameters (validated against the model).
    n_steps : int
        Steps per run.
    n_runs : int
        Independent runs.
    key : int or jax key
        Random key; the same key gives the same traces.
    covariates : array, optional
        User covariates ``F``: ``(n, p)``, ``(n_steps, n, p)`` or
        ``(n_runs, n_steps, n, p)``.
    backend : {"auto", "numpyro", "compiled"}
        ``"compiled"`` runs the compiled engine (:mod:`nvppl._engine`): one task per
        (run, birth step), each vesicle followed from birth to removal, tasks in
        parallel over threads with one random stream each; no capacity limit.
        ``"numpyro"`` runs :func:`nvppl.programs.life_cycle`. ``"auto"`` (the
        default) is the compiled core. Both draw from the same distribution but
        not the same numbers.
    n_threads : int, optional
        Threads of the compiled backend (default: every core; the result does
        not depend on it). Ignored by the NumPyro backend.
    capacity : int, optional
        Vesicle slots per run of the NumPyro backend (default: from the
        parameters with a wide margin, see :func:`nvppl.programs.default_capacity`).
        The compiled backend has no such limit and takes no capacity.

    Returns
    -------
    Traces

    Raises
    ------
    CapacityError
        If more vesicles are alive at once than ``capacity`` (never truncated).

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(5)), n_types=2)
    >>> traces = nv.simulate(model, model.default_params(), n_steps=50, n_runs=2, key=0)
    >>> traces.n_runs, traces.n_steps
    (2, 50)
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if n_threads is not None:
        thread_count(n_threads)  # validated for either backend
    n_steps, n_runs = positive_int(n_steps, "n_steps"), positive_int(n_runs, "n_runs")
    params = model.check_params(params)
    F = model_features(model, covariates, n_runs, n_steps)
    if backend in ("auto", "compiled"):
        if capacity is not None:
            raise ValueError("capacity applies to backend='numpyro' only; the compiled backend has no capacity limit")
        return simulate_compiled(model, params, F, n_steps, n_runs, key, n_threads)
    if capacity is None:
        capacity = default_capacity(model, params, F, n_steps)
    capacity = positive_int(capacity, "capacity")
    overflow, rec = _sampler(model, n_steps, capacity)(as_jax_key(key), F, jax.tree.map(np.asarray, params))
    overflow = np.asarray(overflow)
    if (overflow >= 0).any():
        r = int(np.flatnonzero(overflow >= 0)[0])
        raise CapacityError(
            f"run {r}, step {int(overflow[r])}: more than {capacity} vesicles alive at once; nothing was "
            f"truncated. Pass a larger capacity, e.g. simulate(..., capacity={2 * capacity})")
    rec = jax.tree.map(np.asarray, rec)
    return records_to_traces(model, rec, F if model.covariate_dim else None)


def records_to_traces(model, rec, features) -> Traces:
    """Turn the step records of :func:`~nvppl.programs.life_cycle` (time first) into Traces."""
    T, R, C = rec.vid.shape
    tb, rb, cb = np.nonzero(rec.new)
    counts = np.bincount(rb, minlength=R)
    offset = np.concatenate([[0], np.cumsum(counts)[:-1]])
    vid_b = rec.vid[tb, rb, cb].astype(np.int64)
    row = offset[rb] + vid_b
    N = len(row)
    v = {
        "run": np.empty(N, np.int64), "vesicle": np.empty(N, np.int64), "type": np.empty(N, np.int64),
        "birth_step": np.empty(N, np.int64), "birth_node": np.empty(N, np.int64),
        "death_step": np.full(N, T - 1, np.int64), "death_cause": np.zeros(N, np.int64),
        "content": np.empty((N, model.content_dim)),
    }
    v["run"][row], v["vesicle"][row], v["type"][row] = rb, vid_b, rec.vtype[tb, rb, cb]
    v["birth_step"][row], v["birth_node"][row] = tb, rec.node_from[tb, rb, cb]
    v["content"][row] = rec.content[tb, rb, cb]
    v["budget"] = model.budget[v["type"]]
    if model.lifetime == "countdown":
        v["tau0"] = np.empty(N)
        v["tau0"][row] = rec.tau0[tb, rb, cb]
    td, rd, cd = np.nonzero(rec.cause > 0)
    drow = offset[rd] + rec.vid[td, rd, cd]
    v["death_step"][drow], v["death_cause"][drow] = td, rec.cause[td, rd, cd]

    ts, rs, cs = np.nonzero((rec.vid >= 0) & (rec.node_to >= 0))
    srow = offset[rs] + rec.vid[ts, rs, cs]
    order = np.argsort(srow, kind="stable")  # records are time-ordered, so steps stay sorted
    ts, rs, cs, srow = ts[order], rs[order], cs[order], srow[order]
    s = {"vrow": srow, "step": ts, "node_from": rec.node_from[ts, rs, cs],
         "node_to": rec.node_to[ts, rs, cs], "docked": rec.docked[ts, rs, cs]}
    return Traces(model.substrate, T, R, model.n_types, v, s, features)
