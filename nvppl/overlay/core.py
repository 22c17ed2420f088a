"""The :class:`Overlay`: a vesicle model on the sites of a base network (DESIGN §7)."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from .._validate import choice, positive_int, real
from ..model import VesicleModel
from ..substrate import Substrate
from . import covariates as cov
from . import expectation
from .release import OPERATORS, init_release, zero_release
from .sites import find_sites, get_at, node_map, site_edges

__all__ = ["Overlay", "MODES", "GRANULARITIES"]

MODES = ("explicit", "density")
GRANULARITIES = ("layer", "unit")
PLACEMENTS = ("after", "before")


class Overlay:
    """Vesicles on the sites of a base network, acting through release operators.

    Build with :meth:`from_network`; train with :func:`nvppl.overlay.train`.

    Attributes
    ----------
    sites : list of Site
        The layers the vesicles act on, in forward order.
    substrate : Substrate
        The graph over the sites' nodes (labels ``"L0:layers[0]"`` or
        ``"L0:layers[0]/007"`` for units).
    model : VesicleModel
        The vesicle model on it; its covariates are :attr:`covariate_names`.
    covariate_names : tuple of str
    release : tuple of str
        The operators on (``"act"``, ``"param"``, ``"rule"``, ``"memory"``).
    mode : {"explicit", "density"}
    capacity : int
        Vesicle slots of the explicit mode.
    dtype : numpy dtype
        Float type of the network's site weights; the release maps and the docked
        sums that act on the network are kept in it (float32 stays float32).
    """

    def __init__(self, sites, nodes, granularity, substrate, model, covariate_names, release, mode, capacity,
                 act_tau, memory_dim, memory_retain, rule_placement, user_covariates, dtype):
        self.sites, self.nodes, self.granularity = list(sites), nodes, granularity
        self.substrate, self.model = substrate, model
        self.covariate_names = tuple(covariate_names)
        self.release, self.mode, self.capacity = tuple(release), mode, int(capacity)
        self.act_tau, self.memory_dim, self.memory_retain = float(act_tau), int(memory_dim), float(memory_retain)
        self.rule_placement = rule_placement
        self.user_covariates = dict(user_covariates)
        self.dtype = np.dtype(dtype)

    @property
    def act_retain(self) -> float:
        """Fraction of the docked FiLM sums kept from one forward pass to the next, ``e^{−1/act_tau}``."""
        return float(np.exp(-1.0 / self.act_tau)) if self.act_tau > 0 else 0.0

    @property
    def n_sites(self) -> int:
        return len(self.sites)

    @property
    def site_of_node(self) -> np.ndarray:
        """The site index of every node."""
        return self.nodes.site

    @classmethod
    def from_network(cls, net, n_types: int = 1, content_dim: int = 4, granularity: str = "layer", sites=None,
                     graph=None, lateral: bool = False, feedback: bool = False,
                     allow_stay: bool = True, release=("act",), mode: str = "explicit", capacity: int = 4096,
                     act_tau: float = 1.0, memory_dim: int = 8, memory_retain: float = 0.9,
                     rule_placement: str = "after", covariates: Mapping[str, Callable] | None = None,
                     **model_options) -> "Overlay":
        """An overlay on ``net``'s sites.

        Parameters
        ----------
        net : equinox.Module
            The base network: every ``eqx.nn.Linear`` and ``eqx.nn.Conv`` found in
            its pytree is a site (an ``eqx.nn.MLP``, a stack of convolutions, your
            own module whose layers are attributes), unless ``sites`` names them.
        n_types, content_dim : int
            Vesicle types ``K`` and content dimension ``d_c``.
        granularity : {"layer", "unit"}
            One graph node per site, or per unit (output feature or channel).
        sites : list, optional
            Pytree paths such as ``"layers[1]"``, or ``(path, slice)`` pairs.
        graph : networkx graph, optional
            Your own graph over the node labels (see :attr:`substrate`), instead of
            the forward edges.
        lateral, feedback : bool
            Add edges between the units of a site, and the reverse of the forward edges.
        allow_stay : bool
            Vesicles may stay at their node (the default); without it the last
            site is a sink.
        release : sequence of {"act", "param", "rule", "memory"}
            The operators docked vesicles apply (:mod:`nvppl.overlay.release`).
        mode : {"explicit", "density"}
            Explicit vesicles in ``capacity`` slots, or their expectation.
        capacity : int
            Vesicle slots (explicit mode); running out raises :class:`nvppl.CapacityError`.
        act_tau : float
            Time constant (steps) of the FiLM release; 0 keeps it for one forward pass.
        memory_dim, memory_retain : int, float
            Memory vector size per node and the fraction kept per step.
        rule_placement : {"after", "before"}
            The rule release after the optimiser's scaling (default) or on the raw gradient.
        covariates : mapping of name to ``fn(x, y, loss)``, optional
            Extra covariates per step: a scalar or one value per node.
        **model_options
            Passed to :class:`nvppl.VesicleModel` (``lifetime``, ``emission_link``,
            ``tilt``, ``budget``, ``gamma``, ``priors``). Docking does not depend on
            the content, and sites do not absorb vesicles, unless ``priors`` gives
            ``w_c`` or ``a`` a prior or a value.

        Examples
        --------
        >>> import equinox as eqx, jax, nvppl as nv
        >>> net = eqx.nn.MLP(4, 2, 8, depth=2, key=jax.random.key(0))
        >>> ov = nv.overlay.Overlay.from_network(net, n_types=2, content_dim=3)
        >>> ov.substrate.labels
        ('L0:layers[0]', 'L1:layers[1]', 'L2:layers[2]')
        >>> ov.covariate_names
        ('log_rms_act', 'log_rms_grad', 'loss')
        """
        granularity = choice(granularity, GRANULARITIES, "granularity")
        mode = choice(mode, MODES, "mode")
        rule_placement = choice(rule_placement, PLACEMENTS, "rule_placement")
        if isinstance(release, str):
            release = (release,)
        release = tuple(release)
        for op in release:
            if op not in OPERATORS:
                raise ValueError(f"unknown release operator {op!r}; choose from {OPERATORS}")
        if len(set(release)) != len(release):
            raise ValueError(f"release lists an operator twice: {release}")
        capacity = positive_int(capacity, "capacity")
        act_tau = real(act_tau, "act_tau", low=0)
        memory_dim = positive_int(memory_dim, "memory_dim")
        memory_retain = real(memory_retain, "memory_retain", low=0, high=1)
        user = dict(covariates or {})
        for name, fn in user.items():
            if not isinstance(name, str) or not callable(fn):
                raise TypeError(f"covariates must map names to functions fn(x, y, loss); got {name!r}: {fn!r}")
            if name in cov.BUILTIN:
                raise ValueError(f"covariate name {name!r} is a built-in one; choose another")

        found = find_sites(net, sites)
        nodes = node_map(found, granularity)
        if graph is None:
            sub = Substrate.from_edges(nodes.labels, site_edges(found, granularity, lateral, feedback), allow_stay)
        else:
            sub = Substrate.from_networkx(graph, allow_stay=allow_stay)
            have, want = set(sub.labels), set(nodes.labels)
            if have != want:
                missing, extra = sorted(want - have, key=str)[:3], sorted(have - want, key=str)[:3]
                raise ValueError(f"the graph's nodes must be the overlay's node labels; missing {missing}, "
                                 f"unknown {extra} (labels look like {nodes.labels[0]!r})")
        if sub.labels != nodes.labels:
            raise AssertionError("internal: substrate order differs from the site order")
        names = cov.names("memory" in release, user)
        priors = {"w_c": 0.0, "a": 0.0, **dict(model_options.pop("priors", None) or {})}
        model = VesicleModel(sub, n_types=n_types, content_dim=content_dim, covariate_dim=len(names),
                             priors=priors, **model_options)
        if "param" in release and model.content_dim == 0:
            raise ValueError("the param release is built from the content (u = U c, v = V c, eq. 25-26); "
                             "give content_dim >= 1")
        if mode == "density":
            why = expectation.unsupported(model)
            if why is not None:
                raise ValueError(f"mode='density' cannot follow this model exactly: {why}")
        dtype = np.result_type(*[get_at(net, s.path).weight.dtype for s in found])
        return cls(found, nodes, granularity, sub, model, names, release, mode, capacity, act_tau, memory_dim,
                   memory_retain, rule_placement, user, dtype)

    def init_release(self, key, scale: float = 0.1):
        """Small random release maps (:func:`nvppl.overlay.init_release`)."""
        return init_release(self, key, scale)

    def zero_release(self):
        """Release maps that are all zero (:func:`nvppl.overlay.zero_release`)."""
        return zero_release(self)

    def __repr__(self) -> str:
        return (f"Overlay({self.n_sites} sites, {self.substrate.n_nodes} nodes, {self.granularity} granularity, "
                f"mode={self.mode!r}, release={self.release}, K={self.model.n_types}, "
                f"d_c={self.model.content_dim})")
