"""Export and import of spiking networks as NIR graphs (the ``nir`` package).

NIR describes neurons as continuous-time ODEs; a :class:`~nvppl.backend.Network`
steps once per tick. With a time step of one tick, one Euler step of NIR's

- ``LIF``: τ dv/dt = (v_leak − v) + r·I
- ``CubaLIF``: τ_syn dI/dt = −I + w_in·x,  τ_mem dv/dt = (v_leak − v) + r·I
- ``IF``: dv/dt = r·I

is exactly the network's update when r = τ_mem (r = 1 for ``IF``, a neuron
without leak), w_in = τ_syn and v_leak = bias · τ_mem, so export and import use
these identities. Projections are ``Linear`` nodes (weights post × pre); input
populations are ``Input`` nodes and every LIF population also feeds an
``Output`` node (its spikes are an output of the network), so that every graph,
recurrent ones included, has an exit point for NIR's type inference.

What NIR cannot say travels in the nodes' ``metadata`` under ``"nvppl"``: the
order of populations and projections (``index``), the bias itself (``bias``:
v_leak / τ_mem need not give back the same floating-point number), a fixed
chip ``scale``, reward projections (``kind``), plasticity, and synapses of
weight zero (``zero_synapses``, (pre, post) pairs: a dense NIR weight matrix
cannot tell them from absent synapses). A round trip through nvppl, in memory
or through a NIR file, therefore loses nothing; other tools ignore the metadata.

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
import numbers

import numpy as np
import scipy.sparse as sp

from .network import LIF, STDP, Network, ThreeFactor

_NEURONS = ("LIF", "CubaLIF", "IF")
_SYNAPSES = ("Linear", "Affine")
_RULES = {"STDP": STDP, "ThreeFactor": ThreeFactor}


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
    taken = set(net.names)

    def fresh(name):
        base, k = name, 1
        while name in taken:
            name, k = f"{base}.{k}", k + 1
        taken.add(name)
        return name

    outputs = []
    for pop in net.populations:
        if pop.kind == "input":
            nodes[pop.name] = nir.Input(input_type={"input": np.array([pop.size])},
                                        metadata={"nvppl": {"index": pop.index}})
            continue
        n, nrn = pop.size, pop.neuron
        meta = {"index": pop.index}
        if nrn.scale is not None:
            meta["scale"] = float(nrn.scale)
        reset = _full(nrn.v_reset, n)
        if math.isinf(nrn.tau_mem):
            if nrn.tau_syn is not None or nrn.bias != 0:
                raise ValueError(f"population {pop.name!r}: NIR has no node for a neuron without leak that has a "
                                 "synaptic current or a bias")
            node = nir.IF(r=_full(1.0, n), v_threshold=_full(nrn.v_th, n), v_reset=reset,
                          metadata={"nvppl": meta})
        elif nrn.tau_syn is None:
            meta["bias"] = float(nrn.bias)
            node = nir.LIF(tau=_full(nrn.tau_mem, n), r=_full(nrn.tau_mem, n),
                           v_leak=_full(nrn.bias * nrn.tau_mem, n), v_threshold=_full(nrn.v_th, n),
                           v_reset=reset, metadata={"nvppl": meta})
        else:
            meta["bias"] = float(nrn.bias)
            node = nir.CubaLIF(tau_syn=_full(nrn.tau_syn, n), tau_mem=_full(nrn.tau_mem, n),
                               r=_full(nrn.tau_mem, n), v_leak=_full(nrn.bias * nrn.tau_mem, n),
                               v_threshold=_full(nrn.v_th, n), v_reset=reset,
                               w_in=_full(nrn.tau_syn, n), metadata={"nvppl": meta})
        nodes[pop.name] = node
        outputs.append(pop)
    for pop in outputs:
        name = fresh(f"{pop.name}.out")
        nodes[name] = nir.Output(output_type={"output": np.array([pop.size])})
        edges.append((pop.name, name))
    for proj in net.projections:
        name = fresh(f"{proj.pre.name}->{proj.post.name}" + ("" if proj.kind == "spike" else f"[{proj.kind}]"))
        meta = {"index": proj.index, "kind": proj.kind}
        if proj.plasticity is not None:
            meta["plasticity"] = {"rule": type(proj.plasticity).__name__,
                                  **_plain(dataclasses.asdict(proj.plasticity))}
        W = proj.weights.tocoo()
        zero = W.data == 0
        if zero.any():
            meta["zero_synapses"] = np.stack([W.row[zero], W.col[zero]], axis=1).astype(np.int64)
        nodes[name] = nir.Linear(weight=proj.weights.T.toarray(), metadata={"nvppl": meta})
        edges += [(proj.pre.name, name), (name, proj.post.name)]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    graph.check_types()
    return graph


def _plain(d):
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _meta(node):
    meta = getattr(node, "metadata", None)
    meta = meta.get("nvppl") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def _number(value):
    """``value`` as a Python number when it is a finite real scalar, else None."""
    value = np.asarray(value)
    if value.shape != () or not np.issubdtype(value.dtype, np.number) or np.issubdtype(value.dtype, np.complexfloating):
        return None
    value = value.item()
    return value if isinstance(value, numbers.Real) and math.isfinite(value) else None


def _uniform(node_name, field, values):
    arr = np.atleast_1d(np.asarray(values, dtype=float))
    if arr.size == 0:
        raise ValueError(f"NIR node {node_name!r}: {field} is empty")
    if not np.all(arr == arr.flat[0]):
        raise ValueError(f"NIR node {node_name!r}: {field} differs between neurons; a population on the chip shares "
                         "one value (split the node into populations)")
    return float(arr.flat[0])


def _size(node_name, *arrays):
    sizes = {np.atleast_1d(np.asarray(a)).size for a in arrays if a is not None}
    sizes.discard(1)
    if len(sizes) > 1:
        raise ValueError(f"NIR node {node_name!r}: its parameters have different lengths {sorted(sizes)}")
    return sizes.pop() if sizes else 1


def _in_order(names, graph):
    """``names`` in the order of their ``index`` metadata when all have a distinct one, else as given."""
    index = [_number(_meta(graph.nodes[n]).get("index")) for n in names]
    if names and all(isinstance(k, int) for k in index) and len(set(index)) == len(index):
        return [n for _, n in sorted(zip(index, names))]
    return list(names)


def from_nir(graph) -> Network:
    """A :class:`Network` from a ``nir.NIRGraph`` (or a path to a NIR file).

    Supported nodes: ``Input``, ``Output``, ``LIF``, ``CubaLIF``, ``IF``, ``Linear`` and
    ``Affine`` with zero bias, each connection being neuron → Linear/Affine → neuron.
    A file is read as written (without NIR's type inference, which may add nodes).

    Raises
    ------
    ValueError
        Naming the node that cannot be put on the chip.
    """
    nir = _nir()
    if isinstance(graph, (str, bytes)) or hasattr(graph, "__fspath__"):
        graph = nir.read(graph, type_check=False)
    kinds = {}
    for name, node in graph.nodes.items():
        kind = type(node).__name__
        if kind == "Affine" and np.any(np.asarray(node.bias) != 0):
            raise ValueError(f"NIR node {name!r}: an Affine with a non-zero bias has no synapse equivalent "
                             "(give the bias to the neurons instead)")
        if kind not in ("Input", "Output") + _NEURONS + _SYNAPSES:
            raise ValueError(f"NIR node {name!r}: {kind} nodes cannot be put on the chip (supported: Input, Output, "
                             "LIF, CubaLIF, IF, Linear, Affine)")
        kinds[name] = kind
    into, out_of = {}, {}
    for a, b in graph.edges:
        for end in (a, b):
            if end not in graph.nodes:
                raise ValueError(f"NIR edge ({a!r}, {b!r}) names an unknown node {end!r}")
        out_of.setdefault(a, []).append(b)
        into.setdefault(b, []).append(a)
    for name, kind in kinds.items():
        if kind == "Input" or kind in _NEURONS:
            bad = [b for b in out_of.get(name, []) if kinds[b] not in _SYNAPSES + ("Output",)]
            if bad:
                raise ValueError(f"NIR edge ({name!r}, {bad[0]!r}): neurons connect only through Linear/Affine nodes")

    net = Network()
    for name in _in_order([n for n, k in kinds.items() if k == "Input" or k in _NEURONS], graph):
        node, kind = graph.nodes[name], kinds[name]
        if kind == "Input":
            shape = node.input_type["input"]
            if shape is None:
                raise ValueError(f"NIR node {name!r}: an Input needs a shape")
            net.add_input(name, int(np.prod(np.asarray(shape))))
        else:
            net.add_lif(name, *_neuron(name, node, kind, _meta(node)))
    for name in _in_order([n for n, k in kinds.items() if k in _SYNAPSES], graph):
        kind = kinds[name]
        pres, posts = into.get(name, []), out_of.get(name, [])
        if len(pres) != 1 or len(posts) != 1:
            raise ValueError(f"NIR node {name!r}: a {kind} must have exactly one source and one target population "
                             f"(it has {len(pres)} and {len(posts)})")
        node = graph.nodes[name]
        meta = _meta(node)
        W = np.asarray(node.weight, dtype=float)
        if W.ndim != 2:
            raise ValueError(f"NIR node {name!r}: the weight must be a matrix (post × pre), got shape {W.shape}")
        weights = _weights(name, W.T, meta.get("zero_synapses"))
        kind_ = meta.get("kind", "spike")
        kind_ = kind_.decode() if isinstance(kind_, bytes) else kind_
        try:
            net.connect(pres[0], posts[0], weights, kind=kind_, plasticity=_plasticity(name, meta.get("plasticity")))
        except (KeyError, ValueError, TypeError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise ValueError(f"NIR node {name!r}: {msg}") from None
    return net


def _weights(name, dense, zeros):
    """(pre × post) weights, with the synapses of weight zero listed in ``zeros`` kept as stored entries."""
    if zeros is None:
        return dense
    zeros = np.asarray(zeros)
    if zeros.size == 0:
        return dense
    if zeros.ndim != 2 or zeros.shape[1] != 2 or not np.issubdtype(zeros.dtype, np.integer):
        raise ValueError(f"NIR node {name!r}: metadata zero_synapses must be (pre, post) integer pairs")
    j, i = zeros[:, 0], zeros[:, 1]
    if np.any(j < 0) or np.any(j >= dense.shape[0]) or np.any(i < 0) or np.any(i >= dense.shape[1]):
        raise ValueError(f"NIR node {name!r}: metadata zero_synapses lie outside the {dense.shape} weights")
    keep = dense[j, i] == 0
    W = sp.coo_matrix(dense)
    rows = np.concatenate([W.row, j[keep]])
    cols = np.concatenate([W.col, i[keep]])
    data = np.concatenate([W.data, np.zeros(int(keep.sum()))])
    return sp.csr_matrix((data, (rows, cols)), shape=dense.shape)


def _plasticity(name, spec):
    if spec is None:
        return None
    spec = dict(spec)
    rule_name = spec.pop("rule", None)
    rule_name = rule_name.decode() if isinstance(rule_name, bytes) else rule_name
    if rule_name not in _RULES:
        raise ValueError(f"NIR node {name!r}: unknown plasticity rule {rule_name!r} (known: {sorted(_RULES)})")

    def plain(v):
        if isinstance(v, (list, tuple, np.ndarray)):
            return tuple(plain(x) for x in np.asarray(v).tolist())
        if isinstance(v, np.generic):
            return v.item()
        return v

    try:
        return _RULES[rule_name](**{k: plain(v) for k, v in spec.items()})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"NIR node {name!r}: {exc}") from None


def _neuron(name, node, kind, meta):
    scale = _number(meta["scale"]) if "scale" in meta else None
    if kind == "IF":
        size = _size(name, node.r, node.v_threshold, node.v_reset)
        r = _uniform(name, "r", node.r)
        if r != 1:
            raise ValueError(f"NIR node {name!r}: IF with r = {r} ≠ 1 has no chip equivalent (scale the weights)")
        return size, LIF(tau_mem=math.inf, v_th=_uniform(name, "v_threshold", node.v_threshold),
                         v_reset=_uniform(name, "v_reset", node.v_reset), scale=scale)
    tau = node.tau if kind == "LIF" else node.tau_mem
    extra = (node.tau_syn, node.w_in) if kind == "CubaLIF" else ()
    size = _size(name, tau, node.r, node.v_leak, node.v_threshold, getattr(node, "v_reset", None), *extra)
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
    bias = _uniform(name, "v_leak", node.v_leak) / tau_mem
    stored = _number(meta.get("bias"))
    if stored is not None and math.isclose(stored, bias, rel_tol=1e-9):
        bias = float(stored)
    try:
        neuron = LIF(tau_mem=tau_mem, tau_syn=tau_syn, v_th=_uniform(name, "v_threshold", node.v_threshold),
                     v_reset=v_reset, bias=bias, scale=scale)
    except ValueError as exc:
        raise ValueError(f"NIR node {name!r}: {exc}") from None
    return size, neuron
