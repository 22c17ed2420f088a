"""Release of docking vesicles into a base network: where and when weights learn, counters, refusals.

One small deployment is run once for the module: six graph nodes with three
LIF neurons each, on a directed substrate without self-candidates
(``allow_stay=False``) so that every node has a role:

- ``a`` has no incoming edge: vesicles leave it and never arrive, so it never
  sees a dock although it has a release mapping;
- ``b`` and ``c`` form the route, ``d`` is a sink at its end (vesicles dock on
  arriving there, then leave the graph at their next step);
- ``e`` holds its vesicles (a self-loop) and sees docks, but has no release
  mapping;
- ``f`` is an isolated sink with a release mapping: vesicles born there are
  removed at their first step without a step row, so it never sees a dock.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import nvppl as nv
from nvppl.backend import LIF, Emulator, Network, ThreeFactor, compile
from nvppl.backend.deploy import RELEASE_POPULATION

LABELS = ("a", "b", "c", "d", "e", "f")
MAPPED = ("a", "b", "c", "d", "f")
PER_NODE = 3
N_IN = 6
TICKS = 120
KEY = 1
AMPLITUDE = (100, 50)


def _model():
    G = nx.DiGraph()
    G.add_nodes_from(LABELS)
    G.add_edges_from([("a", "b"), ("b", "b"), ("b", "c"), ("c", "b"), ("c", "d"), ("e", "e"), ("e", "b")])
    sub = nv.Substrate.from_networkx(G, allow_stay=False)
    assert sub.labels == LABELS and [sub.labels[i] for i in sub.sinks] == ["d", "f"]
    return nv.VesicleModel(sub, n_types=2)


def _params(model):
    sub = model.substrate
    T = np.zeros((2,) + sub.candidates.shape)
    rows = {"a": [1.0], "b": [0.4, 0.6], "c": [0.3, 0.7], "e": [0.5, 0.5]}   # over the sorted candidates
    for label, row in rows.items():
        i = sub.index_of(label)
        assert sub.n_candidates[i] == len(row)
        T[:, i, :len(row)] = row
    return model.default_params().replace(T=T, u=np.array([[1.0], [0.0]]), w=np.array([[0.0], [-1.0]]),
                                          delta=np.array([0.1, 0.2]))


def _network(seed=0):
    net = Network()
    inp = net.add_input("in", N_IN)
    # scale: weights of 30–60 LSB, far from the 8-bit maximum, so that every rewarded synapse can grow
    out = net.add_lif("out", len(LABELS) * PER_NODE, LIF(tau_mem=8.0, v_th=1.0, scale=0.01))
    W0 = np.random.default_rng(seed).uniform(0.3, 0.6, (N_IN, out.size))
    net.connect(inp, out, W0, plasticity=ThreeFactor(a_mod=64, shift=2, x=(3, 100), y=(3, 100), r=3))
    return net


def _neurons(label):
    i = LABELS.index(label)
    return range(i * PER_NODE, (i + 1) * PER_NODE)


def _release():
    return {label: ("out", _neurons(label)) for label in MAPPED}


def _inputs(n_ticks=TICKS, seed=0):
    return {"in": (np.random.default_rng(seed + 1).random((n_ticks, N_IN)) < 0.5).astype(np.int8)}


@pytest.fixture(scope="module")
def deployed():
    model = _model()
    params = _params(model)
    net = _network()
    prog = compile(model, params, network=net, release=_release(), release_amplitude=list(AMPLITUDE),
                   nodes_per_core=2)
    emu = Emulator(prog)
    w0 = emu.run(0).weights("in", "out").toarray()
    run = emu.run(TICKS, key=KEY, inputs=_inputs(), record=("weights", "traces"))
    steps = run.traces.steps
    types = run.traces.vesicles[["run", "vesicle", "type"]]
    docks = steps[steps["docked"]].merge(types, on=["run", "vesicle"], how="left")
    assert len(docks) == run.counters["vesicle_docks"]
    return dict(model=model, params=params, net=net, prog=prog, run=run, w0=w0, docks=docks)


def _port_of(prog):
    return {(int(node), int(k)): p for p, (node, k) in enumerate(prog.vesicles.ports)}


def test_the_substrate_gives_every_node_its_role(deployed):
    docks = deployed["docks"]
    per_node = docks.groupby("node_to").size().reindex(list(LABELS), fill_value=0)
    assert per_node["a"] == 0 and per_node["f"] == 0                      # mapped, never reached
    assert (per_node[["b", "c", "d", "e"]] > 0).all(), per_node.to_dict()
    assert set(docks["type"]) == {0, 1}
    model = deployed["model"]
    assert {tuple(p) for p in deployed["prog"].vesicles.ports.tolist()} == {
        (model.substrate.index_of(label), k) for label in MAPPED for k in range(2)}


def test_weights_change_exactly_onto_neurons_of_nodes_with_docks(deployed):
    run, w0, docks = deployed["run"], deployed["w0"], deployed["docks"]
    # a dock at the last tick sends its reward spike, but the spike would arrive after the run
    early = docks[(docks["step"] < TICKS - 1) & docks["node_to"].isin(MAPPED)]
    learned = set(early["node_to"])
    assert learned == {"b", "c", "d"}
    w1 = run.weights("in", "out").toarray()
    node_of = np.repeat(np.array(LABELS, dtype=object), PER_NODE)
    expected = np.broadcast_to(np.isin(node_of, sorted(learned)), w0.shape)
    np.testing.assert_array_equal(w1 != w0, expected)
    assert np.all(w1 >= w0)                                                 # a_mod > 0, α_κ > 0: potentiation only
    # causality: weights onto a node's neurons move first at the tick after its first dock
    history = run.weight_history("in", "out")                               # (ticks, synapses) in CSR order
    post = run.weights("in", "out").tocoo()
    assert np.array_equal(post.row, np.repeat(np.arange(N_IN), w0.shape[1]))   # dense CSR order: row-major
    moved = history != w0.reshape(-1)[None, :]
    for label in learned:
        cols = np.isin(post.col, _neurons(label))
        first_change = int(np.flatnonzero(moved[:, cols].any(axis=1))[0])
        first_dock = int(early.loc[early["node_to"] == label, "step"].min())
        assert first_change == first_dock + 1, (label, first_dock, first_change)


def test_release_ports_fire_at_the_docks_and_reward_arrives_one_tick_later(deployed):
    run, prog, model, docks = deployed["run"], deployed["prog"], deployed["model"], deployed["docks"]
    port_of = _port_of(prog)
    ports = prog.vesicles.ports
    # (b1) the release relays fire at exactly the (tick, port) of the docks at nodes with release
    expected = set()
    for step, label, k in docks[["step", "node_to", "type"]].itertuples(index=False):
        p = port_of.get((model.substrate.index_of(label), int(k)))
        if p is not None:
            expected.add((int(step), p))
    fired = run.spikes[run.spikes["population"] == RELEASE_POPULATION]
    got = list(zip(fired["tick"].astype(int), fired["neuron"].astype(int)))
    assert len(got) == len(set(got))                                        # a relay fires once per tick at most
    assert set(got) == expected and expected
    # (b2) reward reaches the node's neurons at t + 1: r rises only then, by at least α (or to saturation)
    n_out = len(LABELS) * PER_NODE
    arrival = np.zeros((TICKS + 1, n_out), dtype=np.int64)
    for t, p in got:
        node, k = ports[p]
        arrival[t + 1, _neurons(model.substrate.labels[node])] += AMPLITUDE[k]
    arrival = arrival[:TICKS]
    r = run.learning_traces("out")[:, :, 2].astype(np.int64)
    before = np.vstack([np.zeros((1, n_out), np.int64), r[:-1]])
    hit = arrival > 0
    assert np.all(r[hit] >= np.minimum(arrival[hit], 127))
    assert np.all(r[~hit] <= before[~hit])                                  # without arrival, r only decays
    assert np.all(r[:, np.isin(np.repeat(np.array(LABELS, dtype=object), PER_NODE), ["a", "e", "f"])] == 0)


def test_counters_split_vesicle_and_spike_traffic(deployed):
    run, prog, model, docks = deployed["run"], deployed["prog"], deployed["model"], deployed["docks"]
    c = run.counters
    port_of = _port_of(prog)
    port_docks = sum((model.substrate.index_of(label), int(k)) in port_of
                     for label, k in docks[["node_to", "type"]].itertuples(index=False))
    assert port_docks > 0
    assert c["vesicle_release_packets"] >= port_docks
    for k in ("packets", "flits", "hops"):
        assert c[k] == c[f"vesicle_{k}"] + c[f"spike_{k}"], k
    assert c["energy_pj"] == pytest.approx(c["vesicle_energy_pj"] + c["spike_energy_pj"], rel=1e-12)
    assert c["vesicle_packets"] == c["vesicle_migration_packets"] + c["vesicle_release_packets"]
    assert c["vesicle_docks"] == len(docks)


def test_spike_traffic_is_the_traffic_of_the_base_network(deployed):
    """Spike traffic of the deployment equals the base network's own (its output population sends nothing)."""
    run, docks = deployed["run"], deployed["docks"]
    alone = Emulator(compile(deployed["net"])).run(TICKS, key=KEY, inputs=_inputs())
    fired = int((run.spikes["population"] == RELEASE_POPULATION).sum())
    assert fired < len(docks)            # several vesicles dock at one port in one tick in this run
    c = run.counters
    for k in ("packets", "flits", "hops"):
        assert c[f"spike_{k}"] == alone.counters[k], k


