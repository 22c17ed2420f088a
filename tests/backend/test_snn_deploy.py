"""nv.snn networks with their vesicle field on the emulated chip: mapping, bit-exactness, statistics, refusals.

- the mapping: synapse order, units and spikes of an exactly representable network equal nv.snn's;
- the coupled fixed-point reference (``nvppl.backend.coupled_reference``: the network stepped as
  ``reference.simulate_fixed`` does and the vesicles as ``vesicle_reference`` does, interleaved tick by
  tick) equals the emulator bit for bit: spikes, state, traces, weights and vesicle events;
- the chip's rate window is nv.snn's ``"rate"`` covariate, tick for tick;
- in distribution, the weight trajectories of the chip follow ``nv.snn.learn`` with the float rule and
  field of the chip's conventions, within a bound derived from the quantisation plus 5 standard errors;
- what the chip cannot express is refused, naming the feature.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import nvppl as nv
from nvppl.backend import (ChipConfig, DeploymentError, Emulator, ImageError, STDP, ThreeFactor, compile,
                           read_image, snn_deployment)
from nvppl.backend.coupled_reference import simulate_coupled
from nvppl.backend.vesicle_rates import rate_lambda, rate_tables
from nvppl.snn import field as F


def _recurrent(seed=0, n_in=4, groups=3, per=3, u=(-2.0, 8.0), window=6):
    """A small recurrent network (leak, synaptic current, mixed signs) in ``groups`` nodes, inputs counted too.

    The input synapses are static, the recurrent ones plastic; the field emits from the rate (u₁ > 0).
    """
    rng = np.random.default_rng(seed)
    n = groups * per
    pre, post, w = [], [], []
    for i in range(n):
        for j in rng.choice(n_in, size=2, replace=False):
            pre.append(int(j)); post.append(i); w.append(float(rng.uniform(0.4, 0.9)))
    k = len(pre)
    for i in range(n):
        for j in rng.choice([m for m in range(n) if m != i], size=3, replace=False):
            pre.append(n_in + int(j)); post.append(i); w.append(float(rng.uniform(-0.2, 0.4)))
    plastic = np.arange(len(pre)) >= k
    net = nv.snn.LIFNetwork(n_in, n, pre, post, w, neuron=nv.snn.Neuron(tau_mem=4.0, tau_syn=2.0, v_th=0.8),
                            plastic=plastic)
    sub, node_of = nv.snn.group_substrate(net, np.repeat(np.arange(groups), per))
    node_of = node_of.copy()
    node_of[:n_in] = np.arange(n_in) % groups
    model = nv.VesicleModel(sub, n_types=2, covariate_dim=1, budget=[2, None])
    params = model.default_params().replace(u=np.array([list(u), [-2.5, 4.0]]), w=np.array([[0.0, 0.0],
                                                                                             [-1.0, 0.0]]),
                                            delta=np.array([0.15, 0.3]), a=np.full(groups, 0.05))
    fld = nv.snn.VesicleField(model, params, node_of, alpha=[40.0, 25.0], window=window, neighbourhood="post",
                              capacity=256)
    return net, fld


RULE = ThreeFactor(a_mod=24, shift=2, x=(2, 50), y=(2, 50), r=2)


def _inputs(T, n_in, seed, p=0.4):
    return np.random.default_rng(100 + seed).random((T, n_in)) < p


def test_the_network_maps_synapse_for_synapse():
    """A network the chip represents exactly (weights and threshold multiples of the LSB, no leak) spikes as
    nv.snn.run does, tick for tick, and the deployed weights are the edge list's in its own order. Catches pre
    and post swapped, inputs and neurons confused in the global unit numbering, or a synapse order that differs
    between the edge list and the projections' CSR memory (the weights are all distinct)."""
    rng = np.random.default_rng(3)
    n_in, n = 5, 12
    lsb = 1 / 64
    pairs = {(int(a), int(b)) for a, b in zip(rng.integers(0, n_in + n, 80), rng.integers(0, n, 80))
             if a != n_in + b}
    pre, post = (np.array(v) for v in zip(*rng.permutation(sorted(pairs))))
    w = rng.choice(np.r_[-30:0, 1:50], size=len(pre), replace=False) * lsb          # distinct, exact in LSB
    net = nv.snn.LIFNetwork(n_in, n, pre, post, w, neuron=nv.snn.Neuron(tau_mem=1.0, v_th=19 * lsb),
                            plastic=np.zeros(len(pre), bool))
    prog = compile(net, scale=lsb)
    dep = snn_deployment(prog)
    np.testing.assert_array_equal(dep.w0, np.rint(w / lsb).astype(np.int64))
    inp = _inputs(120, n_in, 0)
    run = Emulator(prog).run(120, key=0, inputs=dep.inputs(inp))
    ref = nv.snn.run(net, inputs=inp)
    np.testing.assert_array_equal(dep.spikes(run), np.asarray(ref.spikes))
    assert 50 < dep.spikes(run).sum() < 0.9 * dep.spikes(run).size          # neither silent nor saturated
    np.testing.assert_array_equal(dep.weight_lsb(run), dep.w0)


