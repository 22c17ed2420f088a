"""NumPy references for the chip: fixed-point (bit-exact) and floating point.

:func:`simulate_fixed` runs a compiled program the slow, obvious way: every
neuron every tick, synaptic input as sparse matrix products over the
*projections* (not the axon tables), the ISA through the vectorised interpreter
of :mod:`nvppl.backend.isa`. It shares no code with the compiled emulator but
the instruction decoder, so agreement at every tick checks the emulator's
event-driven skipping, axon tables, routing and hot loop.

:func:`simulate_float` runs the source network in double precision with the
same update order and timing; the difference from the chip is quantisation only.
"""

from __future__ import annotations

import math

import numpy as np

from .._validate import seed64
from . import isa
from .image import ChipProgram
from .network import Network

def _inputs(inputs, n_ticks):
    out = {}
    for name, arr in (inputs or {}).items():
        arr = np.asarray(arr.toarray() if hasattr(arr, "toarray") else arr)
        full = np.zeros((n_ticks, arr.shape[1]), dtype=bool)
        full[:arr.shape[0]] = arr != 0
        out[name] = full
    return out


class FixedPointNetwork:
    """The fixed-point reference of a compiled program, one tick at a time (see :func:`simulate_fixed`).

    Attributes after :meth:`step`: ``state``, ``traces`` (per population, in
    network order), ``weights`` (per projection, CSR data) and ``last`` (the
    spikes of the tick, per population).
    """

    def __init__(self, prog: ChipProgram, key=None):
        net: Network = prog.network
        if net is None:
            raise ValueError("the fixed-point reference needs a program compiled in this process (prog.network)")
        chip = self.chip = prog.chip
        self.net = net
        self.seed = chip.seed if key is None else seed64(key)
        self.programs = prog.extra["programs"]
        self.weights_q = prog.extra["weights"]
        S = chip.state_slots
        # core id and local index of every neuron, and of every synapse's memory word
        self.core_of, self.local_of = [], []
        for k, pop in enumerate(net.populations):
            cid = np.empty(pop.size, dtype=np.int64)
            loc = np.empty(pop.size, dtype=np.int64)
            for c in prog.populations[k]["cores"]:
                core = prog.cores[c]
                f, n = core.config["first_neuron"], core.n_neurons
                cid[f:f + n] = chip.core_id(core.x, core.y)
                loc[f:f + n] = np.arange(n)
            self.core_of.append(cid)
            self.local_of.append(loc)
        self.syn_core = []
        for addr in prog.extra["synapse_address"]:
            self.syn_core.append((np.array([chip.core_id(prog.cores[c].x, prog.cores[c].y) for c in addr[:, 0]],
                                           dtype=np.int64), addr[:, 1]))
        self.state = [np.zeros((p.size, S), dtype=np.int64) for p in net.populations]
        self.traces = [np.zeros((p.size, 3), dtype=np.int64) for p in net.populations]
        self.mats = [W.astype(np.int64) for W in self.weights_q]  # copies whose weights learning changes in place
        self.weights = [W.data for W in self.mats]
        self.spiked = [np.zeros(p.size, dtype=bool) for p in net.populations]
        self.last = [np.zeros(p.size, dtype=bool) for p in net.populations]
        self.widths = dict(rounding=chip.rounding, state_bits=chip.state_bits, trace_bits=chip.trace_bits,
                           weight_bits=chip.weight_bits)

    def step(self, t: int, ext: dict) -> list:
        """Tick ``t`` with the external spikes ``ext`` ({input population: bool (size,)}); the spikes per population."""
        net, chip, seed, widths = self.net, self.chip, self.seed, self.widths
        fired_now = []
        for k, pop in enumerate(net.populations):
            acc_w = np.zeros(pop.size, dtype=np.int64)
            acc_r = np.zeros(pop.size, dtype=np.int64)
            for proj in net.incoming(pop):
                contribution = self.mats[proj.index].T @ self.last[proj.pre.index].astype(np.int64)
                if proj.kind == "reward":
                    acc_r += contribution
                else:
                    acc_w += contribution
            if pop.kind == "input" and pop.name in ext:
                acc_w += ext[pop.name]
            regs = np.zeros((16, pop.size), dtype=np.int64)
            regs[isa.Reg.WGTSUM] = isa.saturate(acc_w, chip.state_bits)
            regs[isa.Reg.RWSUM] = isa.saturate(acc_r, chip.state_bits)
            h = isa.unit_key(seed, self.core_of[k], self.local_of[k], t)
            counters = np.zeros(pop.size, dtype=np.int64)
            fired = isa.execute(self.programs[k], isa.Section.NEURON, regs, state=self.state[k],
                                traces=self.traces[k], h=h, counters=counters, **widths).fired
            fired = fired | isa.execute(self.programs[k], isa.Section.TRACE, regs, state=self.state[k],
                                        traces=self.traces[k], h=h, counters=counters, **widths).fired
            fired_now.append(fired)
            self.spiked[k] |= fired
        self.last = fired_now
        if (t + 1) % chip.learning_interval == 0:
            for proj in net.projections:
                if proj.plasticity is None:
                    continue
                W = self.weights_q[proj.index]
                j = np.repeat(np.arange(proj.pre.size), np.diff(W.indptr))
                i = W.indices
                regs = np.zeros((16, W.nnz), dtype=np.int64)
                regs[isa.Reg.TPRE] = self.traces[proj.pre.index][j, 0]
                regs[isa.Reg.TPOST] = self.traces[proj.post.index][i, 1]
                regs[isa.Reg.TREW] = self.traces[proj.post.index][i, 2]
                cid, loc = self.syn_core[proj.index]
                h = isa.unit_key(seed, cid, (1 << 30) + loc, t)
                syn = self.weights[proj.index][:, None].copy()
                isa.execute(self.programs[proj.post.index], isa.Section.WEIGHT, regs, synapse=syn,
                            s_pre=self.spiked[proj.pre.index][j], s_post=self.spiked[proj.post.index][i], h=h,
                            counters=np.zeros(W.nnz, dtype=np.int64), **widths)
                self.weights[proj.index][:] = syn[:, 0]
            for s in self.spiked:
                s[:] = False
        return fired_now


