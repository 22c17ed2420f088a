"""Deployment of a fitted vesicle model: node cores, their tables, placement, release ports.

:func:`compile_vesicles` (reached through :func:`nvppl.backend.compile`) turns a
:class:`~nvppl.VesicleModel` with a :class:`~nvppl.infer.Fit` or
:class:`~nvppl.Params` into a :class:`~nvppl.backend.ChipProgram`: graph nodes
are placed on *node cores*, several per core, in an order that keeps likely
migrations on one core or on neighbouring cores (:func:`node_order`); every
node core holds the quantised tables of
:func:`~nvppl.backend.vesicles.quantize` for its nodes in its table memory
(:func:`node_core_images`; the word layouts are those of
:mod:`nvppl.backend.program`, and ``docs/guide/emulator.rst``, "Vesicles on the
chip").

With a spiking base network attached, each (node, type) that releases onto
neurons gets a *release port*: a relay of the input population
``"vesicle_release"`` whose reward projection reaches the node's neurons with
the amplitude A_mod = α_κ of the type (eq. 57–58, 60). A port is a relay
neuron, so it fires at most once per tick: several vesicles of one type docking
at a node in the same tick release α_κ once.

Emission may also read the spike rate of a node's neurons, computed on the
chip (``rate_window``, ``rate_sources``; :mod:`nvppl.backend.vesicle_rates`):
the counted neurons are the node core's *rate sources*, and its table memory
holds one emission table per count bucket.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee

from .._validate import positive_int
from ..errors import CapacityError
from ..infer.fit import Fit
from ..model import VesicleModel
from ..params import Params
from .chip import ChipConfig
from .compile_network import compile_network
from .image import ChipProgram
from .network import Network
from .program import NodeCoreImage, VesicleProgram
from .vesicle_rates import MAX_RATE_SHIFT, check_window, rate_lambda, rate_tables
from .vesicles import DeploymentError, VesicleTables, emission_rates, quantize

__all__ = ["MAX_CANDIDATES", "MAX_NODES", "RELEASE_POPULATION", "compile_vesicles", "default_nodes_per_core",
           "node_core_images", "node_order", "select_params"]

#: The input population of the release ports.
RELEASE_POPULATION = "vesicle_release"
MAX_NODES = 1 << 20        # 20-bit node fields
MAX_CANDIDATES = 255       # 8-bit candidate count


# ---------------------------------------------------------------------------------------------
# parameters from a fit


def select_params(model, fit_or_params, draw=None):
    """The Params to deploy and a description of their source.

    ``fit_or_params`` is a Params (``draw`` must be None) or a Fit: the posterior
    mean by default, ``draw=i`` the i-th draw over chains × draws, ``draw=(c, d)``
    draw d of chain c.
    """
    if isinstance(fit_or_params, Params):
        if draw is not None:
            raise TypeError("draw= selects posterior draws of a Fit; Params are deployed as they are")
        return fit_or_params, "params"
    if isinstance(fit_or_params, Fit):
        fit = fit_or_params
        if fit.model.to_json() != model.to_json():
            raise ValueError("the fit was made with a different model (substrate, options or priors) than the "
                             "one given to compile; pass fit.model")
        if draw is None:
            return fit.posterior_mean(), f"posterior mean of a {fit.method} fit ({fit.num_draws} draws)"
        post = fit.idata.posterior
        chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
        if isinstance(draw, (tuple, list)) and len(draw) == 2:
            c, d = int(draw[0]), int(draw[1])
        elif isinstance(draw, (int, np.integer)) and not isinstance(draw, bool):
            c, d = divmod(int(draw), draws)
        else:
            raise TypeError(f"draw must be an integer or a (chain, draw) pair, got {draw!r}")
        if not (0 <= c < chains and 0 <= d < draws):
            raise IndexError(f"draw {draw!r} is outside the posterior ({chains} chains x {draws} draws)")
        return fit.posterior_draw(c, d), f"draw {d} of chain {c} of a {fit.method} fit"
    raise TypeError(f"compile(model, ...) needs a Fit or Params, got {type(fit_or_params).__name__}")


# ---------------------------------------------------------------------------------------------
# placement


def node_order(model, params) -> np.ndarray:
    """Nodes in reverse Cuthill–McKee order of the symmetrised migration flow Σ_κ T_κ.

    Consecutive nodes of this order exchange vesicles most, so cutting it into
    runs of consecutive nodes, one run per core along the serpentine of cores,
    keeps likely migrations on a core or between neighbouring cores.
    """
    sub = model.substrate
    n = model.n_nodes
    cand = np.asarray(sub.candidates)
    T = np.asarray(params.T, dtype=float).sum(axis=0)
    rows = np.repeat(np.arange(n), cand.shape[1])
    cols = cand.reshape(-1)
    w = T.reshape(-1)
    keep = (cols >= 0) & (cols != rows) & (w > 0)
    W = sp.csr_matrix((w[keep], (rows[keep], cols[keep])), shape=(n, n))
    W = (W + W.T).tocsr()
    return np.asarray(reverse_cuthill_mckee(W, symmetric_mode=True), dtype=np.int64)


def default_nodes_per_core(model, quantized, chip: ChipConfig, rate: bool = False) -> int:
    """Nodes per core so that a core's mailbox has room for 8× the expected residents.

    The expected residents of a node are bounded by its own stationary count
    Σ_κ λ_κ / δ_κ (emission over the per-step removal by decay; with emission
    from the spike rate, the larger λ of rates 0 and 1); the mailbox is checked
    on every tick of a run regardless, and an overflow is an error.
    """
    lam = (np.maximum(rate_lambda(model, quantized, 0.0), rate_lambda(model, quantized, 1.0)) if rate
           else emission_rates(model, quantized))
    per_node = float(np.sum(lam / np.asarray(quantized.delta, dtype=float)))
    return int(max(1, min(model.n_nodes, chip.mailbox_words // max(1.0, 8.0 * per_node))))


# ---------------------------------------------------------------------------------------------
# table words


def node_core_images(model, tables: VesicleTables, groups, tiles, chip: ChipConfig, sources=None) -> list:
    """One :class:`~nvppl.backend.program.NodeCoreImage` per group of nodes, at ``tiles``.

    ``sources`` (with rate tables): arrays (core id, neuron on its core, graph
    node) of the counted neurons. The inverse of
    :func:`nvppl.backend.program.decode_tables`.
    """
    K = model.n_types
    cand = np.asarray(model.substrate.candidates)
    ncand = (cand >= 0).sum(axis=1)
    node_core = np.empty(model.n_nodes, dtype=np.int64)
    for k, g in enumerate(groups):
        node_core[g] = k
    core_id = np.array([chip.core_id(x, y) for x, y in tiles], dtype=np.int64)
    types = (tables.dock.astype(np.uint64) | (tables.decay.astype(np.uint64) << np.uint64(17))
             | (tables.budget.astype(np.uint64) << np.uint64(34)))
    emission = tables.emission.reshape(-1).astype(np.uint64)
    out = []
    for (x, y), g in zip(tiles, groups):
        g = np.asarray(g, dtype=np.int64)
        nodes = (g.astype(np.uint64) | (ncand[g].astype(np.uint64) << np.uint64(20))
                 | (tables.absorb[g].astype(np.uint64) << np.uint64(28)))
        mig = []
        for node in g:
            c = int(ncand[node])
            dest = cand[node, :c]
            for k in range(K):
                mig.append(tables.migration[k, node, :c].astype(np.uint64)
                           | (dest.astype(np.uint64) << np.uint64(17))
                           | (core_id[node_core[dest]].astype(np.uint64) << np.uint64(37)))
        migration = np.concatenate(mig) if mig else np.zeros(0, np.uint64)
        config = {"n_nodes": len(g), "n_types": K, "table_len": int(tables.emission.shape[1]),
                  "nodes_words": len(g), "migration_words": len(migration), "rate_window": 0, "rate_shift": 0,
                  "rate_words": 0, "source_words": 0}
        rate_words = src_words = None
        rt = tables.rate
        if rt is not None:
            buckets = rt.buckets
            rate_words = np.concatenate([rt.emission[rt.base[v]:rt.base[v] + buckets[v]].reshape(-1)
                                         for v in g]).astype(np.uint64)
            cid, local, snode = (np.asarray(a, dtype=np.int64) for a in sources)
            mine = np.isin(snode, g)
            src_words = (snode[mine].astype(np.uint64) | (cid[mine].astype(np.uint64) << np.uint64(20))
                         | (local[mine].astype(np.uint64) << np.uint64(30)))
            config.update(table_len=int(rt.emission.shape[2]), rate_window=int(rt.window), rate_shift=int(rt.shift),
                          rate_words=len(rate_words), source_words=len(src_words))
        out.append(NodeCoreImage(int(x), int(y), config, types.copy(), emission.copy(), nodes, migration, rate_words,
                                 src_words))
    return out


# ---------------------------------------------------------------------------------------------
# compile


def _release_network(network, model, release, amplitude):
    """A copy of ``network`` with the release ports and their reward projections; the ports (node, type)."""
    if not isinstance(network, Network):
        raise TypeError(f"network must be an nvppl.backend.Network, got {type(network).__name__}")
    K = model.n_types
    if amplitude is None:
        raise ValueError("release_amplitude (A_mod = α_κ per type, integers 0..127) is needed with release=")
    amp = np.asarray(amplitude)
    if amp.shape != (K,) or not np.all(amp == np.round(amp)) or np.any(amp > 127):
        raise ValueError(f"release_amplitude must hold {K} integers in 0..127 (one per type), got {amplitude!r}")
    if np.any(amp < 0):
        k = int(np.flatnonzero(amp < 0)[0])
        raise ValueError(f"release_amplitude[{k}] = {amp[k]}: the reward trace is unsigned on the chip, so a "
                         "negative α_κ cannot be deployed (it would be clamped to no release at all)")
    net = copy.deepcopy(network)
    if any(p.name == RELEASE_POPULATION for p in net.populations):
        raise ValueError(f"the network already has a population named {RELEASE_POPULATION!r}")
    pops = {p.name: p for p in net.populations}
    targets = []
    for label, spec in dict(release).items():
        try:
            node = model.substrate.index_of(label)
        except (KeyError, ValueError):
            raise KeyError(f"release: {label!r} is not a node of the substrate") from None
        try:
            name, idx = spec
        except (TypeError, ValueError):
            raise ValueError(f"release[{label!r}] must be (population name, neuron indices), got {spec!r}") from None
        if name not in pops:
            raise KeyError(f"release[{label!r}]: the network has no population {name!r}")
        if pops[name].kind == "input":
            raise ValueError(f"release[{label!r}]: population {name!r} is an input population; release reaches "
                             "LIF neurons")
        raw = np.asarray(list(idx) if isinstance(idx, range) else idx).reshape(-1)
        if raw.size == 0:
            raise ValueError(f"release[{label!r}]: no neuron indices given; they must lie in 0..{pops[name].size - 1}")
        if raw.dtype == bool or not np.issubdtype(raw.dtype, np.integer):
            raise ValueError(f"release[{label!r}]: neuron indices must be integers (not a mask or floats), got "
                             f"dtype {raw.dtype}")
        bad = (raw < 0) | (raw >= pops[name].size)
        if bad.any():
            raise ValueError(f"release[{label!r}]: index {int(raw[bad][0])}; neuron indices of population {name!r} "
                             f"must lie in 0..{pops[name].size - 1}")
        idx = np.unique(raw.astype(np.int64))
        targets.append((node, name, idx))
    ports = [(node, k) for node, _, _ in targets for k in range(K) if amp[k] != 0]
    if not ports:
        raise ValueError("release: no (node, type) releases onto any neuron (all amplitudes are 0?)")
    src = net.add_input(RELEASE_POPULATION, len(ports))
    port_of = {pt: p for p, pt in enumerate(ports)}
    for name in dict.fromkeys(n for _, n, _ in targets):
        rows, cols, vals = [], [], []
        for node, nm, idx in targets:
            if nm != name:
                continue
            for k in range(K):
                if amp[k] != 0:
                    rows += [port_of[(node, k)]] * len(idx)
                    cols += idx.tolist()
                    vals += [int(amp[k])] * len(idx)
        W = sp.csr_matrix((vals, (rows, cols)), shape=(len(ports), pops[name].size))
        net.connect(src, pops[name], W, kind="reward")
    return net, np.asarray(ports, dtype=np.int64).reshape(-1, 2)


def _rate_sources(base: ChipProgram, rate_sources, n_nodes, chip):
    """(core id, neuron on its core, graph node) of the counted neurons of ``{population: node per neuron}``."""
    cid, local, node = [], [], []
    for name, nodes in dict(rate_sources).items():
        k = base.population_index(name)
        pop = base.populations[k]
        nodes = np.asarray(nodes, dtype=np.int64).reshape(-1)
        if nodes.shape != (pop["size"],) or np.any((nodes < -1) | (nodes >= n_nodes)):
            raise ValueError(f"rate_sources[{name!r}] must give a node in -1..{n_nodes - 1} (-1: not counted) for "
                             f"each of the population's {pop['size']} neurons")
        for c in pop["cores"]:
            core = base.cores[c]
            f, m = core.config["first_neuron"], core.n_neurons
            sel = np.flatnonzero(nodes[f:f + m] >= 0)
            cid.append(np.full(len(sel), chip.core_id(core.x, core.y), dtype=np.int64))
            local.append(sel)
            node.append(nodes[f:f + m][sel])
    cat = (lambda a: np.concatenate(a).astype(np.int64) if a else np.zeros(0, np.int64))
    return cat(cid), cat(local), cat(node)


def _fit_rate_tables(model, params, size, window, shift, cores_of, chip):
    """Rate tables at ``shift``, or at the smallest shift whose tables fit every node core (shift None)."""
    shifts = [shift] if shift is not None else range(MAX_RATE_SHIFT + 1)
    for s in shifts:
        rt, rows = rate_tables(model, params, size, window, s)
        L = rt.emission.shape[2]
        words = [fixed + int((rt.buckets[g] * model.n_types * L).sum()) for g, fixed in cores_of]
        if max(words) <= chip.synapse_words or shift is not None:
            return rt, rows
    raise CapacityError(f"table memory: the rate emission tables need {max(words)} words on the fullest node core "
                        f"even with count buckets of 2**{MAX_RATE_SHIFT}; a core holds {chip.synapse_words}; use "
                        "fewer nodes per core or a shorter rate window")


def compile_vesicles(model, fit_or_params, chip: ChipConfig, *, network=None, release=None, release_amplitude=None,
                     nodes_per_core=None, draw=None, rate_window=None, rate_sources=None,
                     rate_shift=None) -> ChipProgram:
    """Compile a vesicle model (and optionally a base network); see :func:`nvppl.backend.compile`.

    With ``rate_window`` W, emission reads the on-chip spike rate of every node
    (:mod:`nvppl.backend.vesicle_rates`): ``rate_sources`` maps a population
    name of ``network`` to the graph node of each of its neurons (−1: not
    counted), and ``rate_shift`` s buckets the window counts (None: the
    smallest s whose tables fit the node cores).
    """
    if not isinstance(model, VesicleModel):
        raise TypeError(f"model must be a VesicleModel, got {type(model).__name__}")
    params, source = select_params(model, fit_or_params, draw)
    rate = rate_window is not None
    if rate:
        rate_window = check_window(rate_window)
        if network is None or rate_sources is None:
            raise DeploymentError("emission from the spike rate needs the spiking network (network=) and the "
                                  "neurons counted at each node (rate_sources=)")
    tables, quantized, report = quantize(model, params, rate=rate)
    n = model.n_nodes
    if n > MAX_NODES:
        raise CapacityError(f"graph nodes: {n}; the 20-bit node fields of the table words address {MAX_NODES}")
    ncand = np.asarray((np.asarray(model.substrate.candidates) >= 0).sum(axis=1))
    if ncand.max() > MAX_CANDIDATES:
        raise CapacityError(f"node {int(np.argmax(ncand))} has {int(ncand.max())} candidates; a node word holds "
                            f"{MAX_CANDIDATES}")

    # the base network with its release ports
    if release is not None and network is None:
        raise ValueError("release= needs a base network (network=)")
    ports = np.zeros((0, 2), dtype=np.int64)
    if network is not None:
        if release is not None:
            network, ports = _release_network(network, model, release, release_amplitude)
        base = compile_network(network, chip)
    else:
        base = ChipProgram(chip, [], [], [])
    used = {(c.x, c.y) for c in base.cores}
    free = [xy for xy in chip.neuron_cores() if xy not in used]

    # placement of the graph nodes
    if nodes_per_core is None:
        nodes_per_core = default_nodes_per_core(model, quantized, chip, rate=rate)
    nodes_per_core = positive_int(nodes_per_core, "nodes_per_core")
    order = node_order(model, quantized)
    groups = [order[i:i + nodes_per_core] for i in range(0, n, nodes_per_core)]
    if len(groups) > len(free):
        raise CapacityError(
            f"cores: the {n} graph nodes need {len(groups)} node cores at {nodes_per_core} nodes per core, and "
            f"{len(free)} of the chip's {chip.n_neuron_cores} cores are free"
            + (f" ({len(base.cores)} hold the base network)" if base.cores else "")
            + "; use a larger chip or more nodes per core")
    sources = None
    if rate:
        sources = _rate_sources(base, rate_sources, n, chip)
        size = np.bincount(sources[2], minlength=n)
        ncand_all = np.asarray((np.asarray(model.substrate.candidates) >= 0).sum(axis=1))
        K = model.n_types
        cores_of = [(g, K + len(g) * (1 + rate_window) + int(ncand_all[g].sum()) * K
                     + int(np.isin(sources[2], g).sum())) for g in groups]
        rt, rows = _fit_rate_tables(model, params, size, rate_window, rate_shift, cores_of, chip)
        tables = tables._replace(rate=rt)
        attrs = dict(report.attrs)
        report = pd.concat([pd.DataFrame(rows, columns=report.columns), report], ignore_index=True)
        report.attrs.update(attrs, rate_window=rate_window, rate_shift=rt.shift)
    cores = node_core_images(model, tables, groups, free[:len(groups)], chip, sources)
    for core in cores:
        if core.table_words > chip.synapse_words:
            raise CapacityError(f"table memory: node core ({core.x}, {core.y}) needs {core.table_words} table "
                                f"words for its {core.config['n_nodes']} nodes; a core holds {chip.synapse_words}; "
                                "use fewer nodes per core")
    ves = VesicleProgram(model, params, quantized, report, cores, ports, source)
    return ChipProgram(chip, base.cores, base.populations, base.projections, quantization=base.quantization,
                       network=network, extra=dict(base.extra), vesicles=ves)