@pytest.mark.parametrize("rounding, interval, nodes_per_core, seed", [("nearest", 1, 1, 0), ("stochastic", 2, 3, 1)])
def test_emulator_equals_the_coupled_reference_bit_for_bit(rounding, interval, nodes_per_core, seed):
    """Spikes, state words, traces (x, y, r) and weights of every population and projection after every tick,
    and every vesicle event, equal the coupled fixed-point reference: the counts of tick t − 1 drive emission
    at t, docks at t fire the release ports at t, reward reaches the neurons at t + 1. Catches the emulator
    feeding the wrong tick's counts, a ring that drops or repeats a tick, a bucket or table row read at the
    wrong offset, or release ports fired a tick late. Checked to be exercised: several count buckets are read,
    vesicles dock and weights move."""
    net, fld = _recurrent(seed)
    chip = ChipConfig(rounding=rounding, learning_interval=interval)
    prog = compile(net, field=fld, plasticity=RULE, chip=chip, nodes_per_core=nodes_per_core)
    dep = snn_deployment(prog)
    T = 90
    inputs = dep.inputs(_inputs(T, net.n_input, seed))
    run = Emulator(prog).run(T, key=seed, inputs=inputs, record=("state", "traces", "weights"))
    ref = simulate_coupled(prog, T, key=seed, inputs=inputs)
    for pop in prog.populations:
        name = pop["name"]
        np.testing.assert_array_equal(run.raster(name), ref["spikes"][name], err_msg=name)
        np.testing.assert_array_equal(run.state(name), ref["state"][name], err_msg=name)
        np.testing.assert_array_equal(run.learning_traces(name), ref["traces"][name], err_msg=name)
    for k, p in enumerate(prog.projections):
        np.testing.assert_array_equal(run.weight_history(p["pre"], p["post"], p["kind"]), ref["weights"][k])
    for frame in ("vesicles", "steps"):
        pd.testing.assert_frame_equal(getattr(run.traces, frame).reset_index(drop=True),
                                      getattr(ref["vesicles"], frame).reset_index(drop=True))
    # exercised: counts spread over several buckets, docks released, plastic weights moved
    tables = prog.vesicles.tables().rate
    units = np.concatenate([_inputs(T, net.n_input, seed), dep.spikes(run)], axis=1)
    per_node = np.stack([units[:, fld.node_of == v].sum(1) for v in range(fld.model.n_nodes)], axis=1)
    window = np.array([per_node[max(0, t - fld.window):t].sum(0) for t in range(T)])
    assert len(np.unique(window >> tables.shift)) >= 5
    assert run.counters["vesicle_docks"] > 20 and (run.raster("vesicle_release").sum() > 10)
    assert np.any(dep.weight_lsb(run) != dep.w0)


