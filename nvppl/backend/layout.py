"""A program's memory laid out for the compiled machine, in global numbering.

:class:`Layout` reads the neuron cores of a :class:`~nvppl.backend.ChipProgram`
(their programs, axon tables and synapse memory, decoded from the words the
image holds) into flat arrays: cores in placement order, then neurons, axons
and synapses numbered globally. :meth:`Layout.machine` loads them into the
compiled emulator (``_emulator.pyx``); the layout also maps the machine's
numbering back to populations and projections.
"""

from __future__ import annotations

import numpy as np

from . import isa, noc
from .isa.generator import seed_key
from .isa.opcodes import ROUNDINGS
from .program import field, signed

__all__ = ["MAX_STEPS", "OUT_DTYPE", "SYN_DTYPE", "Layout"]

#: One axon-table entry of a neuron, as the compiled machine reads it (``Out`` of ``_emulator.pxd``).
OUT_DTYPE = np.dtype([("syn", "<i8"), ("count", "<i4"), ("hops", "<i2"), ("flits", "<i2")])
#: One decoded synapse word (``Syn`` of ``_emulator.pxd``).
SYN_DTYPE = np.dtype([("target", "<i4"), ("weight", "<i2"), ("reward", "u1"), ("plastic", "u1")])
#: Instructions a unit may execute in one section before it is an error.
MAX_STEPS = 4096
_FLITS = np.array([noc.flits_per_packet(c) for c in sorted(noc.PacketClass)], dtype=np.int32)  # by class


def _concat(parts, dtype=np.uint64) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


