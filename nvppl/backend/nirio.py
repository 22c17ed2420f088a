"""Export and import of spiking networks as NIR graphs (the ``nir`` package).

NIR describes neurons as continuous-time ODEs; a :class:`~nvppl.backend.Network`
steps once per tick. With a time step of one tick, one Euler step of NIR's

- ``LIF``: τ dv/dt = (v_leak − v) + r·I
- ``CubaLIF``: τ_syn dI/dt = −I + w_in·x,  τ_mem dv/dt = (v_leak − v) + r·I

is exactly the network's update when r = τ_mem, w_in = τ_syn and
v_leak = bias · τ_mem, so export and import use these identities. Projections
are ``Linear`` nodes (weights post × pre); input populations are ``Input``
nodes and every LIF population without outgoing projections gets an
``Output`` node. What NIR cannot say — reward projections, plasticity, a fixed
chip ``scale`` — travels in the nodes' ``metadata`` under ``"nvppl"``, so a round
trip through nvppl loses nothing; other tools ignore it.

Examples
--------
>>> import numpy as np
>>> from nvppl.backend import Network, LIF, to_nir, from_nir
>>> net = Network(); a = net.add_input("a", 2)
>>> b = net.add_lif("b", 3, LIF(tau_mem=8.0, tau_syn=4.0, v_th=1.0, bias=0.1))
>>> _ = net.connect(a, b, np.arange(6.0).reshape(2, 3))
>>> graph = to_nir(net)
>>> sorted(graph.nodes)
['a', 'a->b', 'b', 'b.out']
>>> back = from_nir(graph)
>>> back.population("b").neuron == net.population("b").neuron
True
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .network import LIF, STDP, Network, ThreeFactor


def _nir():
    import nir

    return nir


def _full(value, size):
    return np.full(size, float(value))


def to_nir(net: Network):
    """The network as a ``nir.NIRGraph`` (time step: one tick).

    Raises
    ------
    ValueError
        For a population NIR cannot express (no leak with a synaptic current or a bias).
    """
    nir = _nir()
    nodes, edges = {}, []
    for pop in net.populations:
        if pop.kind == "input":
            nodes[pop.name] = nir.Input(input_type={"input": np.array([pop.size])})
            continue
        n, nrn = pop.size, pop.neuron
        meta = {"nvppl": {"scale": nrn.scale}} if nrn.scale is not None else {}
        reset = _full(nrn.v_reset, n)
        if math.isinf(nrn.tau_mem):
            if nrn.tau_syn is not None or nrn.bias != 0:
                raise ValueError(f"population {pop.name!r}: NIR has no node for a neuron without leak that has a "
                                 "synaptic current or a bias")
            nodes[pop.name] = nir.IF(r=_full(1.0, n), v_threshold=_full(nrn.v_th, n), v_reset=reset, metadata=meta)
        elif nrn.tau_syn is None:
            nodes[pop.name] = nir.LIF(tau=_full(nrn.tau_mem, n), r=_full(nrn.tau_mem, n),
                                      v_leak=_full(nrn.bias * nrn.tau_mem, n), v_threshold=_full(nrn.v_th, n),
                                      v_reset=reset, metadata=meta)
        else:
            nodes[pop.name] = nir.CubaLIF(tau_syn=_full(nrn.tau_syn, n), tau_mem=_full(nrn.tau_mem, n),
                                          r=_full(nrn.tau_mem, n), v_leak=_full(nrn.bias * nrn.tau_mem, n),
                                          v_threshold=_full(nrn.v_th, n), v_reset=reset,
                                          w_in=_full(nrn.tau_syn, n), metadata=meta)
        if not net.outgoing(pop):
            nodes[f"{pop.name}.out"] = nir.Output(output_type={"output": np.array([n])})
            edges.append((pop.name, f"{pop.name}.out"))
    for proj in net.projections:
        name = f"{proj.pre.name}->{proj.post.name}" + ("" if proj.kind == "spike" else f"[{proj.kind}]")
        meta = {}
        if proj.kind != "spike" or proj.plasticity is not None:
            meta = {"nvppl": {"kind": proj.kind}}
            if proj.plasticity is not None:
                meta["nvppl"]["plasticity"] = {"rule": type(proj.plasticity).__name__,
                                               **_plain(dataclasses.asdict(proj.plasticity))}
        nodes[name] = nir.Linear(weight=proj.weights.T.toarray(), metadata=meta)
        edges += [(proj.pre.name, name), (name, proj.post.name)]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def _plain(d):
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _uniform(node_name, field, values):
    arr = np.atleast_1d(np.asarray(values, dtype=float))
    if arr.size and not np.all(arr == arr.flat[0]):
        raise ValueError(f"NIR node {node_name!r}: {field} differs between neurons; a population on the chip shares "
                         "one value (split the node into populations)")
    return float(arr.flat[0])


def _size(node_name, *arrays):
    sizes = {np.atleast_1d(np.asarray(a)).size for a in arrays if a is not None}
    sizes.discard(1)
    if len(sizes) > 1:
        raise ValueError(f"NIR node {node_name!r}: its parameters have different lengths {sorted(sizes)}")
    return sizes.pop() if sizes else 1


def from_nir(graph) -> Network:
    """A :class:`Network` from a ``nir.NIRGraph`` (or a path to a NIR file).

    Supported nodes: ``Input``, ``Output``, ``LIF``, ``CubaLIF``, ``IF``, ``Linear`` and
    ``Affine`` with zero bias, each connection being neuron → Linear/Affine → neuron.

    Raises
    ------
    ValueError
        Naming the node that cannot be put on the chip.
    """
    nir = _nir()
    if isinstance(graph, (str, bytes)) or hasattr(graph, "__fspath__"):
        graph = nir.read(graph)
    net = Network()
    kinds = {}
    for name, node in graph.nodes.items():
        kind = type(node).__name__
        meta = (getattr(node, "metadata", None) or {}).get("nvppl", {})
        if kind == "Input":
            size = int(np.prod(np.asarray(node.input_type["input"])))
            net.add_input(name, size)
        elif kind in ("LIF", "CubaLIF", "IF"):
            net.add_lif(name, *_neuron(name, node, kind, meta))
        elif kind in ("Linear", "Affine", "Output"):
            if kind == "Affine" and np.any(np.asarray(node.bias) != 0):
                raise ValueError(f"NIR node {name!r}: an Affine with a non-zero bias has no synapse equivalent "
                                 "(give the bias to the neurons instead)")
        else:
            raise ValueError(f"NIR node {name!r}: {kind} nodes cannot be put on the chip (supported: Input, Output, "
                             "LIF, CubaLIF, IF, Linear, Affine)")
        kinds[name] = kind
    into = {}
    out_of = {}
    for a, b in graph.edges:
        for end in (a, b):
            if end not in graph.nodes:
                raise ValueError(f"NIR edge ({a!r}, {b!r}) names an unknown node {end!r}")
        out_of.setdefault(a, []).append(b)
        into.setdefault(b, []).append(a)
    for name, kind in kinds.items():
        if kind not in ("Linear", "Affine"):
            continue
        pres, posts = into.get(name, []), out_of.get(name, [])
        if len(pres) != 1 or len(posts) != 1:
            raise ValueError(f"NIR node {name!r}: a {kind} must have exactly one source and one target population")
        pre, post = pres[0], posts[0]
        node = graph.nodes[name]
        W = np.asarray(node.weight, dtype=float)
        meta = (getattr(node, "metadata", None) or {}).get("nvppl", {})
        plasticity = None
        if "plasticity" in meta:
            spec = dict(meta["plasticity"])
            rule = {"STDP": STDP, "ThreeFactor": ThreeFactor}[spec.pop("rule")]
            plasticity = rule(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items()})
        try:
            net.connect(pre, post, W.T, kind=meta.get("kind", "spike"), plasticity=plasticity)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"NIR node {name!r}: {exc}") from None
    for name, kind in kinds.items():
        if kind in ("LIF", "CubaLIF", "IF", "Input"):
            bad = [b for b in out_of.get(name, []) if kinds.get(b) not in ("Linear", "Affine", "Output")]
            if bad:
                raise ValueError(f"NIR edge ({name!r}, {bad[0]!r}): neurons connect only through Linear/Affine nodes")
    return net


def _neuron(name, node, kind, meta):
    scale = meta.get("scale")
    if kind == "IF":
        size = _size(name, node.r, node.v_threshold, node.v_reset)
        r = _uniform(name, "r", node.r)
        if r != 1:
            raise ValueError(f"NIR node {name!r}: IF with r = {r} ≠ 1 has no chip equivalent (scale the weights)")
        return size, LIF(tau_mem=math.inf, v_th=_uniform(name, "v_threshold", node.v_threshold),
                         v_reset=_uniform(name, "v_reset", node.v_reset), scale=scale)
    tau = node.tau if kind == "LIF" else node.tau_mem
    size = _size(name, tau, node.r, node.v_leak, node.v_threshold, getattr(node, "v_reset", None))
    tau_mem = _uniform(name, "tau", tau)
    r = _uniform(name, "r", node.r)
    if not math.isclose(r, tau_mem, rel_tol=1e-12):
        raise ValueError(f"NIR node {name!r}: r = {r} differs from tau = {tau_mem}; the chip's neuron integrates its "
                         "input unscaled (r = tau at one tick per step): scale the incoming weights by r / tau")
    v_reset = 0.0 if getattr(node, "v_reset", None) is None else _uniform(name, "v_reset", node.v_reset)
    tau_syn = None
    if kind == "CubaLIF":
        tau_syn = _uniform(name, "tau_syn", node.tau_syn)
        w_in = _uniform(name, "w_in", node.w_in)
        if not math.isclose(w_in, tau_syn, rel_tol=1e-12):
            raise ValueError(f"NIR node {name!r}: w_in = {w_in} differs from tau_syn = {tau_syn} (the chip's current "
                             "adds its input unscaled): scale the incoming weights by w_in / tau_syn")
    return size, LIF(tau_mem=tau_mem, tau_syn=tau_syn, v_th=_uniform(name, "v_threshold", node.v_threshold),
                     v_reset=v_reset, bias=_uniform(name, "v_leak", node.v_leak) / tau_mem, scale=scale)
