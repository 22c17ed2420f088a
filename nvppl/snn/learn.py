"""Closed-loop learning of a spiking network with a global or vesicle-carried third factor.

:func:`learn` runs, per tick t (the chip's order: vesicles first, then the
network):

1. the signals of the tick: given per tick, or computed by a pure JAX
   ``signal_fn(t, spikes, carry, key) -> (signals, carry)`` from the previous
   tick's spikes (closed loop: a reward that follows a spike pairing);
2. the modulator: ``"global"`` — a concentration d(t) = d(t−1) e^{−1/τ_d} + r(t)
   of the first signal r, the same at every synapse (eq. 55, the dopamine of
   Izhikevich 2007); or a :class:`~nvppl.snn.VesicleField` — vesicles emitted
   from the spiking covariates and signals make m_ij (eq. 57);
3. one tick of the network (eq. 54), its traces and eligibilities (eq. 56);
4. the update Δw = η e m (eq. 58) at plastic synapses (every
   ``rule.interval`` ticks).

Work is compiled in chunks of ticks (``chunk``) with a progress line per chunk
when ``progress=True``; weights are recorded every ``record_every`` ticks.

Examples
--------
>>> import numpy as np, nvppl as nv
>>> net = nv.snn.LIFNetwork.random(50, 0.1, key=0, n_input=5, input_p=0.5, w_min=0.0, w_max=1.0)
>>> rule = nv.snn.Plasticity(eta=0.01)
>>> rng = np.random.default_rng(0)
>>> res = nv.snn.learn(net, rule, inputs=rng.random((200, 5)) < 0.1, signals=np.ones((200, 1)), key=0)
>>> res.weights.shape[0], res.spikes.shape
(50, (200, 50))
"""

from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import as_jax_key, positive_int
from ..simulate import records_to_traces
from . import field as fieldmod
from . import network as netmod
from . import plasticity as plmod

__all__ = ["LearnResult", "learn"]


class LearnResult(NamedTuple):
    """What :func:`learn` returns.

    Attributes
    ----------
    w : np.ndarray (E,)
        Final weights.
    weights : np.ndarray (T // record_every, len(record_synapses))
        Recorded weights (after the update of the recorded tick).
    spikes : np.ndarray (T, n) bool or None
        Spikes of the neurons (``record_spikes=True``).
    signals : np.ndarray (T, p)
        The signals of every tick.
    modulation : np.ndarray (T,)
        Mean modulator over all synapses per tick (input, static and plastic).
    docks : np.ndarray (T,) or None
        Vesicle docks per tick (vesicle field).
    n_events : int
        Ticks at which the vesicles advanced (event-driven field).
    traces : Traces or None
        The field's vesicles with the covariates that drove them
        (``record_vesicles=True``): one run, one step per tick, ready for
        :func:`nvppl.infer.fit`.
    """

    w: np.ndarray
    weights: np.ndarray
    spikes: np.ndarray | None
    signals: np.ndarray
    modulation: np.ndarray
    docks: np.ndarray | None
    n_events: int
    traces: object = None


class _Carry(NamedTuple):
    lif: netmod.LIFState
    pl: plmod.PlasticState
    w: jax.Array
    d: jax.Array
    fld: object
    env: object


