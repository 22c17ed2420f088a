"""The node cores of a deployed vesicle model in the emulator: the compiled engine and its read-back.

:class:`VesicleRunner` lays the node cores' tables (decoded from their table
words, so what runs is the image) out for the compiled mailboxes
(``nvppl/_engine/mailbox.pyx``), advances them tick by tick and collects every
birth, move, dock and death as :class:`~nvppl.Traces`. Draws are those of
:mod:`nvppl.backend.vesicle_reference`: unit ``ℓ · K + κ`` of "core"
2⁴⁰ + run for emission, unit = vesicle id of "core" 2⁴¹ + run for a
vesicle's four draws, so a run equals the reference event for event.

With emission from the on-chip spike rate, the runner also carries the
counted neurons' spikes to the node cores: every spike of a rate source at
tick t − 1 is one SPIKE packet to the core of its node, and the counts per
node enter the engine's rate window before emission at tick t.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._extension import load
from ..errors import CapacityError
from .image import ImageError
from .isa.generator import domain_key
from .noc import PacketClass, flits_per_packet, hop_distance
from .vesicle_reference import EMISSION_DOMAIN, VESICLE_DOMAIN, traces_from_rows

__all__ = ["MAX_IDS", "VesicleRunner"]

MAX_IDS = 1 << 24  # the id field of a vesicle word


class VesicleRunner:
    """Runs the node cores of ``prog.vesicles`` (see the module docstring).

    ``layout`` (the emulator's :class:`~nvppl.backend.layout.Layout`) is needed
    for emission from the spike rate: it locates the counted neurons.
    """

    def __init__(self, prog, layout=None):
        ves = prog.vesicles
        self.prog = prog
        self.model = model = ves.model
        self.tables = tables = ves.tables()
        cand = np.asarray(model.substrate.candidates, dtype=np.int64)
        self.node_core = ves.node_core
        chip = prog.chip
        self.core_id = np.array([chip.core_id(c.x, c.y) for c in ves.cores], dtype=np.int64)
        hops = hop_distance(chip, self.core_id[:, None], self.core_id[None, :])
        arrays = dict(emission=tables.emission, migration=tables.migration, cand=cand,
                      ncand=(cand >= 0).sum(axis=1), dock=tables.dock, absorb=tables.absorb, decay=tables.decay,
                      budget=tables.budget, node_core=self.node_core.astype(np.int32), hops=hops.astype(np.int32))
        self.mailbox_words = prog.chip.mailbox_words
        sizes = dict(mailbox_words=self.mailbox_words, max_id=MAX_IDS)
        self.rate = tables.rate
        if self.rate is not None:
            self._rate_sources(layout, chip, hops)
            arrays.update(rate_emission=self.rate.emission, rate_base=self.rate.base, rate_buckets=self.rate.buckets)
            sizes.update(rate_window=self.rate.window, rate_shift=self.rate.shift)
        self._mod = load("nvppl._engine.mailbox")
        self.engine = self._mod.Engine(arrays, sizes)
        K = model.n_types
        self.port_of = np.full(model.n_nodes * K, -1, dtype=np.int64)
        ports = np.asarray(ves.ports, dtype=np.int64).reshape(-1, 2)
        self.port_of[ports[:, 0] * K + ports[:, 1]] = np.arange(len(ports))
        self.ports = ports
        self.logs = []
        self.sink_deaths = 0

    def _rate_sources(self, layout, chip, hops):
        """The node counted for every neuron of the layout (−1: none) and the hops of its spike to the node core."""
        if layout is None:
            raise ValueError("the vesicle model emits from the spike rate of its nodes: it runs with its spiking "
                             "network only")
        cid, local, node = self.prog.vesicles.rate_sources()
        index_of = {int(c): k for k, c in enumerate(layout.core_id)}
        missing = [int(c) for c in np.unique(cid) if int(c) not in index_of]
        if missing:
            raise ImageError(f"a rate-source word names core id {missing[0]}, which holds no neurons")
        core = np.array([index_of[int(c)] for c in cid], dtype=np.int64)
        if np.any(local >= np.diff(layout.nbase)[core]):
            raise ImageError("a rate-source word names a neuron beyond its core's neuron count")
        g = layout.nbase[core] + local
        self.count_node = np.full(layout.N, -1, dtype=np.int64)
        self.count_node[g] = node
        self.count_hops = np.zeros(layout.N, dtype=np.int64)
        self.count_hops[g] = hop_distance(chip, layout.core_id[core], self.core_id[self.node_core[node]])
        self.rate_traffic = np.zeros(2, dtype=np.int64)   # packets, hops

    def reset(self) -> None:
        """Forget earlier runs (tables, counters)."""
        self.logs = []
        self.sink_deaths = 0
        self.engine.counters[:] = 0
        if self.rate is not None:
            self.rate_traffic[:] = 0

    def start(self, run: int, seed: int) -> None:
        self.run = run
        self.engine.start(domain_key(seed, EMISSION_DOMAIN + run), domain_key(seed, VESICLE_DOMAIN + run))
        self.marks = [(0, 0, 0)]   # events logged after each tick

    def tick(self, t: int, fired=None) -> np.ndarray:
        """Advance the node cores by one tick; the release ports hit by this tick's docks.

        ``fired``: the neurons (layout indices) that spiked at tick t − 1, for
        the rate window (None at tick 0 or without one).
        """
        counts = None
        if self.rate is not None:
            n = self.model.n_nodes
            if fired is None or not len(fired):
                counts = np.zeros(n, dtype=np.int64)
            else:
                nodes = self.count_node[fired]
                counted = nodes >= 0
                counts = np.bincount(nodes[counted], minlength=n)
                self.rate_traffic += (int(counted.sum()), int(self.count_hops[fired].sum()))
        res = self.engine.tick(t, counts)
        if res[0] == "error":
            self._raise(res, t)
        s0 = self.marks[-1][1]
        self.marks.append(res)
        if not len(self.ports):
            return np.zeros(0, np.int64)
        log = self.engine.log
        dock = log["s_docked"][s0:res[1]].view(bool)
        if not dock.any():
            return np.zeros(0, np.int64)
        v = log["s_vid"][s0:res[1]][dock]
        p = self.port_of[log["s_to"][s0:res[1]][dock].astype(np.int64) * self.model.n_types + log["b_type"][v]]
        return np.sort(p[p >= 0])

    def finish(self, n_ticks: int) -> None:
        """Close the run: keep its log (the vesicles still resident are censored at the last tick)."""
        log = self.engine.log
        marks = np.asarray(self.marks, dtype=np.int64)
        nb, ns, nd = marks[-1]
        kept = {name: log[name][:count].copy() for name, count in (
            ("b_type", nb), ("b_node", nb), ("s_vid", ns), ("s_from", ns), ("s_to", ns), ("s_docked", ns),
            ("d_vid", nd), ("d_cause", nd))}
        self.sink_deaths += int((kept["d_cause"] == 1).sum())
        self.logs.append((self.run, n_ticks, np.diff(marks, axis=0), kept, self.engine.live()[0]))

    @staticmethod
    def _frames(causes, run, n_ticks, per_tick, log, live):
        ticks = np.arange(len(per_tick))
        vesicles, steps = [], None
        if len(log["b_type"]):
            vesicles.append(pd.DataFrame({
                "run": run, "vesicle": np.arange(len(log["b_type"])), "type": log["b_type"].astype(np.int64),
                "birth_step": np.repeat(ticks, per_tick[:, 0]), "birth_node": log["b_node"].astype(np.int64)}))
        if len(log["s_vid"]):
            steps = pd.DataFrame({
                "run": run, "vesicle": log["s_vid"], "step": np.repeat(ticks, per_tick[:, 1]),
                "node_from": log["s_from"].astype(np.int64), "node_to": log["s_to"].astype(np.int64),
                "docked": log["s_docked"].astype(bool)})
        cause = np.concatenate([log["d_cause"], np.zeros(len(live), np.int32)])
        if len(cause):
            vesicles.append(pd.DataFrame({
                "run": run, "vesicle": np.concatenate([log["d_vid"], live]),
                "death_step": np.concatenate([np.repeat(ticks, per_tick[:, 2]), np.full(len(live), n_ticks - 1)]),
                "death_cause": np.array(causes, dtype=object)[cause]}))
        return vesicles, steps

    def traces_builder(self, n_ticks: int, n_runs: int):
        """A function that builds the Traces of the runs so far (on first use: it validates every row)."""
        model, logs, budget, causes = self.model, list(self.logs), self.tables.budget, self._mod.CAUSES

        def build():
            frames_v, frames_s = [], []
            for entry in logs:
                v, s = VesicleRunner._frames(causes, *entry)
                frames_v += v
                if s is not None:
                    frames_s.append(s)
            labels = np.asarray(model.substrate.labels, dtype=object)
            return traces_from_rows(model, frames_v, frames_s, n_ticks, n_runs, budget, labels)
        return build

    def counters(self, n_ticks: int, n_runs: int) -> dict:
        c = dict(zip(self._mod.COUNTERS, (int(v) for v in self.engine.counters)))
        c["updates"] = c["steps"] + self.sink_deaths + self.model.n_nodes * self.model.n_types * n_ticks * n_runs
        packets, hops = (int(v) for v in self.rate_traffic) if self.rate is not None else (0, 0)
        c.update(rate_packets=packets, rate_flits=packets * flits_per_packet(PacketClass.SPIKE), rate_hops=hops)
        return c

    def _raise(self, res, t):
        _, code, where = res
        if code == 1:
            core = self.prog.vesicles.cores[where]
            raise CapacityError(
                f"mailbox: run {self.run}, tick {t}: node core ({core.x}, {core.y}) would hold more vesicles than "
                f"its mailbox of {self.mailbox_words} words; deploy with fewer nodes per core (nodes_per_core=) or "
                "a chip with a larger mailbox_words")
        if code == 4:
            core = self.prog.vesicles.cores[self.node_core[where]]
            raise ImageError(f"run {self.run}, tick {t}: node core ({core.x}, {core.y}), node {where}: the window "
                             "count has no rate emission table (the node has more rate sources than its tables "
                             "cover)")
        if code == 3:
            node, kappa = divmod(where, self.model.n_types)
            core = self.prog.vesicles.cores[self.node_core[node]]
            raise ImageError(f"run {self.run}, tick {t}: node core ({core.x}, {core.y}), node {node}, type {kappa}: "
                             "the cumulative migration thresholds have no entry above the draw (they must end at "
                             "2**16); the table memory does not hold a valid deployment")
        raise CapacityError(f"vesicle ids: run {self.run}, tick {t}: {where} vesicles born in one run; the id field "
                            f"of a vesicle word holds {MAX_IDS}")
