"""The result of a run of the emulator: spikes, counters, energy, recorded memory, vesicle traces.

:class:`EmulatorRun` holds what :meth:`nvppl.backend.Emulator.run` returns and
reads it back by population and projection, through the layout of the
emulator that made it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["EmulatorRun"]


class EmulatorRun:
    """What :meth:`Emulator.run <nvppl.backend.Emulator.run>` returns.

    Attributes
    ----------
    n_ticks : int
    spikes : pandas.DataFrame
        One row per spike: ``tick``, ``population``, ``neuron`` (index in its population).
    counters : dict
        ``spikes``, ``packets`` (all, ``input_packets`` from the controller),
        ``flits``, ``hops``, ``synaptic_ops``, ``neuron_updates``, ``instructions``,
        ``weight_updates`` and ``energy_pj`` (sum of counts × the chip's per-event costs).
        With a deployed vesicle model, ``packets``, ``flits``, ``hops`` and
        ``energy_pj`` are split into ``vesicle_*`` (migration WRITE packets
        between node cores, release packets and the reward spikes of the release
        ports) and ``spike_*`` (all other neuron traffic), plus
        ``vesicle_births``, ``vesicle_steps`` (vesicle-hops: one per vesicle per
        tick), ``vesicle_docks``, ``vesicle_draws``, ``vesicle_updates``
        (mailbox entries processed and emission-generator updates),
        ``vesicle_migration_packets``, ``vesicle_release_packets``,
        ``vesicle_rate_packets`` (spikes of counted neurons sent to their node
        core, for emission from the spike rate) and
        ``vesicle_synaptic_ops``, ``spike_synaptic_ops``.
    energy : dict
        The energy estimate by event kind, in pJ.
    link_load : numpy.ndarray, (height, width, 4)
        Packets leaving each tile to the east, west, north and south.
    """

    def __init__(self, emulator, n_ticks, spikes, counters, energy, link_load, final, records, traces=None):
        self._emu = emulator
        self._traces = traces
        self.n_ticks = n_ticks
        self.spikes = spikes
        self.counters = counters
        self.energy = energy
        self.link_load = link_load
        self._final = final
        self._records = records

    @property
    def traces(self):
        """Every vesicle's birth, moves, docks and death as :class:`~nvppl.Traces`.

        Only for a program that deploys a vesicle model.
        """
        if self._traces is None:
            raise AttributeError("the program deploys no vesicle model, so the run has no vesicle traces")
        if callable(self._traces):
            self._traces = self._traces()
        return self._traces

    def raster(self, population: str) -> np.ndarray:
        """Spikes of ``population`` as a boolean array (n_ticks, size)."""
        prog = self._emu.prog
        k = prog.population_index(population)
        out = np.zeros((self.n_ticks, prog.populations[k]["size"]), dtype=bool)
        s = self.spikes[self.spikes["population"] == population]
        out[s["tick"].to_numpy(), s["neuron"].to_numpy()] = True
        return out

    def _recorded(self, what):
        if what not in self._records:
            raise KeyError(f"{what!r} was not recorded: pass record=({what!r}, ...) to Emulator.run")
        return self._records[what]

    def state(self, population: str) -> np.ndarray:
        """Neuron state words of ``population`` after every tick: (n_ticks, size, state_slots).

        Slot 0 is the membrane potential VT and slot 1 the current I of the LIF program.
        """
        idx = self._emu.layout.neuron_index(self._emu.prog.population_index(population))
        return self._recorded("state")[:, idx]

    def learning_traces(self, population: str) -> np.ndarray:
        """Traces (x, y, r) of ``population`` after every tick: (n_ticks, size, 3)."""
        idx = self._emu.layout.neuron_index(self._emu.prog.population_index(population))
        return self._recorded("traces")[:, idx]

    def _projection(self, pre, post, kind):
        prog = self._emu.prog
        for k, p in enumerate(prog.projections):
            if p["pre"] == pre and p["post"] == post and p["kind"] == kind:
                return k
        raise KeyError(f"no {kind} projection {pre!r} -> {post!r} in the program")

    def weights(self, pre: str, post: str, kind: str = "spike", tick: int | None = None) -> sp.csr_matrix:
        """Integer weights of a projection at the end of the run (or after ``tick``, when recorded)."""
        k = self._projection(pre, post, kind)
        syn, j, i = self._emu.synapses[k]
        prog = self._emu.prog
        shape = (prog.populations[prog.population_index(pre)]["size"],
                 prog.populations[prog.population_index(post)]["size"])
        values = self._final["weights"][syn] if tick is None else self._recorded("weights")[tick][syn]
        return sp.csr_matrix((values, (j, i)), shape=shape)

    def weight_history(self, pre: str, post: str, kind: str = "spike") -> np.ndarray:
        """Weights of a projection after every tick, (n_ticks, synapses) in its CSR order (needs record 'weights')."""
        k = self._projection(pre, post, kind)
        return self._recorded("weights")[:, self._emu.synapses[k][0]]

    def __repr__(self):
        c = self.counters
        return (f"EmulatorRun(ticks={self.n_ticks}, spikes={c['spikes']}, synaptic_ops={c['synaptic_ops']}, "
                f"packets={c['packets']}, hops={c['hops']}, energy={c['energy_pj'] / 1e6:.3g} µJ)")