def _checked_signals(signals, n_ticks, n_sig):
    arr = np.asarray(signals, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.shape != (n_ticks, n_sig):
        raise ValueError(f"signals must have shape (ticks, signals) = {(n_ticks, n_sig)}, got {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        t, k = np.argwhere(bad)[0]
        raise ValueError(f"signals: tick {t}, signal {k} holds {arr[t, k]}; signals must be finite")
    return jnp.asarray(arr, jnp.float32)


def learn(net, rule, inputs=None, *, key, modulation="global", signals=None, signal_fn: Callable | None = None,
          env_state=None, n_signals: int | None = None, n_ticks: int | None = None, tau_mod: float = 200.0,
          current=None, record_every: int = 0, record_synapses=None, record_spikes: bool = True,
          chunk: int = 2000, progress: bool = False, w0=None, record_vesicles: bool = False) -> LearnResult:
    """Run the network with three-factor learning for the ticks of ``inputs`` (see the module docstring).

    Parameters
    ----------
    net : LIFNetwork
    rule : Plasticity
    inputs : array (T, n_input) of 0/1, optional
    key : int or JAX key
        Draws of the vesicles and of ``signal_fn``.
    modulation : "global" or VesicleField
    signals : array (T, p), optional
        Open-loop signals per tick (the first is the reward r of the global modulator).
    signal_fn : callable, optional
        Closed-loop signals ``signal_fn(t, spikes, carry, key) -> (signals (p,), carry)``
        from the previous tick's spikes (n_units,); needs ``env_state`` and ``n_signals``.
    tau_mod : float
        Decay (ticks) of the global concentration d.
    current : array (T, n), optional
        External current per tick.
    record_every : int
        Record weights every this many ticks (0: ``T // 50``, at least 1).
    record_synapses : array of int, optional
        Synapses whose weights are recorded (default: every plastic one, up to 1000).
    record_spikes : bool
    chunk : int
        Ticks per compiled chunk.
    progress : bool
        Print a line per chunk with the ticks done and the rate.
    w0 : array (E,), optional
        Initial weights (default ``net.weights``).
    record_vesicles : bool
        Return the field's vesicles as :class:`~nvppl.Traces` (``result.traces``)
        with the covariates of every tick, so that the vesicle kernels can be
        fitted back (clocked fields only; memory grows as ticks × capacity).
    """
    inputs, current = netmod._check_inputs(net, inputs, current, n_ticks)
    T = int(inputs.shape[0])
    vesicles = isinstance(modulation, fieldmod.VesicleField)
    if not vesicles and modulation != "global":
        raise ValueError(f"modulation must be 'global' or an nvppl.snn.VesicleField, got {modulation!r}")
    if not (isinstance(tau_mod, (int, float)) and tau_mod > 0 and math.isfinite(tau_mod)):
        raise ValueError(f"tau_mod must be a positive number of ticks, got {tau_mod!r}")
    if (signals is None) == (signal_fn is None):
        raise ValueError("give exactly one of signals (an array per tick) or signal_fn (closed loop)")
    if signal_fn is not None:
        n_sig = positive_int(n_signals, "n_signals") if n_signals is not None else None
        if n_sig is None:
            raise ValueError("signal_fn needs n_signals (the length of the vector it returns)")
        sig_arr = jnp.zeros((T, 0), jnp.float32)
    else:
        arr = np.asarray(signals)
        n_sig = arr.shape[1] if arr.ndim == 2 else 1
        sig_arr = _checked_signals(signals, T, n_sig)
    if vesicles and len(modulation.signals) > n_sig:
        raise ValueError(f"the field reads {len(modulation.signals)} signals {modulation.signals!r}; "
                         f"{n_sig} are given")
    if record_vesicles and not vesicles:
        raise ValueError("record_vesicles=True needs a VesicleField as modulation")
    if record_vesicles and modulation.event_driven:
        raise ValueError("record_vesicles=True needs a clocked field: an event-driven field skips ticks, which "
                         "the model's traces do not describe (event_driven=False)")
    record_every = max(1, T // 50) if not record_every else positive_int(record_every, "record_every")
    if record_synapses is None:
        record_synapses = np.flatnonzero(np.asarray(net.plastic))[:1000]
    rec_idx = jnp.asarray(np.asarray(record_synapses, dtype=np.int64))
    chunk = positive_int(chunk, "chunk")
    key = as_jax_key(key)
    w = net.weights if w0 is None else jnp.asarray(w0, jnp.float32)
    fst = fieldmod.field_init(modulation, net) if vesicles else None
    carry = _Carry(netmod.init(net), plmod.plasticity_init(net, rule), w, jnp.zeros((), jnp.float32), fst,
                   env_state)
    has_cur = current is not None
    run_block, run_blocks = _runners(net, rule, modulation if vesicles else None, signal_fn, n_sig, float(tau_mod),
                                     bool(record_spikes), bool(record_vesicles), has_cur)

    spikes, sigs, mods, docks, recw, vrecs = [], [], [], [], [], []
    keys = jax.random.split(key, T)
    cur_all = current if has_cur else jnp.zeros((T, 0), jnp.float32)
    per = max(1, chunk // record_every) * record_every
    t0 = time.perf_counter()
    for start in range(0, T, per):
        stop = min(T, start + per)
        whole = (stop - start) // record_every * record_every
        ts = jnp.arange(start, stop, dtype=jnp.int32)
        sig_c = sig_arr[start:stop] if signal_fn is None else jnp.zeros((stop - start, n_sig), jnp.float32)
        xs = (ts, inputs[start:stop], sig_c, cur_all[start:stop], keys[start:stop])
        outs = []
        if whole:
            blk = tuple(x[:whole].reshape((whole // record_every, record_every) + x.shape[1:]) for x in xs)
            carry, o = run_blocks(carry, rec_idx, *blk)
            outs.append(jax.tree.map(lambda a: a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:]), o[:5]))
            recw.append(np.asarray(o[5]))
        if stop - start > whole:
            carry, o = run_block(carry, rec_idx, *(x[whole:] for x in xs))
            outs.append(o[:5])
        for sp_, sg, md, dk, vr in outs:
            vrecs.append(jax.tree.map(np.asarray, vr))
            spikes.append(np.asarray(sp_))
            sigs.append(np.asarray(sg))
            mods.append(np.asarray(md))
            docks.append(np.asarray(dk))
        if vesicles:
            fieldmod.check_overflow(modulation, jnp.stack([carry.fld.pop.overflow_step[0],
                                                           carry.fld.pop.overflow_node[0]]))
        if progress:
            rate = stop / max(time.perf_counter() - t0, 1e-9)
            print(f"snn.learn: tick {stop}/{T} ({rate:,.0f} ticks/s)", flush=True)
    cat = (lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape))
    traces = None
    if record_vesicles:
        rec, feats = jax.tree.map(lambda *a: np.concatenate(a), *vrecs)
        traces = records_to_traces(modulation.model, jax.tree.map(lambda a: a[:, None], rec), feats[None])
    return LearnResult(
        w=np.asarray(carry.w),
        weights=np.concatenate(recw) if recw else np.zeros((0, len(rec_idx))),
        spikes=cat(spikes, (0, net.n)).astype(bool) if record_spikes else None,
        signals=cat(sigs, (0, n_sig)),
        modulation=cat(mods, (0,)),
        docks=cat(docks, (0,)) if vesicles else None,
        n_events=int(carry.fld.n_events) if vesicles else T,
        traces=traces,
    )


#: Compiled loops kept per network (the most recent configurations).
MAX_COMPILED = 8


def _runners(net, rule, field, signal_fn, n_sig, tau_mod, record_spikes, record_vesicles, has_cur):
    """The compiled tick loops of one configuration, kept on the network so that later calls reuse them."""
    cache = net.__dict__.setdefault("_compiled", {})
    key = ("learn", rule, field, signal_fn, n_sig, tau_mod, record_spikes, record_vesicles, has_cur)
    hit = cache.get(key)
    if hit is not None:
        return hit
    vesicles = field is not None
    prep = fieldmod._prepare(field, net) if vesicles else None
    decay = math.exp(-1.0 / tau_mod)
    E = net.n_synapses

    def tick(c: _Carry, xs):
        t, inp, sig_open, cur, k = xs
        k_sig, k_fld = jax.random.split(k)
        if signal_fn is not None:
            sig, env = signal_fn(t, c.lif.spikes, c.env, k_sig)
            sig = jnp.asarray(sig, jnp.float32).reshape(n_sig)
        else:
            sig, env = sig_open, c.env
        d = c.d * decay + sig[0] if n_sig else c.d
        docks = jnp.zeros((), jnp.int32)
        fst = c.fld
        vrec = ()
        if vesicles:
            fst = fieldmod.record_spikes(field, prep, fst, c.lif.spikes)
            n_fsig = len(field.signals)
            fst, m, info = fieldmod._field_step(field, prep, fst, sig[:n_fsig], k_fld, E)
            docks = info.docks.sum()
            if record_vesicles:
                vrec = (info.record, info.covariates)
        else:
            m = d
        lif = netmod.step(net, c.lif, c.w, inp, cur)
        pl = plmod.eligibility_step(net, rule, c.pl, lif.spikes)
        w_new = plmod.three_factor(net, rule, c.w, plmod.eligibility(pl), m)
        if rule.interval > 1:                     # the chip's learning interval (Plasticity.interval)
            w_new = jnp.where((t + 1) % rule.interval == 0, w_new, c.w)
        mod_mean = jnp.mean(jnp.broadcast_to(m, (E,))) if E else jnp.zeros(())
        out = (lif.spikes[net.n_input:] if record_spikes else jnp.zeros(0, bool), sig, mod_mean, docks, vrec)
        return _Carry(lif, pl, w_new, d, fst, env), out

    @jax.jit
    def run_block(c, rec_idx, ts, inp, sig, cur, keys):
        """Ticks of one recording interval, then the recorded weights."""
        def body(cc, xs):
            t, i, s, cu, k = xs
            return tick(cc, (t, i, s, cu if has_cur else None, k))
        c, out = jax.lax.scan(body, c, (ts, inp, sig, cur, keys))
        return c, out + (c.w[rec_idx],)

    @jax.jit
    def run_blocks(c, rec_idx, ts, inp, sig, cur, keys):
        """Several whole recording intervals (arrays shaped (blocks, record_every, ...))."""
        return jax.lax.scan(lambda cc, xs: run_block(cc, rec_idx, *xs), c, (ts, inp, sig, cur, keys))

    if len(cache) >= MAX_COMPILED:
        cache.pop(next(iter(cache)))
    cache[key] = (run_block, run_blocks)
    return run_block, run_blocks
