"""The memory of the cores a program configures: neuron cores, node cores, the vesicle deployment.

What :func:`nvppl.backend.compile` produces, the image holds and the emulator
loads, below :class:`~nvppl.backend.ChipProgram`:

- the memory map of a core: its regions (:data:`REGIONS`, address bits
  31–24) and config registers (:data:`CONFIG_REGISTERS` of a neuron core,
  :data:`NODE_CONFIG` of a node core), with :func:`field` and :func:`signed`
  to read the bit fields of memory words;
- :class:`CoreImage`, the memory of a neuron core, and :class:`NodeCoreImage`,
  the table memory of a node core of a deployed vesicle model;
- :class:`VesicleProgram`, the deployed vesicle model, whose node cores'
  tables :func:`decode_tables` reads back and checks.

Memory words of a neuron core (48-bit unless noted):

- **instruction**: 32-bit ISA words (:mod:`nvppl.backend.isa`).
- **state / trace**: per neuron, ``state_slots`` signed words / 3 traces.
- **axon out** (one per (source neuron, destination core, class)): bits 11–0 the
  source neuron on this core, 21–12 the destination core id (y · width + x),
  24–22 the packet class, 47–25 the destination axon.
- **axon in** (two words per incoming axon): word 0 bits 19–0 the first synapse,
  32–20 the synapse count; word 1 bits 9–0 the source core id, 21–10 the source
  neuron on its core, bit 22 set for an external input (from the controller).
- **synapse**: bits 15–0 the weight (two's complement), 27–16 the target neuron
  on this core, bit 28 plastic, bit 29 reward.

Table words of a node core (48-bit; ``docs/guide/emulator.rst``, "Vesicles on
the chip"):

- **types** (one word per type): bits 16–0 the docking threshold, 33–17 the
  decay threshold, 37–34 the budget (15 = unlimited);
- **emission** (``table_len`` words per type): bits 16–0 a cumulative
  emission-count threshold;
- **nodes** (one word per hosted node): bits 19–0 the graph node, 27–20 its
  number of candidates (0 on a sink), 44–28 its absorption threshold;
- **migration** (per hosted node, per type, one word per candidate): bits 16–0
  the cumulative threshold, 36–17 the candidate node, 46–37 the core id of the
  core holding it;
- **rate emission** (emission from the on-chip spike rate, config
  ``rate_window`` > 0; :mod:`nvppl.backend.vesicle_rates`): per hosted node, in
  the order of the nodes region, per count bucket and type, ``table_len``
  words of bits 16–0 a cumulative emission-count threshold; the per-type
  emission region is then empty;
- **rate sources** (one word per counted neuron): bits 19–0 the graph node,
  29–20 the core id of the neuron's core, 41–30 the neuron on that core. A
  node's buckets are ``(rate_window · sources >> rate_shift) + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..params import Params
from .chip import ChipConfig
from .isa.opcodes import ROUNDINGS
from .noc import hop_distance
from .vesicle_rates import RateTables, bucket_counts
from .vesicles import ONE, VesicleTables

__all__ = ["CONFIG_REGISTERS", "NODE_CONFIG", "REGIONS", "ROUNDING_CODES", "CoreImage", "NodeCoreImage",
           "VesicleProgram", "decode_tables", "expected_hops", "field", "signed"]

#: Memory regions of a core (address bits 31–24).
REGIONS = {"config": 0, "instruction": 1, "state": 2, "trace": 3, "axon_out": 4, "axon_in": 5, "synapse": 6,
           "vesicle_types": 7, "vesicle_emission": 8, "vesicle_nodes": 9, "vesicle_migration": 10, "mailbox": 11,
           "vesicle_rate": 12, "vesicle_sources": 13}

#: Config registers of a neuron core, by offset in the config region.
CONFIG_REGISTERS = ("n_neurons", "rounding", "learning_interval", "program_words", "state_slots",
                    "axon_out_words", "axon_in_words", "synapse_words", "population", "first_neuron")

#: Config registers of a node core, by offset in the config region (the last four are 0 without a rate
#: window and may be absent from an image).
NODE_CONFIG = ("n_nodes", "n_types", "table_len", "nodes_words", "migration_words", "rate_window", "rate_shift",
               "rate_words", "source_words")

#: The ``rounding`` config register: the code of each rounding mode.
ROUNDING_CODES = {mode: code for code, mode in enumerate(ROUNDINGS)}


def field(words, lo: int, width: int) -> np.ndarray:
    """The ``width`` bits from bit ``lo`` up of unsigned ``words``, as int64.

    Examples
    --------
    >>> field([0x1234], 4, 8).tolist()
    [35]
    """
    return ((np.asarray(words, dtype=np.uint64) >> np.uint64(lo)) & np.uint64((1 << width) - 1)).astype(np.int64)


def signed(words, bits: int) -> np.ndarray:
    """The low ``bits`` of unsigned ``words`` read as two's complement (int64).

    Examples
    --------
    >>> signed([0xFFFF, 0x7FFF], 16).tolist()
    [-1, 32767]
    """
    v = np.asarray(words, dtype=np.uint64) & np.uint64((1 << bits) - 1)
    v = v.astype(np.int64)
    return np.where(v >= 1 << (bits - 1), v - (1 << bits), v)


def _same_arrays(a, b, names) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in names)


@dataclass(eq=False)
class CoreImage:
    """The memory of one neuron core.

    Attributes
    ----------
    x, y : int
        Tile coordinates.
    config : dict[str, int]
        Config registers (:data:`CONFIG_REGISTERS`).
    program : numpy.ndarray of uint32
        Instruction memory.
    state : numpy.ndarray of int64, (n_neurons, state_slots)
        Initial neuron state.
    traces : numpy.ndarray of int64, (n_neurons, 3)
        Initial traces (x, y, r).
    axon_out, axon_in, synapses : numpy.ndarray of uint64
        Axon table and synapse memory (48-bit words).
    """

    x: int
    y: int
    config: dict
    program: np.ndarray
    state: np.ndarray
    traces: np.ndarray
    axon_out: np.ndarray
    axon_in: np.ndarray
    synapses: np.ndarray

    @property
    def n_neurons(self) -> int:
        return int(self.config["n_neurons"])

    def equals(self, other: CoreImage) -> bool:
        """True when both cores hold the same memory."""
        return ((self.x, self.y) == (other.x, other.y) and self.config == other.config
                and _same_arrays(self, other, ("program", "state", "traces", "axon_out", "axon_in", "synapses")))


@dataclass(eq=False)
class NodeCoreImage:
    """The memory of one node core (table words, 48-bit).

    Attributes
    ----------
    x, y : int
    config : dict
        :data:`NODE_CONFIG`.
    types, emission, nodes, migration, rate, sources : numpy.ndarray of uint64
        The table regions (layouts in the module docstring; ``rate`` and
        ``sources`` empty without a rate window).
    """

    x: int
    y: int
    config: dict
    types: np.ndarray
    emission: np.ndarray
    nodes: np.ndarray
    migration: np.ndarray
    rate: np.ndarray = None
    sources: np.ndarray = None

    def __post_init__(self):
        for name in ("rate", "sources"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(0, dtype=np.uint64))
        for name in NODE_CONFIG[5:]:
            self.config.setdefault(name, 0)

    @property
    def table_words(self) -> int:
        """Words of table memory: the regions, and the rate window's W counters per hosted node."""
        return (len(self.types) + len(self.emission) + len(self.nodes) + len(self.migration) + len(self.rate)
                + len(self.sources) + int(self.config["rate_window"]) * len(self.nodes))

    def equals(self, other) -> bool:
        """True when both node cores hold the same tables."""
        return ((self.x, self.y) == (other.x, other.y) and self.config == other.config
                and _same_arrays(self, other, ("types", "emission", "nodes", "migration", "rate", "sources")))


