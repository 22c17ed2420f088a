"""The node cores of a deployed vesicle model in the emulator: the compiled engine and its read-back.

:class:`VesicleRunner` lays the node cores' tables (decoded from their table
words, so what runs is the image) out for the compiled engine
(``_vesicles.pyx``), advances it tick by tick and collects every birth, move,
dock and death as :class:`~nvppl.Traces` (§2.1). Draws are those of
:mod:`nvppl.backend.vesicle_reference`: unit ``ℓ · K + κ`` of "core"
2⁴⁰ + run for emission, unit = vesicle id of "core" 2⁴¹ + run for a
vesicle's four draws, so a run equals the reference event for event.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._extension import load
from ..errors import CapacityError
from . import isa
from .vesicle_reference import EMISSION_DOMAIN, VESICLE_DOMAIN, _traces

MAX_IDS = 1 << 24  # the id field of a vesicle word


def _key(seed: int, domain: int) -> int:
    """mix(mix(seed) ^ domain): the first two rounds of :func:`nvppl.backend.isa.unit_key`."""
    s = isa.mix(np.array([seed % (1 << 64)], dtype=np.uint64))
    return int(isa.mix(s ^ np.uint64(domain))[0])


class VesicleRunner:
    """Runs the node cores of ``prog.vesicles`` (see the module docstring)."""

    def __init__(self, prog):
        ves = prog.vesicles
        self.prog = prog
        self.model = model = ves.model
        self.tables = tables = ves.tables()
        cand = np.asarray(model.substrate.candidates, dtype=np.int64)
        self.node_core = ves.node_core
        xy = np.array([(c.x, c.y) for c in ves.cores], dtype=np.int64).reshape(-1, 2)
        self.tiles = xy
        hops = np.abs(xy[:, None, 0] - xy[None, :, 0]) + np.abs(xy[:, None, 1] - xy[None, :, 1])
        arrays = dict(emission=tables.emission, migration=tables.migration, cand=cand,
                      ncand=(cand >= 0).sum(axis=1), dock=tables.dock, absorb=tables.absorb, decay=tables.decay,
                      budget=tables.budget, node_core=self.node_core.astype(np.int32), hops=hops.astype(np.int32))
        self.mailbox_words = prog.chip.mailbox_words
        self.engine = load("nvppl.backend._vesicles").Engine(arrays, dict(mailbox_words=self.mailbox_words,
                                                                         max_id=MAX_IDS))
        K = model.n_types
        self.port_of = np.full(model.n_nodes * K, -1, dtype=np.int64)
        ports = np.asarray(ves.ports, dtype=np.int64).reshape(-1, 2)
        self.port_of[ports[:, 0] * K + ports[:, 1]] = np.arange(len(ports))
        self.ports = ports
        self.frames_v, self.frames_s = [], []
        self.sink_deaths = 0

    def reset(self) -> None:
        """Forget earlier runs (tables, counters)."""
        self.frames_v, self.frames_s = [], []
        self.sink_deaths = 0
        self.engine.counters[:] = 0

    def start(self, run: int, seed: int) -> None:
        self.run = run
        self.engine.start(_key(seed, EMISSION_DOMAIN + run), _key(seed, VESICLE_DOMAIN + run))
        self.type_of = np.zeros(1024, dtype=np.int64)
        self.births, self.steps, self.deaths = [], [], []

    def tick(self, t: int) -> np.ndarray:
        """Advance the node cores by one tick; the release ports hit by this tick's docks."""
        res = self.engine.tick(t)
        if res[0] == "error":
            self._raise(res, t)
        first, b_type, b_node, s_vid, s_from, s_to, s_dock, d_vid, d_cause = res
        if len(b_type):
            end = first + len(b_type)
            if end > len(self.type_of):
                self.type_of = np.concatenate([self.type_of, np.zeros(max(end, 2 * len(self.type_of)), np.int64)])
            self.type_of[first:end] = b_type
            self.births.append((first, t, b_type, b_node))
        if len(s_vid):
            self.steps.append((t, s_vid, s_from, s_to, s_dock))
        if len(d_vid):
            self.deaths.append((t, d_vid, d_cause))
        if not len(self.ports) or not s_dock.any():
            return np.zeros(0, np.int64)
        v = s_vid[s_dock]
        p = self.port_of[s_to[s_dock].astype(np.int64) * self.model.n_types + self.type_of[v]]
        return np.sort(p[p >= 0])

    def finish(self, n_ticks: int) -> None:
        """Close the run: censor the vesicles still resident, keep the run's tables."""
        from . import _vesicles

        run = self.run
        if self.births:
            first = np.concatenate([f + np.arange(len(b)) for f, _, b, _ in self.births])
            self.frames_v.append(pd.DataFrame({
                "run": run, "vesicle": first,
                "type": np.concatenate([b for _, _, b, _ in self.births]).astype(np.int64),
                "birth_step": np.concatenate([np.full(len(b), t) for _, t, b, _ in self.births]),
                "birth_node": np.concatenate([nd for _, _, _, nd in self.births]).astype(np.int64)}))
        if self.steps:
            self.frames_s.append(pd.DataFrame({
                "run": run, "vesicle": np.concatenate([s[1] for s in self.steps]),
                "step": np.concatenate([np.full(len(s[1]), s[0]) for s in self.steps]),
                "node_from": np.concatenate([s[2] for s in self.steps]).astype(np.int64),
                "node_to": np.concatenate([s[3] for s in self.steps]).astype(np.int64),
                "docked": np.concatenate([s[4] for s in self.steps])}))
        causes = np.array(_vesicles.CAUSES, dtype=object)
        live = self.engine.live()[0]
        d_t = [np.full(len(d), t) for t, d, _ in self.deaths] + [np.full(len(live), n_ticks - 1)]
        d_v = [d for _, d, _ in self.deaths] + [live]
        d_c = [c for _, _, c in self.deaths] + [np.zeros(len(live), np.int32)]
        cause = np.concatenate(d_c)
        self.sink_deaths += int((cause == 1).sum())
        if len(cause):
            self.frames_v.append(pd.DataFrame({"run": run, "vesicle": np.concatenate(d_v),
                                               "death_step": np.concatenate(d_t), "death_cause": causes[cause]}))

    def traces(self, n_ticks: int, n_runs: int):
        labels = np.asarray(self.model.substrate.labels, dtype=object)
        return _traces(self.model, self.frames_v, self.frames_s, n_ticks, n_runs, self.tables.budget, labels)

    def counters(self, n_ticks: int, n_runs: int) -> dict:
        from . import _vesicles

        c = dict(zip(_vesicles.COUNTERS, (int(v) for v in self.engine.counters)))
        c["updates"] = c["steps"] + self.sink_deaths + self.model.n_nodes * self.model.n_types * n_ticks * n_runs
        return c

    def _raise(self, res, t):
        _, code, where = res
        if code == 1:
            core = self.prog.vesicles.cores[where]
            raise CapacityError(
                f"mailbox: run {self.run}, tick {t}: node core ({core.x}, {core.y}) would hold more vesicles than "
                f"its mailbox of {self.mailbox_words} words; deploy with fewer nodes per core (nodes_per_core=) or "
                "a chip with a larger mailbox_words")
        raise CapacityError(f"vesicle ids: run {self.run}, tick {t}: {where} vesicles born in one run; the id field "
                            f"of a vesicle word holds {MAX_IDS}")
