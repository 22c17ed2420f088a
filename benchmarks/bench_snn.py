"""Benchmark: ``nv.snn`` (the LIF network in JAX) against the chip emulator on the same network.

Part 1, the emulator's benchmark network (``bench_emulator.build``, imported, not
copied): an input population ``drive`` of 1000 Poisson sources (20 Hz at 1 ms per
tick) and 10⁵ LIF neurons (τ_mem = 16 ticks, threshold 1, no synaptic current),
10 synapses per neuron from ``drive`` and 90 recurrent ones (80 % excitatory
0.03, 20 % inhibitory −0.25): 10⁷ synapses, 1000 ticks. The same network,
converted to an ``nv.snn.LIFNetwork`` (inputs first, synapses ordered by their
source unit), runs in the same process

- on ``nv.backend.Emulator`` (fixed point, nearest rounding, as in
  ``bench_emulator``),
- with ``nv.snn.run`` and the full segment sum over every synapse per tick
  (the formulation before the event-driven input; a shorter run of
  ``--dense-ticks`` ticks, since it visits all 10⁷ synapses each tick),
- with ``nv.snn.run`` and the event-driven synaptic input
  (``LIFNetwork(..., max_spikes=, max_events=)``: only the outgoing synapses of
  the units that spiked are gathered), checked to give exactly the spikes of the
  full segment sum over the ticks both ran,
- and, for the first ``--numpy-ticks`` ticks, the NumPy fixed-point reference of
  ``bench_emulator`` (``NumpyLIF``), checked spike for spike against the emulator.

Figures: seconds, ticks/s, neuron updates/s (LIF neurons × ticks / s) and
synaptic events/s (the outgoing synapses of every spike delivered within the
run, the emulator's ``synaptic_ops`` for the emulator), and the firing rates
(nv.snn runs in float32, the emulator in 16-bit fixed point: the rates agree,
the spikes need not). ``nv.snn`` times exclude compilation (a first call with
the same shapes compiles; its seconds are reported as ``*_first_call_s``).

Part 2, the "must run on a CPU" size: the same recipe with 10⁴ LIF neurons,
1000 drive units and 10⁶ synapses, run by ``nv.snn.learn`` with three-factor
plasticity at the recurrent excitatory synapses (STDP eligibility, τ_c = 1000
ticks, w in [0, 0.25], the recipe's weight bound) and a global modulator (a reward pulse every 500 ticks),
with the full and with the event-driven synaptic input. Figures as in part 1
plus plastic-synapse updates/s (plastic synapses × ticks / s). ``learn``
compiles at every call, within its first chunk of ticks, so the per-tick
figures come from the later four fifths of the run (``progress=True`` lines).

Part 3, a check (an assertion, also in ``--quick``): on a small network of the
same recipe, ``nv.snn.run`` (float32) gives the spikes of
``nvppl.backend.reference.simulate_float`` (float64, the emulator's update order)
at every tick, with potentials within 1e-4.

Figures of ``taskset -c 0 python benchmarks/bench_snn.py`` (one core of a shared
2-core machine; 1 min 45 s in all). Part 1 (10⁵ LIF, 9 991 549 synapses, 1000
ticks): emulator 8.8 s, 114 ticks/s, 11.4 M neuron updates/s, 8.6 M synaptic
events/s, 6.18 Hz (compile and load 33 s); NumPy fixed-point reference 26.6 M
synaptic events/s over 200 ticks; ``nv.snn.run`` with the full segment sum
44 ticks/s, 4.4 M neuron updates/s, 3.3 M synaptic events/s (before); with the
event-driven input (``max_spikes=1024, max_events=131072``) 245 ticks/s,
24.5 M neuron updates/s, 19.3 M synaptic events/s, 6.55 Hz (after: 5.6× the
full segment sum, 2.2× the emulator's synaptic events/s; identical spikes to
the full segment sum; the 6 % higher rate than the emulator's is the chip's
quantisation). Part 2 (10⁴ LIF, 995 522 synapses of which 715 700 plastic,
``learn``): 254 → 369 ticks/s (1.46×), 2.5 → 3.7 M neuron updates/s,
182 → 264 M plastic-synapse updates/s, identical spikes and weights. What is
left per tick there is the eligibility of eq. 56, which gathers the traces of
every synapse's two ends each tick (O(E)); the same event-driven rows (the
synapses of the units that spiked, and their transpose for the postsynaptic
term) would make it O(spikes × degree) plus one O(E) decay — a prototype gave
the same floats at 1.8× the speed of ``eligibility_step`` on the 1000-neuron
network of ``bench_distal_reward``; it is not in ``nvppl.snn``.

The last line printed is one JSON object with all figures. ``--quick`` runs
2000 neurons for 50 ticks (part 1), 1000 neurons for 1000 ticks (part 2).
"""

