"""A recurrent LIF network in JAX with sparse connectivity (paper §6.1, eq. 54; DESIGN §8).

The network has ``n_input`` input units, whose spikes are given per tick, and
``n`` leaky integrate-and-fire neurons. Units are numbered globally: inputs
``0 … n_input − 1``, neurons ``n_input … n_input + n − 1``. A synapse ``e`` runs
from unit ``pre[e]`` to neuron ``post[e]`` (a neuron index ``0 … n − 1``), so
the connectivity is an edge list and the synaptic input a segment sum: 10⁴
neurons with 10⁶ synapses fit a CPU.

One tick, in the chip's order (``nvppl.backend.reference.simulate_float``):

.. math::

    S_i(t) &= \\sum_e [\\mathrm{post}_e = i]\\, w_e\\, s_{\\mathrm{pre}_e}(t-1) \\\\
    I_i(t) &= I_i(t-1)(1 - 1/\\tau_{syn}) + S_i(t) \\quad (I_i(t) = S_i(t) \\text{ without } \\tau_{syn}) \\\\
    V_i(t) &= V_i(t-1)(1 - 1/\\tau_{mem}) + I_i(t) + b + J_i(t)

with an optional external current J. A neuron whose ``V ≥ v_th`` spikes and is
reset to ``v_reset``; for ``refractory`` ticks after a spike its potential is
held at the reset and it cannot fire. This is one Euler step of eq. 54 per tick
with an exponential synaptic kernel κ, and no surrogate gradient: the network is
simulated, not differentiated.

Examples
--------
>>> import numpy as np, nvppl as nv
>>> net = nv.snn.LIFNetwork(n_input=1, n=1, pre=[0], post=[0], weights=[0.75],
...                         neuron=nv.snn.Neuron(tau_mem=2.0, v_th=1.0))
>>> out = nv.snn.run(net, net.weights, inputs=np.array([[1], [1], [0], [0]]))
>>> np.asarray(out.v[:, 0]).tolist(), np.asarray(out.spikes[:, 0]).astype(int).tolist()
([0.0, 0.75, 0.0, 0.0], [0, 0, 1, 0])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import as_jax_key, positive_int

__all__ = ["Neuron", "LIFNetwork", "LIFState", "RunOutput", "init", "step", "run", "synaptic_input"]


@dataclass(frozen=True)
class Neuron:
    """Parameters of the network's LIF neurons (one tick per step; eq. 54).

    Parameters
    ----------
    tau_mem : float
        Membrane time constant in ticks (≥ 1, or ``math.inf``: no leak).
    tau_syn : float or None
        Synaptic time constant in ticks (≥ 1); None: the current is this tick's input.
    v_th, v_reset, bias : float
        Threshold, reset potential (below the threshold) and constant input per tick.
    refractory : int
        Ticks after a spike during which the potential is held at ``v_reset``.
    """

    tau_mem: float = 16.0
    tau_syn: float | None = None
    v_th: float = 1.0
    v_reset: float = 0.0
    bias: float = 0.0
    refractory: int = 0

    def __post_init__(self):
        for name in ("tau_mem", "v_th", "v_reset", "bias"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"Neuron {name} must be a number, got {value!r}")
        if not self.tau_mem >= 1:
            raise ValueError(f"Neuron tau_mem must be ≥ 1 tick (or inf), got {self.tau_mem}")
        if self.tau_syn is not None and not (isinstance(self.tau_syn, (int, float)) and self.tau_syn >= 1
                                             and math.isfinite(self.tau_syn)):
            raise ValueError(f"Neuron tau_syn must be None or a finite number ≥ 1 tick, got {self.tau_syn!r}")
        for name in ("v_th", "v_reset", "bias"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"Neuron {name} must be finite, got {getattr(self, name)}")
        if self.v_reset >= self.v_th:
            raise ValueError(f"Neuron v_reset ({self.v_reset}) must be below v_th ({self.v_th})")
        r = self.refractory
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
            raise ValueError(f"Neuron refractory must be an integer ≥ 0 (ticks), got {r!r}")


def _edge_array(values, name, dtype):
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one entry per synapse), got shape {arr.shape}")
    if np.issubdtype(dtype, np.integer):
        if arr.size and (arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{name} must hold integer unit indices, got dtype {arr.dtype}")
        return arr.astype(np.int64)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    out = arr.astype(np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        raise ValueError(f"{name}: synapse {int(np.flatnonzero(bad)[0])} holds {out[bad][0]}; weights must be finite")
    return out


class LIFNetwork:
    """Inputs and LIF neurons joined by an edge list of synapses (see the module docstring).

    Parameters
    ----------
    n_input : int
        Input units (their spikes are given per tick); may be 0.
    n : int
        LIF neurons.
    pre : array of int (E,)
        Source unit of each synapse, in ``0 … n_input + n − 1`` (inputs first).
    post : array of int (E,)
        Target neuron of each synapse, in ``0 … n − 1``.
    weights : array (E,)
        Initial weights (the state of learning is kept outside, see :func:`run`).
    neuron : Neuron, optional
        Parameters shared by all neurons.
    plastic : array of bool (E,), optional
        Synapses that learn (default: all synapses from neurons, none from inputs).
    w_min, w_max : float
        Bounds of the learned weights (eq. 58 updates are clipped to them).
    max_spikes : int, optional
        Event-driven synaptic input (see :func:`synaptic_input`): gather the
        outgoing synapses of at most this many units that spiked in the
        previous tick instead of summing over every synapse; a tick with more
        spiking units uses the full segment sum. None (default): always the
        full segment sum.
    max_events : int, optional
        With ``max_spikes``: at most this many synaptic events (outgoing
        synapses of the spiking units) per tick on the event-driven path
        (default ``max_spikes`` × the largest out-degree, at most the number
        of synapses); a tick with more uses the full segment sum.

    Attributes
    ----------
    pre, post, plastic : jax.Array
    weights : jax.Array (float32)
    n_units : int
        ``n_input + n``.
    """

    def __init__(self, n_input: int, n: int, pre, post, weights, neuron: Neuron | None = None, plastic=None,
                 w_min: float = -math.inf, w_max: float = math.inf, max_spikes: int | None = None,
                 max_events: int | None = None):
        self.n_input = int(n_input) if n_input == 0 else positive_int(n_input, "n_input")
        self.n = positive_int(n, "n")
        self.neuron = Neuron() if neuron is None else neuron
        if not isinstance(self.neuron, Neuron):
            raise TypeError(f"neuron must be an nvppl.snn.Neuron, got {type(self.neuron).__name__}")
        pre = _edge_array(pre, "pre", np.int64)
        post = _edge_array(post, "post", np.int64)
        w = _edge_array(weights, "weights", np.float64)
        if not (len(pre) == len(post) == len(w)):
            raise ValueError(f"pre, post and weights must have one entry per synapse; got lengths {len(pre)}, "
                             f"{len(post)}, {len(w)}")
        n_units = self.n_input + self.n
        for name, arr, hi in (("pre", pre, n_units), ("post", post, self.n)):
            bad = (arr < 0) | (arr >= hi)
            if bad.any():
                e = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{name}[{e}] = {arr[e]}: synapse {e} must point to a unit in 0..{hi - 1}")
        if plastic is None:
            plastic = pre >= self.n_input
        plastic = np.asarray(plastic)
        if plastic.shape != pre.shape or plastic.dtype != bool:
            raise ValueError(f"plastic must be a boolean array of shape {pre.shape}, got {plastic.dtype} "
                             f"{plastic.shape}")
        if not (w_min <= w_max):
            raise ValueError(f"w_min ({w_min}) must not exceed w_max ({w_max})")
        self.w_min, self.w_max = float(w_min), float(w_max)
        outside = plastic & ((w < self.w_min) | (w > self.w_max))
        if outside.any():
            e = int(np.flatnonzero(outside)[0])
            raise ValueError(f"weights[{e}] = {w[e]} lies outside [w_min, w_max] = [{w_min}, {w_max}] at a "
                             "plastic synapse")
        self.pre = jnp.asarray(pre, jnp.int32)
        self.post = jnp.asarray(post, jnp.int32)
        self.weights = jnp.asarray(w, jnp.float32)
        self.plastic = jnp.asarray(plastic)
        self._event_tables(pre, max_spikes, max_events)

    def _event_tables(self, pre, max_spikes, max_events):
        """Rows of outgoing synapses per unit (CSR) for the event-driven synaptic input."""
        self.max_spikes = self.max_events = self._rows = None
        if max_spikes is None:
            if max_events is not None:
                raise ValueError("max_events needs max_spikes (the event-driven synaptic input is off without it)")
            return
        self.max_spikes = positive_int(max_spikes, "max_spikes")
        E = len(pre)
        deg = np.bincount(pre, minlength=self.n_units)
        if max_events is None:
            max_events = max(1, min(E, self.max_spikes * int(deg.max(initial=0))))
        self.max_events = positive_int(max_events, "max_events")
        start = np.concatenate([[0], np.cumsum(deg)[:-1]])
        # rows are contiguous in the synapse order when it is sorted by pre; otherwise through a permutation
        order = None if np.all(np.diff(pre) >= 0) else jnp.asarray(np.argsort(pre, kind="stable"), jnp.int32)
        self._rows = (jnp.asarray(np.append(deg, 0), jnp.int32), jnp.asarray(np.append(start, E), jnp.int32), order)

    @property
    def n_units(self) -> int:
        return self.n_input + self.n

    @property
    def n_synapses(self) -> int:
        return int(self.pre.shape[0])

    @classmethod
    def random(cls, n: int, p_connect: float, key, *, n_input: int = 0, input_p: float = 0.0,
               weight: float = 0.1, input_weight: float = 1.0, neuron: Neuron | None = None, **kwargs):
        """A random recurrent network: each ordered pair of distinct neurons connected with probability
        ``p_connect`` (weight ``weight``), each input to each neuron with ``input_p`` (``input_weight``).

        Pairs are drawn without the dense n × n matrix (a binomial number of
        edges per source, then distinct targets), so 10⁴ neurons at 10 %
        connectivity are quick.

        Examples
        --------
        >>> import nvppl as nv
        >>> net = nv.snn.LIFNetwork.random(100, 0.1, key=0)
        >>> 800 < net.n_synapses < 1200
        True
        """
        n = positive_int(n, "n")
        for name, p in (("p_connect", p_connect), ("input_p", input_p)):
            if not (0.0 <= p <= 1.0):
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
        rng = np.random.default_rng(np.asarray(jax.random.key_data(as_jax_key(key))).ravel())
        pres, posts, ws = [], [], []

        def block(n_src, offset, p, w, exclude_self):
            m = n - 1 if exclude_self else n
            counts = rng.binomial(m, p, size=n_src)
            for s, c in enumerate(counts):
                if not c:
                    continue
                tgt = rng.choice(m, size=c, replace=False)
                if exclude_self:
                    tgt = tgt + (tgt >= s)
                pres.append(np.full(c, offset + s))
                posts.append(np.sort(tgt))
                ws.append(np.full(c, w))

        block(n_input, 0, input_p, input_weight, False)
        block(n, n_input, p_connect, weight, True)
        cat = (lambda a, dt: np.concatenate(a).astype(dt) if a else np.zeros(0, dt))
        return cls(n_input, n, cat(pres, np.int64), cat(posts, np.int64), cat(ws, np.float64), neuron=neuron,
                   **kwargs)

    def __repr__(self):
        nr = self.neuron
        return (f"LIFNetwork(n_input={self.n_input}, n={self.n}, synapses={self.n_synapses}, "
                f"plastic={int(np.asarray(self.plastic).sum())}, tau_mem={nr.tau_mem}, tau_syn={nr.tau_syn}, "
                f"v_th={nr.v_th})")


class LIFState(NamedTuple):
    """State of the neurons after a tick."""

    v: jax.Array        # (n,) membrane potentials
    i: jax.Array        # (n,) synaptic currents
    refr: jax.Array     # (n,) refractory ticks left
    spikes: jax.Array   # (n_units,) bool: which units spiked this tick (inputs first)


class RunOutput(NamedTuple):
    """Recorded activity of :func:`run`: ``spikes`` (T, n) bool, ``v`` and ``i`` (T, n), and the final state."""

    spikes: jax.Array
    v: jax.Array
    i: jax.Array
    state: LIFState


def init(net: LIFNetwork, dtype=jnp.float32) -> LIFState:
    """The resting state: zero potentials and currents, no spikes."""
    return LIFState(jnp.zeros(net.n, dtype), jnp.zeros(net.n, dtype), jnp.zeros(net.n, jnp.int32),
                    jnp.zeros(net.n_units, bool))


def synaptic_input(net: LIFNetwork, w, spikes) -> jax.Array:
    """S_i = Σ_e [post_e = i] w_e s_pre_e: the input of every neuron from last tick's ``spikes`` (a segment sum).

    With ``net.max_spikes`` set, only the synapses of the units that spiked are
    visited: their rows of outgoing synapses (CSR) are gathered into at most
    ``net.max_events`` slots and summed by target. The terms of every neuron are
    added in the order of the spiking units, then of their synapses; when the
    synapses are ordered by ``pre`` (as :meth:`LIFNetwork.random` makes them)
    that is the synapse order of the full segment sum, so both add the same
    terms and agree to float32 rounding (the compiled scatter may associate
    them differently, a few units in the last place). A tick with more spiking units or events than the capacity uses the
    full segment sum.

    Examples
    --------
    >>> import numpy as np, nvppl as nv
    >>> kw = dict(n_input=0, n=3, pre=[0, 0, 1, 2], post=[1, 2, 0, 0], weights=[0.5, 0.25, 1.0, -2.0])
    >>> s = np.array([True, False, True])
    >>> full = nv.snn.synaptic_input(nv.snn.LIFNetwork(**kw), nv.snn.LIFNetwork(**kw).weights, s)
    >>> ev_net = nv.snn.LIFNetwork(**kw, max_spikes=2)
    >>> np.asarray(full).tolist(), np.asarray(nv.snn.synaptic_input(ev_net, ev_net.weights, s)).tolist()
    ([-2.0, 0.5, 0.25], [-2.0, 0.5, 0.25])
    """
    def dense():
        return jax.ops.segment_sum(w * spikes[net.pre].astype(w.dtype), net.post, num_segments=net.n)

    if getattr(net, "max_spikes", None) is None or net.n_synapses == 0:
        return dense()
    deg, start, order = net._rows
    K, M = net.max_spikes, net.max_events
    idx = jnp.nonzero(spikes, size=K, fill_value=net.n_units)[0]      # spiking units, padded with a 0-degree unit
    c = deg[idx]
    ends = jax.lax.associative_scan(jnp.add, c)                          # O(K log K), unlike cumsum on CPU
    begins, total = ends - c, ends[-1]

    def events():
        # slot p belongs to the last spiking unit whose row begins at or before p
        marks = jnp.zeros(M, jnp.int32).at[begins].add(1, mode="drop")
        k = jnp.clip(jax.lax.associative_scan(jnp.add, marks) - 1, 0, K - 1)
        p = jnp.arange(M, dtype=jnp.int32)
        valid = p < total
        syn = jnp.where(valid, start[idx[k]] + p - begins[k], 0)
        if order is not None:
            syn = order[syn]
        target = jnp.where(valid, net.post[syn], net.n)                  # padding goes to no neuron (dropped)
        return jax.ops.segment_sum(w[syn], target, num_segments=net.n, mode="drop")

    fits = (jnp.sum(spikes, dtype=jnp.int32) <= K) & (total <= M)
    return jax.lax.cond(fits, events, dense)


def step(net: LIFNetwork, state: LIFState, w, input_spikes, current=None) -> LIFState:
    """One tick of eq. 54 (see the module docstring); ``input_spikes`` (n_input,) are this tick's inputs."""
    nr = net.neuron
    S = synaptic_input(net, w, state.spikes)
    i = S if nr.tau_syn is None else state.i * (1.0 - 1.0 / nr.tau_syn) + S
    leak = 0.0 if math.isinf(nr.tau_mem) else 1.0 / nr.tau_mem
    v = state.v * (1.0 - leak) + i + nr.bias
    if current is not None:
        v = v + current
    held = state.refr > 0
    v = jnp.where(held, nr.v_reset, v)
    fired = (v >= nr.v_th) & ~held
    v = jnp.where(fired, nr.v_reset, v)
    refr = jnp.where(fired, nr.refractory, jnp.maximum(state.refr - 1, 0))
    spikes = jnp.concatenate([jnp.asarray(input_spikes, bool).reshape(net.n_input), fired])
    return LIFState(v, i, refr.astype(jnp.int32), spikes)