def test_placement_does_not_change_the_run():
    """One node per core or all on one core: the same spikes, weights and vesicle events (draws are keyed by
    unit and vesicle, not core), and more node cores mean more rate-count packets' hops. Catches counts routed
    to the wrong node core or keyed by core."""
    net, fld = _recurrent(2)
    T = 60
    runs = []
    for npc in (1, 3):
        prog = compile(net, field=fld, plasticity=RULE, nodes_per_core=npc)
        dep = snn_deployment(prog)
        runs.append((dep, Emulator(prog).run(T, key=5, inputs=dep.inputs(_inputs(T, net.n_input, 2)))))
    (d1, r1), (d3, r3) = runs
    np.testing.assert_array_equal(d1.spikes(r1), d3.spikes(r3))
    np.testing.assert_array_equal(d1.weight_lsb(r1), d3.weight_lsb(r3))
    pd.testing.assert_frame_equal(r1.traces.steps, r3.traces.steps)
    counted = np.concatenate([_inputs(T, net.n_input, 2), d1.spikes(r1)], axis=1)[:T - 1][:, fld.node_of >= 0]
    assert r1.counters["vesicle_rate_packets"] == r3.counters["vesicle_rate_packets"] == int(counted.sum())
    for r in (r1, r3):
        c = r.counters
        assert c["packets"] == c["vesicle_packets"] + c["spike_packets"]
        assert c["vesicle_packets"] == (c["vesicle_migration_packets"] + c["vesicle_release_packets"]
                                        + c["vesicle_rate_packets"])


@pytest.mark.parametrize("T", [1, 2, 6, 7, 31])
def test_the_window_is_the_fields_rate_covariate(T):
    """After T ticks the node cores' window holds the spikes that nv.snn's ``"rate"`` covariate reads at tick
    T − 1 (``covariates_now`` × window × size, fed the chip's own spikes through ``record_spikes``), for runs
    shorter than, equal to and longer than the window (W = 6). Catches a window shifted by one tick, a window of
    W ± 1 ticks or units counted at the wrong node (inputs included)."""
    net, fld = _recurrent(4)
    prog = compile(net, field=fld, plasticity=RULE)
    dep = snn_deployment(prog)
    inp = _inputs(T, net.n_input, 4, p=0.6)
    emu = Emulator(prog)
    run = emu.run(T, key=1, inputs=dep.inputs(inp))
    units = np.concatenate([inp, dep.spikes(run)], axis=1)
    prep = F._prepare(fld, net)
    st = nv.snn.field_init(fld, net)
    for t in range(T):
        prev = jnp.asarray(units[t - 1] if t else np.zeros(net.n_units, bool))
        st = F.record_spikes(fld, prep, st, prev)
        rate = np.asarray(F.covariates_now(fld, prep, st, jnp.zeros(0)))[:, 0]
        st = st._replace(t=st.t + 1)
    size = np.bincount(fld.node_of[fld.node_of >= 0], minlength=fld.model.n_nodes)
    np.testing.assert_array_equal(emu.vesicles.engine.window_counts(), np.rint(rate * fld.window * size))
    if T > 6:
        assert emu.vesicles.engine.window_counts().sum() > 0


def test_image_round_trip_keeps_the_rate_tables(tmp_path):
    """The image holds the rate tables and sources: read back, the program is equal and runs identically; a
    changed rate word is a different program, and a table that decreases is refused naming the node core.
    Catches rate regions not written or read, or config registers lost."""
    net, fld = _recurrent(1)
    prog = compile(net, field=fld, plasticity=RULE, nodes_per_core=2)
    dep = snn_deployment(prog)
    prog.write(tmp_path)
    back = read_image(tmp_path)
    assert back.equals(prog)
    inputs = dep.inputs(_inputs(40, net.n_input, 1))
    a, b = Emulator(prog).run(40, key=3, inputs=inputs), Emulator(back).run(40, key=3, inputs=inputs)
    pd.testing.assert_frame_equal(a.traces.steps, b.traces.steps)
    np.testing.assert_array_equal(a.raster("neurons"), b.raster("neurons"))
    core = prog.vesicles.cores[0]
    path = tmp_path / f"core_{core.x}_{core.y}.txt"
    lines = path.read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if line.split()[4].startswith("0x0c"))   # the first rate word
    parts = lines[k].split()
    parts[5] = hex(65536)            # the first cumulative entry at 2**16, then smaller ones: decreasing
    lines[k] = " ".join(parts)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImageError, match=rf"node core \({core.x}, {core.y}\), node \d+, count bucket 0"):
        read_image(tmp_path)


