r"""Deployment of an :mod:`nvppl.snn` network with its vesicle field to the chip (paper §6.4, eq. 54–60).

:func:`compile_snn` (reached through :func:`nvppl.backend.compile` with an
:class:`nvppl.snn.LIFNetwork`) puts a spiking network, its
:class:`~nvppl.snn.VesicleField` and the chip's learning rule on the chip:

- **network** — an input population ``"input"`` of ``n_input`` relays and one
  LIF population ``"neurons"`` of ``n`` (:class:`~nvppl.backend.LIF` with the
  network's :class:`~nvppl.snn.Neuron`, one scale: potential per weight LSB);
  the edge list becomes the projections input → neurons and neurons → neurons,
  each plastic (:class:`~nvppl.backend.ThreeFactor` or
  :class:`~nvppl.backend.STDP`) or not as a whole;
- **field** — its vesicle model on node cores (:mod:`nvppl.backend.deploy`),
  emitting from the on-chip spike rate of every node when its covariate is
  ``"rate"`` (:mod:`nvppl.backend.vesicle_rates`; the counted units of node ℓ
  are those with ``node_of == ℓ``, inputs included, as in
  :func:`nvppl.snn.field.covariates_now`), with a release port on every node
  whose neurons (units with ``node_of == ℓ`` that are neurons) receive the
  reward amplitude A_mod = round(α_κ · ``alpha_scale``) (eq. 57–58, 60).

**Float model ↔ chip** (:meth:`SNNDeployment.float_rule`,
:meth:`SNNDeployment.float_field`): with the three-factor rule
``ThreeFactor(a_mod, shift, x=(k_x, i_x), y=(k_y, i_y), r=k_r)``, 7-bit traces
(2ᵇ = 128) and weight LSB ``scale``, the chip computes at every learning tick

.. math::

    \Delta w = \mathrm{shr}\big(a_{mod} \lfloor \lfloor x_j y_i / 2^b \rfloor r_i / 2^b \rfloor, \mathrm{shift}\big),
    \quad x \leftarrow x - \mathrm{shr}(x, k_x) + i_x s, \quad
    r \leftarrow r - \mathrm{shr}(r, k_r) + \textstyle\sum A_{mod},

so with x = i_x x̂, y = i_y ŷ and r = ``alpha_scale`` · Â it is, up to the
roundings, the float rule Δw = η x̂ ŷ Â of :func:`nvppl.snn.learn` with

============================  ==========================================================
nv.snn                        chip
============================  ==========================================================
``eligibility``               ``"product"`` (x̂ ŷ)
``tau_plus``, ``tau_minus``   2^k_x, 2^k_y, with ``trace_decay="euler"``
                              (x̂ ← x̂ (1 − 2^−k) + s)
``eta``                       scale · a_mod · i_x · i_y · alpha_scale / 2^(2b + shift)
``interval``                  the chip's ``learning_interval``
field ``release_once``        True: a release port fires once per (node, type, tick)
field ``release_trace``       2^k_r: a dock at t reaches r at t + 1, then decays by k_r
field ``neighbourhood``       ``"post"``: r belongs to the postsynaptic neuron
============================  ==========================================================

What is not in the float rule: the floors of the two products (the chip's
change is below the float one by at most a_mod/2^shift · (r/2ᵇ + 1) LSB per
synapse and learning tick), the rounding of the shifts of the traces and of
the update (unbiased under ``"stochastic"`` rounding, up to ½ LSB each under
``"nearest"``), the saturation of the traces at 127 and of the weights at
8 bits (reported), and the 2⁻¹⁶ thresholds of the vesicle kernels
(``prog.quantization_report``). ``tests/backend/test_snn_deploy.py`` bounds
the resulting bias of the mean weight change this way.

Refused with :class:`~nvppl.backend.DeploymentError`, naming the feature: a
refractory period; plastic and static synapses mixed in one projection; plastic
weight bounds the chip's saturation does not meet; a field with
``which="alive"``, a neighbourhood other than ``"post"``, ``event_driven``,
content or ``alpha_c``, negative α, global signals among the covariates,
docking with covariates, a migration tilt or countdown lifetimes.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..snn import field as snn_field
from ..snn.network import LIFNetwork
from ..snn.plasticity import Plasticity
from .chip import ChipConfig
from .compile_network import compile_network
from .deploy import compile_vesicles
from .network import LIF, STDP, Network, ThreeFactor
from .vesicle_rates import check_rate_model
from .vesicles import DeploymentError

__all__ = ["INPUT_POPULATION", "NEURON_POPULATION", "SNNDeployment", "compile_snn", "snn_deployment"]

INPUT_POPULATION = "input"
NEURON_POPULATION = "neurons"


@dataclasses.dataclass(frozen=True, eq=False)
class SNNDeployment:
    """How an :class:`nvppl.snn.LIFNetwork` (and its field) sits on the chip; ``prog.extra["snn"]``.

    Attributes
    ----------
    net : LIFNetwork
    field : VesicleField or None
    plasticity : ThreeFactor, STDP or None
    chip : ChipConfig
    scale : float
        Potential per weight LSB of the neurons.
    alpha : numpy.ndarray of int (K,) or None
        The deployed amplitudes A_mod = round(α_κ · alpha_scale).
    alpha_scale : float
    projections : list of (str, str)
        (pre, post) population names of the spike projections.
    edge_projection, edge_position : numpy.ndarray (E,)
        Projection of every synapse of ``net`` and its position in that
        projection's CSR order.
    w0 : numpy.ndarray of int (E,)
        The deployed initial weights (LSB), in the order of ``net``'s synapses.
    report : pandas.DataFrame
        ``quantity``, ``value``, ``deployed``, ``note`` of the mapping (amplitudes,
        weight bounds, release per tick, timing).
    """

    net: LIFNetwork
    field: object
    plasticity: object
    chip: ChipConfig
    scale: float
    alpha: object
    alpha_scale: float
    projections: list
    edge_projection: np.ndarray
    edge_position: np.ndarray
    w0: np.ndarray
    report: pd.DataFrame

    def inputs(self, spikes) -> dict:
        """``inputs=`` of :meth:`nvppl.backend.Emulator.run` from the spikes (ticks, n_input) of the inputs."""
        return {INPUT_POPULATION: np.asarray(spikes).astype(np.int8)} if self.net.n_input else {}

    def _gather(self, per_projection) -> np.ndarray:
        out = np.zeros(per_projection[0].shape[:-1] + (self.net.n_synapses,), dtype=np.int64)
        for k, values in enumerate(per_projection):
            sel = self.edge_projection == k
            out[..., sel] = values[..., self.edge_position[sel]]
        return out

    def weight_lsb(self, run, tick: int | None = None) -> np.ndarray:
        """Integer weights (E,) of every synapse of ``net`` after the run (or after ``tick``, when recorded)."""
        per = []
        for pre, post in self.projections:
            W = sp.csr_matrix(run.weights(pre, post, tick=tick))
            W.sort_indices()
            per.append(np.asarray(W.data, dtype=np.int64))
        return self._gather(per)

    def weight_history(self, run) -> np.ndarray:
        """Integer weights (ticks, E) after every tick (the run must record ``"weights"``)."""
        return self._gather([np.asarray(run.weight_history(pre, post), dtype=np.int64)
                             for pre, post in self.projections])

    def weights(self, run) -> np.ndarray:
        """Weights (E,) after the run in the network's units (LSB × scale)."""
        return self.weight_lsb(run) * self.scale

    def spikes(self, run) -> np.ndarray:
        """Spikes of the neurons, bool (ticks, n)."""
        return run.raster(NEURON_POPULATION)

    def eta(self) -> float:
        """η of the float rule equivalent to the deployed three-factor rule (module docstring)."""
        rule = self._three_factor("eta")
        b = self.chip.trace_bits
        return (self.scale * rule.a_mod * rule.x[1] * rule.y[1] * self.alpha_scale
                / 2.0 ** (2 * b + rule.shift))

    def _three_factor(self, what):
        rule = self.plasticity
        if not isinstance(rule, ThreeFactor):
            raise ValueError(f"{what}: the deployment has no three-factor rule")
        if rule.a_pre or rule.a_post:
            raise ValueError(f"{what}: the float rule has no unmodulated STDP terms (a_pre = {rule.a_pre}, "
                             f"a_post = {rule.a_post})")
        return rule

    def float_rule(self) -> Plasticity:
        """The :class:`nvppl.snn.Plasticity` with the chip's conventions (module docstring)."""
        rule = self._three_factor("float_rule")
        return Plasticity(eligibility="product", tau_plus=float(2 ** rule.x[0]), tau_minus=float(2 ** rule.y[0]),
                          eta=self.eta(), trace_decay="euler", interval=int(self.chip.learning_interval))

    def float_field(self):
        """The field with the deployed amplitudes and the chip's release timing (module docstring)."""
        if self.field is None:
            raise ValueError("float_field: the deployment has no vesicle field")
        rule = self._three_factor("float_field")
        return dataclasses.replace(self.field, alpha=np.asarray(self.alpha, dtype=float) / self.alpha_scale,
                                   release_trace=float(2 ** rule.r), release_once=True)


