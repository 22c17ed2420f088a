"""Benchmark: the chip emulator on a large spiking network and on a deployed vesicle model.

The targets are those of ``docs/design.rst``, "Performance targets".

Part 1, spiking network. Target: "emulator ≥ 5 M synaptic events/s" on one core. The network: an input
population ``drive`` of 1000 Poisson sources (20 Hz at 1 ms per tick) and a LIF
population ``net`` of 10⁵ neurons (τ_mem = 16 ticks, threshold 1, no synaptic
current). Each LIF neuron receives 10 synapses from ``drive`` (weight 0.2) and
90 recurrent synapses from random LIF neurons (80 % excitatory 0.03, 20 %
inhibitory −0.25; a duplicate pair is one synapse with the summed weight,
clipped to ±0.25): 10⁵ + 10³ neurons and 10⁷ synapses on the default 24 × 24
chip, spread over as many cores as the axon tables need. It runs 1000 ticks (nearest rounding) and reports the firing rate,
synaptic events (synaptic operations) per second, ticks per second, packets,
hops and the energy estimate.

The NumPy reference is a vectorised fixed-point version of the same network
(the LIF program's arithmetic written with array operations, synaptic input as
``np.bincount`` over the rows of the neurons that fired), run for the first
whole run and checked to give exactly the emulator's spikes; the ratio is of
synaptic events per second.

Part 2, deployed vesicle model. Target: "emulator ≥ 5 M vesicle-hops/s" on one
core, where one vesicle-hop is one vesicle's migration step in one tick (the
``vesicle_steps`` counter). The model is the reference model of the performance targets, that of
``bench_simulate.reference_model`` (n = 1000 nodes, 8 random out-neighbours plus
stay, λ = 0.5, p_dock = 0.2, δ = 0.05), compiled with ``nv.backend.compile``
onto node cores and run for 1000 ticks. Reported: compile and load seconds, the
seconds of ``Emulator.run`` alone and, separately, of the first read of
``run.traces`` (built lazily from the run), vesicle-hops per second, the energy
per vesicle-hop (``vesicle_energy_pj / vesicle_steps``), the vesicle packets and
their tile hops between node cores, the number of node cores, the mean tile hops
per migration step expected for the placement and for random placements (the
same node cores with the nodes permuted at random, mean of a few permutations),
and the measured tile hops per vesicle-step (``vesicle_hops / vesicle_steps``).
The NumPy reference is ``nvppl.backend.vesicle_reference.simulate_vesicles`` on
the deployed tables, the same process vectorised over vesicles; it runs the same
ticks with the same key, its traces are checked to equal ``run.traces`` and the
ratio is of vesicle-hops per second.

The last line printed is one JSON object with all figures (those of part 2
prefixed ``vesicle_``). ``--quick`` runs 2000 neurons for 50 ticks and 100
vesicle-model nodes for 50 ticks (used by the tests).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_simulate import json_safe, reference_model  # noqa: E402

from nvppl.backend import LIF, ChipConfig, Emulator, Network, compile  # noqa: E402
from nvppl.backend.program import expected_hops  # noqa: E402
from nvppl.backend.vesicle_reference import simulate_vesicles  # noqa: E402

TARGET_VESICLE_HOPS = 5e6  # vesicle-hops/s, emulator, one core


def build(n: int, n_drive: int, k_drive: int, k_rec: int, seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    net = Network()
    drive = net.add_input("drive", n_drive)
    lif = net.add_lif("net", n, LIF(tau_mem=16.0, v_th=1.0))
    rows = rng.integers(n_drive, size=n * k_drive)
    cols = np.repeat(np.arange(n), k_drive)
    W = sp.csr_matrix((np.full(len(rows), 0.2), (rows, cols)), shape=(n_drive, n))
    W.sum_duplicates()
    net.connect(drive, lif, W)
    rows = rng.integers(n, size=n * k_rec)
    cols = np.repeat(np.arange(n), k_rec)
    w = np.where(rng.random(len(rows)) < 0.8, 0.03, -0.25)
    R = sp.csr_matrix((w, (rows, cols)), shape=(n, n))
    R.sum_duplicates()
    R.data = np.clip(R.data, -0.25, 0.25)  # duplicates summed: keep the weight range of the drive
    net.connect(lif, lif, R)
    return net


class NumpyLIF:
    """Vectorised fixed-point reference of the compiled network (nearest rounding, no synaptic current)."""

    def __init__(self, prog, net):
        chip = prog.chip
        Wd, Wr = prog.extra["weights"]
        self.Wd, self.Wr = Wd, Wr
        self.n = net.population("net").size
        self.v = np.zeros(self.n, dtype=np.int64)
        self.fired = np.zeros(0, dtype=np.int64)
        nrn = net.population("net").neuron
        scale = prog.extra["scales"][1]
        self.vth = int(round(nrn.v_th / scale))
        self.k = int(round(np.log2(nrn.tau_mem)))
        self.lo, self.hi = chip.state_min, chip.state_max

    def _rows(self, W, rows):
        if len(rows) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        starts, ends = W.indptr[rows], W.indptr[rows + 1]
        idx = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)])
        return W.indices[idx], W.data[idx]

    def tick(self, drive_prev):
        ti, wi = self._rows(self.Wd, drive_prev)
        tr, wr = self._rows(self.Wr, self.fired)
        acc = np.bincount(np.concatenate([ti, tr]), weights=np.concatenate([wi, wr]), minlength=self.n)
        acc = np.clip(acc.astype(np.int64), self.lo, self.hi)
        v = self.v
        v = np.clip(v - ((v + (1 << (self.k - 1))) >> self.k) + acc, self.lo, self.hi)
        fired = v >= self.vth
        v[fired] = 0
        self.v = v
        self.fired = np.flatnonzero(fired)
        return self.fired, len(ti) + len(tr)


def numpy_reference(prog, net, drive, raster, n_ticks: int):
    """Run :class:`NumpyLIF` for ``n_ticks`` ticks, checked spike for spike against the emulator's ``raster``.

    Returns (synaptic events, wall seconds); exits naming the tick where the two differ.
    """
    ref = NumpyLIF(prog, net)
    drive_fired = [np.flatnonzero(drive[t]) for t in range(n_ticks)]
    events = 0
    t0 = time.perf_counter()
    for t in range(n_ticks):
        fired, ev = ref.tick(drive_fired[t - 1] if t > 0 else np.zeros(0, np.int64))
        events += ev
        if not np.array_equal(fired, np.flatnonzero(raster[t])):
            raise SystemExit(f"NumPy reference and emulator differ at tick {t}")
    return events, time.perf_counter() - t0


def same_traces(a, b) -> bool:
    """Whether two Traces hold the same vesicle and step tables (dtypes ignored when ``equals`` is too strict)."""
    if a.vesicles.equals(b.vesicles) and a.steps.equals(b.steps):
        return True
    try:
        pd.testing.assert_frame_equal(a.vesicles.reset_index(drop=True), b.vesicles.reset_index(drop=True),
                                      check_dtype=False)
        pd.testing.assert_frame_equal(a.steps.reset_index(drop=True), b.steps.reset_index(drop=True),
                                      check_dtype=False)
    except AssertionError:
        return False
    return True


def vesicle_part(n_nodes: int, ticks: int, ref_ticks: int, n_random: int = 10) -> dict:
    """Part 2: the reference vesicle model deployed on the emulator, against the NumPy reference."""
    f = {"vesicle_nodes": n_nodes, "vesicle_ticks": ticks}
    model, params = reference_model(n_nodes)
    t0 = time.perf_counter()
    prog = compile(model, params)
    f["vesicle_compile_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    emu = Emulator(prog)
    f["vesicle_load_s"] = time.perf_counter() - t0
    f["vesicle_node_cores"] = prog.resources["node_cores"]
    print(f"vesicle model: {n_nodes} nodes on {f['vesicle_node_cores']} node cores "
          f"(compile {f['vesicle_compile_s']:.3f} s, load {f['vesicle_load_s']:.3f} s)")

    t0 = time.perf_counter()
    run = emu.run(ticks, key=0)
    wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    traces = run.traces
    f["vesicle_traces_readback_s"] = time.perf_counter() - t0
    c = run.counters
    steps = c["vesicle_steps"]
    rate = steps / wall
    f.update({
        "vesicle_run_s": wall, "vesicle_steps": steps, "vesicle_hops_per_s": rate,
        "vesicle_ticks_per_s": ticks / wall, "vesicle_target_hops_per_s": TARGET_VESICLE_HOPS,
        "vesicle_target_met": bool(rate >= TARGET_VESICLE_HOPS),
        "vesicle_births": c["vesicle_births"], "vesicle_docks": c["vesicle_docks"],
        "vesicle_packets": c["vesicle_packets"], "vesicle_hops": c["vesicle_hops"],
        "vesicle_energy_uj": c["vesicle_energy_pj"] / 1e6,
        "vesicle_energy_per_hop_pj": c["vesicle_energy_pj"] / max(steps, 1),
        "vesicle_tile_hops_per_step": c["vesicle_hops"] / max(steps, 1),
    })

    # mean tile hops per migration step: this placement against random ones (same cores, nodes permuted)
    f["vesicle_expected_hops_placement"] = prog.vesicles.expected_hops(prog.chip)
    node_core = prog.vesicles.node_core
    tiles = [(core.x, core.y) for core in prog.vesicles.cores]
    rng = np.random.default_rng(0)
    f["vesicle_expected_hops_random"] = float(np.mean([
        expected_hops(prog.quantized_params, model, rng.permutation(node_core), tiles, prog.chip)
        for _ in range(n_random)]))
    f["vesicle_random_placements"] = n_random

    print(f"emulator: {ticks} ticks in {wall:.2f} s, {steps} vesicle-hops, {rate / 1e6:.2f} M vesicle-hops/s, "
          f"{ticks / wall:.0f} ticks/s (target ≥ {TARGET_VESICLE_HOPS / 1e6:.0f} M/s: "
          f"{'met' if f['vesicle_target_met'] else 'not met'}); traces read back in "
          f"{f['vesicle_traces_readback_s']:.2f} s")
    print(f"  births {c['vesicle_births']}, docks {c['vesicle_docks']}, packets {c['vesicle_packets']}, "
          f"tile hops {c['vesicle_hops']}, energy {c['vesicle_energy_pj'] / 1e6:.1f} µJ "
          f"({f['vesicle_energy_per_hop_pj']:.1f} pJ per vesicle-hop)")
    print(f"  tile hops per vesicle-step {f['vesicle_tile_hops_per_step']:.3f}; expected per step: placement "
          f"{f['vesicle_expected_hops_placement']:.3f}, random placement "
          f"{f['vesicle_expected_hops_random']:.3f} (mean of {n_random})")

    # NumPy reference of the deployed process, same key
    tables = prog.vesicles.tables()
    t0 = time.perf_counter()
    ref = simulate_vesicles(model, tables, ref_ticks, 1, key=0)
    ref_wall = time.perf_counter() - t0
    ref_rate = len(ref) / ref_wall
    f.update({"vesicle_numpy_ticks": ref_ticks, "vesicle_numpy_s": ref_wall, "vesicle_numpy_steps": len(ref),
              "vesicle_numpy_hops_per_s": ref_rate, "vesicle_ratio_vs_numpy": rate / ref_rate})
    if ref_ticks == ticks:
        f["vesicle_traces_identical"] = same_traces(traces, ref)
        check = "traces identical" if f["vesicle_traces_identical"] else "TRACES DIFFER"
    else:
        f["vesicle_traces_identical"] = None
        check = "traces not compared: different ticks"
    print(f"NumPy reference: {ref_ticks} ticks in {ref_wall:.2f} s, {ref_rate / 1e6:.2f} M vesicle-hops/s "
          f"({check}); emulator / NumPy = {f['vesicle_ratio_vs_numpy']:.2f}")
    return f


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a seconds-long run")
    args = parser.parse_args(argv)
    if args.quick:
        n, n_drive, ticks, ref_ticks = 2000, 100, 50, 50
        v_nodes, v_ticks, v_ref_ticks = 100, 50, 50
    else:
        n, n_drive, ticks, ref_ticks = 100_000, 1000, 1000, 1000
        v_nodes, v_ticks, v_ref_ticks = 1000, 1000, 1000
    figures = {"neurons": n + n_drive, "ticks": ticks}

    t0 = time.perf_counter()
    net = build(n, n_drive, 10, 90)
    figures["synapses"] = net.n_synapses
    figures["build_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prog = compile(net, chip=ChipConfig(rounding="nearest"))
    figures["compile_s"] = time.perf_counter() - t0
    figures["cores"] = prog.resources["cores"]
    t0 = time.perf_counter()
    emu = Emulator(prog)
    figures["load_s"] = time.perf_counter() - t0
    print(f"network: {figures['neurons']} neurons, {figures['synapses']} synapses on {figures['cores']} cores "
          f"(build {figures['build_s']:.1f} s, compile {figures['compile_s']:.1f} s, load {figures['load_s']:.1f} s)")

    rng = np.random.default_rng(1)
    drive = (rng.random((ticks, n_drive)) < 0.02).astype(np.int8)
    t0 = time.perf_counter()
    run = emu.run(ticks, key=0, inputs={"drive": drive})
    wall = time.perf_counter() - t0
    c = run.counters
    rate = (run.spikes["population"] == "net").sum() / n / ticks * 1000.0
    figures.update({
        "run_s": wall, "rate_hz": rate, "synaptic_ops": c["synaptic_ops"],
        "synaptic_events_per_s": c["synaptic_ops"] / wall, "ticks_per_s": ticks / wall,
        "neuron_updates": c["neuron_updates"], "instructions": c["instructions"], "packets": c["packets"],
        "hops": c["hops"], "energy_uj": c["energy_pj"] / 1e6,
        "energy_per_synaptic_op_pj": c["energy_pj"] / max(c["synaptic_ops"], 1),
    })
    print(f"emulator: {ticks} ticks in {wall:.2f} s, {rate:.2f} Hz per LIF neuron, "
          f"{c['synaptic_ops'] / wall / 1e6:.2f} M synaptic events/s, {ticks / wall:.0f} ticks/s")
    print(f"  packets {c['packets']}, hops {c['hops']}, neuron updates {c['neuron_updates']}, "
          f"instructions {c['instructions']}, energy {c['energy_pj'] / 1e6:.1f} µJ")

    # NumPy fixed-point reference over the first ticks, checked spike for spike
    events, ref_wall = numpy_reference(prog, net, drive, run.raster("net"), ref_ticks)
    figures.update({"numpy_ticks": ref_ticks, "numpy_s": ref_wall, "numpy_synaptic_events_per_s": events / ref_wall})
    figures["ratio_vs_numpy"] = figures["synaptic_events_per_s"] / figures["numpy_synaptic_events_per_s"]
    print(f"NumPy reference: {ref_ticks} ticks in {ref_wall:.2f} s, {events / ref_wall / 1e6:.2f} M synaptic "
          f"events/s (spikes identical); emulator / NumPy = {figures['ratio_vs_numpy']:.2f}")
    del run, emu, prog, net

    figures.update(vesicle_part(v_nodes, v_ticks, v_ref_ticks))
    print(json.dumps(json_safe(figures)))
    if figures["vesicle_traces_identical"] is False:
        raise SystemExit("NumPy reference and emulator give different vesicle traces")


if __name__ == "__main__":
    main()
