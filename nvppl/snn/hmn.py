"""The HMN plasticity rule on an edge list of synapses (hmn eq. 1–11, appendix 10.1–10.4; DESIGN §8).

A rate network: presynaptic units ``i`` with activities ``x_i`` feed
postsynaptic units ``j`` through synapses ``e = (pre_e, post_e)`` with weights
``w_e`` (:class:`Synapses`, the edge list of :class:`~nvppl.snn.LIFNetwork`).
Every component of the rule is a switch of :class:`HMNConfig`; a component that
is off is the identity. The functions are pure and jit-able (``cfg`` is static,
``syn`` a pytree), BlackJAX style: :func:`init`, then per tick
:func:`activate` → :func:`eligibility_step` → :func:`modulator` → :func:`update`.
:class:`Switches` turn components off at run time (traced booleans), so that the
ablations of a rule share one compiled program.

**Activation** (eq. 1, zero delays: pass delayed inputs as ``x`` if needed)

.. math:: z_j = f\\Big(\\sum_{e:\\,\\mathrm{post}_e = j} w_e\\, x_{\\mathrm{pre}_e} + b_j
          + \\sigma\\,\\varepsilon_j\\Big), \\qquad \\varepsilon_j \\sim \\mathcal N(0, 1),\\;
          f \\in \\{\\max(0,\\cdot), 1/(1+e^{-\\cdot})\\}.

**Eligibility** (eq. 2, appendix 10.1). Each coincidence ``x_i(t') z_j(t')``
contributes ``x_i z_j e^{-(t-t')/τ}`` (the appendix's form); summed over past
coincidences this is the recursion, with ``d = e^{-1/τ}``,

.. math:: \\psi^{f}_e(t) = d_f\\,\\psi^{f}_e(t-1) + x_{\\mathrm{pre}_e}(t)\\, z_{\\mathrm{post}_e}(t), \\quad
          \\psi^{s}_e \\text{ alike with } d_s, \\quad e_e = \\psi^{f}_e + \\psi^{s}_e .

**Local attention** (eq. 8–9, similarity ``g`` of appendix 10.1). The embedding
of input ``i`` is ``h_i = (\\bar x^f_i, \\bar x^s_i)``, its exponentially decayed
averages at the two eligibility time constants, and the context of unit ``j``
is ``c_j = (\\bar z^f_j, \\bar z^s_j)`` alike (``\\bar y(t) = d\\,\\bar y(t-1) + (1-d)\\,y(t)``):

.. math:: s_e = g(h_{\\mathrm{pre}_e}, c_{\\mathrm{post}_e}), \\qquad
          \\alpha_e = \\frac{\\exp(\\beta_a s_e)}{\\sum_{l:\\,\\mathrm{post}_l = \\mathrm{post}_e} \\exp(\\beta_a s_l)},
          \\qquad \\tilde e_e = K_{\\mathrm{post}_e}\\,\\alpha_e\\, e_e, \\\\
          g(a, b) = \\frac{\\langle a, b\\rangle}{\\lVert a\\rVert\\,\\lVert b\\rVert}\\ (0 \\text{ if a norm is } 0).

Why this ``h`` and ``c``: the paper asks for an embedding of the input and a
decayed average of ``z_j``; with both written on the same two time scales the
cosine compares *how recently* input and output were active relative to their
usual activity, so an input that is active now and an output that is active
now attend to each other, and stale traces (an input active long ago) are
discounted. No weights are learned for ``h`` (the paper leaves the embedding
open). **Deviation**: with ``attention_scale=True`` (default) ``α`` is
multiplied by the fan-in ``K_j`` of the postsynaptic unit, so uniform attention
is the identity and switching attention off keeps the scale of the update; the
paper's form is ``attention_scale=False``.

**Modulator** (eq. 6, 10–11). Signals ``E_k`` with weights ``w_k``:
``G = Σ_k w_k E_k`` (eq. 6 with the appendix's ``M = Σ``) and

.. math:: G' = \\sum_k \\gamma_k w_k E_k,\\quad
          \\gamma_k = K\\,\\frac{\\exp(\\beta_g h(E_k, C))}{\\sum_m \\exp(\\beta_g h(E_m, C))},\\quad
          h(E_k, C) = \\frac{|E_k|}{\\sqrt{C_k + 10^{-8}}},

where the global context ``C_k`` is the running mean square of ``E_k``
(:func:`context_step`): a signal gets attention when it is large *for that
signal*, i.e. surprising, and signals on different scales are comparable. The
factor ``K`` (the number of signals) is the same deviation as for ``α``
(``attention_scale``); off, ``γ_k = 1`` and ``G' = G``.

**Update** (eq. 3–5, appendix 10.4), with ``M = G'`` (``delivery="global"``, a
scalar) or the per-synapse vesicle field ``m_e`` (``delivery="vesicle"``, eq. 57,
computed by the caller from vesicles that carry ``G'``):

.. math:: \\Delta w^*_e = \\eta_{local}\\,\\tilde e_e + \\eta_{global}\\, M_e\\, \\tilde e_e, \\quad
          \\Delta w^\\dagger_e = \\Delta w^*_e \\max(0, \\cos(\\Phi(n) - \\phi_e)), \\quad
          \\Delta w_e = \\Delta w^\\dagger_e \\text{ with prob. } \\sigma(\\beta_p(|\\Delta w^\\dagger_e| - \\theta_p)),

``Φ(n) = 2π f n + Φ₀`` with ``n`` the number of eligibility steps taken (1 at the
first tick) and per-synapse phases ``φ_e``.

Examples
--------
>>> import jax, jax.numpy as jnp
>>> from nvppl.snn import hmn
>>> cfg = hmn.HMNConfig(sigma=0.0, phase_gate=False, prob_gate=False, local_attention=False)
>>> syn = hmn.Synapses.dense(2, 3)                       # every input to every output
>>> st = hmn.init(cfg, syn)
>>> x = jnp.array([1.0, 0.0])
>>> z = hmn.activate(cfg, syn, jnp.full(6, 0.5), x)      # relu(0.5) for every output
>>> st = hmn.eligibility_step(cfg, syn, st, x, z)
>>> G, Gp, gamma = hmn.modulator(cfg, jnp.array([1.0]), jnp.array([2.0]), hmn.context_init(1))
>>> dw, st, info = hmn.update(cfg, syn, st, Gp, key=jax.random.PRNGKey(0), eta=jnp.array([0.0, 0.1]))
>>> [round(float(v), 3) for v in dw]     # only synapses from the active input learn
[0.2, 0.2, 0.2, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["HMNConfig", "Synapses", "HMNState", "UpdateInfo", "Switches", "init", "activate", "eligibility_step",
           "eligibility", "local_attention", "segment_softmax", "modulator", "context_init", "context_step",
           "phase_gate", "update"]

_F = jnp.float32
ACTIVATIONS = ("relu", "sigmoid")
DELIVERIES = ("global", "vesicle")


def _num(cfg, name, *, low=None, low_open=False):
    v = getattr(cfg, name)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(v)):
        raise ValueError(f"HMNConfig.{name} must be a finite number, got {v!r}")
    if low is not None and (v <= low if low_open else v < low):
        raise ValueError(f"HMNConfig.{name} must be {'>' if low_open else '≥'} {low:g}, got {v!r}")
    object.__setattr__(cfg, name, float(v))


@dataclass(frozen=True)
class HMNConfig:
    """Switches and constants of the HMN rule (see the module docstring for the equations).

    Parameters
    ----------
    activation : {"relu", "sigmoid"}
        ``f`` of eq. 1.
    sigma : float
        Standard deviation of the activation noise ε (eq. 1); 0 switches it off.
    tau_fast : float
        Time constant (ticks) of ψ_fast and of the fast attention averages.
    slow : bool
        Add the slow eligibility ψ_slow (eq. 2); off: ``e = ψ_fast``.
    tau_slow : float
        Time constant of ψ_slow and of the slow attention averages (used by the
        attention also when ``slow`` is off).
    phase_gate : bool
        Gate by ``max(0, cos(Φ − φ_e))`` (eq. 4).
    freq, phase0 : float
        Oscillator frequency (cycles per tick, ≥ 0) and phase offset Φ₀ (radians).
    prob_gate : bool
        Apply each Δw† with probability ``σ(β_p(|Δw†| − θ_p))`` (eq. 5); off: always.
    beta_p, theta_p : float
        Slope (≥ 0) and threshold (≥ 0) of the probabilistic gate.
    local_attention : bool
        Attention over the presynaptic inputs of each unit (eq. 8–9).
    beta_a : float
        Inverse temperature β_a.
    global_attention : bool
        Attention over the neuromodulatory signals (eq. 10–11).
    beta_g : float
        Inverse temperature β_g.
    attention_scale : bool
        Multiply α by the fan-in and γ by the number of signals (a deviation from
        the paper, which keeps the scale of the update when attention is off).
    tau_context : float
        Time constant (ticks) of the running mean square ``C`` of the signals.
    meta : bool
        Whether the caller meta-learns (η_local, η_global) with :mod:`nvppl.snn.spsa`
        (eq. 7); :func:`update` itself uses the η it is given.
    delivery : {"global", "vesicle"}
        ``M`` of eq. 3: the scalar G′, or a per-synapse field m_e carried by vesicles.
    eta_local, eta_global : float
        Learning rates used when :func:`update` is not given ``eta``.

    Examples
    --------
    >>> import dataclasses
    >>> from nvppl.snn.hmn import HMNConfig
    >>> dataclasses.replace(HMNConfig(), sigma=0.0).sigma
    0.0
    >>> HMNConfig(tau_fast=0)
    Traceback (most recent call last):
    ...
    ValueError: HMNConfig.tau_fast must be > 0, got 0
    """

    activation: str = "relu"
    sigma: float = 0.1
    tau_fast: float = 1.0
    slow: bool = True
    tau_slow: float = 20.0
    phase_gate: bool = True
    freq: float = 0.05
    phase0: float = 0.0
    prob_gate: bool = True
    beta_p: float = 50.0
    theta_p: float = 0.0
    local_attention: bool = True
    beta_a: float = 1.0
    global_attention: bool = True
    beta_g: float = 1.0
    attention_scale: bool = True
    tau_context: float = 100.0
    meta: bool = True
    delivery: str = "global"
    eta_local: float = 0.0
    eta_global: float = 0.1

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"HMNConfig.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.delivery not in DELIVERIES:
            raise ValueError(f"HMNConfig.delivery must be one of {DELIVERIES}, got {self.delivery!r}")
        for name in ("slow", "phase_gate", "prob_gate", "local_attention", "global_attention",
                     "attention_scale", "meta"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"HMNConfig.{name} must be True or False, got {getattr(self, name)!r}")
            object.__setattr__(self, name, bool(getattr(self, name)))
        _num(self, "sigma", low=0.0)
        for name in ("tau_fast", "tau_slow", "tau_context"):
            _num(self, name, low=0.0, low_open=True)
        _num(self, "freq", low=0.0)
        _num(self, "beta_p", low=0.0)
        _num(self, "theta_p", low=0.0)
        for name in ("phase0", "beta_a", "beta_g", "eta_local", "eta_global"):
            _num(self, name)

    @property
    def decays(self) -> tuple:
        """``(d_f, d_s) = (e^{-1/τ_fast}, e^{-1/τ_slow})``."""
        return math.exp(-1.0 / self.tau_fast), math.exp(-1.0 / self.tau_slow)


@jax.tree_util.register_pytree_node_class
class Synapses:
    """An edge list: synapse ``e`` runs from presynaptic unit ``pre[e]`` to postsynaptic unit ``post[e]``.

    Parameters
    ----------
    pre : array of int (E,)
        In ``0 … n_pre − 1``.
    post : array of int (E,)
        In ``0 … n_post − 1``.
    n_pre, n_post : int
        Numbers of presynaptic and postsynaptic units (static under ``jit``).
    plastic : array of bool (E,), optional
        Synapses that learn (default all); :func:`update` gives 0 elsewhere.

    Examples
    --------
    >>> from nvppl.snn.hmn import Synapses
    >>> syn = Synapses([0, 1, 1], [0, 0, 1], n_pre=2, n_post=2)
    >>> syn.n_synapses, syn.fan_in.tolist()
    (3, [2.0, 1.0])
    """

    def __init__(self, pre, post, n_pre: int, n_post: int, plastic=None):
        n_pre, n_post = int(n_pre), int(n_post)
        if n_pre < 1 or n_post < 1:
            raise ValueError(f"Synapses needs n_pre ≥ 1 and n_post ≥ 1, got {n_pre}, {n_post}")
        arrs = {}
        for name, a, hi in (("pre", pre, n_pre), ("post", post, n_post)):
            a = np.asarray(a)
            if a.ndim != 1 or (a.size and (a.dtype == bool or not np.issubdtype(a.dtype, np.integer))):
                raise ValueError(f"Synapses.{name} must be a 1-d array of integer unit indices, got {a.dtype} "
                                 f"{a.shape}")
            bad = (a < 0) | (a >= hi)
            if bad.any():
                e = int(np.flatnonzero(bad)[0])
                raise ValueError(f"Synapses.{name}[{e}] = {a[e]}: synapse {e} must point to a unit in 0..{hi - 1}")
            arrs[name] = a
        if arrs["pre"].shape != arrs["post"].shape:
            raise ValueError(f"Synapses.pre and post must have one entry per synapse, got lengths "
                             f"{len(arrs['pre'])} and {len(arrs['post'])}")
        E = len(arrs["pre"])
        plastic = np.ones(E, bool) if plastic is None else np.asarray(plastic)
        if plastic.shape != (E,) or plastic.dtype != bool:
            raise ValueError(f"Synapses.plastic must be a boolean array of shape ({E},), got {plastic.dtype} "
                             f"{plastic.shape}")
        fan = np.bincount(arrs["post"], minlength=n_post).astype(np.float32)
        self.pre, self.post = jnp.asarray(arrs["pre"], jnp.int32), jnp.asarray(arrs["post"], jnp.int32)
        self.plastic, self.fan_in = jnp.asarray(plastic), jnp.asarray(fan)
        self.n_pre, self.n_post = n_pre, n_post

    @classmethod
    def dense(cls, n_pre: int, n_post: int) -> "Synapses":
        """Every presynaptic unit to every postsynaptic one; synapse ``e = i·n_post + j``."""
        pre, post = np.divmod(np.arange(int(n_pre) * int(n_post)), int(n_post))
        return cls(pre, post, n_pre, n_post)

    @classmethod
    def from_network(cls, net) -> "Synapses":
        """The synapses of a :class:`~nvppl.snn.LIFNetwork` (presynaptic units: inputs then neurons)."""
        return cls(np.asarray(net.pre), np.asarray(net.post), net.n_units, net.n, np.asarray(net.plastic))

    @property
    def n_synapses(self) -> int:
        return int(self.pre.shape[0])

    def tree_flatten(self):
        return (self.pre, self.post, self.plastic, self.fan_in), (self.n_pre, self.n_post)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.pre, obj.post, obj.plastic, obj.fan_in = children
        obj.n_pre, obj.n_post = aux
        return obj

    def __repr__(self):
        return f"Synapses(n_pre={self.n_pre}, n_post={self.n_post}, synapses={self.n_synapses})"


class HMNState(NamedTuple):
    """Eligibilities, attention averages, phases and the tick count."""

    psi_fast: jax.Array  # (E,) ψ_fast
    psi_slow: jax.Array  # (E,) ψ_slow (zeros when slow is off)
    h: jax.Array         # (n_pre, 2) decayed averages of x at (τ_fast, τ_slow)
    c: jax.Array         # (n_post, 2) decayed averages of z at (τ_fast, τ_slow)
    phase: jax.Array     # (E,) φ_e
    t: jax.Array         # eligibility steps taken


class UpdateInfo(NamedTuple):
    """The intermediate quantities of :func:`update` (all (E,))."""

    alpha: jax.Array      # attention α (fan-in scaled if attention_scale), ones when off
    e_tilde: jax.Array    # ẽ = α e
    dw_star: jax.Array    # Δw* (eq. 3)
    dw_dagger: jax.Array  # Δw† (eq. 4)
    p_apply: jax.Array    # probability of applying (eq. 5), ones when off
    applied: jax.Array    # bool: the update was applied


class Switches(NamedTuple):
    """Run-time switches: booleans (possibly traced) that turn off components the config has on.

    A component runs when it is on in :class:`HMNConfig` *and* here; off here it is
    the identity, exactly as when it is off in the config. Because the values may
    be traced, one compiled program can run every ablation of a rule (``vmap`` over
    switch vectors). ``meta`` is read by callers, like ``HMNConfig.meta``.

    Examples
    --------
    >>> from nvppl.snn.hmn import Switches
    >>> sw = Switches.without("slow")
    >>> sw.slow, sw.noise
    (False, True)
    """

    noise: object = True
    slow: object = True
    phase_gate: object = True
    prob_gate: object = True
    local_attention: object = True
    global_attention: object = True
    meta: object = True

    @classmethod
    def without(cls, *names) -> "Switches":
        """Every switch on but ``names``."""
        bad = [n for n in names if n not in cls._fields]
        if bad:
            raise ValueError(f"unknown switch {bad[0]!r}; switches are {cls._fields}")
        return cls(**{n: n not in names for n in cls._fields})


def _on(switches, name):
    """The run-time switch ``name`` as a JAX bool, or None (no switches: on)."""
    return None if switches is None else jnp.asarray(getattr(switches, name), bool)


def _key(key):
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.PRNGKey(int(key))
    return key


def init(cfg: HMNConfig, syn: Synapses, key=None, phase=None) -> HMNState:
    """Zero eligibilities and averages, tick 0, and the phases φ_e.

    Parameters
    ----------
    key : int or JAX key, optional
        Draw φ_e uniformly in [0, 2π) (``jax.random.uniform(key, (E,))·2π``).
    phase : array (E,), optional
        The phases; without ``key`` or ``phase`` every φ_e is 0 (all in phase).
    """
    E = syn.n_synapses
    if phase is not None and key is not None:
        raise ValueError("give key (random phases) or phase (given phases), not both")
    if phase is not None:
        phase = np.asarray(phase, dtype=np.float64)
        if phase.shape != (E,):
            raise ValueError(f"phase must have one entry per synapse, shape ({E},), got {phase.shape}")
        bad = ~np.isfinite(phase)
        if bad.any():
            raise ValueError(f"phase[{int(np.flatnonzero(bad)[0])}] is not finite")
        phase = jnp.asarray(phase, _F)
    elif key is not None:
        phase = (2.0 * math.pi) * jax.random.uniform(_key(key), (E,), _F)
    else:
        phase = jnp.zeros(E, _F)
    z = jnp.zeros(E, _F)
    return HMNState(z, z, jnp.zeros((syn.n_pre, 2), _F), jnp.zeros((syn.n_post, 2), _F), phase,
                    jnp.asarray(0, jnp.int32))


def _vec(a, n, name):
    a = jnp.asarray(a, _F)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    return a


def activate(cfg: HMNConfig, syn: Synapses, w, x, key=None, b=None, eps=None, switches=None) -> jax.Array:
    """Eq. 1: ``z_j = f(Σ_{e→j} w_e x_pre_e + b_j + σ ε_j)`` (a segment sum over synapses).

    Parameters
    ----------
    w : array (E,)
    x : array (n_pre,)
        Presynaptic activities.
    key : JAX key, optional
        When ``cfg.sigma > 0``: ``ε = jax.random.normal(key, (n_post,), float32)``.
    b : array (n_post,), optional
        Biases (default 0).
    eps : array (n_post,), optional
        The standard normal draws ε themselves, instead of ``key`` (e.g. drawn for
        many ticks at once).
    switches : Switches, optional
        ``noise=False`` drops ε (as ``sigma = 0``).

    Returns
    -------
    z : array (n_post,)
    """
    w, x = _vec(w, syn.n_synapses, "w"), _vec(x, syn.n_pre, "x")
    u = jax.ops.segment_sum(w * x[syn.pre], syn.post, num_segments=syn.n_post)
    if b is not None:
        u = u + _vec(b, syn.n_post, "b")
    if cfg.sigma > 0:
        if (key is None) == (eps is None):
            raise ValueError("activate needs exactly one of key or eps when HMNConfig.sigma > 0 (the noise of eq. 1)")
        eps = jax.random.normal(_key(key), (syn.n_post,), _F) if eps is None else _vec(eps, syn.n_post, "eps")
        on = _on(switches, "noise")
        u = u + cfg.sigma * (eps if on is None else jnp.where(on, eps, 0.0))
    return jnp.maximum(u, 0.0) if cfg.activation == "relu" else jax.nn.sigmoid(u)


def eligibility_step(cfg: HMNConfig, syn: Synapses, state: HMNState, x, z) -> HMNState:
    """Record a tick: ψ_fast, ψ_slow (eq. 2, appendix 10.1), the averages h, c, and ``t + 1``.

    ``x`` (n_pre,) and ``z`` (n_post,) are this tick's pre- and postsynaptic
    activities (``z`` may be the output of :func:`activate` or any postsynaptic
    activity, e.g. the winner of a competition).
    """
    x, z = _vec(x, syn.n_pre, "x"), _vec(z, syn.n_post, "z")
    df, ds = cfg.decays
    xz = x[syn.pre] * z[syn.post]
    psi_f = df * state.psi_fast + xz
    psi_s = ds * state.psi_slow + xz if cfg.slow else state.psi_slow
    d = jnp.asarray([df, ds], _F)
    h = d * state.h + (1.0 - d) * x[:, None]
    c = d * state.c + (1.0 - d) * z[:, None]
    return HMNState(psi_f, psi_s, h, c, state.phase, state.t + 1)


def eligibility(cfg: HMNConfig, state: HMNState, switches=None) -> jax.Array:
    """``e = ψ_fast + ψ_slow`` (eq. 2); ``ψ_fast`` alone when the slow trace is off."""
    if not cfg.slow:
        return state.psi_fast
    on = _on(switches, "slow")
    return state.psi_fast + (state.psi_slow if on is None else jnp.where(on, state.psi_slow, 0.0))


def segment_softmax(s, segments, n_segments: int) -> jax.Array:
    """Softmax of ``s`` within each segment: ``exp(s_e) / Σ_{l: seg_l = seg_e} exp(s_l)`` (max-shifted)."""
    mx = jax.ops.segment_max(s, segments, num_segments=n_segments)
    ex = jnp.exp(s - mx[segments])
    return ex / jax.ops.segment_sum(ex, segments, num_segments=n_segments)[segments]


def _cosine(a, b):
    num = jnp.sum(a * b, axis=-1)
    den = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def local_attention(cfg: HMNConfig, syn: Synapses, state: HMNState, switches=None) -> jax.Array:
    """α_e of eq. 8–9 (times the fan-in with ``attention_scale``); ones when local attention is off."""
    if not cfg.local_attention:
        return jnp.ones(syn.n_synapses, _F)
    g = _cosine(state.h[syn.pre], state.c[syn.post])
    alpha = segment_softmax(cfg.beta_a * g, syn.post, syn.n_post)
    alpha = alpha * syn.fan_in[syn.post] if cfg.attention_scale else alpha
    on = _on(switches, "local_attention")
    return alpha if on is None else jnp.where(on, alpha, 1.0)


def context_init(n_signals: int) -> jax.Array:
    """The global context C at the start: a mean square of 1 per signal."""
    return jnp.ones(int(n_signals), _F)


def context_step(cfg: HMNConfig, C, E) -> jax.Array:
    """``C_k ← ρ C_k + (1 − ρ) E_k²`` with ``ρ = e^{-1/τ_context}``: the running mean square of each signal."""
    rho = math.exp(-1.0 / cfg.tau_context)
    return rho * jnp.asarray(C, _F) + (1.0 - rho) * jnp.square(jnp.asarray(E, _F))


def modulator(cfg: HMNConfig, weights, E, C_global, switches=None):
    """Eq. 6 and 10–11: ``(G, G′, γ)`` from signals ``E`` (K,), weights ``w_k`` (K,) and context C (K,).

    ``G = Σ w_k E_k``; with global attention ``γ = K·softmax(β_g |E_k| / √(C_k + 10⁻⁸))``
    (without ``attention_scale``, no factor K) and ``G′ = Σ γ_k w_k E_k``;
    without, ``γ = 1`` and ``G′ = G``.
    """
    E = jnp.asarray(E, _F)
    if E.ndim != 1:
        raise ValueError(f"E must be a vector of signals (K,), got shape {E.shape}")
    K = E.shape[0]
    wk, C = _vec(weights, K, "weights"), _vec(C_global, K, "C_global")
    G = jnp.sum(wk * E)
    if not cfg.global_attention:
        return G, G, jnp.ones(K, _F)
    gamma = jax.nn.softmax(cfg.beta_g * jnp.abs(E) / jnp.sqrt(C + 1e-8))
    if cfg.attention_scale:
        gamma = gamma * K
    on = _on(switches, "global_attention")
    if on is not None:
        gamma = jnp.where(on, gamma, 1.0)
    return G, jnp.sum(gamma * wk * E), gamma


def phase_gate(cfg: HMNConfig, state: HMNState, switches=None) -> jax.Array:
    """``max(0, cos(Φ(n) − φ_e))`` with ``Φ(n) = 2π f n + Φ₀`` (eq. 4); ones when the gate is off."""
    if not cfg.phase_gate:
        return jnp.ones_like(state.phase)
    big_phi = 2.0 * math.pi * cfg.freq * state.t.astype(_F) + cfg.phase0
    gate = jnp.maximum(0.0, jnp.cos(big_phi - state.phase))
    on = _on(switches, "phase_gate")
    return gate if on is None else jnp.where(on, gate, 1.0)


def update(cfg: HMNConfig, syn: Synapses, state: HMNState, modulation, key=None, eta=None, uniforms=None,
           switches=None):
    """The HMN weight change (eq. 3–5, 8–9; appendix 10.4) from the eligibility in ``state``.

    Parameters
    ----------
    modulation : scalar or array (E,)
        ``M`` of eq. 3: G′ (``delivery="global"``, a scalar) or the vesicle field
        m_e (``delivery="vesicle"``, one value per synapse).
    key : JAX key, optional
        With the probabilistic gate: synapse ``e`` is updated when ``U_e < p_e``,
        ``U = jax.random.uniform(key, (E,), float32)``.
    eta : array (2,), optional
        ``(η_local, η_global)``; default ``(cfg.eta_local, cfg.eta_global)``.
    uniforms : array (E,), optional
        The uniforms ``U`` themselves, instead of ``key``.
    switches : Switches, optional
        Run-time switches (slow trace, local attention, phase and probabilistic gates).

    Returns
    -------
    (dw, state, info) : (array (E,), HMNState, UpdateInfo)
        ``dw`` is 0 at non-plastic synapses; the state is returned unchanged.
    """
    E = syn.n_synapses
    M = jnp.asarray(modulation, _F)
    if cfg.delivery == "global" and M.shape != ():
        raise ValueError(f"delivery='global' takes a scalar modulator G′, got shape {M.shape}")
    if cfg.delivery == "vesicle" and M.shape != (E,):
        raise ValueError(f"delivery='vesicle' takes the field m with one value per synapse, shape ({E},), "
                         f"got {M.shape}")
    eta = jnp.asarray([cfg.eta_local, cfg.eta_global], _F) if eta is None else _vec(eta, 2, "eta")
    alpha = local_attention(cfg, syn, state, switches)
    e_tilde = alpha * eligibility(cfg, state, switches)
    dw_star = eta[0] * e_tilde + eta[1] * M * e_tilde
    dw_dagger = dw_star * phase_gate(cfg, state, switches)
    if cfg.prob_gate:
        if (key is None) == (uniforms is None):
            raise ValueError("update needs exactly one of key or uniforms when HMNConfig.prob_gate is on "
                             "(the draws of eq. 5)")
        p = jax.nn.sigmoid(cfg.beta_p * (jnp.abs(dw_dagger) - cfg.theta_p))
        U = jax.random.uniform(_key(key), (E,), _F) if uniforms is None else _vec(uniforms, E, "uniforms")
        applied = U < p
        on = _on(switches, "prob_gate")
        if on is not None:
            p, applied = jnp.where(on, p, 1.0), jnp.where(on, applied, True)
    else:
        p, applied = jnp.ones(E, _F), jnp.ones(E, bool)
    applied = applied & syn.plastic
    dw = jnp.where(applied, dw_dagger, 0.0)
    return dw, state, UpdateInfo(alpha, e_tilde, dw_star, dw_dagger, p, applied)