def simulate_fixed(prog: ChipProgram, n_ticks: int, key=None, inputs=None) -> dict:
    """The fixed-point reference of a program compiled in this process.

    Returns
    -------
    dict
        ``spikes``: {population: bool (n_ticks, size)}; ``state``: {population:
        int64 (n_ticks, size, state_slots)}; ``traces``: {population: int64
        (n_ticks, size, 3)}; ``weights``: {projection index: int64 (n_ticks, nnz)}
        in the projection's CSR order.
    """
    ref = FixedPointNetwork(prog, key)
    ext = _inputs(inputs, n_ticks)
    out = record_init(ref, n_ticks)
    for t in range(n_ticks):
        ref.step(t, {name: arr[t] for name, arr in ext.items()})
        record_tick(ref, out, t)
    return out


def record_init(ref: FixedPointNetwork, n_ticks: int) -> dict:
    """Empty per-tick records of spikes, state, traces and weights (see :func:`simulate_fixed`)."""
    S = ref.chip.state_slots
    pops = ref.net.populations
    return {"spikes": {p.name: np.zeros((n_ticks, p.size), dtype=bool) for p in pops},
            "state": {p.name: np.zeros((n_ticks, p.size, S), dtype=np.int64) for p in pops},
            "traces": {p.name: np.zeros((n_ticks, p.size, 3), dtype=np.int64) for p in pops},
            "weights": {k: np.zeros((n_ticks, W.nnz), dtype=np.int64) for k, W in enumerate(ref.weights_q)}}


def record_tick(ref: FixedPointNetwork, out: dict, t: int) -> None:
    """Copy the memory after tick ``t`` into the records ``out``."""
    for k, pop in enumerate(ref.net.populations):
        out["spikes"][pop.name][t] = ref.last[k]
        out["state"][pop.name][t] = ref.state[k]
        out["traces"][pop.name][t] = ref.traces[k]
    for k in range(len(ref.weights)):
        out["weights"][k][t] = ref.weights[k]


def simulate_float(net: Network, n_ticks: int, inputs=None) -> dict:
    """The network in double precision, with the chip's update order and timing.

    Per tick, input populations fire where ``inputs`` says; LIF populations take
    the spikes of the previous tick through their weights (eq. 54, one Euler step
    of one tick):

    ``I ← I − I/τ_syn + S`` (or ``I ← S``), ``V ← V − V/τ_mem + I + b``, and a
    spike with ``V ← v_reset`` when ``V ≥ v_th``. Reward projections and
    plasticity are not modelled (they act in chip units).

    Returns
    -------
    dict
        ``spikes``: {population: bool (n_ticks, size)}; ``v``, ``i``: {LIF
        population: float (n_ticks, size)} after every tick.

    Examples
    --------
    >>> from nvppl.backend import Network, LIF
    >>> net = Network(); a = net.add_input("a", 1); b = net.add_lif("b", 1, LIF(tau_mem=2.0, v_th=1.0))
    >>> _ = net.connect(a, b, [[0.75]])
    >>> out = simulate_float(net, 4, inputs={"a": [[1], [1], [0], [0]]})
    >>> out["v"]["b"][:, 0].tolist(), out["spikes"]["b"][:, 0].tolist()
    ([0.0, 0.75, 0.0, 0.0], [False, False, True, False])
    """
    ext = _inputs(inputs, n_ticks)
    v = {p.name: np.zeros(p.size) for p in net.populations if p.kind == "lif"}
    cur = {p.name: np.zeros(p.size) for p in net.populations if p.kind == "lif"}
    last = {p.name: np.zeros(p.size, dtype=bool) for p in net.populations}
    out = {"spikes": {p.name: np.zeros((n_ticks, p.size), dtype=bool) for p in net.populations},
           "v": {name: np.zeros((n_ticks, len(a))) for name, a in v.items()},
           "i": {name: np.zeros((n_ticks, len(a))) for name, a in v.items()}}
    for t in range(n_ticks):
        now = {}
        for pop in net.populations:
            if pop.kind == "input":
                now[pop.name] = ext[pop.name][t] if pop.name in ext else np.zeros(pop.size, dtype=bool)
                continue
            nrn = pop.neuron
            S = np.zeros(pop.size)
            for proj in net.incoming(pop):
                if proj.kind == "spike":
                    S += proj.weights.T @ last[proj.pre.name].astype(float)
            if nrn.tau_syn is None:
                cur[pop.name] = S
            else:
                cur[pop.name] = cur[pop.name] - cur[pop.name] / nrn.tau_syn + S
            leak = 0.0 if math.isinf(nrn.tau_mem) else 1.0 / nrn.tau_mem
            vv = v[pop.name] - v[pop.name] * leak + cur[pop.name] + nrn.bias
            fired = vv >= nrn.v_th
            vv[fired] = nrn.v_reset
            v[pop.name] = vv
            now[pop.name] = fired
            out["v"][pop.name][t] = vv
            out["i"][pop.name][t] = cur[pop.name]
        last = now
        for name, s in now.items():
            out["spikes"][name][t] = s
    return out
