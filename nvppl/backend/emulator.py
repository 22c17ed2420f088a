"""The event-driven chip emulator.

:class:`Emulator` runs a :class:`~nvppl.backend.ChipProgram` tick by tick
(``docs/guide/emulator.rst``, "One tick"). The work per tick is proportional
to the events: packets delivered, neurons that are not at rest, plastic
synapses whose traces are non-zero. The hot loop is compiled
(``_emulator.pyx``): :class:`~nvppl.backend.layout.Layout` lays the program's
memory out for it, the node cores of a deployed vesicle model run in
:class:`~nvppl.backend.vesicle_engine.VesicleRunner`, and this module drives
both and reads the results back into an
:class:`~nvppl.backend.EmulatorRun`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._extension import load
from .._validate import nonneg_int, positive_int, seed64
from . import isa, noc
from .deploy import RELEASE_POPULATION
from .emulator_run import EmulatorRun
from .image import ChipProgram
from .layout import MAX_STEPS, Layout
from .vesicle_engine import VesicleRunner

__all__ = ["Emulator"]


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
        self.vesicles = VesicleRunner(prog, self.layout) if prog.vesicles is not None else None

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
                raise ValueError(f"inputs[{name!r}]: tick {t}, neuron {i} holds {arr[t, i].item()!r}; a neuron "
                                 "spikes at most once per tick (0 or 1)")
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
        migration, docking, absorption, decay; emission from the spike rate
        reads the counts of the ticks before); docks at nodes with release
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
        n_ticks = nonneg_int(n_ticks, "n_ticks")
        n_runs = positive_int(n_runs, "n_runs")
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
        m, arrays = L.machine(self._core, seed)
        syn = arrays["synapses"]
        bounds = np.searchsorted(in_t, np.arange(n_ticks + 1))
        learn_any = len(L.pl_syn) > 0
        fired_t, fired_g = [], []
        recs = {w: [] for w in record}
        step = max(1, n_ticks // 10)
        docked_ports, fired_ports = [], []   # release ports: one entry per dock / per port firing
        port_axon = L.ext_axon.get(RELEASE_POPULATION) if ves is not None else None
        if ves is not None:
            ves.start(0, seed)
        res = None
        for t in range(n_ticks):
            learn = learn_any and (t + 1) % chip.learning_interval == 0
            ext = in_a[bounds[t]:bounds[t + 1]]
            if ves is not None:
                ports = ves.tick(t, res)        # the spikes of tick t - 1 feed the rate windows
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
        With emission from the spike rate, the spikes the counted neurons send
        to their node cores are vesicle traffic too (``vesicle_rate_packets``).
        Spike traffic: everything else the neurons send. ``packets``, ``flits``,
        ``hops`` and ``energy_pj`` are the totals of both.
        """
        chip = self.prog.chip
        v = ves.counters(n_ticks, n_runs)
        fan = dict(packets=0, flits=0, hops=0, synaptic_ops=0)     # reward spikes sent by the ports
        write = dict(packets=0, flits=0, hops=0)                  # node core -> port
        if ports is not None and len(ports):
            L = self.layout
            relays = L.neuron_index(self.prog.population_index(RELEASE_POPULATION))
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
            out[f"vesicle_{k}"] = v[k] + write[k] + fan[k] + v[f"rate_{k}"]
            out[f"spike_{k}"] = spike.get(k, 0) - fan[k]
            counters[k] = out[f"vesicle_{k}"] + out[f"spike_{k}"]
        out["vesicle_rate_packets"] = v["rate_packets"]
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
        why = {1: f"executed more than {MAX_STEPS} instructions (a loop that never ends?)",
               2: f"addressed a state slot beyond the chip's {self.prog.chip.state_slots}",
               3: "addressed a synapse field other than 0 (the weight)"}.get(code, f"error {code}")
        raise isa.ISAError(f"tick {t}, core ({c.x}, {c.y}), population {pop!r}, {what}: the program {why}")
