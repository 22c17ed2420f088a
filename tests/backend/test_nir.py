"""Export to and import from NIR graphs: exact round trips, graphs of other tools, refusals."""

from __future__ import annotations

import dataclasses
import math

import nir
import numpy as np
import pytest
import scipy.sparse as sp
from tests._support.networks import random_inputs, random_network

from nvppl.backend import (
    LIF,
    STDP,
    Emulator,
    Network,
    ThreeFactor,
    compile,
    from_nir,
    to_nir,
)
from nvppl.backend.reference import simulate_float


def assert_same_network(net: Network, back: Network):
    assert back.names == net.names  # same populations, same order
    for a, b in zip(net.populations, back.populations):
        assert (b.name, b.kind, b.size, b.index) == (a.name, a.kind, a.size, a.index)
        if a.kind == "input":
            assert b.neuron is None
            continue
        for f in dataclasses.fields(LIF):
            va, vb = getattr(a.neuron, f.name), getattr(b.neuron, f.name)
            if va is None:
                assert vb is None, (a.name, f.name, vb)
            else:
                assert vb is not None and vb == va, (a.name, f.name, va, vb)  # exact, inf included
    assert len(back.projections) == len(net.projections)
    for a, b in zip(net.projections, back.projections):
        assert (b.pre.name, b.post.name, b.kind) == (a.pre.name, a.post.name, a.kind)
        assert b.weights.shape == a.weights.shape
        np.testing.assert_array_equal(b.weights.indptr, a.weights.indptr)  # same synapses, zeros included
        np.testing.assert_array_equal(b.weights.indices, a.weights.indices)
        np.testing.assert_array_equal(b.weights.data, a.weights.data)
        assert type(b.plasticity) is type(a.plasticity)
        assert b.plasticity == a.plasticity
        if b.plasticity is not None:
            for f in dataclasses.fields(b.plasticity):
                value = getattr(b.plasticity, f.name)
                assert type(value) in (int, tuple), (f.name, type(value))


def hand_made() -> Network:
    """Orders that are not alphabetical, no leak, a synaptic current, an inexact bias, a fixed scale,
    a synapse of weight zero, a population without inputs, names that collide with exported node names."""
    net = Network()
    z = net.add_input("z_in", 3)
    net.add_input("idle", 2)  # no projections at all
    b = net.add_lif("b", 4, LIF(tau_mem=3.0, tau_syn=5.0, v_th=0.9, v_reset=-0.2, bias=0.1, scale=0.01))
    a = net.add_lif("z_in->b", 2, LIF(tau_mem=math.inf, v_th=1.2))  # the name of the projection z_in -> b
    c = net.add_lif("b.out", 3, LIF(tau_mem=7.0, v_th=0.5, bias=0.07))  # no incoming projections
    W = sp.csr_matrix((np.array([0.5, 0.0, -0.25, 1.0]), (np.array([0, 0, 1, 2]), np.array([1, 3, 0, 2]))),
                      shape=(3, 4))
    net.connect(z, b, W, plasticity=STDP(a_pre=12, a_post=-9, shift=3, x=(2, 70), y=(4, 33)))
    net.connect(b, a, np.array([[0.3, 0.0], [0.0, 0.6], [0.2, 0.2], [-0.1, 0.4]]))
    net.connect(c, b, np.full((3, 4), 0.125), plasticity=ThreeFactor(a_mod=40, shift=2, r=3, a_pre=1, a_post=-2))
    net.connect(z, b, np.array([[5.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, -7.0, 0]]), kind="reward")
    return net


def test_hand_made_network_is_meaningful():
    assert (0.1 * 3.0) / 3.0 != 0.1  # the bias does not survive v_leak / tau
    net = hand_made()
    assert net.projections[0].weights.nnz == 4 and 0.0 in net.projections[0].weights.data
    assert sorted(net.names) != net.names


@pytest.mark.parametrize("make", [lambda: random_network(0), lambda: random_network(1),
                                  lambda: random_network(2, plastic=False), lambda: random_network(3, bias=False),
                                  hand_made], ids=["random0", "random1", "random2-static", "random3-nobias", "hand"])
def test_round_trip_in_memory_and_through_a_file(make, tmp_path):
    net = make()
    graph = to_nir(net)
    assert_same_network(net, from_nir(graph))
    path = tmp_path / "net.nir"
    nir.write(path, graph)
    assert_same_network(net, from_nir(path))
    assert_same_network(net, from_nir(str(path)))
    # other tools read the file with NIR's own type inference
    other = nir.read(path)
    for pop in net.populations:
        assert pop.name in other.nodes