def test_rate_tables_and_their_report():
    """Per count, the deployed emission law is Poisson(λ(rate)) up to the 16-bit thresholds; with buckets of
    2ˢ counts the report's bucketing error is exactly max |λ(c) − λ(middle of c's bucket)|, zero for s = 0;
    without an explicit shift the smallest that fits the table memory is taken and reported. Catches the middle
    count mislocated, the rate divided by the wrong size, or a shift chosen silently."""
    net, fld = _recurrent(0, window=8)
    model, params = fld.model, fld.params
    size = np.bincount(fld.node_of[fld.node_of >= 0], minlength=model.n_nodes)
    tables, rows = rate_tables(model, params, size, 8, 0)
    report = pd.DataFrame(rows, columns=["kernel", "index", "worst", "typical", "what"]).set_index("kernel")
    assert report.loc["emission bucketing", "worst"] == 0 and report.loc["emission", "worst"] < 1e-4
    assert report.loc["emission mean", "worst"] < 1e-3
    _, rows2 = rate_tables(model, params, size, 8, 2)
    worst = 0.0
    for s in np.unique(size):
        c = np.arange(8 * s + 1)
        mid = ((c >> 2 << 2) + np.minimum((c >> 2 << 2) + 3, 8 * s)) / 2
        worst = max(worst, float(np.abs(rate_lambda(model, params, c / (8 * s))
                                        - rate_lambda(model, params, mid / (8 * s))).max()))
    got = dict((r[0], r[2]) for r in rows2)["emission bucketing"]
    assert got == pytest.approx(worst, rel=1e-12) and worst > 0.01
    # the fullest node core's tables at shift 0 do not fit 600 words: the smallest shift that fits is used
    full = compile(net, field=fld, plasticity=RULE, nodes_per_core=3)
    assert full.quantization_report.attrs["rate_shift"] == 0
    small = compile(net, field=fld, plasticity=RULE, nodes_per_core=3, chip=ChipConfig(synapse_words=600))
    s = small.quantization_report.attrs["rate_shift"]
    assert s > 0 and small.resources["table_words_max_per_core"][0] <= 600
    assert small.quantization_report.set_index("kernel").loc["emission bucketing", "worst"] > 0
    with pytest.raises(nv.CapacityError, match="table memory"):
        compile(net, field=fld, plasticity=RULE, nodes_per_core=3, chip=ChipConfig(synapse_words=600),
                rate_shift=0)


def test_float_conventions_of_the_deployment():
    """The float rule and field a deployment hands to nv.snn.learn carry the chip's conventions: τ = 2ᵏ with
    Euler decay, η from scale, a_mod, increments, alpha_scale and shift, the learning interval, the deployed
    α, a release trace of 2^k_r with a one-tick delay and one release per (node, type, tick). The release
    recursion is checked on the field's own ticks: m(t) = Σ_{k≥1} (1 − 1/τ)^(k−1) S(t − k) and S = α·[docks > 0].
    Catches a trace that includes this tick's release, a wrong η, or docks summed instead of counted once."""
    net, fld = _recurrent(0)
    chip = ChipConfig(learning_interval=3)
    prog = compile(net, field=fld, plasticity=RULE, chip=chip, alpha_scale=0.5)
    dep = snn_deployment(prog)
    rule, ffld = dep.float_rule(), dep.float_field()
    assert (rule.tau_plus, rule.tau_minus, rule.trace_decay, rule.interval, rule.eligibility) == (
        4.0, 4.0, "euler", 3, "product")
    assert rule.eta == pytest.approx(dep.scale * 24 * 50 * 50 * 0.5 / 2 ** (14 + 2), rel=1e-12)
    np.testing.assert_array_equal(dep.alpha, [20, 12])                       # round(40 · ½), round(25 · ½)
    np.testing.assert_allclose(ffld.alpha, [40.0, 24.0])
    assert ffld.release_trace == 4.0 and ffld.release_once
    prep = F._prepare(ffld, net)
    st = nv.snn.field_init(ffld, net)
    T = 60
    spikes = jnp.asarray(np.random.default_rng(0).random((T, net.n_units)) < 0.5)

    def body(s, xs):
        k, sp = xs
        s = F.record_spikes(ffld, prep, s, sp)
        s, m, info = F._field_step(ffld, prep, s, jnp.zeros(0), k, net.n_synapses)
        return s, (m, info.strength, info.docks)

    _, (m, S, docks) = jax.lax.scan(body, st, (jax.random.split(jax.random.key(0), T), spikes))
    m, S, docks = np.asarray(m), np.asarray(S), np.asarray(docks)
    np.testing.assert_allclose(S, (docks > 0) @ ffld.alpha, rtol=1e-6)
    assert (docks > 1).any()                                                    # several docks in one tick occur
    A = np.zeros((T, fld.model.n_nodes))
    for t in range(1, T):
        A[t] = A[t - 1] * 0.75 + S[t - 1]
    post_node = fld.node_of[net.n_input + np.asarray(net.post)]
    np.testing.assert_allclose(m, A[:, post_node], rtol=1e-5, atol=1e-4)