def snn_deployment(prog) -> SNNDeployment:
    """The :class:`SNNDeployment` of a program compiled from an :class:`nvppl.snn.LIFNetwork`."""
    dep = getattr(prog, "extra", {}).get("snn")
    if dep is None:
        raise ValueError("the program was not compiled from an nvppl.snn.LIFNetwork in this process")
    return dep


# ---------------------------------------------------------------------------------------------
# the network


def _neuron(net: LIFNetwork, scale: float) -> LIF:
    nr = net.neuron
    if nr.refractory:
        raise DeploymentError(f"Neuron refractory = {nr.refractory}: the chip's LIF program has no refractory "
                              "period")
    return LIF(tau_mem=nr.tau_mem, tau_syn=nr.tau_syn, v_th=nr.v_th, v_reset=nr.v_reset, bias=nr.bias, scale=scale)


def _can(rule, sign: int) -> bool:
    """Whether ``rule`` can move a weight in direction ``sign`` (traces, reward and spike flags are ≥ 0)."""
    terms = (rule.a_mod, rule.a_pre, rule.a_post) if isinstance(rule, ThreeFactor) else (rule.a_pre, rule.a_post)
    return any(a * sign > 0 for a in terms)


def _scale(net, w, plastic, chip, scale):
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (0 < scale < math.inf):
            raise ValueError(f"scale must be a positive number (potential per weight LSB), got {scale!r}")
        return float(scale)
    top = float(np.abs(w).max()) if len(w) else 0.0
    if plastic.any() and math.isfinite(net.w_max) and net.w_max > 0:
        top = max(top, net.w_max)
    if top == 0:
        top = max(abs(net.neuron.v_th), abs(net.neuron.v_reset), abs(net.neuron.bias)) * chip.weight_max / (
            chip.state_max // 8)
    return top / chip.weight_max


def _bounds(net, rule, scale, chip, rows):
    """Check that the plastic weights' bounds are the chip's saturation where the rule can reach them."""
    for name, bound, lsb, sign in (("w_max", net.w_max, chip.weight_max, 1), ("w_min", net.w_min, chip.weight_min,
                                                                                -1)):
        if not _can(rule, sign):
            rows.append((name, bound, lsb * scale, "not reached: the rule cannot move weights that way"))
            continue
        if math.isfinite(bound) and abs(bound / scale - lsb) > 0.5:
            raise DeploymentError(
                f"LIFNetwork {name} = {bound}: the chip saturates plastic weights at {lsb} LSB = {lsb * scale:.6g} "
                f"(scale {scale:.6g}); compile with scale={name}/{lsb} = {bound / lsb:.6g} or use {name} = "
                f"{lsb * scale:.6g}")
        rows.append((name, bound, lsb * scale, "the chip's 8-bit saturation"))


def _projection(net, sel, name_pre, w_pre, plastic, rule, where):
    """The CSR weights, the plasticity and every synapse's CSR position of the synapses ``sel``."""
    pre_local = (np.asarray(net.pre)[sel] - (0 if name_pre == INPUT_POPULATION else net.n_input)).astype(np.int64)
    post = np.asarray(net.post)[sel].astype(np.int64)
    p = plastic[sel]
    if p.any() and not p.all():
        e = np.flatnonzero(sel)
        a, b = int(e[np.flatnonzero(p)[0]]), int(e[np.flatnonzero(~p)[0]])
        raise DeploymentError(f"synapses {a} (plastic) and {b} (static) are both {where}: a projection of the chip "
                              "is plastic or not as a whole; make all of them plastic or none")
    key = pre_local * net.n + post
    order = np.argsort(key, kind="stable")
    dup = np.flatnonzero(np.diff(key[order]) == 0)
    if dup.size:
        e = np.flatnonzero(sel)
        a, b = int(e[order[dup[0]]]), int(e[order[dup[0] + 1]])
        raise ValueError(f"synapses {a} and {b} join the same units; the chip holds one synapse per pair")
    position = np.empty(len(key), dtype=np.int64)
    position[order] = np.arange(len(key))
    n_pre = net.n_input if name_pre == INPUT_POPULATION else net.n
    W = sp.csr_matrix((np.asarray(w_pre)[sel], (pre_local, post)), shape=(n_pre, net.n))
    if p.any() and rule is None:
        raise ValueError(f"the synapses {where} are plastic: pass plasticity=ThreeFactor(...) (or STDP)")
    return W, rule if p.any() else None, position


def _network(net: LIFNetwork, plasticity, chip, scale, rows):
    """The backend Network of ``net`` with the synapse order of its projections."""
    w = np.asarray(net.weights, dtype=np.float64)
    plastic = np.asarray(net.plastic, dtype=bool)
    if plasticity is not None and not isinstance(plasticity, (ThreeFactor, STDP)):
        raise TypeError(f"plasticity must be an nvppl.backend.ThreeFactor or STDP, got {type(plasticity).__name__}")
    scale = _scale(net, w, plastic, chip, scale)
    if plastic.any() and plasticity is not None:
        _bounds(net, plasticity, scale, chip, rows)
    out = Network()
    pops = {}
    if net.n_input:
        pops[INPUT_POPULATION] = out.add_input(INPUT_POPULATION, net.n_input)
    pops[NEURON_POPULATION] = out.add_lif(NEURON_POPULATION, net.n, _neuron(net, scale))
    edge_proj = np.full(net.n_synapses, -1, dtype=np.int64)
    edge_pos = np.zeros(net.n_synapses, dtype=np.int64)
    projections = []
    from_input = np.asarray(net.pre) < net.n_input
    for name_pre, sel, where in ((INPUT_POPULATION, from_input, "from inputs onto neurons"),
                                 (NEURON_POPULATION, ~from_input, "between neurons")):
        if not sel.any():
            continue
        W, rule, position = _projection(net, sel, name_pre, w, plastic, plasticity, where)
        W.sort_indices()
        out.connect(pops[name_pre], pops[NEURON_POPULATION], W, plasticity=rule)
        edge_proj[sel] = len(projections)
        edge_pos[sel] = position
        projections.append((name_pre, NEURON_POPULATION))
    return out, scale, projections, edge_proj, edge_pos


# ---------------------------------------------------------------------------------------------
# the field


def _check_field(fld, net: LIFNetwork, plasticity, alpha_scale, rows):
    """The deployed amplitudes (K,) of ``fld``, after refusing what the chip cannot express."""
    if not isinstance(fld, snn_field.VesicleField):
        raise TypeError(f"field must be an nvppl.snn.VesicleField, got {type(fld).__name__}")
    if fld.node_of.shape != (net.n_units,):
        raise ValueError(f"the field's node_of has {fld.node_of.shape[0]} entries; the network has {net.n_units} "
                         "units")
    for bad, why in ((fld.which != "docked", f"VesicleField which={fld.which!r}: the chip releases at docks "
                                              "(which='docked')"),
                     (fld.neighbourhood != "post",
                      f"VesicleField neighbourhood={fld.neighbourhood!r}: the chip's reward trace belongs to the "
                      "postsynaptic neuron, so only neighbourhood='post' has a mapping"),
                     (fld.event_driven, "VesicleField event_driven=True: the node cores advance every tick"),
                     (fld.model.content_dim > 0 or np.any(fld.alpha_c != 0),
                      f"VesicleField content (content_dim = {fld.model.content_dim}, alpha_c): vesicle content has "
                      "no mapping yet")):
        if bad:
            raise DeploymentError(why)
    if fld.covariates:
        check_rate_model(fld.model, fld.covariates)
    alpha = np.asarray(fld.alpha, dtype=float)
    if isinstance(alpha_scale, bool) or not isinstance(alpha_scale, (int, float)) or not 0 < alpha_scale < math.inf:
        raise ValueError(f"alpha_scale must be a positive number (reward-trace LSB per unit of α), got "
                         f"{alpha_scale!r}")
    q = np.rint(alpha * alpha_scale).astype(np.int64)
    for k, (a, aq) in enumerate(zip(alpha, q)):
        if a < 0:
            raise DeploymentError(f"VesicleField alpha[{k}] = {a}: the reward trace is unsigned on the chip, so a "
                                  "negative α has no mapping")
        if aq > 127 or (a > 0 and aq == 0):
            raise DeploymentError(f"VesicleField alpha[{k}] = {a} is {a * alpha_scale:.4g} reward-trace LSB at "
                                  f"alpha_scale={alpha_scale}; A_mod must be 1..127: choose alpha_scale so that "
                                  "every α lands there")
        rows.append((f"alpha[{k}]", float(a), float(aq) / alpha_scale, f"A_mod = {int(aq)} reward-trace LSB"))
    if plasticity is not None and q.any() and not isinstance(plasticity, ThreeFactor):
        raise DeploymentError("the field releases through the reward trace: it needs plasticity=ThreeFactor(...)")
    return q


def compile_snn(net: LIFNetwork, field=None, plasticity=None, *, chip: ChipConfig | None = None,
                scale: float | None = None, alpha_scale: float = 1.0, rate_shift: int | None = None,
                nodes_per_core: int | None = None):
    """Compile an :class:`nvppl.snn.LIFNetwork` and its vesicle field for the chip (module docstring).

    Parameters
    ----------
    net : LIFNetwork
    field : VesicleField, optional
        The vesicles on the network's graph; its model and ``params`` are
        deployed, ``alpha`` becomes the release amplitudes.
    plasticity : ThreeFactor or STDP, optional
        The chip's rule for the plastic synapses (``net.plastic``).
    chip : ChipConfig, optional
    scale : float, optional
        Potential per weight LSB (default: ``w_max``/127 when plastic weights have
        a finite ``w_max``, else the largest absolute weight over 127).
    alpha_scale : float
        Reward-trace LSB per unit of α: A_mod = round(α_κ · alpha_scale).
    rate_shift : int, optional
        Count buckets of the rate tables (default: the smallest that fits).
    nodes_per_core : int, optional

    Returns
    -------
    ChipProgram
        With ``prog.extra["snn"]``, the :class:`SNNDeployment`.

    Examples
    --------
    >>> import numpy as np, nvppl as nv
    >>> net = nv.snn.LIFNetwork(2, 2, pre=[0, 1, 2], post=[0, 1, 1], weights=[0.5, 0.5, 0.25],
    ...                         plastic=[False, False, True], w_min=0.0, w_max=1.0)
    >>> groups = np.array([0, 1])
    >>> sub, node_of = nv.snn.group_substrate(net, groups)
    >>> model = nv.VesicleModel(sub, n_types=1, covariate_dim=1)
    >>> params = model.default_params().replace(u=[[-2.0, 3.0]], delta=[0.2])
    >>> fld = nv.snn.VesicleField(model, params, node_of, alpha=[20.0], window=4, neighbourhood="post")
    >>> prog = nv.backend.compile(net, field=fld, plasticity=nv.backend.ThreeFactor(a_mod=8, shift=2))
    >>> dep = nv.backend.snn_deployment(prog)
    >>> dep.alpha.tolist(), round(dep.scale * 127, 6), prog.quantization_report.attrs["rate_shift"]
    ([20], 1.0, 0)
    """
    chip = ChipConfig() if chip is None else chip
    if not isinstance(net, LIFNetwork):
        raise TypeError(f"net must be an nvppl.snn.LIFNetwork, got {type(net).__name__}")
    rows = []
    base, scale, projections, edge_proj, edge_pos = _network(net, plasticity, chip, scale, rows)
    alpha = None
    if field is None:
        prog = compile_network(base, chip)
    else:
        alpha = _check_field(field, net, plasticity, alpha_scale, rows)
        neurons = field.node_of[net.n_input:]
        release = None
        if isinstance(plasticity, ThreeFactor) and alpha.any():
            release = {field.model.substrate.labels[v]: (NEURON_POPULATION, np.flatnonzero(neurons == v))
                       for v in np.unique(neurons[neurons >= 0]).tolist()}
            rows.append(("release per (node, type, tick)", np.nan, np.nan,
                         "once: a release port fires once per tick however many vesicles dock (float field: "
                         "release_once=True)"))
            rows.append(("release timing", np.nan, float(2 ** plasticity.r),
                         "a dock at t reaches the reward trace at t + 1 and decays by 2^-r per tick (float field: "
                         "release_trace=2**r)"))
        rate = {}
        if field.covariates:
            sources = {NEURON_POPULATION: neurons}
            if net.n_input:
                sources[INPUT_POPULATION] = field.node_of[:net.n_input]
            rate = dict(rate_window=field.window, rate_sources=sources, rate_shift=rate_shift)
        prog = compile_vesicles(field.model, field.params, chip, network=base, release=release,
                                release_amplitude=alpha.tolist() if release else None,
                                nodes_per_core=nodes_per_core, **rate)
    weights_q = prog.extra["weights"]
    w0 = np.zeros(net.n_synapses, dtype=np.int64)
    for k in range(len(projections)):
        sel = edge_proj == k
        w0[sel] = np.asarray(weights_q[k].data, dtype=np.int64)[edge_pos[sel]]
    report = pd.DataFrame(rows, columns=["quantity", "value", "deployed", "note"])
    prog.extra["snn"] = SNNDeployment(net, field, plasticity, chip, scale, alpha, float(alpha_scale), projections,
                                      edge_proj, edge_pos, w0, report)
    return prog
