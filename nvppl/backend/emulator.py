"""The event-driven chip emulator.

:class:`Emulator` runs a :class:`~nvppl.backend.image.ChipProgram` tick by tick
(``docs/guide/emulator.rst``, "One tick"). The work per tick is proportional
to the events: packets delivered, neurons that are not at rest, plastic
synapses whose traces are non-zero. The hot loop is compiled
(``_emulator.pyx``); this module lays the program's memory out for it and reads
the results back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._extension import load
from .._validate import seed64
from . import isa, noc
from .image import ChipProgram, field as _field, signed

OUT_DTYPE = np.dtype([("syn", "<i8"), ("count", "<i4"), ("hops", "<i2"), ("flits", "<i2")])
SYN_DTYPE = np.dtype([("target", "<i4"), ("weight", "<i2"), ("reward", "u1"), ("plastic", "u1")])
_FLITS = np.array([noc.flits_per_packet(c) for c in sorted(noc.PacketClass)], dtype=np.int32)  # by class


class Layout:
    """The program's memory in global numbering (cores in order, then neurons, axons, synapses)."""

    def __init__(self, prog: ChipProgram):
        chip = prog.chip
        self.prog = prog
        cores = prog.cores
        nc = len(cores)
        self.n_cores = nc
        n_per = np.array([c.n_neurons for c in cores], dtype=np.int64)
        self.nbase = np.concatenate([[0], np.cumsum(n_per)]).astype(np.int64)
        self.N = int(self.nbase[-1])
        self.core_id = np.array([chip.core_id(c.x, c.y) for c in cores], dtype=np.int64)
        index_of = np.full(chip.width * chip.height, -1, dtype=np.int64)
        index_of[self.core_id] = np.arange(nc)
        self.ncore = np.repeat(np.arange(nc), n_per).astype(np.int32)
        self.pop_of_core = np.array([c.config["population"] for c in cores], dtype=np.int64)
        self.first_of_core = np.array([c.config["first_neuron"] for c in cores], dtype=np.int64)

        # programs
        ops, rds, rss, imms, sec = [], [], [], [], np.zeros((nc, 3, 2), dtype=np.int32)
        rest, inert, rounding, cache, base = [], [], [], {}, 0
        for k, core in enumerate(cores):
            key = core.program.tobytes()
            mode = ("floor", "nearest", "stochastic")[core.config["rounding"]]
            if (key, mode) not in cache:
                program = isa.NeuronProgram.from_words(core.program)
                ins = program.instructions
                start = base
                ops += [i.op for i in ins]
                rds += [i.rd for i in ins]
                rss += [i.rs for i in ins]
                imms += [i.imm for i in ins]
                base += len(ins)
                secs = np.array([[start + a, start + b] for a, b in program.sections], dtype=np.int32)
                try:
                    stable = isa.is_rest_stable(program, n_slots=chip.state_slots, rounding=mode,
                                                state_bits=chip.state_bits, trace_bits=chip.trace_bits)
                    w_inert = isa.is_weight_inert(program, rounding=mode, weight_bits=chip.weight_bits)
                except isa.ISAError as exc:
                    raise isa.ISAError(f"core ({core.x}, {core.y}): its program fails from the all-zero state "
                                       f"with no input: {exc}") from None
                cache[(key, mode)] = (secs, stable, w_inert)
            secs, stable, w_inert = cache[(key, mode)]
            sec[k] = secs
            rest.append(stable)
            inert.append(w_inert)
            rounding.append(core.config["rounding"])
        self.op = np.asarray(ops, dtype=np.int32)
        self.rd = np.asarray(rds, dtype=np.int32)
        self.rs = np.asarray(rss, dtype=np.int32)
        self.imm = np.asarray(imms, dtype=np.int32)
        self.sec = sec.reshape(-1)
        self.rest_stable = np.asarray(rest, dtype=np.uint8)
        self.weight_inert = np.asarray(inert, dtype=np.uint8)
        self.rounding = np.asarray(rounding, dtype=np.int32)

        # axons (global) from the axon-in headers
        n_ax = np.array([len(c.axon_in) // 2 for c in cores], dtype=np.int64)
        n_syn = np.array([len(c.synapses) for c in cores], dtype=np.int64)
        self.axbase = np.concatenate([[0], np.cumsum(n_ax)]).astype(np.int64)
        self.synbase = np.concatenate([[0], np.cumsum(n_syn)]).astype(np.int64)
        hdr = [c.axon_in.reshape(-1, 2) for c in cores]
        w0 = np.concatenate([h[:, 0] for h in hdr]) if nc else np.zeros(0, np.uint64)
        w1 = np.concatenate([h[:, 1] for h in hdr]) if nc else np.zeros(0, np.uint64)
        ax_core = np.repeat(np.arange(nc), n_ax)
        self.ax_start = (_field(w0, 0, 20) + self.synbase[ax_core]).astype(np.int64)
        self.ax_count = _field(w0, 20, 13).astype(np.int32)
        ax_src_core_id, ax_src_local, ax_ext = _field(w1, 0, 10), _field(w1, 10, 12), _field(w1, 22, 1)
        bad = (_field(w0, 0, 20) + self.ax_count > n_syn[ax_core])
        if bad.any():
            a = int(np.flatnonzero(bad)[0])
            raise ValueError(f"core {(cores[ax_core[a]].x, cores[ax_core[a]].y)}: axon {a - self.axbase[ax_core[a]]} "
                             "reaches beyond the synapse memory")
        src_index = np.where(ax_ext == 1, -1, index_of[np.where(ax_ext == 1, 0, ax_src_core_id)])
        if np.any((ax_ext == 0) & (src_index < 0)):
            a = int(np.flatnonzero((ax_ext == 0) & (src_index < 0))[0])
            raise ValueError(f"axon {a}: its source core id {ax_src_core_id[a]} holds no neurons in this program")
        self.ax_src = np.where(ax_ext == 1, -1, self.nbase[np.maximum(src_index, 0)] + ax_src_local)
        self.ax_core = ax_core
        self.ax_ext = ax_ext
        self.ax_src_local = ax_src_local

        # synapses
        words = np.concatenate([c.synapses for c in cores]) if nc else np.zeros(0, np.uint64)
        syn_core = np.repeat(np.arange(nc), n_syn)
        local_t = _field(words, 16, 12)
        if np.any(local_t >= n_per[syn_core]):
            s = int(np.flatnonzero(local_t >= n_per[syn_core])[0])
            raise ValueError(f"synapse {s}: target neuron {local_t[s]} is not on its core")
        self.syn = np.zeros(len(words), dtype=SYN_DTYPE)
        self.syn["target"] = self.nbase[syn_core] + local_t
        self.syn["weight"] = signed(words, 16)
        self.syn["plastic"] = _field(words, 28, 1)
        self.syn["reward"] = _field(words, 29, 1)
        self.syn_core = syn_core
        self.syn_axon = np.repeat(np.arange(len(self.ax_start)), self.ax_count)
        if len(self.syn_axon) != len(words):
            raise ValueError("the axon headers do not cover the synapse memory exactly")

        # out entries, grouped by global source neuron
        out = np.concatenate([c.axon_out for c in cores]) if nc else np.zeros(0, np.uint64)
        out_core = np.repeat(np.arange(nc), [len(c.axon_out) for c in cores])
        src = self.nbase[out_core] + _field(out, 0, 12)
        dst_core = index_of[_field(out, 12, 10)]
        if np.any(dst_core < 0):
            e = int(np.flatnonzero(dst_core < 0)[0])
            raise noc.RoutingError(f"axon-table entry {e} of core {(cores[out_core[e]].x, cores[out_core[e]].y)} "
                                   f"sends to core id {_field(out, 12, 10)[e]}, which holds no neurons")
        cls = _field(out, 22, 3)
        dst_axon = self.axbase[dst_core] + _field(out, 25, 23)
        order = np.argsort(src, kind="stable")
        src, dst_core, cls, dst_axon, out_core = src[order], dst_core[order], cls[order], dst_axon[order], out_core[order]
        self.out_ptr = np.searchsorted(src, np.arange(self.N + 1)).astype(np.int64)
        self.out_axon = dst_axon.astype(np.int64)
        self.out_src_core, self.out_dst_core = out_core, dst_core
        self.out_hops = noc.hop_distance(chip, self.core_id[out_core], self.core_id[dst_core]).astype(np.int32)
        self.pairs, self.out_pair = np.unique(out_core * nc + dst_core, return_inverse=True)
        self.out = np.zeros(len(dst_axon), dtype=OUT_DTYPE)
        self.out["syn"] = self.ax_start[self.out_axon]
        self.out["count"] = self.ax_count[self.out_axon]
        self.out["hops"] = self.out_hops
        self.out["flits"] = _FLITS[cls]

        # external input axons per input population
        self.ext_axon = {}
        ctrl = chip.core_id(*chip.controller)
        for k, p in enumerate(prog.populations):
            if p["kind"] != "input":
                continue
            m = np.flatnonzero(self.ax_ext == 1)
            m = m[self.pop_of_core[self.ax_core[m]] == k]
            idx = self.first_of_core[self.ax_core[m]] + self.ax_src_local[m]
            table = np.full(p["size"], -1, dtype=np.int64)
            table[idx] = m
            if np.any(table < 0):
                raise ValueError(f"input population {p['name']!r}: neuron {int(np.flatnonzero(table < 0)[0])} "
                                 "has no external input axon")
            self.ext_axon[p["name"]] = table
        self.ext_hops = noc.hop_distance(chip, np.full(len(self.ax_core), ctrl), self.core_id[self.ax_core]) \
            if len(self.ax_core) else np.zeros(0, np.int64)
        local_axon = np.arange(len(self.ax_core)) - self.axbase[self.ax_core]
        short = local_axon < noc.SHORT_AXONS
        self.ext_flits = _FLITS[np.where(short, noc.PacketClass.SHORT_SPIKE, noc.PacketClass.SPIKE)].astype(np.int64)

        # plastic synapses, in core then synapse-memory order
        pl = np.flatnonzero(self.syn["plastic"] == 1)
        self.pl_syn = pl.astype(np.int64)
        self.pl_pre = self.ax_src[self.syn_axon[pl]].astype(np.int32)
        if np.any(self.pl_pre < 0):
            raise ValueError("an external input synapse is marked plastic")
        self.pl_post = self.syn["target"][pl].astype(np.int32)
        self.pl_core = self.syn_core[pl].astype(np.int32)
        self.pl_unit = (pl - self.synbase[self.syn_core[pl]]).astype(np.int64)

    def initial_state(self):
        chip = self.prog.chip
        state = np.concatenate([c.state for c in self.prog.cores]) if self.n_cores else np.zeros((0, chip.state_slots))
        traces = np.concatenate([c.traces for c in self.prog.cores]) if self.n_cores else np.zeros((0, 3))
        return np.ascontiguousarray(state, dtype=np.int64), np.ascontiguousarray(traces, dtype=np.int64)

    def initial_active(self, state, traces):
        """Neurons to update at tick 0: all but those known to rest (zero memory, rest-stable program)."""
        known = (self.rest_stable[self.ncore] == 1) & ~state.any(axis=1) & ~traces.any(axis=1)
        return np.flatnonzero(~known).astype(np.int32)

    def neuron_index(self, population: int):
        """Global neuron index of every neuron of ``population`` (in population order)."""
        p = self.prog.populations[population]
        out = np.empty(p["size"], dtype=np.int64)
        for c in p["cores"]:
            n = self.prog.cores[c].n_neurons
            f = self.first_of_core[c]
            out[f:f + n] = self.nbase[c] + np.arange(n)
        return out

    def projection_synapses(self):
        """Per projection: global synapse indices in the projection's CSR order (rows pre, columns post)."""
        prog = self.prog
        names = {p["name"]: k for k, p in enumerate(prog.populations)}
        real = self.ax_src[self.syn_axon] >= 0
        post_pop = self.pop_of_core[self.syn_core]
        post_idx = self.first_of_core[self.syn_core] + (self.syn["target"] - self.nbase[self.syn_core])
        pre_core = self.ncore[np.maximum(self.ax_src[self.syn_axon], 0)]
        pre_pop = self.pop_of_core[pre_core]
        pre_idx = self.first_of_core[pre_core] + (self.ax_src[self.syn_axon] - self.nbase[pre_core])
        out = []
        for proj in prog.projections:
            m = np.flatnonzero(real & (pre_pop == names[proj["pre"]]) & (post_pop == names[proj["post"]])
                               & (self.syn["reward"] == int(proj["kind"] == "reward")))
            order = np.lexsort((post_idx[m], pre_idx[m]))
            m = m[order]
            out.append((m, pre_idx[m], post_idx[m]))
        return out


class EmulatorRun:
    """What :meth:`Emulator.run` returns.

    Attributes
    ----------
    n_ticks : int
    spikes : pandas.DataFrame
        One row per spike: ``tick``, ``population``, ``neuron`` (index in its population).
    counters : dict
        ``spikes``, ``packets`` (all, ``input_packets`` from the controller),
        ``flits``, ``hops``, ``synaptic_ops``, ``neuron_updates``, ``instructions``,
        ``weight_updates`` and ``energy_pj`` (sum of counts × the chip's per-event costs).
        With a deployed vesicle model, ``packets``, ``flits``, ``hops`` and
        ``energy_pj`` are split into ``vesicle_*`` (migration WRITE packets
        between node cores, release packets and the reward spikes of the release
        ports) and ``spike_*`` (all other neuron traffic), plus
        ``vesicle_births``, ``vesicle_steps`` (vesicle-hops: one per vesicle per
        tick), ``vesicle_docks``, ``vesicle_draws``, ``vesicle_updates``
        (mailbox entries processed and emission-generator updates),
        ``vesicle_migration_packets``, ``vesicle_release_packets`` and
        ``vesicle_synaptic_ops``, ``spike_synaptic_ops``.
    energy : dict
        The energy estimate by event kind, in pJ.
    link_load : numpy.ndarray, (height, width, 4)
        Packets leaving each tile to the east, west, north and south.
    """

    def __init__(self, emulator, n_ticks, spikes, counters, energy, link_load, final, records, traces=None):
        self._emu = emulator
        self._traces = traces
        self.n_ticks = n_ticks
        self.spikes = spikes
        self.counters = counters
        self.energy = energy
        self.link_load = link_load
        self._final = final
        self._records = records

    @property
    def traces(self):
        """Every vesicle's birth, moves, docks and death as :class:`~nvppl.Traces` (§2.1).

        Only for a program that deploys a vesicle model.
        """
        if self._traces is None:
            raise AttributeError("the program deploys no vesicle model, so the run has no vesicle traces")
        if callable(self._traces):
            self._traces = self._traces()
        return self._traces

    def raster(self, population: str) -> np.ndarray:
        """Spikes of ``population`` as a boolean array (n_ticks, size)."""
        prog = self._emu.prog
        k = prog.population_index(population)
        out = np.zeros((self.n_ticks, prog.populations[k]["size"]), dtype=bool)
        s = self.spikes[self.spikes["population"] == population]
        out[s["tick"].to_numpy(), s["neuron"].to_numpy()] = True
        return out

    def _recorded(self, what):
        if what not in self._records:
            raise KeyError(f"{what!r} was not recorded: pass record=({what!r}, ...) to Emulator.run")
        return self._records[what]

    def state(self, population: str) -> np.ndarray:
        """Neuron state words of ``population`` after every tick: (n_ticks, size, state_slots).

        Slot 0 is the membrane potential VT and slot 1 the current I of the LIF program.
        """
        idx = self._emu.layout.neuron_index(self._emu.prog.population_index(population))
        return self._recorded("state")[:, idx]

    def learning_traces(self, population: str) -> np.ndarray:
        """Traces (x, y, r) of ``population`` after every tick: (n_ticks, size, 3)."""
        idx = self._emu.layout.neuron_index(self._emu.prog.population_index(population))
        return self._recorded("traces")[:, idx]

    def _projection(self, pre, post, kind):
        prog = self._emu.prog
        for k, p in enumerate(prog.projections):
            if p["pre"] == pre and p["post"] == post and p["kind"] == kind:
                return k
        raise KeyError(f"no {kind} projection {pre!r} -> {post!r} in the program")

    def weights(self, pre: str, post: str, kind: str = "spike", tick: int | None = None) -> sp.csr_matrix:
        """Integer weights of a projection at the end of the run (or after ``tick``, when recorded)."""
        k = self._projection(pre, post, kind)
        syn, j, i = self._emu.synapses[k]
        prog = self._emu.prog
        shape = (prog.populations[prog.population_index(pre)]["size"],
                 prog.populations[prog.population_index(post)]["size"])
        values = self._final["weights"][syn] if tick is None else self._recorded("weights")[tick][syn]
        return sp.csr_matrix((values, (j, i)), shape=shape)

    def weight_history(self, pre: str, post: str, kind: str = "spike") -> np.ndarray:
        """Weights of a projection after every tick, (n_ticks, synapses) in its CSR order (needs record 'weights')."""
        k = self._projection(pre, post, kind)
        return self._recorded("weights")[:, self._emu.synapses[k][0]]

    def __repr__(self):
        c = self.counters
        return (f"EmulatorRun(ticks={self.n_ticks}, spikes={c['spikes']}, synaptic_ops={c['synaptic_ops']}, "
                f"packets={c['packets']}, hops={c['hops']}, energy={c['energy_pj'] / 1e6:.3g} µJ)")


class Emulator:
    """Event-driven emulator of the Darwin3-like chip.

    Parameters
    ----------
    prog : ChipProgram
        From :func:`nvppl.backend.compile` or :func:`nvppl.backend.read_image`.

    Examples
    --------
    >>> import numpy as np
    >>> from nvppl.backend import Network, LIF, compile, Emulator
    >>> net = Network()
    >>> a = net.add_input("a", 1)
    >>> b = net.add_lif("b", 1, LIF(tau_mem=4.0, v_th=1.0))
    >>> _ = net.connect(a, b, [[1.5]])
    >>> run = Emulator(compile(net)).run(n_ticks=5, key=0, inputs={"a": [[1], [0], [0], [0], [0]]})
    >>> run.spikes.values.tolist()
    [[0, 'a', 0], [1, 'b', 0]]
    """

    def __init__(self, prog: ChipProgram):
        if not isinstance(prog, ChipProgram):
            raise TypeError(f"Emulator needs a ChipProgram (from nvppl.backend.compile), got {type(prog).__name__}")
        self._core = load("nvppl.backend._emulator")
        self.prog = prog
        self.layout = Layout(prog) if prog.cores else None
        self.synapses = self.layout.projection_synapses() if self.layout is not None else []
        self.vesicles = None
        if prog.vesicles is not None:
            from .deploy import RELEASE_POPULATION
            from .vesicle_engine import VesicleRunner

            self._release_name = RELEASE_POPULATION
            self.vesicles = VesicleRunner(prog)

    def _inputs(self, inputs, n_ticks):
        """(tick, global external axon) of every input spike, sorted by tick."""
        L = self.layout
        inputs = {} if inputs is None else dict(inputs)
        ticks, axons = [], []
        for name, spikes in inputs.items():
            try:
                k = self.prog.population_index(name)
            except KeyError as exc:
                raise KeyError(f"inputs: {exc.args[0]}") from None
            p = self.prog.populations[k]
            if p["kind"] != "input":
                raise ValueError(f"inputs: population {name!r} is not an input population")
            if sp.issparse(spikes):
                spikes = spikes.toarray()
            arr = np.asarray(spikes)
            if arr.ndim != 2 or arr.shape[1] != p["size"] or arr.shape[0] > n_ticks:
                raise ValueError(f"inputs[{name!r}] must have shape (≤ n_ticks = {n_ticks}, {p['size']}), "
                                 f"got {arr.shape}")
            bad = ~np.isin(arr, (0, 1))
            if bad.any():
                t, i = np.argwhere(bad)[0]
                raise ValueError(f"inputs[{name!r}]: tick {t}, neuron {i} holds {arr[t, i].item()!r}; a neuron spikes at "
                                 "most once per tick (0 or 1)")
            t, i = np.nonzero(arr)
            ticks.append(t)
            axons.append(L.ext_axon[name][i])
        if not ticks:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        t, a = np.concatenate(ticks), np.concatenate(axons)
        order = np.lexsort((a, t))
        return t[order].astype(np.int64), a[order].astype(np.int64)

    def run(self, n_ticks: int, key=None, inputs=None, record=(), progress: bool = False,
            n_runs: int = 1) -> EmulatorRun:
        """Run the program from its initial memory for ``n_ticks`` ticks.

        Each tick the node cores of a deployed vesicle model go first (emission,
        migration, docking, absorption, decay); docks at nodes with release
        ports send reward spikes into the base network, which then runs its
        tick (deliver, update, route, learn).

        Parameters
        ----------
        n_ticks : int
        key : int or JAX key, optional
            Seed of the on-chip generators (default: the chip's ``seed``). The same
            key gives the same run.
        inputs : dict, optional
            Per input population, a 0/1 array (ticks, size): external spikes per tick.
        record : iterable of {"state", "traces", "weights"}
            Memory to copy after every tick (for small programs: it costs memory).
        progress : bool
            Print a progress line every 10 % of the ticks.
        n_runs : int
            Independent runs of a vesicle model without a base network (the
            vesicle traces get one ``run`` per run).

        Returns
        -------
        EmulatorRun
        """
        if isinstance(n_ticks, bool) or not isinstance(n_ticks, (int, np.integer)) or n_ticks < 0:
            raise ValueError(f"n_ticks must be a non-negative integer, got {n_ticks!r}")
        if isinstance(n_runs, bool) or not isinstance(n_runs, (int, np.integer)) or n_runs < 1:
            raise ValueError(f"n_runs must be a positive integer, got {n_runs!r}")
        if n_runs > 1 and self.layout is not None:
            raise ValueError("n_runs > 1 runs a vesicle model alone; a program with neurons runs once per call")
        record = tuple(record)
        for what in record:
            if what not in ("state", "traces", "weights"):
                raise ValueError(f"record: unknown item {what!r}; choose from 'state', 'traces', 'weights'")
        if record and self.layout is None:
            raise ValueError("record: the program has no neurons to record")
        chip = self.prog.chip
        seed = chip.seed if key is None else seed64(key)
        ves = self.vesicles
        if ves is not None:
            ves.reset()
        if self.layout is None:
            if inputs:
                raise ValueError("inputs: the program has no input populations")
            step = max(1, n_ticks // 10)
            for r in range(n_runs):
                ves.start(r, seed)
                for t in range(n_ticks):
                    ves.tick(t)
                    if progress and (t + 1) % step == 0:
                        print(f"emulator: run {r + 1}/{n_runs}, tick {t + 1}/{n_ticks}", flush=True)
                ves.finish(n_ticks)
            counters, energy = self._vesicle_counters(ves, n_ticks, n_runs, {})
            spikes = pd.DataFrame({"tick": np.zeros(0, np.int64), "population": np.array([], object),
                                   "neuron": np.zeros(0, np.int64)})
            link = np.zeros((chip.height, chip.width, 4), dtype=np.int64)
            return EmulatorRun(self, n_ticks, spikes, counters, energy, link, {}, {},
                               traces=ves.traces_builder(n_ticks, n_runs))
        return self._run_network(n_ticks, seed, inputs, record, progress)

    def _run_network(self, n_ticks, seed, inputs, record, progress):
        L, chip, ves = self.layout, self.prog.chip, self.vesicles
        in_t, in_a = self._inputs(inputs, n_ticks)
        state, traces = L.initial_state()
        syn = L.syn.copy()
        arrays = dict(
            op=L.op, rd=L.rd, rs=L.rs, imm=L.imm, sec=L.sec, rounding=L.rounding,
            weight_inert=L.weight_inert, core_id=L.core_id, nbase=L.nbase[:-1].copy(), ncore=L.ncore,
            state=state.reshape(-1), traces=traces.reshape(-1),
            acc_w=np.zeros(L.N, np.int64), acc_r=np.zeros(L.N, np.int64), spiked=np.zeros(L.N, np.uint8),
            mark=np.zeros(L.N, np.uint8), out_ptr=L.out_ptr, out=L.out.view(np.uint8),
            out_count=np.zeros(len(L.out_axon), np.int64), ax_start=L.ax_start, ax_count=L.ax_count,
            syn=syn.view(np.uint8), pl_syn=L.pl_syn, pl_pre=L.pl_pre, pl_post=L.pl_post, pl_core=L.pl_core,
            pl_unit=L.pl_unit, initial_active=L.initial_active(state, traces))
        sizes = dict(n_neurons=L.N, n_slots=chip.state_slots, state_min=chip.state_min, state_max=chip.state_max,
                     weight_min=chip.weight_min, weight_max=chip.weight_max, trace_max=chip.trace_max,
                     trace_bits=chip.trace_bits, max_steps=4096)
        m = self._core.Machine(arrays, sizes)
        m.seed(int(isa.mix(np.array([seed % (1 << 64)], dtype=np.uint64))[0]))
        bounds = np.searchsorted(in_t, np.arange(n_ticks + 1))
        learn_any = len(L.pl_syn) > 0
        fired_t, fired_g = [], []
        recs = {w: [] for w in record}
        step = max(1, n_ticks // 10)
        docked_ports, fired_ports = [], []   # release ports: one entry per dock / per port firing
        port_axon = L.ext_axon.get(self._release_name) if ves is not None else None
        if ves is not None:
            ves.start(0, seed)
        for t in range(n_ticks):
            learn = learn_any and (t + 1) % chip.learning_interval == 0
            ext = in_a[bounds[t]:bounds[t + 1]]
            if ves is not None:
                ports = ves.tick(t)
                if len(ports) and port_axon is not None:
                    fired = np.unique(ports)
                    docked_ports.append(ports)
                    fired_ports.append(fired)
                    ext = np.sort(np.concatenate([ext, port_axon[fired]]))
            res = m.tick(t, ext, learn)
            if isinstance(res, tuple):
                self._raise(res, t)
            if len(res):
                res.sort()
                fired_t.append(np.full(len(res), t, dtype=np.int64))
                fired_g.append(res.astype(np.int64))
            if "state" in recs:
                recs["state"].append(arrays["state"].reshape(L.N, -1).copy())
            if "traces" in recs:
                recs["traces"].append(arrays["traces"].reshape(L.N, 3).copy())
            if "weights" in recs:
                recs["weights"].append(syn["weight"].astype(np.int64))
            if progress and (t + 1) % step == 0:
                print(f"emulator: tick {t + 1}/{n_ticks}", flush=True)
        records = {w: (np.stack(v) if v else np.zeros((0,) + self._shape(w))) for w, v in recs.items()}
        spikes = self._spike_table(fired_t, fired_g)
        counters = dict(zip(self._core.COUNTERS, (int(v) for v in m.counters)))
        n_in = len(in_t)
        counters["input_packets"] = n_in
        counters["packets"] += n_in
        counters["flits"] += int(L.ext_flits[in_a].sum()) if n_in else 0
        counters["hops"] += int(L.ext_hops[in_a].sum()) if n_in else 0
        energy = {
            "synaptic_ops": counters["synaptic_ops"] * chip.pj_per_synop,
            "hops": counters["hops"] * chip.pj_per_hop,
            "neuron_updates": counters["neuron_updates"] * chip.pj_per_neuron_update,
            "weight_updates": counters["weight_updates"] * chip.pj_per_weight_update,
            "instructions": counters["instructions"] * chip.pj_per_instruction,
        }
        counters["energy_pj"] = float(sum(energy.values()))
        load_ = self._link_loads(arrays["out_count"])
        if n_in:
            ctrl = chip.core_id(*chip.controller)
            dst = L.core_id[L.ax_core[in_a]]
            u, c = np.unique(dst, return_counts=True)
            load_ = load_ + noc.link_loads(chip, np.full(len(u), ctrl), u, c)
        traces_out = None
        if ves is not None:
            ves.finish(n_ticks)
            none = np.zeros(0, np.int64)
            docks = np.concatenate(docked_ports) if docked_ports else none
            fires = np.concatenate(fired_ports) if fired_ports else none
            counters, energy = self._vesicle_counters(ves, n_ticks, 1, counters, energy, docks, fires)
            traces_out = ves.traces_builder(n_ticks, 1)
        final = {"state": arrays["state"].reshape(L.N, -1), "traces": arrays["traces"].reshape(L.N, 3),
                 "weights": syn["weight"].astype(np.int64)}
        return EmulatorRun(self, n_ticks, spikes, counters, energy, load_, final, records, traces=traces_out)

    def _vesicle_counters(self, ves, n_ticks, n_runs, spike, spike_energy=None, ports=None, fires=None):
        """Counters split into vesicle traffic (``vesicle_*``) and spike traffic (``spike_*``), and totals.

        Vesicle traffic: the WRITE packets of migrations between node cores, the
        release packet from a node core to its release port for every dock there
        (``ports``: the port of each dock), and the reward spikes the ports send
        when they fire (``fires``: at most once per port and tick), with their
        synaptic operations.
        Spike traffic: everything else the neurons send. ``packets``, ``flits``,
        ``hops`` and ``energy_pj`` are the totals of both.
        """
        chip = self.prog.chip
        v = ves.counters(n_ticks, n_runs)
        fan = dict(packets=0, flits=0, hops=0, synaptic_ops=0)     # reward spikes sent by the ports
        write = dict(packets=0, flits=0, hops=0)                  # node core -> port
        if ports is not None and len(ports):
            L = self.layout
            relays = L.neuron_index(self.prog.population_index(self._release_name))
            relay = relays[ports]
            src = ves.core_id[ves.node_core[ves.ports[ports, 0]]]
            write = dict(packets=len(ports), flits=len(ports) * noc.flits_per_packet(noc.PacketClass.SPIKE),
                         hops=int(noc.hop_distance(chip, src, L.core_id[L.ncore[relay]]).sum()))
            u, c = np.unique(relays[fires], return_counts=True)
            for g, times in zip(u, c):
                e = L.out[L.out_ptr[g]:L.out_ptr[g + 1]]
                fan["packets"] += times * len(e)
                fan["flits"] += times * int(e["flits"].sum())
                fan["hops"] += times * int(e["hops"].sum())
                fan["synaptic_ops"] += times * int(e["count"].sum())
        fan = {k: int(v) for k, v in fan.items()}
        write = {k: int(v) for k, v in write.items()}
        counters = dict(spike)
        out = {}
        for k in ("packets", "flits", "hops"):
            out[f"vesicle_{k}"] = v[k] + write[k] + fan[k]
            out[f"spike_{k}"] = spike.get(k, 0) - fan[k]
            counters[k] = out[f"vesicle_{k}"] + out[f"spike_{k}"]
        out["spike_synaptic_ops"] = spike.get("synaptic_ops", 0) - fan["synaptic_ops"]
        out["vesicle_synaptic_ops"] = fan["synaptic_ops"]
        for k in ("births", "steps", "docks", "draws", "updates"):
            out[f"vesicle_{k}"] = v[k]
        out["vesicle_migration_packets"] = v["packets"]
        out["vesicle_release_packets"] = write["packets"] + fan["packets"]
        energy = dict(spike_energy or {})
        if energy:
            energy["hops"] -= fan["hops"] * chip.pj_per_hop
            energy["synaptic_ops"] -= fan["synaptic_ops"] * chip.pj_per_synop
        v_energy = {"vesicle_updates": v["updates"] * chip.pj_per_vesicle_update,
                    "vesicle_hops": out["vesicle_hops"] * chip.pj_per_hop,
                    "vesicle_synaptic_ops": fan["synaptic_ops"] * chip.pj_per_synop}
        out["spike_energy_pj"] = float(sum(energy.values()))
        out["vesicle_energy_pj"] = float(sum(v_energy.values()))
        energy.update(v_energy)
        counters.update(out)
        counters["energy_pj"] = out["spike_energy_pj"] + out["vesicle_energy_pj"]
        return counters, energy

    def _link_loads(self, counts):
        """Per-link packet counts: packets summed per (source, destination) core pair, then routed."""
        L, chip = self.layout, self.prog.chip
        totals = np.bincount(L.out_pair, weights=counts, minlength=len(L.pairs)).astype(np.int64)
        used = totals > 0
        pairs = L.pairs[used]
        return noc.link_loads(chip, L.core_id[pairs // L.n_cores], L.core_id[pairs % L.n_cores], totals[used])

    def _shape(self, what):
        L = self.layout
        return {"state": (L.N, self.prog.chip.state_slots), "traces": (L.N, 3), "weights": (len(L.syn),)}[what]

    def _spike_table(self, fired_t, fired_g):
        L = self.layout
        if fired_t:
            t, g = np.concatenate(fired_t), np.concatenate(fired_g)
        else:
            t, g = np.zeros(0, np.int64), np.zeros(0, np.int64)
        core = L.ncore[g]
        pop = L.pop_of_core[core]
        neuron = L.first_of_core[core] + (g - L.nbase[core])
        names = np.array([p["name"] for p in self.prog.populations], dtype=object)
        order = np.lexsort((neuron, pop, t))
        return pd.DataFrame({"tick": t[order], "population": names[pop[order]] if len(t) else np.array([], object),
                             "neuron": neuron[order]})

    def _raise(self, res, t):
        _, code, unit = res
        L = self.layout
        if code >= 100:  # weight section
            core = int(L.syn_core[unit])
            what = f"synapse {unit - L.synbase[core]} (weight-update section)"
            code -= 100
        else:
            code -= 1
            core = int(L.ncore[unit])
            what = f"neuron {L.first_of_core[core] + unit - L.nbase[core]}"
        c = self.prog.cores[core]
        pop = self.prog.populations[L.pop_of_core[core]]["name"]
        why = {1: "executed more than 4096 instructions (a loop that never ends?)",
               2: f"addressed a state slot beyond the chip's {self.prog.chip.state_slots}",
               3: "addressed a synapse field other than 0 (the weight)"}.get(code, f"error {code}")
        raise isa.ISAError(f"tick {t}, core ({c.x}, {c.y}), population {pop!r}, {what}: the program {why}")