from __future__ import annotations

import os

# one core, like the emulator
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_emulator import build, numpy_reference  # noqa: E402
from bench_simulate import json_safe  # noqa: E402

import jax  # noqa: E402

import nvppl as nv  # noqa: E402
from nvppl.backend import ChipConfig, Emulator, compile  # noqa: E402
from nvppl.backend.reference import simulate_float  # noqa: E402


def to_snn(net, **kwargs):
    """An ``nv.snn.LIFNetwork`` of a backend ``Network`` with one input and one LIF population.

    Units: the input population's, then the LIF neurons; synapses in CSR order of
    the projections (ordered by source unit). ``kwargs`` go to ``LIFNetwork``.
    """
    inputs = [p for p in net.populations if p.kind == "input"]
    lifs = [p for p in net.populations if p.kind == "lif"]
    if len(inputs) != 1 or len(lifs) != 1:
        raise ValueError(f"to_snn needs one input and one LIF population, got {net!r}")
    src, lif = inputs[0], lifs[0]
    offset = {src.name: 0, lif.name: src.size}
    pre, post, w = [], [], []
    for proj in net.projections:
        if proj.kind != "spike" or proj.plasticity is not None:
            raise ValueError(f"to_snn: {proj!r} is not a static spike projection")
        W = proj.weights.tocsr()
        pre.append(offset[proj.pre.name] + np.repeat(np.arange(W.shape[0]), np.diff(W.indptr)))
        post.append(W.indices.astype(np.int64))
        w.append(W.data)
    pre, post, w = np.concatenate(pre), np.concatenate(post), np.concatenate(w)
    order = np.lexsort((post, pre))
    nrn = lif.neuron
    neuron = nv.snn.Neuron(tau_mem=nrn.tau_mem, tau_syn=nrn.tau_syn, v_th=nrn.v_th, v_reset=nrn.v_reset,
                           bias=nrn.bias)
    return nv.snn.LIFNetwork(src.size, lif.size, pre[order], post[order], w[order], neuron=neuron, **kwargs)


def delivered_events(snet, drive, spikes) -> int:
    """Outgoing synapses of every spike delivered within the run (spikes of ticks 0 … T−2)."""
    deg = np.bincount(np.asarray(snet.pre), minlength=snet.n_units)
    d_in, d_lif = deg[:snet.n_input], deg[snet.n_input:]
    s = np.asarray(spikes)
    return int((np.asarray(drive[:-1], np.int64) @ d_in).sum() + (s[:-1].astype(np.int64) @ d_lif).sum())


def timed_run(snet, drive):
    """(first call seconds, second call seconds, output) of ``nv.snn.run`` on the same inputs."""
    t0 = time.perf_counter()
    out = nv.snn.run(snet, inputs=drive)
    out.spikes.block_until_ready()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = nv.snn.run(snet, inputs=drive)
    out.spikes.block_until_ready()
    return first, time.perf_counter() - t0, out


