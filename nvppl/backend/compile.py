"""The one entry point of compilation: a spiking network, or a fitted vesicle model, for the chip.

:func:`compile` checks the chip and dispatches: a
:class:`~nvppl.backend.Network` goes to
:func:`~nvppl.backend.compile_network.compile_network`, a
:class:`~nvppl.VesicleModel` with its parameters (and an optional base
network) to :func:`~nvppl.backend.deploy.compile_vesicles`.
"""

from __future__ import annotations

from ..model import VesicleModel
from .chip import ChipConfig
from .compile_network import compile_network
from .deploy import compile_vesicles
from .network import Network

__all__ = ["compile"]


def compile(model, fit_or_params=None, *, chip: ChipConfig | None = None, network=None, release=None,
            release_amplitude=None, nodes_per_core=None, draw=None):
    """Compile a spiking network, or a fitted vesicle model, for the chip.

    Parameters
    ----------
    model : Network or VesicleModel
        A spiking network to deploy, or a vesicle model.
    fit_or_params : Fit or Params, optional
        For a vesicle model: a :class:`~nvppl.infer.Fit` (the posterior mean is
        deployed unless ``draw`` says otherwise) or :class:`~nvppl.Params`. Must
        be None for a network.
    chip : ChipConfig, optional
        The chip (default ``ChipConfig()``).
    network : Network, optional
        A spiking base network deployed beside the vesicle model.
    release : dict, optional
        ``{node label: (population name, neuron indices)}``: the neurons of the
        base network that a vesicle docking at the node reaches with a reward
        spike (eq. 57). Needs ``network`` and ``release_amplitude``.
    release_amplitude : sequence of int, optional
        A_mod = α_κ per type (eq. 58, 60): the reward-trace increment of a
        docking vesicle of type κ, 0..127 (0: the type releases nothing). A
        node's port fires at most once per tick and type.
    nodes_per_core : int, optional
        Graph nodes per node core (default: as many as leave a core's mailbox
        room for 8× their expected vesicles).
    draw : int, (chain, draw) or list of them, optional
        Deploy posterior draws of a Fit instead of its mean; a list gives one
        program per draw.

    Returns
    -------
    ChipProgram or list of ChipProgram
        Core images and placement. For a network, ``quantization`` lists every
        quantised quantity with its error; for a vesicle model,
        ``quantized_params`` are the Params deployed and ``quantization_report``
        the worst-case and typical error per kernel.

    Raises
    ------
    CapacityError
        When the program does not fit, naming the resource that ran out.
    DeploymentError
        When the vesicle model has a feature the chip cannot express.

    Examples
    --------
    >>> import numpy as np
    >>> from nvppl.backend import Network, LIF, compile
    >>> net = Network()
    >>> a = net.add_input("a", 3)
    >>> b = net.add_lif("b", 2, LIF(tau_mem=8.0, v_th=1.0))
    >>> _ = net.connect(a, b, np.full((3, 2), 0.5))
    >>> prog = compile(net)
    >>> prog.resources["cores"], prog.resources["synapse_words"]
    (2, 9)

    A vesicle model on a ring of 12 nodes:

    >>> import networkx as nx, nvppl as nv
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(12)), n_types=1)
    >>> prog = compile(model, model.default_params(), nodes_per_core=4)
    >>> prog.resources["node_cores"], float(prog.quantized_params.T.sum(-1).max())
    (3, 1.0)
    """
    chip = ChipConfig() if chip is None else chip
    if not isinstance(chip, ChipConfig):
        raise TypeError(f"chip must be an nvppl.backend.ChipConfig, got {type(chip).__name__}")
    if isinstance(model, Network):
        if fit_or_params is not None:
            raise TypeError("compile(network) takes no parameters: the network carries its own")
        for name, value in (("network", network), ("release", release), ("release_amplitude", release_amplitude),
                            ("nodes_per_core", nodes_per_core), ("draw", draw)):
            if value is not None:
                raise TypeError(f"compile(network): {name}= belongs to vesicle models")
        return compile_network(model, chip)
    if isinstance(model, VesicleModel):
        if fit_or_params is None:
            raise TypeError("compile(model, fit_or_params): a vesicle model needs a Fit or Params to deploy")
        kwargs = dict(network=network, release=release, release_amplitude=release_amplitude,
                      nodes_per_core=nodes_per_core)
        if isinstance(draw, list):
            return [compile_vesicles(model, fit_or_params, chip, draw=d, **kwargs) for d in draw]
        return compile_vesicles(model, fit_or_params, chip, draw=draw, **kwargs)
    raise TypeError(f"compile() needs an nvppl.backend.Network or an nvppl.VesicleModel, got {type(model).__name__}")