def test_refusals_name_the_feature():
    """What the chip cannot express is refused with a message naming it: a refractory period, plastic and
    static synapses in one projection, a w_max the 8-bit saturation does not meet, a field releasing from alive
    vesicles, over pre and post, event-driven, with content, negative or too large α, a global signal, docking
    with covariates, a tilt, countdown lifetimes, plastic synapses without a rule."""
    net, fld = _recurrent(0)
    base = dict(field=fld, plasticity=RULE)
    refr = nv.snn.LIFNetwork(net.n_input, net.n, net.pre, net.post, net.weights,
                             neuron=dataclasses.replace(net.neuron, refractory=2), plastic=net.plastic)
    with pytest.raises(DeploymentError, match="refractory = 2"):
        compile(refr, **base)
    mixed = np.asarray(net.plastic).copy()
    mixed[np.flatnonzero(mixed)[0]] = False
    mixed_net = nv.snn.LIFNetwork(net.n_input, net.n, net.pre, net.post, net.weights, neuron=net.neuron,
                                  plastic=mixed)
    with pytest.raises(DeploymentError, match=r"synapses \d+ \(plastic\) and \d+ \(static\)"):
        compile(mixed_net, **base)
    bounded = nv.snn.LIFNetwork(net.n_input, net.n, net.pre, net.post, net.weights, neuron=net.neuron,
                                plastic=net.plastic, w_max=1.0)
    with pytest.raises(DeploymentError, match=r"w_max = 1.0: the chip saturates plastic weights at 127 LSB"):
        compile(bounded, scale=0.01, **base)
    compile(bounded, **base)                                       # the default scale puts w_max at 127 LSB
    for change, word in (({"which": "alive"}, "which='alive'"), ({"neighbourhood": "pre_post"}, "neighbourhood"),
                         ({"event_driven": True}, "event_driven"), ({"alpha": [-1.0, 2.0]}, r"alpha\[0\] = -1.0"),
                         ({"alpha": [400.0, 2.0]}, r"alpha\[0\] = 400.0.*1..127")):
        with pytest.raises(DeploymentError, match=word):
            compile(net, field=dataclasses.replace(fld, **change), plasticity=RULE)
    sub, model = fld.model.substrate, fld.model
    cases = [
        (nv.VesicleModel(sub, n_types=1, covariate_dim=2), ("rate", "reward"), {}, "covariate 'reward'"),
        (nv.VesicleModel(sub, n_types=1, covariate_dim=1), ("rate",), {"w": [[0.0, 1.5]]}, "docking with covariates"),
        (nv.VesicleModel(sub, n_types=1, covariate_dim=1, content_dim=1), ("rate",), {}, "content"),
        (nv.VesicleModel(sub, n_types=1, covariate_dim=1, tilt=True), ("rate",), {}, "tilt"),
        (nv.VesicleModel(sub, n_types=1, covariate_dim=1, lifetime="countdown"), ("rate",), {}, "countdown"),
    ]
    for m, covs, change, word in cases:
        params = m.default_params().replace(**change) if change else m.default_params()
        f = nv.snn.VesicleField(m, params, fld.node_of, alpha=[10.0], covariates=covs, neighbourhood="post")
        with pytest.raises(DeploymentError, match=word):
            compile(net, field=f, plasticity=RULE)
    with pytest.raises(ValueError, match="plastic: pass plasticity"):
        compile(net, field=fld)
    with pytest.raises(DeploymentError, match="needs plasticity=ThreeFactor"):
        compile(net, field=fld, plasticity=STDP())
    with pytest.raises(TypeError, match="release= belongs to vesicle models"):
        compile(net, field=fld, plasticity=RULE, release={})
    with pytest.raises(TypeError, match="belongs to an nvppl.snn.LIFNetwork"):
        compile(model, fld.params, field=fld)
    with pytest.raises(DeploymentError, match="covariate_dim = 1: emission and docking with covariates"):
        compile(model, fld.params)                                  # a rate model alone has no spikes to count