def part_network(n, n_drive, ticks, dense_ticks, numpy_ticks, max_spikes, max_events) -> dict:
    f = {"neurons": n, "drive_units": n_drive, "ticks": ticks}
    t0 = time.perf_counter()
    net = build(n, n_drive, 10, 90)
    f["synapses"] = net.n_synapses
    f["build_s"] = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    drive = (rng.random((ticks, n_drive)) < 0.02).astype(np.int8)
    print(f"network: {n} LIF + {n_drive} drive units, {net.n_synapses} synapses, {ticks} ticks")

    # the emulator
    t0 = time.perf_counter()
    prog = compile(net, chip=ChipConfig(rounding="nearest"))
    emu = Emulator(prog)
    f["emulator_compile_load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    run = emu.run(ticks, key=0, inputs={"drive": drive})
    wall = time.perf_counter() - t0
    c = run.counters
    raster = run.raster("net")
    f.update({"emulator_run_s": wall, "emulator_ticks_per_s": ticks / wall,
              "emulator_neuron_updates_per_s": n * ticks / wall, "emulator_synaptic_ops": c["synaptic_ops"],
              "emulator_synaptic_events_per_s": c["synaptic_ops"] / wall,
              "emulator_rate_hz": raster.mean() * 1000.0})
    print(f"emulator: {wall:.2f} s, {ticks / wall:.0f} ticks/s, {n * ticks / wall / 1e6:.1f} M neuron updates/s, "
          f"{c['synaptic_ops'] / wall / 1e6:.2f} M synaptic events/s, {f['emulator_rate_hz']:.2f} Hz")

    # the NumPy fixed-point reference of bench_emulator, spike for spike against the emulator
    events, ref_wall = numpy_reference(prog, net, drive, raster, numpy_ticks)
    f.update({"numpy_ticks": numpy_ticks, "numpy_s": ref_wall, "numpy_ticks_per_s": numpy_ticks / ref_wall,
              "numpy_neuron_updates_per_s": n * numpy_ticks / ref_wall,
              "numpy_synaptic_events_per_s": events / ref_wall})
    print(f"NumPy fixed-point reference: {numpy_ticks} ticks in {ref_wall:.2f} s, {events / ref_wall / 1e6:.2f} M "
          "synaptic events/s (spikes identical to the emulator)")
    del run, emu, prog, raster

    # nv.snn: full segment sum (before) and event-driven input (after)
    dense_net = to_snn(net)
    event_net = to_snn(net, max_spikes=max_spikes, max_events=max_events)
    del net
    first, wall, out_d = timed_run(dense_net, drive[:dense_ticks])
    ev_d = delivered_events(dense_net, drive[:dense_ticks], out_d.spikes)
    f.update({"snn_dense_ticks": dense_ticks, "snn_dense_first_call_s": first, "snn_dense_s": wall,
              "snn_dense_ticks_per_s": dense_ticks / wall, "snn_dense_neuron_updates_per_s": n * dense_ticks / wall,
              "snn_dense_synaptic_events_per_s": ev_d / wall})
    print(f"nv.snn.run, full segment sum: {dense_ticks} ticks in {wall:.2f} s (first call {first:.2f} s), "
          f"{dense_ticks / wall:.1f} ticks/s, {n * dense_ticks / wall / 1e6:.2f} M neuron updates/s, "
          f"{ev_d / wall / 1e6:.3f} M synaptic events/s")
    spikes_d = np.asarray(out_d.spikes)
    del out_d
    first, wall, out_e = timed_run(event_net, drive)
    spikes_e = np.asarray(out_e.spikes)
    del out_e
    ev_e = delivered_events(event_net, drive, spikes_e)
    same = bool(np.array_equal(spikes_e[:dense_ticks], spikes_d))
    f.update({"snn_event_max_spikes": event_net.max_spikes, "snn_event_max_events": event_net.max_events,
              "snn_event_first_call_s": first, "snn_event_s": wall, "snn_event_ticks_per_s": ticks / wall,
              "snn_event_neuron_updates_per_s": n * ticks / wall, "snn_synaptic_events": ev_e,
              "snn_event_synaptic_events_per_s": ev_e / wall, "snn_rate_hz": spikes_e.mean() * 1000.0,
              "snn_event_equals_dense": same,
              "snn_event_speedup_vs_dense": (ticks / wall) / f["snn_dense_ticks_per_s"],
              "snn_event_vs_emulator_events": (ev_e / wall) / f["emulator_synaptic_events_per_s"]})
    print(f"nv.snn.run, event-driven input (max_spikes {event_net.max_spikes}, max_events {event_net.max_events}): "
          f"{ticks} ticks in {wall:.2f} s (first call {first:.2f} s), {ticks / wall:.0f} ticks/s, "
          f"{n * ticks / wall / 1e6:.1f} M neuron updates/s, {ev_e / wall / 1e6:.2f} M synaptic events/s, "
          f"{f['snn_rate_hz']:.2f} Hz; spikes {'identical to' if same else 'DIFFERENT FROM'} the full segment sum "
          f"over {dense_ticks} ticks; {f['snn_event_speedup_vs_dense']:.1f}× the full segment sum, "
          f"{f['snn_event_vs_emulator_events']:.2f}× the emulator's synaptic events/s")
    if not same:
        raise SystemExit("event-driven and full synaptic input give different spikes")
    return f


def part_plastic(n, n_drive, ticks, max_spikes, max_events) -> dict:
    """nv.snn.learn with a global modulator on the recipe at n neurons (10⁶ synapses at n = 10⁴)."""
    f = {"plastic_neurons": n, "plastic_ticks": ticks}
    net = build(n, n_drive, 10, 90)
    base = to_snn(net)
    pre, w = np.asarray(base.pre), np.asarray(base.weights)
    plastic = (pre >= base.n_input) & (w > 0)
    kw = dict(neuron=base.neuron, plastic=plastic, w_min=0.0, w_max=0.25)
    nets = {"dense": nv.snn.LIFNetwork(base.n_input, n, pre, base.post, w, **kw),
            "event": nv.snn.LIFNetwork(base.n_input, n, pre, base.post, w, max_spikes=max_spikes,
                                       max_events=max_events, **kw)}
    f.update({"plastic_synapses": base.n_synapses, "plastic_plastic_synapses": int(plastic.sum())})
    rule = nv.snn.Plasticity(eligibility="stdp", tau_fast=1000.0, eta=1e-3)
    rng = np.random.default_rng(2)
    drive = rng.random((ticks, n_drive)) < 0.02
    reward = np.zeros((ticks, 1))
    reward[499::500] = 0.5
    print(f"plastic network: {n} LIF + {n_drive} drive units, {base.n_synapses} synapses "
          f"({f['plastic_plastic_synapses']} plastic), {ticks} ticks, nv.snn.learn with a global modulator")
    results = {}
    chunk = ticks // 5
    for name, snet in nets.items():
        # learn compiles at every call, within its first chunk of ticks: the per-tick cost is taken from
        # the later chunks (learn's progress lines give the ticks done and the rate since the start)
        log = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(log):
            res = nv.snn.learn(snet, rule, drive, key=0, signals=reward, record_every=chunk,
                               record_synapses=np.arange(1), chunk=chunk, progress=True)
        wall = time.perf_counter() - t0
        done = [(int(m.group(1)), int(m.group(1)) / float(m.group(2).replace(",", "")))
                for m in re.finditer(r"tick (\d+)/\d+ \(([\d,]+) ticks/s\)", log.getvalue())]
        per_tick = (done[-1][1] - done[0][1]) / (done[-1][0] - done[0][0])
        ev = delivered_events(snet, drive, res.spikes)
        results[name] = res
        f.update({f"plastic_{name}_s": wall, f"plastic_{name}_first_chunk_s": done[0][1],
                  f"plastic_{name}_ticks_per_s": 1 / per_tick,
                  f"plastic_{name}_neuron_updates_per_s": n / per_tick,
                  f"plastic_{name}_synaptic_events_per_s": ev / ticks / per_tick,
                  f"plastic_{name}_synapse_updates_per_s": f["plastic_plastic_synapses"] / per_tick})
        print(f"  {name:5s} input: {ticks} ticks in {wall:.2f} s (first {chunk} ticks, with compilation, "
              f"{done[0][1]:.2f} s); after: {1 / per_tick:.0f} ticks/s, {n / per_tick / 1e6:.2f} M neuron "
              f"updates/s, {ev / ticks / per_tick / 1e6:.2f} M synaptic events/s, "
              f"{f['plastic_plastic_synapses'] / per_tick / 1e6:.0f} M plastic-synapse updates/s")
    same = bool(np.array_equal(results["dense"].spikes, results["event"].spikes)
                and np.array_equal(results["dense"].w, results["event"].w))
    f["plastic_rate_hz"] = float(results["event"].spikes.mean() * 1000.0)
    f["plastic_event_equals_dense"] = same
    f["plastic_event_speedup_vs_dense"] = f["plastic_event_ticks_per_s"] / f["plastic_dense_ticks_per_s"]
    print(f"  rate {f['plastic_rate_hz']:.2f} Hz; spikes and weights {'identical' if same else 'DIFFERENT'} "
          f"with the two inputs; event-driven {f['plastic_event_speedup_vs_dense']:.2f}× the full segment sum")
    if not same:
        raise SystemExit("event-driven and full synaptic input give different learning runs")
    return f


def check_float_reference(n=300, n_drive=50, ticks=200) -> dict:
    """nv.snn.run (float32) against ``simulate_float`` (float64) on a small network: same spikes, close V."""
    net = build(n, n_drive, 10, 90, seed=3)
    drive = (np.random.default_rng(4).random((ticks, n_drive)) < 0.05).astype(np.int8)
    ref = simulate_float(net, ticks, inputs={"drive": drive})
    checks = {}
    for name, snet in (("dense", to_snn(net)), ("event", to_snn(net, max_spikes=64))):
        out = nv.snn.run(snet, inputs=drive)
        s, v = np.asarray(out.spikes), np.asarray(out.v, np.float64)
        diff = np.flatnonzero((s != ref["spikes"]["net"]).any(1))
        assert diff.size == 0, f"nv.snn ({name} input) and simulate_float differ first at tick {diff[0]}"
        dv = float(np.abs(v - ref["v"]["net"]).max())
        assert dv < 1e-4, f"nv.snn ({name} input): potentials differ from simulate_float by {dv}"
        checks[name] = dv
    n_spikes = int(ref["spikes"]["net"].sum())
    assert n_spikes > 0, "the check network must spike for the comparison to mean something"
    print(f"check: nv.snn.run (float32, full and event-driven input) = simulate_float (float64) on {n} neurons × "
          f"{ticks} ticks: identical spikes ({n_spikes}), max |ΔV| {max(checks.values()):.1e}")
    return {"float_check_neurons": n, "float_check_ticks": ticks, "float_check_spikes": n_spikes,
            "float_check_max_dv": max(checks.values()), "float_check_passed": True}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a seconds-long run")
    parser.add_argument("--dense-ticks", type=int, default=100,
                        help="ticks of the full-segment-sum run on the 10⁵-neuron network")
    parser.add_argument("--numpy-ticks", type=int, default=200, help="ticks of the NumPy reference")
    args = parser.parse_args(argv)
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}")
    figures = check_float_reference()
    if args.quick:
        figures.update(part_network(2000, 100, 50, 50, 50, max_spikes=256, max_events=8192))
        figures.update(part_plastic(1000, 100, 1000, max_spikes=128, max_events=8192))
    else:
        figures.update(part_network(100_000, 1000, 1000, args.dense_ticks, args.numpy_ticks,
                                    max_spikes=1024, max_events=131072))
        figures.update(part_plastic(10_000, 1000, 2000, max_spikes=256, max_events=16384))
    print(json.dumps(json_safe(figures)))


if __name__ == "__main__":
    main()
