"""NumPy reference of the vesicle process as deployed: quantised tables and on-chip draws.

One tick follows the model's step (``docs/guide/model.rst``, "One step of the
process") on the tables of
:func:`nvppl.backend.vesicles.quantize`, with 16-bit draws of the on-chip
generator (:mod:`nvppl.backend.isa`):

1. emission: for node ℓ and type κ, the count is the number of emission-table
   entries not exceeding the draw of unit ``ℓ · K + κ`` in the emission domain
   (with emission from the spike rate, the table of the bucket of the node's
   spikes in the last W ticks); new vesicles get consecutive ids in
   (node, type) order;
2. migration: the next candidate is the first slot whose cumulative threshold
   exceeds draw 0 of the vesicle; on a sink the vesicle is removed (``sink``);
3. docking: draw 1 below the docking threshold; a finite budget drops by one
   and a vesicle left with none is removed (``depleted``);
4. absorption: draw 2 below the node's threshold (``absorbed``);
5. decay: draw 3 below the type's threshold (``expired``).

Draws are keyed by the run and the vesicle id (not by the core that holds the
vesicle), so the process does not depend on placement: the emission domain is
"core" 2⁴⁰ + run, the vesicle domain 2⁴¹ + run. The result is
:class:`~nvppl.Traces` (``docs/guide/data.rst``, "Traces"), so it can be compared with
:func:`nvppl.simulate` and refitted with :mod:`nvppl.infer`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._validate import seed64
from ..traces import Traces
from . import isa
from .vesicles import VesicleTables

EMISSION_DOMAIN = 1 << 40
VESICLE_DOMAIN = 1 << 41


class DeployedVesicles:
    """The deployed process of one run, tick by tick (see the module docstring).

    With rate tables (:mod:`nvppl.backend.vesicle_rates`), :meth:`tick` takes
    the spikes per node of the previous tick; it keeps the last W of them and
    emits from the table of the count bucket of their sum.

    Parameters
    ----------
    model : VesicleModel
    tables : VesicleTables
    seed : int
    run : int
    """

    def __init__(self, model, tables: VesicleTables, seed: int, run: int = 0):
        self.model, self.tables, self.seed, self.run = model, tables, seed, run
        self.cand = np.asarray(model.substrate.candidates)
        self.ncand = (self.cand >= 0).sum(axis=1)
        self.vid = np.zeros(0, np.int64)
        self.vtype = np.zeros(0, np.int64)
        self.node = np.zeros(0, np.int64)
        self.left = np.zeros(0, np.int64)
        self.next_id = 0
        self.vrows, self.srows = [], []
        rt = tables.rate
        self.window = None if rt is None else np.zeros((rt.window, model.n_nodes), np.int64)

    def _emission_rows(self, units):
        """The cumulative emission table of every (node, type) unit at this tick."""
        K = self.model.n_types
        rt = self.tables.rate
        if rt is None:
            return self.tables.emission[units % K]
        bucket = self.window.sum(axis=0) >> rt.shift
        node = units // K
        return rt.emission[rt.base[node] + bucket[node], units % K]

    def tick(self, t: int, counts=None):
        """One tick; returns the (node, type) of every dock. ``counts``: spikes per node at t − 1."""
        K, n = self.model.n_types, self.model.n_nodes
        tables, run = self.tables, self.run
        if self.window is not None:
            self.window = np.vstack([self.window[1:], np.zeros(n, np.int64) if counts is None
                                     else np.asarray(counts, dtype=np.int64)[None]])
        # 1. emission
        units = np.arange(n * K, dtype=np.int64)
        u = isa.draw(isa.unit_key(self.seed, EMISSION_DOMAIN + run, units, t), 0).astype(np.int64)
        born = np.repeat(units, (self._emission_rows(units) <= u[:, None]).sum(axis=1))
        m = len(born)
        new_ids = np.arange(self.next_id, self.next_id + m)
        self.next_id += m
        vid = np.concatenate([self.vid, new_ids])
        vtype = np.concatenate([self.vtype, born % K])
        node = np.concatenate([self.node, born // K])
        left = np.concatenate([self.left, tables.budget[born % K]])
        if m:
            self.vrows.append(pd.DataFrame({"run": run, "vesicle": new_ids, "type": born % K, "birth_step": t,
                                            "birth_node": born // K}))
        if not len(vid):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        h = isa.unit_key(self.seed, VESICLE_DOMAIN + run, vid, t)
        d = [isa.draw(h, k).astype(np.int64) for k in range(4)]
        # 2. migration
        cand, ncand = self.cand, self.ncand
        sink = ncand[node] == 0
        slot = np.where(sink, 0, (tables.migration[vtype, node] <= d[0][:, None]).sum(axis=1))
        to = np.where(sink, -1, cand[node, np.minimum(slot, cand.shape[1] - 1)])
        # 3. docking, 4. absorption, 5. decay (only for vesicles that did not leave through a sink)
        docked = ~sink & (d[1] < tables.dock[vtype])
        finite = left != 15
        left = np.where(docked & finite, left - 1, left)
        depleted = docked & finite & (left == 0)
        absorbed = ~sink & ~depleted & (d[2] < tables.absorb[np.maximum(to, 0)])
        expired = ~sink & ~depleted & ~absorbed & (d[3] < tables.decay[vtype])
        moved = ~sink  # a vesicle removed on a sink has no row for that step
        self.srows.append(pd.DataFrame({"run": run, "vesicle": vid[moved], "step": t, "node_from": node[moved],
                                        "node_to": to[moved], "docked": docked[moved]}))
        cause = np.select([sink, depleted, absorbed, expired], ["sink", "depleted", "absorbed", "expired"], "")
        dead = cause != ""
        if dead.any():
            self.vrows.append(pd.DataFrame({"run": run, "vesicle": vid[dead], "death_step": t,
                                            "death_cause": cause[dead]}))
        keep = ~dead
        self.vid, self.vtype, self.node, self.left = vid[keep], vtype[keep], to[keep], left[keep]
        return to[docked], vtype[docked]

    def finish(self, n_ticks: int) -> None:
        """Censor the vesicles alive after the last tick."""
        if len(self.vid):
            self.vrows.append(pd.DataFrame({"run": self.run, "vesicle": self.vid, "death_step": n_ticks - 1,
                                            "death_cause": "censored"}))


def simulate_vesicles(model, tables: VesicleTables, n_ticks: int, n_runs: int = 1, key=0) -> Traces:
    """Vesicle traces of the deployed process (see the module docstring).

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> from nvppl.backend.vesicles import quantize
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(5)), n_types=1)
    >>> tables, deployed, _ = quantize(model, model.default_params())
    >>> traces = simulate_vesicles(model, tables, n_ticks=20, n_runs=2, key=0)
    >>> traces.n_runs, set(traces.vesicles["death_cause"]) <= {"expired", "censored", "depleted"}
    (2, True)
    """
    if tables.rate is not None:
        raise ValueError("the tables emit from the spike rate of a network: run them coupled to it "
                         "(nvppl.backend.coupled_reference.simulate_coupled)")
    seed = seed64(key)
    labels = np.asarray(model.substrate.labels, dtype=object)
    vrows, srows = [], []
    for run in range(n_runs):
        proc = DeployedVesicles(model, tables, seed, run)
        for t in range(n_ticks):
            proc.tick(t)
        proc.finish(n_ticks)
        vrows += proc.vrows
        srows += proc.srows
    return traces_from_rows(model, vrows, srows, n_ticks, n_runs, tables.budget, labels)


def traces_from_rows(model, vrows, srows, n_ticks, n_runs, budget, labels) -> Traces:
    """:class:`~nvppl.Traces` from the events of a deployed process, as DataFrames.

    Parameters
    ----------
    model : VesicleModel
    vrows : list of pandas.DataFrame
        Births (``run``, ``vesicle``, ``type``, ``birth_step``, ``birth_node``)
        and deaths (``run``, ``vesicle``, ``death_step``, ``death_cause``),
        nodes as indices.
    srows : list of pandas.DataFrame
        Steps (``run``, ``vesicle``, ``step``, ``node_from``, ``node_to``,
        ``docked``), nodes as indices.
    n_ticks, n_runs : int
    budget : numpy.ndarray of int, (K,)
        Releases per vesicle of each type, 15 for unlimited.
    labels : numpy.ndarray of object
        The node labels of the substrate.
    """
    frames = pd.concat(vrows, ignore_index=True) if vrows else pd.DataFrame(
        columns=["run", "vesicle", "type", "birth_step", "birth_node", "death_step", "death_cause"])
    births = frames.dropna(subset=["type"])[["run", "vesicle", "type", "birth_step", "birth_node"]]
    deaths = frames.dropna(subset=["death_cause"])[["run", "vesicle", "death_step", "death_cause"]]
    vesicles = births.merge(deaths, on=["run", "vesicle"], how="left").astype(
        {"type": np.int64, "birth_step": np.int64, "birth_node": np.int64, "death_step": np.int64})
    b = budget[vesicles["type"].to_numpy()]
    vesicles.insert(5, "budget", np.where(b == 15, np.inf, b).astype(float))
    vesicles["birth_node"] = labels[vesicles["birth_node"].to_numpy()]
    steps = pd.concat(srows, ignore_index=True) if srows else pd.DataFrame(
        columns=["run", "vesicle", "step", "node_from", "node_to", "docked"])
    steps["node_from"] = labels[steps["node_from"].to_numpy(dtype=np.int64)]
    steps["node_to"] = labels[steps["node_to"].to_numpy(dtype=np.int64)]
    vesicles = vesicles.sort_values(["run", "vesicle"], ignore_index=True)
    steps = steps.sort_values(["run", "vesicle", "step"], ignore_index=True)
    return Traces.from_dataframes(vesicles, steps, model.substrate, n_steps=n_ticks, n_runs=n_runs,
                                  n_types=model.n_types)
