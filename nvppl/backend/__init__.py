"""The Darwin3-like neuromorphic backend: chip, ISA, network-on-chip, emulator.

The machine is defined in ``docs/guide/emulator.rst``. A spiking
:class:`Network`, a fitted vesicle model (with an optional base network), or
an :class:`nvppl.snn.LIFNetwork` with its vesicle field, is compiled for a :class:`ChipConfig` into a :class:`ChipProgram` (a
plain-text per-core configuration image), which the event-driven
:class:`Emulator` runs; a vesicle deployment's runs come back as
:class:`~nvppl.Traces`.

Examples
--------
>>> import numpy as np
>>> import nvppl as nv
>>> net = nv.backend.Network()
>>> inp = net.add_input("in", 8)
>>> out = net.add_lif("out", 4, nv.backend.LIF(tau_mem=8.0, v_th=1.0))
>>> _ = net.connect(inp, out, np.full((8, 4), 0.4))
>>> prog = nv.backend.compile(net, chip=nv.backend.ChipConfig())
>>> spikes = np.zeros((20, 8), dtype=int); spikes[::2] = 1
>>> run = nv.backend.Emulator(prog).run(n_ticks=20, key=0, inputs={"in": spikes})
>>> int(run.raster("out").sum()) > 0, run.counters["synaptic_ops"]
(True, 400)
"""

from .chip import ChipConfig
from .compile import compile
from .emulator import Emulator
from .emulator_run import EmulatorRun
from .image import ChipProgram, ImageError, read_image
from .network import LIF, STDP, Network, Population, Projection, ThreeFactor
from .nirio import from_nir, to_nir
from .program import CoreImage
from .snn_deploy import SNNDeployment, compile_snn, snn_deployment
from .vesicles import DeploymentError

__all__ = [
    "ChipConfig", "compile", "Emulator", "EmulatorRun", "ChipProgram", "CoreImage", "ImageError", "read_image",
    "Network", "Population", "Projection", "LIF", "STDP", "ThreeFactor", "to_nir", "from_nir",
    "DeploymentError", "SNNDeployment", "compile_snn", "snn_deployment",
]
