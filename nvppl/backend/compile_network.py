"""Compilation of a spiking network into a chip program: placement and memory layout.

:func:`compile_network` takes the programs and quantised weights of
:mod:`nvppl.backend.network_programs`, places populations on cores in
contiguous slices along the serpentine of cores, lays out the axon tables and
synapse memory, and checks every per-core capacity
(``docs/guide/emulator.rst``, "Spiking networks on the chip"). What does not
fit is refused with :class:`~nvppl.CapacityError` naming the resource; nothing
is truncated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import CapacityError
from .chip import ChipConfig
from .image import ChipProgram
from .network import Network
from .network_programs import population_programs, quantized_weights
from .noc import SHORT_AXONS, PacketClass
from .program import ROUNDING_CODES, CoreImage

__all__ = ["compile_network"]


# ---------------------------------------------------------------------------------------------
# placement


def _in_synapses(net: Network, pop) -> np.ndarray:
    """Incoming synapse count per neuron of ``pop`` (one external synapse per input relay)."""
    counts = np.zeros(pop.size, dtype=np.int64)
    if pop.kind == "input":
        counts += 1
    for proj in net.incoming(pop):
        counts += np.bincount(proj.weights.indices, minlength=pop.size)
    return counts


def _slices(pop, counts, chip, cap):
    """Contiguous neuron ranges, one per core, within ``cap`` neurons and the synapse capacity."""
    too_many = np.flatnonzero(counts > chip.synapse_words)
    if too_many.size:
        k = int(too_many[0])
        raise CapacityError(f"population {pop.name!r}, neuron {k}: {counts[k]} incoming synapses do not fit one "
                            f"core's synapse memory ({chip.synapse_words} words)")
    bounds, start = [], 0
    csum = np.concatenate([[0], np.cumsum(counts)])
    while start < pop.size:
        # the largest end with end - start ≤ cap and csum[end] - csum[start] ≤ synapse_words
        end = min(pop.size, start + cap)
        end = min(end, int(np.searchsorted(csum, csum[start] + chip.synapse_words, side="right") - 1))
        bounds.append((start, end))
        start = end
    return bounds


def _place(net: Network, chip: ChipConfig, caps):
    slices = [_slices(pop, _in_synapses(net, pop), chip, cap) for pop, cap in zip(net.populations, caps)]
    need = sum(len(s) for s in slices)
    if need > chip.n_neuron_cores:
        detail = ", ".join(f"{pop.name!r}: {len(s)}" for pop, s in zip(net.populations, slices))
        raise CapacityError(f"the network needs {need} neuron cores ({detail}); the chip has "
                            f"{chip.n_neuron_cores} ({chip.width} × {chip.height} tiles minus the controller)")
    tiles = chip.neuron_cores()
    placed, k = [], 0
    for s in slices:
        placed.append([(tiles[k + m], a, b) for m, (a, b) in enumerate(s)])
        k += len(s)
    return placed


# ---------------------------------------------------------------------------------------------
# memory layout


class _AxonOverflow(Exception):
    """Axon tables overflowed; placement retries with fewer neurons per core.

    ``worst`` maps a population index to (neurons, words needed) of its fullest core.
    """

    def __init__(self, worst, message):
        super().__init__(message)
        self.worst = worst


def compile_network(net: Network, chip: ChipConfig) -> ChipProgram:
    """Compile a spiking network for ``chip`` (the network case of :func:`nvppl.backend.compile`).

    Populations are placed with the most neurons per core whose axon tables
    fit (random wiring needs fewer).

    Raises
    ------
    CapacityError
        Naming the resource that does not fit.
    ValueError
        An empty network, or a quantised value that does not fit its word.
    """
    if not net.populations:
        raise ValueError("the network has no populations")
    if chip.state_slots < 2:
        raise CapacityError(f"LIF programs need 2 state words per neuron; the chip has state_slots={chip.state_slots}")
    progs = population_programs(net, chip)
    for pop, (program, _, _) in zip(net.populations, progs):
        if len(program) > chip.instruction_words:
            raise CapacityError(f"population {pop.name!r}: its program has {len(program)} instructions; a core's "
                                f"instruction memory holds {chip.instruction_words}")
    rows_by_pop = [rows for _, _, rows in progs]
    weights_q = quantized_weights(net, [s for _, s, _ in progs], chip, rows_by_pop)
    caps = [chip.neurons_per_core] * len(net.populations)
    overflow = None
    while True:
        try:
            return _compile_placed(net, chip, caps, progs, weights_q)
        except _AxonOverflow as over:
            overflow = over
            for pop, (neurons, needed) in over.worst.items():
                smaller = min(int(neurons * chip.axon_words / needed * 0.9), caps[pop] - 1)
                if smaller < 1:
                    raise CapacityError(f"{over}, even with one neuron per core") from None
                caps[pop] = smaller
        except CapacityError as exc:
            if overflow is None:
                raise
            raise CapacityError(f"{overflow}; with fewer neurons per core to shrink the axon tables: {exc}") from None


def _key(core, external, src_core_id, src_local, reward, target_local):
    """Sort key of a synapse (46 bits; cores and core ids < 1024, neurons per core < 4096)."""
    return ((np.asarray(core, dtype=np.int64) << 36) | (np.int64(external) << 35)
            | (np.asarray(src_core_id, dtype=np.int64) << 25) | (np.asarray(src_local, dtype=np.int64) << 13)
            | (np.int64(reward) << 12) | np.asarray(target_local, dtype=np.int64))


def _compile_placed(net: Network, chip: ChipConfig, caps, progs, weights_q) -> ChipProgram:
    """Place with ``caps`` neurons per core at most and lay out every core's memory."""
    placed = _place(net, chip, caps)

    # global view: core index of every neuron, and its local index there
    cores_xy, core_pop, core_first, core_n = [], [], [], []
    neuron_core = []   # per population: core index of each neuron
    for pop, slices in zip(net.populations, placed):
        nc = np.empty(pop.size, dtype=np.int64)
        for (xy, a, b) in slices:
            nc[a:b] = len(cores_xy)
            cores_xy.append(xy)
            core_pop.append(pop.index)
            core_first.append(a)
            core_n.append(b - a)
        neuron_core.append(nc)
    core_first = np.asarray(core_first, dtype=np.int64)
    core_ids = np.array([chip.core_id(*xy) for xy in cores_xy], dtype=np.int64)

    # every synapse, keyed by (core, external, source core id, source neuron, reward, target neuron) packed
    # into 46 bits: sorting the keys orders synapse memory by core, then by incoming axon, then by target
    keys, weight, plastic, proj_of, entry = [], [], [], [], []
    for proj in net.projections:
        W = weights_q[proj.index]
        coo_j = np.repeat(np.arange(proj.pre.size), np.diff(W.indptr))
        coo_i = W.indices.astype(np.int64)
        tc = neuron_core[proj.post.index][coo_i]
        sc = neuron_core[proj.pre.index][coo_j]
        keys.append(_key(tc, 0, core_ids[sc], coo_j - core_first[sc], int(proj.kind == "reward"),
                         coo_i - core_first[tc]))
        weight.append(W.data.astype(np.int64))
        plastic.append(np.full(W.nnz, proj.plasticity is not None))
        proj_of.append(np.full(W.nnz, proj.index, dtype=np.int32))
        entry.append(np.arange(W.nnz))
    ctrl = chip.core_id(*chip.controller)
    for pop in net.populations:
        if pop.kind == "input":  # external input: controller -> relay neuron, weight 1
            tc = neuron_core[pop.index]
            local = np.arange(pop.size) - core_first[tc]
            keys.append(_key(tc, 1, ctrl, local, 0, local))
            weight.append(np.ones(pop.size, dtype=np.int64))
            plastic.append(np.zeros(pop.size, dtype=bool))
            proj_of.append(np.full(pop.size, -1, dtype=np.int32))
            entry.append(np.arange(pop.size))
    key = np.concatenate(keys)
    order = np.argsort(key, kind="stable")
    key = key[order]
    n_syn = len(key)
    n_cores = len(cores_xy)
    syn_core = key >> 36
    core_start = np.searchsorted(syn_core, np.arange(n_cores + 1))
    local_index = np.arange(n_syn) - core_start[syn_core]
    # incoming axons: runs of equal keys once the target neuron is dropped
    axon_key = key >> 12
    new = np.ones(n_syn, dtype=bool)
    new[1:] = axon_key[1:] != axon_key[:-1]
    first = np.flatnonzero(new)
    count = np.diff(np.append(first, n_syn))
    if len(count) and count.max() >= (1 << 13):
        k = int(np.argmax(count))
        raise CapacityError(f"core {cores_xy[syn_core[first[k]]]}: an axon reaches {count[k]} synapses; an axon "
                            "header holds at most 8191")
    ax_core = syn_core[first]
    ax_first = np.searchsorted(ax_core, np.arange(n_cores + 1))
    ax_local = np.arange(len(first)) - ax_first[ax_core]
    akey = axon_key[first]
    rew, src_local, src_core, ext = akey & 1, (akey >> 1) & 0xFFF, (akey >> 13) & 0x3FF, (akey >> 23) & 1
    core_index_of = np.full(chip.width * chip.height, -1, dtype=np.int64)
    core_index_of[core_ids] = np.arange(n_cores)
    internal = np.flatnonzero(ext == 0)
    src_index = core_index_of[src_core[internal]]
    used = np.bincount(src_index, minlength=n_cores) + np.diff(ax_first) * 2
    over = np.flatnonzero(used > chip.axon_words)
    if over.size:
        worst = {}
        for c in over:
            p = core_pop[c]
            if p not in worst or used[c] / core_n[c] > worst[p][1] / worst[p][0]:
                worst[p] = (core_n[c], int(used[c]))
        c = int(over[0])
        raise _AxonOverflow(
            worst, f"core {cores_xy[c]} (population {net.populations[core_pop[c]].name!r}, neurons {core_first[c]}–"
                   f"{core_first[c] + core_n[c] - 1}) needs {used[c]} axon-table words; a core has {chip.axon_words}")
    proj_of = np.concatenate(proj_of)[order]
    entry = np.concatenate(entry)[order]
    synapse_address = [np.empty((p.n_synapses, 2), dtype=np.int64) for p in net.projections]
    for proj in net.projections:
        m = proj_of == proj.index
        synapse_address[proj.index][entry[m]] = np.stack([syn_core[m], local_index[m]], axis=1)

    w0 = local_index[first].astype(np.uint64) | (count.astype(np.uint64) << np.uint64(20))
    w1 = (src_core.astype(np.uint64) | (src_local.astype(np.uint64) << np.uint64(10))
          | (ext.astype(np.uint64) << np.uint64(22)))
    headers = np.stack([w0, w1], axis=1).reshape(-1)
    axon_in_words = [headers[2 * ax_first[c]:2 * ax_first[c + 1]] for c in range(n_cores)]

    # out entries: one per internal axon, at its source core, sorted by (source neuron, destination, axon)
    short = ax_local[internal] < SHORT_AXONS
    cls = np.where(rew[internal] == 1,
                   np.where(short, PacketClass.REWARD_SHORT_SPIKE, PacketClass.REWARD_SPIKE),
                   np.where(short, PacketClass.SHORT_SPIKE, PacketClass.SPIKE)).astype(np.int64)
    dst_id = core_ids[ax_core[internal]]
    out_order = np.lexsort((ax_local[internal], dst_id, src_local[internal], src_index))
    out_src_index = src_index[out_order]
    out_words_all = (src_local[internal][out_order].astype(np.uint64)
                     | (dst_id[out_order].astype(np.uint64) << np.uint64(12))
                     | (cls[out_order].astype(np.uint64) << np.uint64(22))
                     | (ax_local[internal][out_order].astype(np.uint64) << np.uint64(25)))
    out_first = np.searchsorted(out_src_index, np.arange(n_cores + 1))

    w = np.concatenate(weight)[order]
    words = ((w & 0xFFFF).astype(np.uint64) | ((key & 0xFFF).astype(np.uint64) << np.uint64(16))
             | (np.concatenate(plastic)[order].astype(np.uint64) << np.uint64(28))
             | (((key >> 12) & 1).astype(np.uint64) << np.uint64(29)))
    synapse_words = [words[core_start[c]:core_start[c + 1]] for c in range(n_cores)]

    cores = []
    for c in range(n_cores):
        pop = net.populations[core_pop[c]]
        out_words = out_words_all[out_first[c]:out_first[c + 1]]
        program = progs[pop.index][0]
        config = {
            "n_neurons": core_n[c], "rounding": ROUNDING_CODES[chip.rounding],
            "learning_interval": chip.learning_interval, "program_words": len(program),
            "state_slots": chip.state_slots, "axon_out_words": len(out_words),
            "axon_in_words": len(axon_in_words[c]), "synapse_words": len(synapse_words[c]),
            "population": pop.index, "first_neuron": int(core_first[c]),
        }
        cores.append(CoreImage(
            cores_xy[c][0], cores_xy[c][1], {k: int(v) for k, v in config.items()},
            np.asarray(program.words, dtype=np.uint32),
            np.zeros((core_n[c], chip.state_slots), dtype=np.int64), np.zeros((core_n[c], 3), dtype=np.int64),
            out_words, axon_in_words[c], synapse_words[c]))

    populations = [
        {"name": pop.name, "kind": pop.kind, "size": pop.size,
         "cores": [int(c) for c in np.unique(neuron_core[pop.index])]}
        for pop in net.populations
    ]
    projections = [
        {"pre": p.pre.name, "post": p.post.name, "kind": p.kind, "plastic": p.plasticity is not None}
        for p in net.projections
    ]
    table = pd.DataFrame(
        [(pop.name, what, value, deployed, deployed - value)
         for pop, (_, _, rows) in zip(net.populations, progs) for what, value, deployed in rows],
        columns=["population", "quantity", "value", "deployed", "error"])
    return ChipProgram(
        chip, cores, populations, projections, quantization=table, network=net,
        extra={"weights": weights_q, "synapse_address": synapse_address, "scales": [s for _, s, _ in progs],
               "programs": [p for p, _, _ in progs]})