@dataclass(eq=False)
class VesicleProgram:
    """The vesicle part of a :class:`~nvppl.backend.ChipProgram`.

    Attributes
    ----------
    model : VesicleModel
    params : Params
        The parameters asked for (e.g. the posterior mean).
    quantized_params : Params
        The parameters actually deployed.
    report : pandas.DataFrame or None
        Worst-case and typical quantisation error per kernel (None when read from an image).
    cores : list of NodeCoreImage
    ports : numpy.ndarray, (P, 2)
        (node, type) of each release port, in port order (empty without a base network).
    source : str
        Where the parameters came from.
    """

    model: object
    params: Params
    quantized_params: Params
    report: object
    cores: list
    ports: np.ndarray
    source: str = "params"

    @property
    def node_core(self) -> np.ndarray:
        """Node core (index into ``cores``) of every graph node."""
        out = np.full(self.model.n_nodes, -1, dtype=np.int64)
        for k, core in enumerate(self.cores):
            out[field(core.nodes, 0, 20)] = k
        return out

    def tables(self) -> VesicleTables:
        """The tables the node cores hold, decoded and checked (:func:`decode_tables`)."""
        return decode_tables(self.cores, self.model)

    def rate_sources(self) -> tuple:
        """(core id, neuron on its core, graph node) of every counted neuron, from the rate-source words."""
        words = np.concatenate([c.sources for c in self.cores]) if self.cores else np.zeros(0, np.uint64)
        return field(words, 20, 10), field(words, 30, 12), field(words, 0, 20)

    def expected_hops(self, chip: ChipConfig) -> float:
        """Mean tile hops of one migration step, rows of T weighted equally (the placement's cost)."""
        return expected_hops(self.quantized_params, self.model, self.node_core,
                             [(c.x, c.y) for c in self.cores], chip)

    def equals(self, other: VesicleProgram) -> bool:
        """True when both deploy the same model with the same tables, ports and deployed parameters."""
        a, b = self, other
        return (a.model.to_json() == b.model.to_json() and len(a.cores) == len(b.cores)
                and all(x.equals(y) for x, y in zip(a.cores, b.cores)) and np.array_equal(a.ports, b.ports)
                and all(np.allclose(np.asarray(getattr(a.quantized_params, f)),
                                    np.asarray(getattr(b.quantized_params, f)), rtol=0, atol=1e-15)
                        for f in a.quantized_params.to_dict()))


