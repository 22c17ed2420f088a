"""The compiled emulator against the NumPy fixed-point reference, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tests._support.networks import random_inputs, random_network, small_chip
from nvppl.backend import LIF, ChipConfig, Emulator, Network, ThreeFactor, compile, read_image
from nvppl.backend import isa, noc
from nvppl.backend.reference import simulate_fixed
from nvppl.errors import CapacityError

T = 40


def _compare(prog, run, ref):
    net = prog.network
    for pop in net.populations:
        np.testing.assert_array_equal(run.raster(pop.name), ref["spikes"][pop.name], err_msg=f"spikes of {pop.name}")
        np.testing.assert_array_equal(run.state(pop.name), ref["state"][pop.name], err_msg=f"state of {pop.name}")
        np.testing.assert_array_equal(run.learning_traces(pop.name), ref["traces"][pop.name],
                                      err_msg=f"traces of {pop.name}")
    for proj in net.projections:
        np.testing.assert_array_equal(run.weight_history(proj.pre.name, proj.post.name, proj.kind),
                                      ref["weights"][proj.index], err_msg=f"weights of projection {proj.index}")


@pytest.mark.parametrize("rounding", ["floor", "nearest", "stochastic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_emulator_equals_fixed_point_reference(rounding, seed):
    net = random_network(seed)
    chip = small_chip(rounding=rounding, learning_interval=1 + seed % 3)
    prog = compile(net, chip=chip)
    assert prog.resources["cores"] > len(net.populations)  # populations span several cores
    inputs = random_inputs(net, T, seed)
    run = Emulator(prog).run(T, key=seed, inputs=inputs, record=("state", "traces", "weights"))
    ref = simulate_fixed(prog, T, key=seed, inputs=inputs)
    _compare(prog, run, ref)
    # the run is not trivial: spikes in every LIF population and weights that moved
    for pop in net.populations:
        if pop.kind == "lif":
            assert run.raster(pop.name).any(), pop.name
    moved = [not np.array_equal(run.weight_history(p.pre.name, p.post.name)[-1], prog.extra["weights"][p.index].data)
             for p in net.projections if p.plasticity is not None]
    assert all(moved)


def test_event_driven_work_and_reproducibility():
    net = random_network(3, bias=False)
    prog = compile(net, chip=small_chip(rounding="stochastic"))
    emu = Emulator(prog)
    busy = random_inputs(net, T, 3, rate=0.3)
    a = emu.run(T, key=7, inputs=busy)
    b = emu.run(T, key=7, inputs=busy)
    c = emu.run(T, key=8, inputs=busy)
    assert a.spikes.equals(b.spikes) and a.counters == b.counters
    assert not np.array_equal(a._final["state"], c._final["state"])  # stochastic rounding follows the key
    # event-driven: input in the first ticks only; once every neuron sits at a fixed point of its
    # program (nearest rounding stalls leaks at small values), a longer run costs no more updates
    prog = compile(net, chip=small_chip(rounding="nearest"))
    emu = Emulator(prog)
    inputs = random_inputs(net, 8, 3, rate=0.5)
    a = emu.run(2 * T, key=7, inputs=inputs, record=("state", "traces", "weights"))
    b = emu.run(4 * T, key=7, inputs=inputs)
    assert a.counters["neuron_updates"] == b.counters["neuron_updates"] < net.n_neurons * T
    assert a.raster("p0").any()
    _compare(prog, a, simulate_fixed(prog, 2 * T, key=7, inputs=inputs))


def test_counters_follow_the_spikes():
    net = random_network(4, plastic=False)
    chip = small_chip()
    prog = compile(net, chip=chip)
    inputs = random_inputs(net, T, 4)
    run = Emulator(prog).run(T, key=0, inputs=inputs)
    # synaptic operations: each spike at t < T-1 reaches every synapse of its row; inputs reach one relay synapse
    syn_ops = sum(int(v.sum()) for v in inputs.values())
    packets = hops = 0
    core_of = {}
    for k, p in enumerate(prog.populations):
        for c in p["cores"]:
            core = prog.cores[c]
            for i in range(core.n_neurons):
                core_of[(p["name"], core.config["first_neuron"] + i)] = (core.x, core.y)
    for proj in net.projections:
        fan = np.diff(proj.weights.indptr)
        r = run.raster(proj.pre.name)
        syn_ops += int((r[:-1].sum(axis=0) * fan).sum())
    for pop in net.populations:
        r = run.raster(pop.name)
        for i in range(pop.size):
            dests = set()
            for proj in net.outgoing(pop):
                row = proj.weights.indices[proj.weights.indptr[i]:proj.weights.indptr[i + 1]]
                dests |= {(core_of[(proj.post.name, int(j))], proj.kind) for j in row}
            n_spk = int(r[:, i].sum())
            packets += n_spk * len(dests)
            src = core_of[(pop.name, i)]
            hops += n_spk * sum(abs(d[0][0] - src[0]) + abs(d[0][1] - src[1]) for d in dests)
    n_in = sum(int(v.sum()) for v in inputs.values())
    ctrl = chip.controller
    in_hops = sum(int(v[:, i].sum()) * (abs(core_of[(name, i)][0] - ctrl[0]) + abs(core_of[(name, i)][1] - ctrl[1]))
                  for name, v in inputs.items() for i in range(v.shape[1]))
    c = run.counters
    assert c["synaptic_ops"] == syn_ops
    assert c["packets"] == packets + n_in and c["input_packets"] == n_in
    assert c["hops"] == hops + in_hops
    assert c["spikes"] == len(run.spikes)
    energy = (c["synaptic_ops"] * chip.pj_per_synop + c["hops"] * chip.pj_per_hop
              + c["neuron_updates"] * chip.pj_per_neuron_update + c["weight_updates"] * chip.pj_per_weight_update
              + c["instructions"] * chip.pj_per_instruction)
    assert c["energy_pj"] == pytest.approx(energy, rel=1e-12)
    assert run.link_load.sum() == c["hops"]


def test_three_factor_learning_only_where_reward_arrives():
    rng = np.random.default_rng(5)
    net = Network()
    inp = net.add_input("in", 6)
    rew = net.add_input("reward", 1)
    out = net.add_lif("out", 8, LIF(tau_mem=4.0, v_th=1.0))
    net.connect(inp, out, sp.csr_matrix(rng.uniform(0.3, 0.8, (6, 8))),
                plasticity=ThreeFactor(a_mod=64, shift=2, x=(2, 100), y=(2, 100), r=2))
    rewarded = np.array([1, 4, 6])
    R = np.zeros((1, 8))
    R[0, rewarded] = 100
    net.connect(rew, out, R, kind="reward")
    prog = compile(net, chip=small_chip())
    n = 60
    spikes = (rng.random((n, 6)) < 0.5).astype(int)
    reward = np.zeros((n, 1), dtype=int)
    reward[10::7] = 1
    run = Emulator(prog).run(n, key=0, inputs={"in": spikes, "reward": reward})
    w0 = prog.extra["weights"][0].toarray()
    w1 = run.weights("in", "out").toarray()
    changed = np.any(w1 != w0, axis=0)
    assert changed[rewarded].all()
    assert not changed[np.setdiff1d(np.arange(8), rewarded)].any()
    assert run.raster("out")[:, ~np.isin(np.arange(8), rewarded)].any()  # the others fired but did not learn


def test_image_round_trip_runs_identically(tmp_path):
    net = random_network(6)
    prog = compile(net, chip=small_chip(rounding="stochastic"))
    prog.write(tmp_path)
    back = read_image(tmp_path)
    assert back.equals(prog)
    inputs = random_inputs(net, 20, 6)
    a = Emulator(prog).run(20, key=3, inputs=inputs, record=("state",))
    b = Emulator(back).run(20, key=3, inputs=inputs, record=("state",))
    assert a.spikes.equals(b.spikes)
    np.testing.assert_array_equal(a._records["state"], b._records["state"])
    # a changed word is a different program
    text = (tmp_path / f"core_{prog.cores[1].x}_{prog.cores[1].y}.txt").read_text().splitlines()
    text[-1] = text[-1][:-1] + ("0" if text[-1][-1] != "0" else "1")
    (tmp_path / f"core_{prog.cores[1].x}_{prog.cores[1].y}.txt").write_text("\n".join(text) + "\n")
    assert not read_image(tmp_path).equals(prog)


def test_image_errors_name_the_line(tmp_path):
    net = random_network(0, plastic=False)
    prog = compile(net, chip=small_chip())
    prog.write(tmp_path)
    path = tmp_path / f"core_{prog.cores[0].x}_{prog.cores[0].y}.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + ["0 W 9 9 0x06000000 0x1"]) + "\n")
    with pytest.raises(ValueError, match=rf"line {len(lines) + 1}: write to core \(9, 9\)"):
        read_image(tmp_path)
    path.write_text("\n".join(lines + ["0 W 1 2 0x01"]) + "\n")
    with pytest.raises(ValueError, match=f"line {len(lines) + 1}"):
        read_image(tmp_path)


def test_capacity_refusals_name_the_resource():
    net = Network()
    a = net.add_input("a", 30)
    b = net.add_lif("b", 60)
    net.connect(a, b, np.full((30, 60), 0.1))
    with pytest.raises(CapacityError, match=r"needs \d+ neuron cores .*'b': 15.*the chip has 8"):
        compile(net, chip=ChipConfig(width=3, height=3, neurons_per_core=4))
    with pytest.raises(CapacityError, match=r"population 'b', neuron 0: 30 incoming synapses .* \(20 words\)"):
        compile(net, chip=ChipConfig(synapse_words=20))
    with pytest.raises(CapacityError, match=r"axon-table words; a core has 10, even with one neuron per core"):
        compile(net, chip=ChipConfig(axon_words=10))
    sparse_net = Network()
    c = sparse_net.add_input("c", 30)
    d = sparse_net.add_lif("d", 60)
    sparse_net.connect(c, d, sp.csr_matrix((np.ones(60), (np.arange(60) % 30, np.arange(60))), shape=(30, 60)))
    with pytest.raises(CapacityError, match=r"axon-table words; a core has 50; with fewer neurons per core .* "
                                            r"needs \d+ neuron cores"):
        compile(sparse_net, chip=ChipConfig(axon_words=50, width=2, height=2))
    # placement spreads a population when its axon tables overflow
    spread = compile(net, chip=ChipConfig(axon_words=60))
    assert all(len(c.axon_in) + len(c.axon_out) <= 60 for c in spread.cores)
    assert len(spread.cores) > len(compile(net).cores)
    with pytest.raises(CapacityError, match=r"instruction memory holds 4"):
        compile(net, chip=ChipConfig(instruction_words=4))
    # placement splits by synapse memory too: 60 neurons x 30 synapses over 100-word cores
    prog = compile(net, chip=ChipConfig(synapse_words=100))
    used = [len(c.synapses) for c in prog.cores if c.config["population"] == 1]
    assert max(used) <= 100 and sum(used) == 1800


def test_program_errors_are_reported_with_their_place():
    net = Network()
    a = net.add_input("a", 2)
    b = net.add_lif("b", 2)
    net.connect(a, b, np.eye(2))
    prog = compile(net, chip=small_chip())
    loop = isa.assemble("NPC\nCMP WGTSUM, R0\nJC EQ, done\nstart: ADDI R0, R0, 1\nJC AL, start\ndone: NPC\n")
    for core in prog.cores:
        if core.config["population"] == 1:
            core.program = loop.words.copy()
            core.config["program_words"] = len(loop)
    with pytest.raises(isa.ISAError, match=r"tick 1, core \(\d, \d\), population 'b', neuron 0: .*4096 instructions"):
        Emulator(prog).run(3, inputs={"a": [[1, 0]]})


def test_input_errors():
    net = random_network(0, plastic=False)
    emu = Emulator(compile(net, chip=small_chip()))
    with pytest.raises(KeyError, match="no population named 'nope'"):
        emu.run(5, inputs={"nope": np.zeros((5, 2))})
    with pytest.raises(ValueError, match="'p0' is not an input population"):
        emu.run(5, inputs={"p0": np.zeros((5, net.population("p0").size))})
    with pytest.raises(ValueError, match=r"inputs\['in'\] must have shape"):
        emu.run(5, inputs={"in": np.zeros((5, 1))})
    bad = np.zeros((5, net.population("in").size))
    bad[2, 1] = 2
    with pytest.raises(ValueError, match=r"tick 2, neuron 1 holds 2"):
        emu.run(5, inputs={"in": bad})
    with pytest.raises(ValueError, match="record: unknown item 'voltage'"):
        emu.run(5, record=("voltage",))


def test_routing_of_every_packet_follows_xy():
    net = random_network(7, plastic=False)
    chip = ChipConfig(width=20, height=20, neurons_per_core=2)
    prog = compile(net, chip=chip)
    emu = Emulator(prog)
    L = emu.layout
    for e in range(len(L.out_axon)):
        src = prog.cores[L.out_src_core[e]]
        dst = prog.cores[L.out_dst_core[e]]
        r = noc.route(chip, (src.x, src.y), (dst.x, dst.y))
        assert r.hops == L.out_hops[e] == abs(src.x - dst.x) + abs(src.y - dst.y)
