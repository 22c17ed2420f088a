"""The one entry point of compilation: a spiking network, or a fitted vesicle model, for the chip.

:func:`compile` checks the chip and dispatches: a
:class:`~nvppl.backend.Network` goes to
:func:`~nvppl.backend.compile_network.compile_network`, a
:class:`~nvppl.VesicleModel` with its parameters (and an optional base
network) to :func:`~nvppl.backend.deploy.compile_vesicles`, an
:class:`nvppl.snn.LIFNetwork` with its optional vesicle field to
:func:`~nvppl.backend.snn_deploy.compile_snn`.
"""

from __future__ import annotations

from ..model import VesicleModel
from ..snn.network import LIFNetwork
from .chip import ChipConfig
from .compile_network import compile_network
from .deploy import compile_vesicles
from .network import Network
from .snn_deploy import compile_snn

__all__ = ["compile"]


def compile(model, fit_or_params=None, *, chip: ChipConfig | None = None, network=None, release=None,
            release_amplitude=None, nodes_per_core=None, draw=None, field=None, plasticity=None, scale=None,
            alpha_scale=None, rate_shift=None):
    """Compile a spiking network, or a fitted vesicle model, for the chip.

    Parameters
    ----------
    model : Network, VesicleModel or nvppl.snn.LIFNetwork
        A spiking network to deploy, a vesicle model, or an :mod:`nvppl.snn`
        network (with its vesicle field: ``field=``, ``plasticity=``; see
        :func:`~nvppl.backend.snn_deploy.compile_snn`).
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
    field : nvppl.snn.VesicleField, optional
        For an :class:`nvppl.snn.LIFNetwork`: its vesicles, deployed on node
        cores with a release port on every node (A_mod = round(α_κ ·
        ``alpha_scale``)) and, when its covariate is ``"rate"``, emission from
        the spike rate of each node's units computed on the chip (a sliding
        window of ``field.window`` ticks and per-count Poisson tables).
    plasticity : ThreeFactor or STDP, optional
        For an :class:`nvppl.snn.LIFNetwork`: the chip's rule of its plastic synapses.
    scale, alpha_scale, rate_shift : optional
        For an :class:`nvppl.snn.LIFNetwork`: potential per weight LSB, reward
        LSB per unit of α (default 1) and the count buckets of the rate tables
        (default: the smallest shift that fits).

    Returns
    -------
    ChipProgram or list of ChipProgram
        Core images and placement. For a network, ``quantization`` lists every
        quantised quantity with its error; for a vesicle model,
        ``quantized_params`` are the Params deployed and ``quantization_report``
        the worst-case and typical error per kernel (with emission from the
        rate: per count bucket, and the bucketing error). For an
        :class:`nvppl.snn.LIFNetwork`, ``prog.extra["snn"]`` is the
        :class:`~nvppl.backend.SNNDeployment`: synapse order, units, the
        mapping's report and the float rule and field with the chip's timing.

    Raises
    ------
    CapacityError
        When the program does not fit, naming the resource that ran out.
    DeploymentError
        When the vesicle model, the field or the network has a feature the chip
        cannot express (a refractory period, docking with covariates, global
        signals, content, ...), naming it.

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

    An :mod:`nvppl.snn` network whose vesicles emit from the spike rate of its two groups:

    >>> snn = nv.snn.LIFNetwork(2, 4, pre=[0, 1, 2, 4], post=[0, 2, 1, 3], weights=[0.5, 0.5, 0.1, 0.1],
    ...                         plastic=[False, False, True, True], w_min=0.0, w_max=1.0)
    >>> sub, node_of = nv.snn.group_substrate(snn, np.array([0, 0, 1, 1]))
    >>> vm = nv.VesicleModel(sub, n_types=1, covariate_dim=1)
    >>> fld = nv.snn.VesicleField(vm, vm.default_params().replace(u=[[-1.0, 4.0]]), node_of, alpha=[16.0],
    ...                           window=8, neighbourhood="post")
    >>> prog = compile(snn, field=fld, plasticity=nv.backend.ThreeFactor(a_mod=16, shift=3))
    >>> prog.resources["release_ports"], list(prog.quantization_report["kernel"][:2])
    (2, ['emission', 'emission bucketing'])
    """
    chip = ChipConfig() if chip is None else chip
    if not isinstance(chip, ChipConfig):
        raise TypeError(f"chip must be an nvppl.backend.ChipConfig, got {type(chip).__name__}")
    if isinstance(model, LIFNetwork):
        if fit_or_params is not None:
            raise TypeError("compile(LIFNetwork) takes no parameters: the field carries its own (field=)")
        for name, value in (("network", network), ("release", release), ("release_amplitude", release_amplitude),
                            ("draw", draw)):
            if value is not None:
                raise TypeError(f"compile(LIFNetwork): {name}= belongs to vesicle models; the release follows "
                                "the field's node_of")
        return compile_snn(model, field, plasticity, chip=chip, scale=scale,
                           alpha_scale=1.0 if alpha_scale is None else alpha_scale, rate_shift=rate_shift,
                           nodes_per_core=nodes_per_core)
    for name, value in (("field", field), ("plasticity", plasticity), ("scale", scale), ("alpha_scale", alpha_scale),
                        ("rate_shift", rate_shift)):
        if value is not None:
            raise TypeError(f"compile: {name}= belongs to an nvppl.snn.LIFNetwork")
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
    raise TypeError("compile() needs an nvppl.backend.Network, an nvppl.VesicleModel or an nvppl.snn.LIFNetwork, "
                    f"got {type(model).__name__}")