def expected_hops(params, model, node_core, tiles, chip) -> float:
    """Mean over types and non-sink nodes of Σ_j T_κ[ℓ, j] · hops(core(ℓ), core(c_j)).

    Parameters
    ----------
    params : Params
        Parameters whose migration rows weight the moves.
    model : VesicleModel
    node_core : array_like of int, (n,)
        Index into ``tiles`` of the core holding every graph node.
    tiles : list of (int, int)
        The node cores' tiles.
    chip : ChipConfig
    """
    cand = np.asarray(model.substrate.candidates)
    T = np.asarray(params.T, dtype=float)
    core_id = np.array([chip.core_id(x, y) for x, y in tiles], dtype=np.int64)[node_core]
    hops = np.where(cand >= 0, hop_distance(chip, core_id[:, None], core_id[np.maximum(cand, 0)]), 0)
    rows = (cand >= 0).any(axis=1)
    if not rows.any():
        return 0.0
    return float((T * hops[None]).sum(axis=-1)[:, rows].mean())


def _check_thresholds(where: str, what: str, values) -> None:
    """A threshold above 2¹⁶ is an event with probability above 1."""
    if np.any(values > ONE):
        raise ValueError(f"{where}: a {what} threshold of {int(values.max())} exceeds 2**16 = {ONE}")


def _unwalkable(table, length) -> np.ndarray:
    """Rows of a cumulative ``table`` (..., slots) that the engine cannot walk within their ``length``.

    A row must not decrease and must end at 2¹⁶, so that every 16-bit draw
    finds an entry above it.
    """
    last = np.take_along_axis(table, np.maximum(length - 1, 0)[..., None], axis=-1)[..., 0]
    slots = np.arange(table.shape[-1])
    decreasing = ((np.diff(table, axis=-1) < 0) & (slots[1:] < length[..., None])).any(axis=-1)
    return (length > 0) & ((last != ONE) | decreasing)


def _table_error(where: str, what: str, row) -> ValueError:
    return ValueError(f"{where}: the cumulative {what} thresholds {row.tolist()} must not decrease and must end "
                      f"at 2**16 = {ONE}, so that every draw finds an entry above it")


