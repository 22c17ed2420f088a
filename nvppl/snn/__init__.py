"""Spiking substrate, vesicle-carried modulatory field and the HMN rule (paper §6.1–6.3; DESIGN §8).

- :class:`LIFNetwork`, :func:`run` — a recurrent LIF network in JAX on an edge list (eq. 54)
- :class:`Plasticity`, :func:`eligibility_step`, :func:`three_factor` — traces,
  eligibilities (eq. 56, hmn eq. 2) and the three-factor update (eq. 55, 58)
- :class:`VesicleField`, :func:`field_step` — vesicles on the network's graph and the
  field m_ij they make (eq. 57), clocked or event-driven (eq. 59)
- :func:`learn` — closed-loop learning with a global or a vesicle-carried third factor
- :mod:`~nvppl.snn.hmn` — the HMN rule (hmn eq. 1–11), every component switchable, with G′
  delivered globally or by vesicles; :mod:`~nvppl.snn.spsa` — SPSA meta-learning of η (appendix 10.3)

Examples
--------
>>> import nvppl as nv
>>> nv.snn.LIFNetwork.random(100, 0.05, key=0, n_input=10, input_p=0.2)
LIFNetwork(n_input=10, n=100, synapses=..., plastic=..., tau_mem=16.0, tau_syn=None, v_th=1.0)
"""

from . import hmn, spsa
from .field import (FieldInfo, FieldState, VesicleField, field_init, field_step, group_substrate,
                    neighbourhood, neuron_substrate)
from .learn import LearnResult, learn
from .network import LIFNetwork, LIFState, Neuron, RunOutput, init, run, step, synaptic_input
from .hmn import HMNConfig, HMNState, Switches, Synapses
from .plasticity import PlasticState, Plasticity, eligibility, eligibility_step, plasticity_init, three_factor
from .spsa import SPSAConfig, SPSAState

__all__ = [
    "LIFNetwork", "LIFState", "Neuron", "RunOutput", "init", "run", "step", "synaptic_input",
    "Plasticity", "PlasticState", "plasticity_init", "eligibility_step", "eligibility", "three_factor",
    "VesicleField", "FieldState", "FieldInfo", "field_init", "field_step", "neighbourhood", "neuron_substrate",
    "group_substrate", "LearnResult", "learn",
    "hmn", "HMNConfig", "HMNState", "Switches", "Synapses", "spsa", "SPSAConfig", "SPSAState",
]