def test_export_uses_nir_semantics():
    net = hand_made()
    graph = to_nir(net)
    b, a, c = graph.nodes["b"], graph.nodes["z_in->b"], graph.nodes["b.out"]
    assert isinstance(b, nir.CubaLIF) and isinstance(a, nir.IF) and isinstance(c, nir.LIF)
    np.testing.assert_array_equal(b.r, np.full(4, 3.0))
    np.testing.assert_array_equal(b.w_in, np.full(4, 5.0))
    np.testing.assert_array_equal(b.v_leak, np.full(4, 0.1 * 3.0))
    np.testing.assert_array_equal(c.tau, np.full(3, 7.0))
    np.testing.assert_array_equal(a.r, np.ones(2))
    assert b.metadata["nvppl"]["bias"] == 0.1 and b.metadata["nvppl"]["scale"] == 0.01
    # every LIF population feeds an Output; exported names avoid the population names
    outputs = {src: dst for src, dst in graph.edges if isinstance(graph.nodes[dst], nir.Output)}
    assert sorted(outputs) == ["b", "b.out", "z_in->b"]
    assert len(set(outputs.values())) == 3 and not set(outputs.values()) & set(net.names)
    linear = [n for n in graph.nodes.values() if isinstance(n, nir.Linear)]
    assert len(linear) == 4 and len(graph.nodes) == len(net.populations) + 3 + 4
    np.testing.assert_array_equal(linear[0].weight, net.projections[0].weights.T.toarray())


def test_bias_prefers_the_stored_value_only_when_consistent():
    net = Network()
    x = net.add_input("x", 1)
    p = net.add_lif("p", 2, LIF(tau_mem=3.0, tau_syn=2.0, bias=0.1))
    net.connect(x, p, [[0.5, 0.5]])
    graph = to_nir(net)
    assert from_nir(graph).population("p").neuron.bias == 0.1
    graph.nodes["p"].metadata = {}  # as from a tool that drops metadata
    assert from_nir(graph).population("p").neuron.bias == (0.1 * 3.0) / 3.0 != 0.1
    graph.nodes["p"].metadata = {"nvppl": {"bias": 0.1}}
    graph.nodes["p"].v_leak = np.full(2, 0.9)  # v_leak changed by another tool: it wins
    assert from_nir(graph).population("p").neuron.bias == pytest.approx(0.3, rel=1e-15)