def test_the_network_does_not_perturb_the_vesicle_process(deployed):
    model, params, run = deployed["model"], deployed["params"], deployed["run"]
    alone = Emulator(compile(model, params, nodes_per_core=2)).run(TICKS, key=KEY, n_runs=1)
    for name in ("vesicles", "steps"):
        pd.testing.assert_frame_equal(getattr(run.traces, name).reset_index(drop=True),
                                      getattr(alone.traces, name).reset_index(drop=True))
    for k in ("vesicle_births", "vesicle_steps", "vesicle_docks", "vesicle_draws", "vesicle_migration_packets"):
        assert run.counters[k] == alone.counters[k], k


def test_a_type_with_zero_amplitude_has_no_port_and_releases_nothing():
    model = _model()
    params = _params(model)
    prog = compile(model, params, network=_network(), release=_release(), release_amplitude=[0, 80],
                   nodes_per_core=3)
    assert sorted(set(prog.vesicles.ports[:, 1].tolist())) == [1]
    assert len(prog.vesicles.ports) == len(MAPPED)
    run = Emulator(prog).run(60, key=KEY, inputs=_inputs(60))
    steps, types = run.traces.steps, run.traces.vesicles[["run", "vesicle", "type"]]
    docks = steps[steps["docked"]].merge(types, on=["run", "vesicle"])
    fired = run.spikes[run.spikes["population"] == RELEASE_POPULATION]
    expected = {(int(s), prog.vesicles.ports.tolist().index([model.substrate.index_of(lab), 1]))
                for s, lab, k in docks[["step", "node_to", "type"]].itertuples(index=False)
                if k == 1 and lab in MAPPED}
    assert set(zip(fired["tick"].astype(int), fired["neuron"].astype(int))) == expected and expected


