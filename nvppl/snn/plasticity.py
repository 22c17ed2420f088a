"""Eligibility traces and the three-factor update (paper eq. 55–58; hmn eq. 2).

Every unit keeps a presynaptic trace x and every neuron a postsynaptic trace y,
decaying by ``exp(−1/τ₊)`` and ``exp(−1/τ₋)`` per tick and growing by one at
each spike:

.. math::

    x_j(t) = x_j(t-1)\\,e^{-1/\\tau_+} + s_j(t), \\qquad y_i(t) = y_i(t-1)\\,e^{-1/\\tau_-} + s_i(t).

**STDP-pair eligibility** (eq. 56 with the pair form of F). For a synapse j → i,

.. math::

    F_{ij}(t) = A_+\\, x_j(t-1)\\, s_i(t) + A_-\\, y_i(t-1)\\, s_j(t),

so a presynaptic spike one or more ticks before a postsynaptic one adds
``A₊ e^{−(Δ−1)/τ₊}`` and the reverse order ``A₋ e^{−(Δ−1)/τ₋}``; spikes in the
same tick add nothing. The eligibility has a fast and an optional slow part
(hmn eq. 2), each the exact solution of eq. 56 for impulses F:

.. math::

    \\psi_f(t) = \\psi_f(t-1)\\, e^{-1/\\tau_f} + F(t), \\quad
    \\psi_s(t) = \\psi_s(t-1)\\, e^{-1/\\tau_s} + F(t), \\quad e = \\psi_f + \\psi_s.

**Product eligibility** (the chip's learning engine, eq. 60): ``e_ij(t) = x_j(t) y_i(t)``.

**Chip conventions** (``trace_decay="euler"``, ``interval``): the chip's traces
decay by a shift, x ← x − x/2ᵏ + s, that is by the factor 1 − 1/τ with
τ = 2ᵏ instead of e^{−1/τ}, and its weights change only every ``interval``
ticks (at ticks t with (t + 1) mod interval = 0), with the traces of that tick.

**Three-factor update** (eq. 55, 58): ``Δw = η · e · m`` at plastic synapses,
with m a scalar (a global signal) or one value per synapse (the vesicle field
of :mod:`nvppl.snn.field`); weights stay in ``[w_min, w_max]``.

Examples
--------
>>> import jax.numpy as jnp, nvppl as nv
>>> net = nv.snn.LIFNetwork(0, 2, pre=[0], post=[1], weights=[0.5], plastic=[True])
>>> rule = nv.snn.Plasticity(a_plus=1.0, a_minus=-1.0, tau_plus=10.0, tau_minus=10.0, tau_fast=100.0)
>>> st = nv.snn.plasticity_init(net, rule)
>>> st = nv.snn.eligibility_step(net, rule, st, jnp.array([True, False]))   # pre spikes
>>> st = nv.snn.eligibility_step(net, rule, st, jnp.array([False, True]))   # post spikes a tick later
>>> round(float(st.e_fast[0]), 4)
1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Plasticity", "PlasticState", "plasticity_init", "eligibility_step", "eligibility", "three_factor"]


@dataclass(frozen=True)
class Plasticity:
    """A three-factor rule: traces, eligibility and learning rate (see the module docstring).

    Parameters
    ----------
    eligibility : {"stdp", "product"}
        STDP-pair eligibility (eq. 56) or the chip's trace product x_j·y_i.
    a_plus, a_minus : float
        Amplitudes of the pre-before-post and post-before-pre terms of F.
    tau_plus, tau_minus : float
        Time constants (ticks) of the pre- and postsynaptic traces.
    tau_fast : float
        Time constant of the fast eligibility ψ_f (ticks).
    tau_slow : float or None
        Time constant of the slow eligibility ψ_s; None: no slow part.
    eta : float
        Learning rate η of eq. 58.
    trace_decay : {"exp", "euler"}
        Per-tick decay of the traces x and y: e^{−1/τ} (default) or 1 − 1/τ
        (the chip's shift by k with τ = 2ᵏ).
    interval : int
        Weights change every ``interval`` ticks (the chip's learning interval);
        default 1.
    """

    eligibility: str = "stdp"
    a_plus: float = 1.0
    a_minus: float = -1.5
    tau_plus: float = 20.0
    tau_minus: float = 20.0
    tau_fast: float = 1000.0
    tau_slow: float | None = None
    eta: float = 1.0
    trace_decay: str = "exp"
    interval: int = 1

    def __post_init__(self):
        if self.eligibility not in ("stdp", "product"):
            raise ValueError(f"eligibility must be 'stdp' or 'product', got {self.eligibility!r}")
        for name in ("tau_plus", "tau_minus", "tau_fast"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise ValueError(f"Plasticity {name} must be a positive finite number of ticks, got {v!r}")
        if self.tau_slow is not None and not (isinstance(self.tau_slow, (int, float)) and self.tau_slow > 0
                                              and math.isfinite(self.tau_slow)):
            raise ValueError(f"Plasticity tau_slow must be None or a positive finite number, got {self.tau_slow!r}")
        for name in ("a_plus", "a_minus", "eta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"Plasticity {name} must be a finite number, got {v!r}")
        if self.trace_decay not in ("exp", "euler"):
            raise ValueError(f"trace_decay must be 'exp' or 'euler', got {self.trace_decay!r}")
        if self.trace_decay == "euler" and min(self.tau_plus, self.tau_minus) < 1:
            raise ValueError("trace_decay='euler' needs tau_plus and tau_minus ≥ 1 tick (a factor 1 − 1/τ ≥ 0)")
        iv = self.interval
        if isinstance(iv, bool) or not isinstance(iv, int) or iv < 1:
            raise ValueError(f"Plasticity interval must be an integer ≥ 1 (ticks), got {iv!r}")


class PlasticState(NamedTuple):
    """Traces and eligibilities after a tick."""

    x: jax.Array       # (n_units,) presynaptic traces
    y: jax.Array       # (n,) postsynaptic traces
    e_fast: jax.Array  # (E,) ψ_f (product eligibility: x_pre · y_post)
    e_slow: jax.Array  # (E,) ψ_s (zeros without a slow part)


def plasticity_init(net, rule: Plasticity, dtype=jnp.float32) -> PlasticState:
    """Zero traces and eligibilities."""
    E = net.n_synapses
    return PlasticState(jnp.zeros(net.n_units, dtype), jnp.zeros(net.n, dtype), jnp.zeros(E, dtype),
                        jnp.zeros(E, dtype))


def eligibility_step(net, rule: Plasticity, st: PlasticState, spikes) -> PlasticState:
    """Advance traces and eligibilities by one tick given this tick's ``spikes`` (n_units,) bool."""
    s = spikes.astype(st.x.dtype)
    s_post = s[net.n_input:]
    decay = (lambda tau: 1.0 - 1.0 / tau) if rule.trace_decay == "euler" else (lambda tau: math.exp(-1.0 / tau))
    x = st.x * decay(rule.tau_plus) + s
    y = st.y * decay(rule.tau_minus) + s_post
    if rule.eligibility == "product":
        return PlasticState(x, y, x[net.pre] * y[net.post], st.e_slow)
    F = rule.a_plus * st.x[net.pre] * s_post[net.post] + rule.a_minus * st.y[net.post] * s[net.pre]
    e_fast = st.e_fast * math.exp(-1.0 / rule.tau_fast) + F
    e_slow = st.e_slow if rule.tau_slow is None else st.e_slow * math.exp(-1.0 / rule.tau_slow) + F
    return PlasticState(x, y, e_fast, e_slow)


def eligibility(st: PlasticState) -> jax.Array:
    """e = ψ_f + ψ_s (hmn eq. 2)."""
    return st.e_fast + st.e_slow


def three_factor(net, rule: Plasticity, w, e, m) -> jax.Array:
    """w + η·e·m at plastic synapses, kept in [w_min, w_max] (eq. 58); ``m`` a scalar or (E,)."""
    dw = rule.eta * e * m
    return jnp.where(net.plastic, jnp.clip(w + dw, net.w_min, net.w_max), w)
