"""The programs of a spiking network's populations, and its quantisation to the chip's words.

Each LIF population is quantised with one scale (potential per LSB; by default
the largest incoming weight uses the full weight range): weights, threshold,
reset and bias become integers and a time constant τ the shift
k = round(log₂ τ) (``docs/guide/emulator.rst``, "Spiking networks on the
chip"). Its program is its LIF (or relay) section, the trace section its
plastic projections need and the learning rule of its incoming plastic
projections. Every quantised quantity is reported with its error; a value that
does not fit its word is an error, not a clipped value.
"""

from __future__ import annotations

import math

import numpy as np

from . import isa
from .chip import ChipConfig
from .network import LIF, STDP, Network, ThreeFactor, first_entry

__all__ = ["population_programs", "quantized_weights"]


def _shift_of(tau, what, rows):
    """Leak shift k with 2**-k ≈ 1/tau (16: no leak)."""
    if math.isinf(tau):
        return 16
    k = int(round(math.log2(tau)))
    if k > 15:
        raise ValueError(f"{what} = {tau} ticks is longer than the chip's longest leak (2**15 ticks); use math.inf")
    rows.append((what, float(tau), float(2 ** k)))
    return k


def _one(values, what):
    """The single distinct value among ``values`` (None when empty); else an error naming ``what``."""
    distinct = []
    for v, source in values:
        if all(v != d for d, _ in distinct):
            distinct.append((v, source))
    if len(distinct) > 1:
        raise ValueError(f"{what}: {distinct[0][1]} and {distinct[1][1]} need different settings "
                         f"({distinct[0][0]} vs {distinct[1][0]}); a population has one trace and one learning rule")
    return distinct[0][0] if distinct else None


def population_programs(net: Network, chip: ChipConfig) -> list:
    """The program of every population, with its scale and quantisation.

    Returns
    -------
    list of (NeuronProgram, float or None, list)
        Per population, in network order: its program, its scale (potential
        per LSB; None for an input population) and the rows ``(quantity,
        value, deployed value)`` of what was quantised.

    Raises
    ------
    ValueError
        Projections that need different trace or learning settings in one
        population, reward spikes without a three-factor rule, or a value
        that does not fit the state words.
    """
    out = []
    for pop in net.populations:
        rows = []
        ins, outs = net.incoming(pop), net.outgoing(pop)
        label = lambda p: f"projection {p.pre.name!r} -> {p.post.name!r}"  # noqa: E731
        x = _one([(p.plasticity.x, label(p)) for p in outs if p.plasticity is not None],
                 f"presynaptic trace of {pop.name!r}")
        y = _one([(p.plasticity.y, label(p)) for p in ins if p.plasticity is not None],
                 f"postsynaptic trace of {pop.name!r}")
        rule = _one([(p.plasticity, label(p)) for p in ins if p.plasticity is not None],
                    f"learning rule of {pop.name!r}")
        r = rule.r if isinstance(rule, ThreeFactor) else None
        rewards = [p for p in ins if p.kind == "reward"]
        if rewards and r is None:
            raise ValueError(f"{label(rewards[0])}: reward spikes into {pop.name!r} would have no effect: no "
                             "ThreeFactor projection into it defines its reward trace")
        trace = isa.trace_section(x=x, y=y, r=r) if (x or y or r is not None) else ""
        if isinstance(rule, STDP):
            weight = isa.stdp_section(a_pre=rule.a_pre, a_post=rule.a_post, shift=rule.shift)
        elif isinstance(rule, ThreeFactor):
            weight = isa.three_factor_section(a_mod=rule.a_mod, shift=rule.shift, a_pre=rule.a_pre,
                                              a_post=rule.a_post)
        else:
            weight = ""
        if pop.kind == "input":
            program = isa.build_program(weight=weight, neuron=isa.relay_section(), trace=trace)
            out.append((program, None, rows))
            continue
        nrn: LIF = pop.neuron
        scale = _scale(nrn, ins, chip)
        q = {}
        for name in ("v_th", "v_reset", "bias"):
            value = getattr(nrn, name)
            q[name] = int(round(value / scale))
            if not chip.state_min <= q[name] <= chip.state_max:
                raise ValueError(
                    f"population {pop.name!r}: {name} = {value} is {q[name]} in units of {scale:.4g}, outside the "
                    f"{chip.state_bits}-bit state range; choose LIF(scale=...) or smaller weights' span")
            rows.append((name, float(value), q[name] * scale))
        km = _shift_of(nrn.tau_mem, "tau_mem", rows)
        ks = None if nrn.tau_syn is None else _shift_of(nrn.tau_syn, "tau_syn", rows)
        if ks == 16:
            raise ValueError(f"population {pop.name!r}: tau_syn must be finite (use None for no synaptic memory)")
        neuron = isa.lif_section(threshold=q["v_th"], leak_shift=km, syn_shift=ks, reset=q["v_reset"],
                                 bias=q["bias"])
        program = isa.build_program(weight=weight, neuron=neuron, trace=trace)
        out.append((program, scale, rows))
    return out


def _scale(nrn: LIF, ins, chip):
    if nrn.scale is not None:
        return float(nrn.scale)
    wmax = max((float(np.abs(p.weights.data).max()) for p in ins if p.kind == "spike" and p.weights.nnz), default=0.0)
    if wmax > 0:
        return wmax / chip.weight_max
    return max(abs(nrn.v_th), abs(nrn.v_reset), abs(nrn.bias)) / (chip.state_max // 8)


def quantized_weights(net: Network, scales, chip: ChipConfig, rows_by_pop) -> list:
    """The integer weights of every projection (CSR, in network order).

    Spike weights are divided by the scale of their target population and
    rounded; reward weights are integers already. The largest error of each
    projection is appended to the quantisation rows of its target population
    (``rows_by_pop``, changed in place).

    Raises
    ------
    ValueError
        A weight outside the chip's weight range, naming the synapse.
    """
    out = []
    for proj in net.projections:
        W = proj.weights
        if proj.kind == "reward":
            data = W.data.astype(np.int64)
        else:
            scale = scales[proj.post.index]
            data = np.round(W.data / scale).astype(np.int64)
            bad = (data < chip.weight_min) | (data > chip.weight_max)
            if bad.any():
                j, i = first_entry(W, bad)
                k = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"projection {proj.pre.name!r} -> {proj.post.name!r}: weight [{j}, {i}] = {W.data[k]} "
                    f"is {data[k]} in units of {scale:.4g}, outside the {chip.weight_bits}-bit weight range")
            if W.nnz:
                k = int(np.argmax(np.abs(data * scale - W.data)))
                rows_by_pop[proj.post.index].append(
                    (f"weight {proj.pre.name}->{proj.post.name} (largest error)", float(W.data[k]),
                     float(data[k] * scale)))
        Wq = W.copy()
        Wq.data = data
        out.append(Wq)
    return out