def test_release_amplitudes_at_the_ends_of_the_range_are_accepted():
    model = _model()
    prog = compile(model, _params(model), network=_network(), release={"b": ("out", [0])},
                   release_amplitude=[1, 127], nodes_per_core=3)
    assert prog.vesicles.ports.tolist() == [[1, 0], [1, 1]]


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    (dict(network=None), ValueError, r"release= needs a base network \(network=\)"),
    (dict(release_amplitude=None), ValueError, r"release_amplitude .*needed with release="),
    (dict(release_amplitude=[100, 128]), ValueError, r"release_amplitude must hold 2 integers .*128"),
    (dict(release_amplitude=[-1, 100]), ValueError, r"release_amplitude\[0\] = -1: the reward trace is unsigned"),
    (dict(release_amplitude=[100, 2.5]), ValueError, r"release_amplitude must hold 2 integers .*2\.5"),
    (dict(release_amplitude=[100]), ValueError, r"release_amplitude must hold 2 integers .*\[100\]"),
    (dict(release_amplitude=[0, 0]), ValueError, r"no \(node, type\) releases"),
    (dict(release={"zz": ("out", [0])}), KeyError, r"release: 'zz' is not a node of the substrate"),
    (dict(release={0: ("out", [0])}), KeyError, r"release: 0 is not a node of the substrate"),
    (dict(release={"b": ("nope", [0])}), KeyError, r"release\['b'\]: the network has no population 'nope'"),
    (dict(release={"b": ("in", [0])}), ValueError, r"release\['b'\]: population 'in' is an input population"),
    (dict(release={"c": ("out", [0, 18])}), ValueError, r"release\['c'\]: index 18; neuron indices .*0\.\.17"),
    (dict(release={"c": ("out", [-1])}), ValueError, r"release\['c'\]: index -1; neuron indices .*0\.\.17"),
    (dict(release={"c": ("out", np.arange(18) < 3)}), ValueError, r"release\['c'\]: neuron indices must be integers"),
    (dict(release={"c": ("out", [0.5])}), ValueError, r"release\['c'\]: neuron indices must be integers"),
    (dict(release={"c": ("out", [])}), ValueError, r"release\['c'\]: no neuron indices given; .*0\.\.17"),
    (dict(release={"c": "out"}), ValueError, r"release\['c'\] must be \(population name, neuron indices\)"),
])
def test_release_errors_name_the_offending_item(kwargs, error, message):
    model = _model()
    args = dict(network=_network(), release={"b": ("out", [0, 1])}, release_amplitude=[100, 50], nodes_per_core=3)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        compile(model, _params(model), **args)


def test_release_refusals_outside_a_vesicle_deployment():
    net = _network()
    with pytest.raises(TypeError, match=r"compile\(network\): release= belongs to vesicle models"):
        compile(net, release={"b": ("out", [0])})
    taken = _network()
    taken.add_input(RELEASE_POPULATION, 1)
    model = _model()
    with pytest.raises(ValueError, match=rf"already has a population named '{RELEASE_POPULATION}'"):
        compile(model, _params(model), network=taken, release={"b": ("out", [0])}, release_amplitude=[1, 1])