# ---------------------------------------------------------------------------------------------------------
# the chip against nv.snn.learn, in distribution

N_IN, GROUPS, PER = 8, 4, 4
RATES = np.array([0.5, 0.35, 0.2, 0.08])      # input spike probability per tick, per node group
A_MOD, SHIFT = 1, 7
STAT_RULE = ThreeFactor(a_mod=A_MOD, shift=SHIFT, x=(1, 60), y=(1, 60), r=2)


def _relay_network():
    """Neurons relay their input (τ_mem = 1, input weight = threshold) so that spikes do not depend on learning.

    Node g holds 4 neurons, each driven by one of inputs 2g, 2g + 1 (which the node counts too), and receives
    2 plastic recurrent synapses from other neurons; the plastic weights stay far below the threshold.
    """
    rng = np.random.default_rng(123)
    n = GROUPS * PER
    pre = list(2 * (np.arange(n) // PER) + np.arange(n) % 2)
    post, w, plastic = list(range(n)), [0.5] * n, [False] * n
    for i in range(n):
        for j in rng.choice([m for m in range(n) if m != i], size=2, replace=False):
            pre.append(N_IN + int(j)); post.append(i); w.append(4 / 128); plastic.append(True)
    net = nv.snn.LIFNetwork(N_IN, n, pre, post, w, neuron=nv.snn.Neuron(tau_mem=1.0, v_th=0.5),
                            plastic=np.array(plastic), w_min=0.0, w_max=127 / 128)
    sub, node_of = nv.snn.group_substrate(net, np.repeat(np.arange(GROUPS), PER))
    node_of = node_of.copy()
    node_of[:N_IN] = np.arange(N_IN) // 2
    model = nv.VesicleModel(sub, n_types=1, covariate_dim=1)
    params = model.default_params().replace(u=np.array([[-3.0, 10.0]]), w=np.array([[-0.4, 0.0]]),
                                            delta=np.array([0.2]))
    fld = nv.snn.VesicleField(model, params, node_of, alpha=[30.0], window=10, neighbourhood="post", capacity=512)
    return net, fld


@pytest.mark.slow
def test_weight_trajectories_follow_the_float_model():
    r"""Mean weight change per node group at 5 checkpoints, chip against nv.snn.learn (float rule and field of
    the chip's conventions), over 12 seeds of Poisson inputs (T = 200 ticks, learning every 2 ticks, stochastic
    rounding).

    Why the two agree in expectation. The neurons relay their inputs (τ_mem = 1: no leak to quantise; weights
    and threshold exact in LSB; the plastic weights never reach the threshold), so both see the same spikes —
    checked, seed by seed — and so the same rates, the same emission laws and, up to the 2⁻¹⁶ thresholds
    (relative errors < 1e-4 in ``prog.quantization_report``, negligible here), the same dock process. Stochastic
    rounding makes every shift unbiased, so given the spikes E[x] = i_x x̂, E[y] = i_y ŷ and E[r] = α_scale E[Â]
    (no trace saturates: x ≤ 2·60 = 120, r ≤ 4·30 = 120 < 127, checked), x, y, r draw independent noise, and
    the traces never leave 0..127. What remains are the two floors of the MOD product: with f₁, f₂ ∈ [0, 1),
    Q = ⌊⌊x y / 128⌋ r / 128⌋ = x y r / 2¹⁴ − f₁ r / 128 − f₂, so per synapse and learning tick the chip's mean
    change lies in [−(a/2ˢ)(E[r]/128 + P(r > 0)), 0] LSB of the float one (0 where r = 0). The bias bound B of a
    group at a checkpoint is that sum over its synapses' learning ticks, with E[r] and P(r > 0) measured on
    the chip (mean over seeds).

    Assertion: with D the per-seed difference chip − float (both in LSB), −B − 5 SE ≤ mean(D) ≤ 5 SE, SE the
    standard error of mean(D) over seeds. Non-vacuous: the signal is several times the tolerance in the busiest
    group, and the float field without the chip's timing (instantaneous field, every dock released) fails
    the same test (on 6 seeds). Catches a reward trace decaying at the wrong rate, a missing or doubled
    delay, the wrong η, or emission not following the rate (the groups would converge)."""
    net, fld = _relay_network()
    chip = ChipConfig(rounding="stochastic", learning_interval=2)
    prog = compile(net, field=fld, plasticity=STAT_RULE, chip=chip)
    assert prog.quantization_report.attrs["rate_shift"] == 0 and (prog.quantization_report["worst"] < 1e-4).all()
    dep = snn_deployment(prog)
    rule, ffld = dep.float_rule(), dep.float_field()
    naive = dataclasses.replace(ffld, release_trace=None, release_once=False)
    emu = Emulator(prog)
    plastic = np.asarray(net.plastic)
    group = (np.asarray(net.post) // PER)[plastic]
    T, every, S, N_NAIVE = 200, 40, 12, 6
    checkpoints = np.arange(every - 1, T, every)
    learn_ticks = (np.arange(T) + 1) % chip.learning_interval == 0
    chip_dw, float_dw, naive_dw, r_load = [], [], [], []
    w_start = np.asarray(net.weights)[plastic]
    for seed in range(S):
        inp = np.random.default_rng(1000 + seed).random((T, N_IN)) < np.repeat(RATES, 2)[None]
        run = emu.run(T, key=seed, inputs=dep.inputs(inp), record=("weights", "traces"))
        hist = dep.weight_history(run)[:, plastic] - dep.w0[plastic]
        chip_dw.append(hist[checkpoints])
        r = run.learning_traces("neurons")[:, :, 2].astype(float)            # (T, n)
        assert r.max() < 127 and run.learning_traces("neurons")[:, :, :2].max() < 127
        post = np.asarray(net.post)[plastic]
        load = np.where(learn_ticks[:, None], r[:, post] / 128 + (r[:, post] > 0), 0.0)
        r_load.append(np.cumsum(load, axis=0)[checkpoints] * A_MOD / 2 ** SHIFT)
        for fl, out in ((ffld, float_dw), (naive, naive_dw)):
            if fl is naive and seed >= N_NAIVE:
                continue
            res = nv.snn.learn(net, rule, inputs=inp, key=seed, modulation=fl, signals=np.zeros((T, 0)),
                               record_every=every, record_synapses=np.flatnonzero(plastic))
            np.testing.assert_array_equal(res.spikes, dep.spikes(run), err_msg=f"seed {seed}: spikes differ")
            out.append((res.weights - w_start) / dep.scale)

    def by_group(x):                       # (seeds, checkpoints, synapses) -> (seeds, checkpoints, groups)
        return np.stack([np.asarray(x)[..., group == g].mean(-1) for g in range(GROUPS)], axis=-1)

    def accepted(D):                       # D: (seeds, checkpoints, groups) of chip − float
        mean, se = D.mean(0), D.std(0, ddof=1) / np.sqrt(len(D))
        return bool(np.all(mean <= 5 * se) and np.all(mean >= -B - 5 * se)), mean, se

    c, f, naive_f, B = by_group(chip_dw), by_group(float_dw), by_group(naive_dw), by_group(r_load).mean(0)
    ok, mean, se = accepted(c - f)
    assert ok, f"chip − float per checkpoint × group:\n{mean}\nbias bound:\n{B}\nSE:\n{se}"
    final = f.mean(0)[-1]
    assert final[0] > 3 * (B[-1, 0] + 5 * se[-1, 0]) and np.all(np.diff(final) < 0)   # signal; rate matters
    naive_ok, naive_mean, naive_se = accepted(c[:N_NAIVE] - naive_f)
    assert not naive_ok                                                 # the naive field fails the same test
    print(f"float mean change (LSB, checkpoints × groups):\n{f.mean(0)}\nchip − float:\n{mean}\nSE:\n{se}\n"
          f"bias bound:\n{B}\nchip − naive field:\n{naive_mean}\nits SE:\n{naive_se}")