class Layout:
    """The program's memory in global numbering (cores in order, then neurons, axons, synapses).

    Parameters
    ----------
    prog : ChipProgram
        A program with at least one neuron core.

    Raises
    ------
    ISAError
        A program that fails from the all-zero state with no input.
    ValueError, RoutingError
        Axon tables or synapse words that point outside the program.
    """

    def __init__(self, prog):
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
        n_syn = np.array([len(c.synapses) for c in cores], dtype=np.int64)
        self._load_programs()
        self._load_axons(n_syn, index_of)
        self._load_synapses(n_syn, n_per)
        self._load_out_entries(index_of)
        self._load_inputs()
        self._load_plastic()

    def _load_programs(self):
        """The decoded instructions of all programs, concatenated, and per core its sections and load-time checks."""
        chip, cores = self.prog.chip, self.prog.cores
        ops, rds, rss, imms, sec = [], [], [], [], np.zeros((self.n_cores, len(isa.Section), 2), dtype=np.int32)
        rest, inert, rounding, cache, base = [], [], [], {}, 0
        for k, core in enumerate(cores):
            key = core.program.tobytes()
            mode = ROUNDINGS[core.config["rounding"]]
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

    def _load_axons(self, n_syn, index_of):
        """Axons (global) from the axon-in headers."""
        cores = self.prog.cores
        n_ax = np.array([len(c.axon_in) // 2 for c in cores], dtype=np.int64)
        self.axbase = np.concatenate([[0], np.cumsum(n_ax)]).astype(np.int64)
        self.synbase = np.concatenate([[0], np.cumsum(n_syn)]).astype(np.int64)
        hdr = [c.axon_in.reshape(-1, 2) for c in cores]
        w0 = _concat([h[:, 0] for h in hdr])
        w1 = _concat([h[:, 1] for h in hdr])
        ax_core = np.repeat(np.arange(self.n_cores), n_ax)
        self.ax_start = (field(w0, 0, 20) + self.synbase[ax_core]).astype(np.int64)
        self.ax_count = field(w0, 20, 13).astype(np.int32)
        ax_src_core_id, ax_src_local, ax_ext = field(w1, 0, 10), field(w1, 10, 12), field(w1, 22, 1)
        bad = (field(w0, 0, 20) + self.ax_count > n_syn[ax_core])
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

    def _load_synapses(self, n_syn, n_per):
        """Synapse words, decoded."""
        words = _concat([c.synapses for c in self.prog.cores])
        syn_core = np.repeat(np.arange(self.n_cores), n_syn)
        local_t = field(words, 16, 12)
        if np.any(local_t >= n_per[syn_core]):
            s = int(np.flatnonzero(local_t >= n_per[syn_core])[0])
            raise ValueError(f"synapse {s}: target neuron {local_t[s]} is not on its core")
        self.syn = np.zeros(len(words), dtype=SYN_DTYPE)
        self.syn["target"] = self.nbase[syn_core] + local_t
        self.syn["weight"] = signed(words, 16)
        self.syn["plastic"] = field(words, 28, 1)
        self.syn["reward"] = field(words, 29, 1)
        self.syn_core = syn_core
        self.syn_axon = np.repeat(np.arange(len(self.ax_start)), self.ax_count)
        if len(self.syn_axon) != len(words):
            raise ValueError("the axon headers do not cover the synapse memory exactly")

    def _load_out_entries(self, index_of):
        """Out entries of the axon tables, grouped by global source neuron."""
        chip, cores, nc = self.prog.chip, self.prog.cores, self.n_cores
        out = _concat([c.axon_out for c in cores])
        out_core = np.repeat(np.arange(nc), [len(c.axon_out) for c in cores])
        src = self.nbase[out_core] + field(out, 0, 12)
        dst_core = index_of[field(out, 12, 10)]
        if np.any(dst_core < 0):
            e = int(np.flatnonzero(dst_core < 0)[0])
            raise noc.RoutingError(f"axon-table entry {e} of core {(cores[out_core[e]].x, cores[out_core[e]].y)} "
                                   f"sends to core id {field(out, 12, 10)[e]}, which holds no neurons")
        cls = field(out, 22, 3)
        dst_axon = self.axbase[dst_core] + field(out, 25, 23)
        order = np.argsort(src, kind="stable")
        src, dst_core, cls, dst_axon, out_core = (a[order] for a in (src, dst_core, cls, dst_axon, out_core))
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

    def _load_inputs(self):
        """External input axons per input population, and the hops and flits of an input packet on each axon."""
        chip = self.prog.chip
        self.ext_axon = {}
        ctrl = chip.core_id(*chip.controller)
        for k, p in enumerate(self.prog.populations):
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

    def _load_plastic(self):
        """Plastic synapses, in core then synapse-memory order."""
        pl = np.flatnonzero(self.syn["plastic"] == 1)
        self.pl_syn = pl.astype(np.int64)
        self.pl_pre = self.ax_src[self.syn_axon[pl]].astype(np.int32)
        if np.any(self.pl_pre < 0):
            raise ValueError("an external input synapse is marked plastic")
        self.pl_post = self.syn["target"][pl].astype(np.int32)
        self.pl_core = self.syn_core[pl].astype(np.int32)
        self.pl_unit = (pl - self.synbase[self.syn_core[pl]]).astype(np.int64)

    def initial_state(self):
        """The cores' initial neuron state (N, state_slots) and traces (N, 3), int64."""
        chip = self.prog.chip
        state = np.concatenate([c.state for c in self.prog.cores]) if self.n_cores else np.zeros((0, chip.state_slots))
        traces = np.concatenate([c.traces for c in self.prog.cores]) if self.n_cores else np.zeros((0, 3))
        return np.ascontiguousarray(state, dtype=np.int64), np.ascontiguousarray(traces, dtype=np.int64)

    def initial_active(self, state, traces):
        """Neurons to update at tick 0: all but those known to rest (zero memory, rest-stable program)."""
        known = (self.rest_stable[self.ncore] == 1) & ~state.any(axis=1) & ~traces.any(axis=1)
        return np.flatnonzero(~known).astype(np.int32)

    def machine(self, engine, seed: int):
        """A compiled machine holding the program's initial memory, its generator seeded with ``seed``.

        Parameters
        ----------
        engine : module
            The compiled emulator, ``nvppl.backend._emulator``.
        seed : int
            The 64-bit seed of the on-chip generator.

        Returns
        -------
        machine : Machine
        arrays : dict
            The arrays behind the machine's pointers: ``state`` (N · state_slots),
            ``traces`` (N · 3), ``out_count`` (packets sent through every out
            entry) and ``synapses`` (:data:`SYN_DTYPE`, the bytes behind
            ``syn``) hold the run's results as it goes.
        """
        chip = self.prog.chip
        state, traces = self.initial_state()
        syn = self.syn.copy()
        arrays = dict(
            op=self.op, rd=self.rd, rs=self.rs, imm=self.imm, sec=self.sec, rounding=self.rounding,
            weight_inert=self.weight_inert, core_id=self.core_id, nbase=self.nbase[:-1].copy(), ncore=self.ncore,
            state=state.reshape(-1), traces=traces.reshape(-1),
            acc_w=np.zeros(self.N, np.int64), acc_r=np.zeros(self.N, np.int64), spiked=np.zeros(self.N, np.uint8),
            mark=np.zeros(self.N, np.uint8), out_ptr=self.out_ptr, out=self.out.view(np.uint8),
            out_count=np.zeros(len(self.out_axon), np.int64), ax_start=self.ax_start, ax_count=self.ax_count,
            syn=syn.view(np.uint8), pl_syn=self.pl_syn, pl_pre=self.pl_pre, pl_post=self.pl_post,
            pl_core=self.pl_core, pl_unit=self.pl_unit, initial_active=self.initial_active(state, traces))
        sizes = dict(n_neurons=self.N, n_slots=chip.state_slots, state_min=chip.state_min, state_max=chip.state_max,
                     weight_min=chip.weight_min, weight_max=chip.weight_max, trace_max=chip.trace_max,
                     trace_bits=chip.trace_bits, max_steps=MAX_STEPS)
        machine = engine.Machine(arrays, sizes)
        machine.seed(seed_key(seed))
        return machine, {**arrays, "synapses": syn}

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