def _check_inputs(net, inputs, current, n_ticks):
    if inputs is None:
        if n_ticks is None:
            raise ValueError("give inputs (ticks × n_input spikes) or n_ticks")
        inputs = np.zeros((positive_int(n_ticks, "n_ticks"), net.n_input), bool)
    arr = np.asarray(inputs)
    if arr.ndim != 2 or arr.shape[1] != net.n_input:
        raise ValueError(f"inputs must have shape (ticks, n_input = {net.n_input}), got {arr.shape}")
    if n_ticks is not None and arr.shape[0] != n_ticks:
        raise ValueError(f"inputs has {arr.shape[0]} ticks, n_ticks = {n_ticks}")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise ValueError(f"inputs: tick {t}, input {j} holds {arr[t, j].item()!r}; a unit spikes at most once per tick")
    if current is not None:
        current = jnp.asarray(current, jnp.float32)
        if current.shape != (arr.shape[0], net.n):
            raise ValueError(f"current must have shape (ticks, n) = {(arr.shape[0], net.n)}, got {current.shape}")
    return jnp.asarray(arr, bool), current


def run(net: LIFNetwork, w=None, inputs=None, current=None, *, n_ticks: int | None = None,
        state: LIFState | None = None) -> RunOutput:
    """Run the network with fixed weights ``w`` (default ``net.weights``) for the ticks of ``inputs``.

    Parameters
    ----------
    net : LIFNetwork
    w : array (E,), optional
    inputs : array (T, n_input) of 0/1, optional
        Input spikes per tick (none: ``n_ticks`` of silence).
    current : array (T, n), optional
        External current J per tick and neuron.
    state : LIFState, optional
        Start from this state (default: rest).

    Returns
    -------
    RunOutput
    """
    w = net.weights if w is None else jnp.asarray(w, jnp.float32)
    inputs, current = _check_inputs(net, inputs, current, n_ticks)
    state = init(net) if state is None else state
    return _run(net, w, inputs, current, state)


def _run(net, w, inputs, current, state):
    has_cur = current is not None
    cache = net.__dict__.setdefault("_compiled", {})
    fn = cache.get(("run", has_cur))
    if fn is None:
        def scan(w, s, i, c):
            def body(st, xs):
                inp, cur = xs
                st = step(net, st, w, inp, cur if has_cur else None)
                return st, (st.spikes[net.n_input:], st.v, st.i)
            return jax.lax.scan(body, s, (i, c))

        fn = cache[("run", has_cur)] = jax.jit(scan)
    cur = current if has_cur else jnp.zeros((inputs.shape[0], 0), jnp.float32)
    final, (spikes, v, i) = fn(w, state, inputs, cur)
    return RunOutput(spikes, v, i, final)