def _other_tool_graph(W1, W2):
    """Input → Affine (zero bias) → LIF (r = tau) → Linear → CubaLIF (w_in = tau_syn) → Output."""
    nodes = {
        "x": nir.Input(input_type=np.array([3])),
        "fc1": nir.Affine(weight=W1, bias=np.zeros(4)),
        "h": nir.LIF(tau=np.full(4, 8.0), r=np.full(4, 8.0), v_leak=np.full(4, 8.0 * 0.0625),
                     v_threshold=np.ones(4), v_reset=np.zeros(4)),
        "fc2": nir.Linear(weight=W2),
        "o": nir.CubaLIF(tau_syn=np.full(2, 2.0), tau_mem=np.full(2, 4.0), r=np.full(2, 4.0), v_leak=np.zeros(2),
                         v_threshold=np.full(2, 1.5), v_reset=np.full(2, -0.25), w_in=np.full(2, 2.0)),
        "y": nir.Output(output_type=np.array([2])),
    }
    edges = [("x", "fc1"), ("fc1", "h"), ("h", "fc2"), ("fc2", "o"), ("o", "y")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_a_graph_of_another_tool_runs_on_the_chip():
    rng = np.random.default_rng(0)
    W1 = np.round(rng.uniform(0.0, 0.75, (4, 3)) * 8) / 8  # post × pre
    W2 = np.round(rng.uniform(-0.25, 1.0, (2, 4)) * 8) / 8
    imported = from_nir(_other_tool_graph(W1, W2))

    by_hand = Network()
    x = by_hand.add_input("x", 3)
    h = by_hand.add_lif("h", 4, LIF(tau_mem=8.0, v_th=1.0, bias=0.0625))
    o = by_hand.add_lif("o", 2, LIF(tau_mem=4.0, tau_syn=2.0, v_th=1.5, v_reset=-0.25))
    by_hand.connect(x, h, W1.T)
    by_hand.connect(h, o, W2.T)
    assert_same_network(by_hand, imported)

    T = 40
    inputs = random_inputs(imported, T, 1, rate=0.4)
    ref = simulate_float(imported, T, inputs=inputs)
    hand = simulate_float(by_hand, T, inputs=inputs)
    for what in ("spikes", "v", "i"):
        for name in hand[what]:
            np.testing.assert_array_equal(ref[what][name], hand[what][name], err_msg=f"{what} of {name}")
    assert ref["spikes"]["h"].any() and ref["spikes"]["o"].any()

    prog = compile(imported)
    assert prog.equals(compile(by_hand))
    run = Emulator(prog).run(T, key=0, inputs=inputs)
    for name in ("h", "o"):
        chip, exact = run.raster(name), ref["spikes"][name]
        assert chip.any()
        assert np.mean(chip == exact) > 0.9, name  # the chip differs by quantisation only
    assert run.counters["synaptic_ops"] > 0


def _graph(nodes, edges):
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _lif(n=2, **changes):
    p = {"tau": np.full(n, 4.0), "r": np.full(n, 4.0), "v_leak": np.zeros(n), "v_threshold": np.ones(n),
         "v_reset": np.zeros(n)}
    return nir.LIF(**{**p, **changes})


def _cuba(n=2, **changes):
    p = {"tau_syn": np.full(n, 2.0), "tau_mem": np.full(n, 4.0), "r": np.full(n, 4.0), "v_leak": np.zeros(n),
         "v_threshold": np.ones(n), "v_reset": np.zeros(n), "w_in": np.full(n, 2.0)}
    return nir.CubaLIF(**{**p, **changes})


def _chain(neuron, synapse=None):
    """in (2) → synapse → neuron → Output."""
    synapse = nir.Linear(weight=np.eye(2)) if synapse is None else synapse
    return _graph({"in": nir.Input(input_type=np.array([2])), "syn": synapse, "cell": neuron,
                   "out": nir.Output(output_type=np.array([2]))},
                  [("in", "syn"), ("syn", "cell"), ("cell", "out")])


def test_valid_chains_import():
    assert from_nir(_chain(_lif())).population("cell").neuron == LIF(tau_mem=4.0, v_th=1.0)
    assert from_nir(_chain(_cuba())).population("cell").neuron == LIF(tau_mem=4.0, tau_syn=2.0, v_th=1.0)
    assert from_nir(_chain(_lif(), nir.Affine(weight=np.eye(2), bias=np.zeros(2)))).n_synapses == 2


@pytest.mark.parametrize("graph, match", [
    (lambda: _chain(_lif(tau=np.array([4.0, 8.0]), r=np.array([4.0, 8.0]))), r"node 'cell': tau differs between"),
    (lambda: _chain(_lif(v_threshold=np.array([1.0, 2.0]))), r"node 'cell': v_threshold differs between"),
    (lambda: _chain(_cuba(tau_syn=np.array([2.0, 4.0]), w_in=np.array([2.0, 4.0]))),
     r"node 'cell': tau_syn differs between"),
    (lambda: _chain(_lif(r=np.full(2, 1.0))), r"node 'cell': r = 1.0 differs from tau = 4.0"),
    (lambda: _chain(_cuba(w_in=np.ones(2))), r"node 'cell': w_in = 1.0 differs from tau_syn = 2.0"),
    (lambda: _chain(nir.IF(r=np.full(2, 2.0), v_threshold=np.ones(2))), r"node 'cell': IF with r = 2.0"),
    (lambda: _chain(nir.Threshold(threshold=np.ones(2))), r"node 'cell': Threshold nodes cannot be put on the chip"),
    (lambda: _chain(_lif(), nir.Conv1d(input_shape=2, weight=np.ones((2, 2, 1)), stride=1, padding=0, dilation=1,
                                       groups=1, bias=np.zeros(2))),
     r"node 'syn': Conv1d nodes cannot be put on the chip"),
    (lambda: _chain(_lif(), nir.Affine(weight=np.eye(2), bias=np.array([0.0, 0.1]))),
     r"node 'syn': an Affine with a non-zero bias"),
    (lambda: _chain(_lif(), nir.Linear(weight=np.ones((3, 2)))), r"node 'syn': .*weights must have shape \(2, 2\)"),
], ids=["tau", "v_threshold", "tau_syn", "r", "w_in", "IF-r", "Threshold", "Conv1d", "Affine-bias", "shape"])
def test_import_errors_name_the_node(graph, match):
    with pytest.raises(ValueError, match=match):
        from_nir(graph())


def test_import_errors_of_the_graph_structure():
    good = _chain(_lif())
    ghost = _graph(dict(good.nodes), list(good.edges) + [("cell", "ghost")])
    with pytest.raises(ValueError, match=r"edge \('cell', 'ghost'\) names an unknown node 'ghost'"):
        from_nir(ghost)
    two = _graph({"in": nir.Input(input_type=np.array([2])), "in2": nir.Input(input_type=np.array([2])),
                  "syn": nir.Linear(weight=np.eye(2)), "cell": _lif()},
                 [("in", "syn"), ("in2", "syn"), ("syn", "cell")])
    with pytest.raises(ValueError, match=r"node 'syn': a Linear must have exactly one source and one target .*"
                                         r"\(it has 2 and 1\)"):
        from_nir(two)
    direct = _graph({"in": nir.Input(input_type=np.array([2])), "cell": _lif()}, [("in", "cell")])
    with pytest.raises(ValueError, match=r"edge \('in', 'cell'\): neurons connect only through Linear/Affine"):
        from_nir(direct)
    graph = to_nir(random_network(0))
    graph.nodes["in->p0"].metadata["nvppl"]["plasticity"]["rule"] = "Hebb"
    with pytest.raises(ValueError, match=r"node 'in->p0': unknown plasticity rule 'Hebb'"):
        from_nir(graph)


@pytest.mark.parametrize("neuron", [LIF(tau_mem=math.inf, tau_syn=2.0), LIF(tau_mem=math.inf, bias=0.1)],
                         ids=["tau_syn", "bias"])
def test_export_refuses_what_nir_cannot_express(neuron):
    net = Network()
    x = net.add_input("x", 1)
    net.add_lif("fine", 1, LIF(tau_mem=math.inf))
    net.add_lif("no_leak", 1, neuron)
    net.connect(x, "no_leak", [[1.0]])
    with pytest.raises(ValueError, match=r"population 'no_leak': NIR has no node for a neuron without leak"):
        to_nir(net)
