"""NumPy fixed-point reference of a spiking network coupled to its deployed vesicles.

A vesicle model deployed with a spiking network is coupled to it both ways:
spikes drive emission (the rate windows of :mod:`nvppl.backend.vesicle_rates`)
and docks drive learning (the release ports of :mod:`nvppl.backend.deploy`).
:func:`simulate_coupled` interleaves the two NumPy references tick by tick,
in the chip's order (``docs/guide/emulator.rst``, "One tick" and "Vesicles on
the chip"):

1. the vesicles (:class:`~nvppl.backend.vesicle_reference.DeployedVesicles`)
   take the spikes per node of tick t − 1 into their windows and run their
   tick;
2. every (node, type) with a release port and a dock fires its relay of the
   input population ``"vesicle_release"`` at t (once, however many docks);
3. the network (:class:`~nvppl.backend.reference.FixedPointNetwork`) runs tick
   t with the external inputs and the fired ports; the reward spikes reach
   the node's neurons at t + 1.

It shares no code with the emulator but the instruction decoder and the
generator's hash, so equality at every tick checks the emulator's coupling.
"""

from __future__ import annotations

import numpy as np

from .._validate import seed64
from .deploy import RELEASE_POPULATION
from .image import ChipProgram
from .reference import FixedPointNetwork, _inputs, record_init, record_tick
from .vesicle_reference import DeployedVesicles, traces_from_rows

__all__ = ["simulate_coupled"]


def _counted(prog: ChipProgram, ref: FixedPointNetwork):
    """Per population of the network, the graph node counted for each neuron (−1: none)."""
    out = [np.full(p.size, -1, dtype=np.int64) for p in ref.net.populations]
    if prog.vesicles.tables().rate is None:
        return out
    cid, local, node = prog.vesicles.rate_sources()
    chip = prog.chip
    by_id = {chip.core_id(c.x, c.y): c for c in prog.cores}
    for c, j, v in zip(cid.tolist(), local.tolist(), node.tolist()):
        core = by_id[c]
        out[core.config["population"]][core.config["first_neuron"] + j] = v
    return out


def simulate_coupled(prog: ChipProgram, n_ticks: int, key=None, inputs=None) -> dict:
    """The coupled fixed-point reference of a network deployed with its vesicles (see the module docstring).

    Parameters
    ----------
    prog : ChipProgram
        Compiled in this process, with a vesicle model and a base network.
    n_ticks : int
    key : int, optional
        As for :meth:`nvppl.backend.Emulator.run`.
    inputs : dict, optional
        Per input population, 0/1 spikes (ticks, size).

    Returns
    -------
    dict
        The records of :func:`~nvppl.backend.reference.simulate_fixed`
        (``spikes``, ``state``, ``traces``, ``weights``) and ``vesicles``: the
        vesicles as :class:`~nvppl.Traces`.
    """
    if prog.vesicles is None or prog.network is None:
        raise ValueError("the coupled reference needs a program with a vesicle model and a base network, compiled "
                         "in this process")
    ref = FixedPointNetwork(prog, key)
    ves = prog.vesicles
    model, tables = ves.model, ves.tables()
    proc = DeployedVesicles(model, tables, seed64(prog.chip.seed if key is None else key), run=0)
    counted = _counted(prog, ref)
    K, n = model.n_types, model.n_nodes
    port_of = np.full(n * K, -1, dtype=np.int64)
    ports = np.asarray(ves.ports, dtype=np.int64).reshape(-1, 2)
    port_of[ports[:, 0] * K + ports[:, 1]] = np.arange(len(ports))
    ext_all = _inputs(inputs, n_ticks)
    out = record_init(ref, n_ticks)
    counts = None
    for t in range(n_ticks):
        to, vtype = proc.tick(t, counts)
        ext = {name: arr[t] for name, arr in ext_all.items()}
        if len(ports):
            fired = np.zeros(len(ports), dtype=bool)
            p = port_of[to * K + vtype]
            fired[p[p >= 0]] = True
            ext[RELEASE_POPULATION] = fired
        spikes = ref.step(t, ext)
        counts = np.zeros(n, dtype=np.int64)
        for nodes, s in zip(counted, spikes):
            np.add.at(counts, nodes[s & (nodes >= 0)], 1)
        record_tick(ref, out, t)
    proc.finish(n_ticks)
    labels = np.asarray(model.substrate.labels, dtype=object)
    out["vesicles"] = traces_from_rows(model, proc.vrows, proc.srows, n_ticks, 1, tables.budget, labels)
    return out