def decode_tables(cores, model) -> VesicleTables:
    """The :class:`~nvppl.backend.vesicles.VesicleTables` held by node cores, checked.

    The inverse of :func:`nvppl.backend.deploy.node_core_images`. The tables
    must agree with the substrate (nodes, candidates and destinations) and be
    tables the engine can walk: cumulative thresholds that never decrease and
    end at 2¹⁶, no threshold above 2¹⁶.

    Raises
    ------
    ValueError
        Naming the node core, and the node and type, of what is inconsistent.
    """
    K, n = model.n_types, model.n_nodes
    cand = np.asarray(model.substrate.candidates)
    M = cand.shape[1]
    if not cores:
        raise ValueError("the program has no node cores")
    first = cores[0]
    for core in cores[1:]:
        if not (np.array_equal(core.types, first.types) and np.array_equal(core.emission, first.emission)):
            raise ValueError(f"node core ({core.x}, {core.y}) holds type or emission tables that differ from "
                             f"those of node core ({first.x}, {first.y})")
    where = f"node core ({first.x}, {first.y})"
    if len(first.types) != K:
        raise ValueError(f"{where} has {len(first.types)} type words; the model has {K} types")
    dock, decay, budget = field(first.types, 0, 17), field(first.types, 17, 17), field(first.types, 34, 4)
    _check_thresholds(where, "docking", dock)
    _check_thresholds(where, "decay", decay)
    L = first.config["table_len"]
    emission = field(first.emission, 0, 17).reshape(K, -1 if first.config["rate_window"] else L)
    bad = np.flatnonzero(_unwalkable(emission, np.full(K, L))) if emission.shape[1] else np.zeros(0, np.int64)
    if bad.size:
        raise _table_error(f"{where}, type {bad[0]}", "emission", emission[bad[0]])
    absorb = np.zeros(n, dtype=np.int64)
    migration = np.zeros((K, n, M), dtype=np.int64)
    seen = np.zeros(n, dtype=bool)
    core_of = np.zeros(n, dtype=np.int64)
    for index, core in enumerate(cores):
        where = f"node core ({core.x}, {core.y})"
        nodes = field(core.nodes, 0, 20)
        nc = field(core.nodes, 20, 8)
        if np.any(nodes >= n) or np.any(seen[nodes]):
            raise ValueError(f"{where}: its node table names a node beyond the model's {n} or one already placed")
        seen[nodes] = True
        core_of[nodes] = index
        absorb[nodes] = field(core.nodes, 28, 17)
        _check_thresholds(where, "absorption", absorb[nodes])
        pos = 0
        for node, c in zip(nodes, nc):
            if c != int((cand[node] >= 0).sum()):
                raise ValueError(f"{where}: node {node} has {c} candidates in its table, the substrate "
                                 f"{int((cand[node] >= 0).sum())}")
            for k in range(K):
                words = core.migration[pos:pos + c]
                if len(words) != c:
                    raise ValueError(f"{where}: the migration table ends inside node {node}'s rows")
                if np.any(field(words, 17, 20) != cand[node, :c]):
                    raise ValueError(f"{where}: node {node}, type {k}: the migration table's destinations "
                                     "differ from the substrate's candidates")
                migration[k, node, :c] = field(words, 0, 17)
                migration[k, node, c:] = ONE if c else 0
                pos += c
        if pos != len(core.migration):
            raise ValueError(f"{where}: {len(core.migration) - pos} migration words are not used by any node")
    if not seen.all():
        raise ValueError(f"graph node {int(np.flatnonzero(~seen)[0])} is on no node core")
    ncand = (cand >= 0).sum(axis=1)
    bad = np.argwhere(_unwalkable(migration, np.broadcast_to(ncand, (K, n))))
    if len(bad):
        k, node = (int(v) for v in bad[0])
        core = cores[core_of[node]]
        raise _table_error(f"node core ({core.x}, {core.y}), node {node}, type {k}", "migration",
                           migration[k, node, :ncand[node]])
    rate = _decode_rate(cores, model, core_of) if first.config["rate_window"] else None
    return VesicleTables(emission, migration, dock, absorb, decay, budget, rate)


def _decode_rate(cores, model, core_of):
    """The :class:`~nvppl.backend.vesicle_rates.RateTables` of the rate regions, checked."""
    K, n = model.n_types, model.n_nodes
    first = cores[0]
    W, s, L = first.config["rate_window"], first.config["rate_shift"], first.config["table_len"]
    size = np.zeros(n, dtype=np.int64)
    for index, core in enumerate(cores):
        where = f"node core ({core.x}, {core.y})"
        if (core.config["rate_window"], core.config["rate_shift"]) != (W, s):
            raise ValueError(f"{where}: rate window {core.config['rate_window']} and shift "
                             f"{core.config['rate_shift']} differ from those of node core ({first.x}, {first.y})")
        nodes = field(core.sources, 0, 20)
        if np.any(nodes >= n) or np.any(core_of[np.minimum(nodes, n - 1)] != index):
            raise ValueError(f"{where}: a rate-source word names a node this core does not host")
        size += np.bincount(nodes, minlength=n)
    buckets = bucket_counts(size, W, s)
    base = np.concatenate([[0], np.cumsum(buckets)[:-1]]).astype(np.int64)
    emission = np.zeros((int(buckets.sum()), K, L), dtype=np.int64)
    for core in cores:
        where = f"node core ({core.x}, {core.y})"
        pos = 0
        for node in field(core.nodes, 0, 20):
            words = buckets[node] * K * L
            if pos + words > len(core.rate):
                raise ValueError(f"{where}: the rate emission table ends inside node {node}'s rows")
            emission[base[node]:base[node] + buckets[node]] = field(core.rate[pos:pos + words], 0, 17).reshape(
                buckets[node], K, L)
            pos += words
        if pos != len(core.rate):
            raise ValueError(f"{where}: {len(core.rate) - pos} rate emission words are not used by any node")
    rows = emission.reshape(-1, L)
    bad = np.flatnonzero(_unwalkable(rows, np.full(len(rows), L)))
    if bad.size:
        row, k = divmod(int(bad[0]), K)
        node = int(np.searchsorted(base, row, side="right") - 1)
        core = cores[core_of[node]]
        raise _table_error(f"node core ({core.x}, {core.y}), node {node}, count bucket {row - base[node]}, type {k}",
                           "rate emission", rows[bad[0]])
    return RateTables(int(W), int(s), size, base, emission)
