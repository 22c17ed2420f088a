"""Vesicles acting on a base network while it trains (paper §3.4, §4, §8; DESIGN §7).

An equinox network becomes a substrate: one graph node per layer (or per
unit), edges along the forward computation. A :class:`~nvppl.VesicleModel` runs
on it during training with optax — emitted from the network's activity and
gradients, migrating, docking — and docked vesicles act on the network through
the four release operators: FiLM on activations, rank-one changes of weights,
modulation of the learning rule, and a memory per node.

- :class:`Overlay` — sites, substrate and vesicle model of a network
- :func:`train` — training with the coupled step (explicit vesicles or their expectation)
- :mod:`~nvppl.overlay.release` — the operators (:class:`ReleaseParams`, :func:`rule_modulation`)
- :mod:`~nvppl.overlay.expectation` — the density mode
- :mod:`~nvppl.overlay.limits` — FiLM, hypernetwork and attention as limits

Examples
--------
>>> import equinox as eqx, jax, nvppl as nv
>>> net = eqx.nn.MLP(64, 10, 32, depth=2, key=jax.random.key(0))
>>> ov = nv.overlay.Overlay.from_network(net, n_types=2, content_dim=4, release=("act", "memory"))
>>> ov.covariate_names
('log_rms_act', 'log_rms_grad', 'loss', 'memory_norm')
"""

from . import expectation, limits, release
from .core import Overlay
from .release import OPERATORS, ReleaseParams, init_release, rule_modulation, zero_release
from .train import TrainResult, batch_indices, train

__all__ = ["Overlay", "train", "TrainResult", "ReleaseParams", "init_release", "zero_release", "rule_modulation",
           "OPERATORS", "batch_indices", "expectation", "limits", "release"]
