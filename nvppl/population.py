"""The explicit vesicle population in JAX: one step of the life cycle (:ref:`design-model`).

A population of ``R`` independent runs lives in ``capacity`` slots per run
(:class:`LifeState`). :func:`step` advances it by one step of §1.3 — emission,
migration, docking, absorption, decay, in this order — drawing every random
choice through a ``draw(name, distribution, mask)`` callback. The NumPyro program
(:func:`nvppl.programs.life_cycle`) passes ``numpyro.sample`` as that callback, so
every choice is a sample site; the overlay (:mod:`nvppl.overlay`) passes a keyed
sampler (:func:`keyed_draw`), so the same step runs as a plain jit-compiled
function. One implementation of the step serves both.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from .kernels import docking, emission, migration

__all__ = ["LifeState", "StepRecord", "StepInfo", "Constants", "CAUSE_CODES", "constants", "init_state",
           "step", "keyed_draw"]

#: Death-cause codes used in step records (0 = still alive).
CAUSE_CODES = {"alive": 0, "expired": 1, "absorbed": 2, "depleted": 3, "sink": 4}


class LifeState(NamedTuple):
    """Vesicle population of every run, in ``capacity`` slots per run."""

    alive: jax.Array      # (R, C) bool
    vid: jax.Array        # (R, C) vesicle id within its run
    node: jax.Array       # (R, C) node index
    vtype: jax.Array      # (R, C) type
    content: jax.Array    # (R, C, d_c)
    left: jax.Array       # (R, C) remaining release budget (inf for infinite)
    tau: jax.Array        # (R, C) remaining lifetime (countdown)
    age: jax.Array        # (R, C) moves made so far
    away: jax.Array       # (R, C) moves to another node so far
    next_id: jax.Array    # (R,) next vesicle id
    overflow_step: jax.Array  # (R,) first step at which capacity ran out, or -1
    overflow_node: jax.Array  # (R,) node whose emission did not fit then, or -1


class StepRecord(NamedTuple):
    """What happened to every slot during one step."""

    vid: jax.Array        # (R, C) id of the slot's vesicle, -1 for an empty slot
    new: jax.Array        # (R, C) emitted this step
    node_from: jax.Array  # (R, C)
    node_to: jax.Array    # (R, C), -1 when removed at a sink
    docked: jax.Array     # (R, C)
    cause: jax.Array      # (R, C) CAUSE_CODES
    vtype: jax.Array      # (R, C)
    content: jax.Array    # (R, C, d_c) content at birth (meaningful where new)
    tau0: jax.Array       # (R, C) initial lifetime (countdown, where new)


class StepInfo(NamedTuple):
    """Per-slot outcomes of one step that the record does not keep."""

    births: jax.Array     # (R, n, K) vesicles emitted per node and type
    survive: jax.Array    # (R, C) alive after the step
    removed: jax.Array    # (R, C) removed during the step


class Constants(NamedTuple):
    """Arrays of the substrate and the model that every step uses."""

    cand: jax.Array       # (n, M) candidates, -1 padded
    cmask: jax.Array      # (n, M)
    is_sink: jax.Array    # (n,)
    budget: jax.Array     # (K,)
    gamma: jax.Array      # (K,)


def constants(model) -> Constants:
    """The :class:`Constants` of a model."""
    sub = model.substrate
    cand = jnp.asarray(sub.candidates)
    return Constants(cand, cand >= 0, jnp.asarray(sub.is_sink), jnp.asarray(model.budget),
                     jnp.asarray(model.gamma))


def init_state(n_runs: int, capacity: int, content_dim: int, dtype=None) -> LifeState:
    """An empty population of ``n_runs`` runs with ``capacity`` slots each."""
    R, C, dc = int(n_runs), int(capacity), int(content_dim)
    fdt = jnp.zeros(()).dtype if dtype is None else dtype
    itype = jnp.zeros((), int).dtype
    return LifeState(
        alive=jnp.zeros((R, C), bool), vid=jnp.full((R, C), -1, itype), node=jnp.zeros((R, C), itype),
        vtype=jnp.zeros((R, C), itype), content=jnp.zeros((R, C, dc), fdt), left=jnp.zeros((R, C), fdt),
        tau=jnp.zeros((R, C), fdt), age=jnp.zeros((R, C), itype), away=jnp.zeros((R, C), itype),
        next_id=jnp.zeros(R, itype), overflow_step=jnp.full(R, -1, itype),
        overflow_node=jnp.full(R, -1, itype),
    )


def step(model, p, k: Constants, state: LifeState, t, X_t, F_t, draw: Callable, zero_absorption: bool = False):
    """Advance the population by one step of :ref:`design-model` (eq. 9–19, 37–38).

    Parameters
    ----------
    model : VesicleModel
    p : Params
        Parameters as JAX arrays.
    k : Constants
        From :func:`constants`.
    state : LifeState
    t : int scalar
        The step (recorded where capacity runs out).
    X_t : array (R, n, d_x)
        Design rows ``(1, F)`` of this step.
    F_t : array (R, n, p)
        User covariates of this step.
    draw : callable
        ``draw(name, distribution, mask) -> value``: the random choice named
        ``births``, ``content``, ``tau0``, ``move``, ``dock``, ``absorb``,
        ``expire`` or ``tau_noise``, where ``mask`` marks the slots whose draw
        counts.
    zero_absorption : bool
        The caller knows that ``a = 0`` everywhere: no ``absorb`` choice is drawn.

    Returns
    -------
    (LifeState, StepRecord, StepInfo)
        If the vesicles emitted do not fit in the free slots, the new state
        records the step and the node in ``overflow_step`` / ``overflow_node``
        (the first time per run); the caller raises on it.
    """
    R, C = state.alive.shape
    n, K, dc = model.n_nodes, model.n_types, model.content_dim
    countdown = model.lifetime == "countdown"
    fdt = X_t.dtype
    ridx = jnp.arange(R)[:, None]
    cand_safe = jnp.maximum(k.cand, 0)

    # 1. emission (eq. 9-13)
    lam = emission.emission_rate(X_t, p.u, p.r_max, model.emission_link)  # (R, n, K)
    births = draw("births", dist.Poisson(lam), None).astype(state.vid.dtype)
    flat = births.reshape(R, n * K)
    total = flat.sum(1)
    free = ~state.alive
    n_free = free.sum(1)
    rank = jnp.cumsum(free, axis=1) - 1
    new = free & (rank < total[:, None])
    cum = jnp.cumsum(flat, 1)
    lost = total > n_free
    first_lost = jnp.minimum(jnp.sum(cum <= n_free[:, None], axis=1), n * K - 1) // K
    fresh = (state.overflow_step < 0) & lost
    overflow_step = jnp.where(fresh, t, state.overflow_step)
    overflow_node = jnp.where(fresh, first_lost, state.overflow_node)
    cell = jax.vmap(lambda c, r: jnp.searchsorted(c, r, side="right"))(cum, rank)
    cell = jnp.minimum(cell, n * K - 1)
    node = jnp.where(new, cell // K, state.node)
    vtype = jnp.where(new, cell % K, state.vtype)
    vid = jnp.where(new, state.next_id[:, None] + rank, state.vid)
    content = state.content
    if dc:
        # m_κ + F·B_κ (eq. 11) per node and type, then read at each slot's node and type
        loc = emission.content_loc(F_t, p.content_mean, p.content_B)[ridx, node, vtype]  # (R, C, dc)
        scale = p.content_scale[vtype]
        c_new = draw("content", dist.Normal(loc, scale).to_event(1), new)
        content = jnp.where(new[..., None], c_new, content)
    tau, tau0 = state.tau, jnp.zeros((R, C), fdt)
    if countdown:
        tau0 = draw("tau0", dist.Gamma(p.shape[vtype], p.rate[vtype]), new)
        tau = jnp.where(new, tau0, tau)
    left = jnp.where(new, k.budget[vtype], state.left)
    age = jnp.where(new, 0, state.age)
    away = jnp.where(new, 0, state.away)
    alive = state.alive | new

    # 2. migration (eq. 15-17); a vesicle on a sink is removed
    at_sink = alive & k.is_sink[node]
    movers = alive & ~k.is_sink[node]
    c_nodes = cand_safe[node]  # (R, C, M)
    score = None
    if model.tilted:
        F_cand = F_t[ridx[..., None], c_nodes]  # (R, C, M, p)
        Q_cand = p.Q[vtype[..., None], c_nodes] if dc else None
        score = migration.tilt_score(F_cand, p.v[vtype], content if dc else None, Q_cand)
    logits = migration.move_logits(p.T[vtype, node], k.cmask[node], k.gamma[vtype], score)
    logits = jnp.where(movers[..., None], logits, 0.0)
    slot = draw("move", dist.Categorical(logits=logits), movers)
    dest = jnp.take_along_axis(c_nodes, slot[..., None], axis=-1)[..., 0]
    node_to = jnp.where(movers, dest, -1)

    # 3. docking (eq. 18-19) and release budgets
    z = docking.dock_logit(X_t[ridx, dest], p.w[vtype], content if dc else None, p.w_c[vtype] if dc else None)
    docked = draw("dock", dist.Bernoulli(logits=z), movers).astype(bool) & movers
    left = left - docked
    depleted = docked & (left <= 0)

    # 4. absorption and 5. decay (eq. 37-38)
    stage_a = movers & ~depleted
    if zero_absorption:
        absorbed = jnp.zeros_like(stage_a)
    else:
        absorbed = draw("absorb", dist.Bernoulli(probs=p.a[dest]), stage_a).astype(bool) & stage_a
    stage_d = stage_a & ~absorbed
    if countdown:
        eps = 0.0
        if model.sigma_tau > 0:
            eps = draw("tau_noise", dist.Normal(jnp.zeros((R, C), fdt), model.sigma_tau), stage_d)
        tau = jnp.where(stage_d, tau - 1.0 + eps, tau)
        expired = stage_d & (tau <= 0)
    else:
        expired = draw("expire", dist.Bernoulli(probs=p.delta[vtype]), stage_d).astype(bool) & stage_d
    survive = stage_d & ~expired
    cause = jnp.select([expired, absorbed, depleted, at_sink], [1, 2, 3, 4], 0).astype(jnp.int8)

    age = age + movers
    away = away + (movers & (dest != node))
    record = StepRecord(vid=jnp.where(alive, vid, -1), new=new, node_from=node, node_to=node_to,
                        docked=docked, cause=cause, vtype=vtype, content=content, tau0=tau0)
    state = LifeState(alive=survive, vid=vid, node=jnp.where(movers, dest, node), vtype=vtype, content=content,
                      left=left, tau=tau, age=age, away=away, next_id=state.next_id + jnp.minimum(total, n_free),
                      overflow_step=overflow_step, overflow_node=overflow_node)
    return state, record, StepInfo(births=births, survive=survive, removed=alive & ~survive)


def _uniform32(key, shape, dtype):
    """Uniforms ``(b + ½) / 2³²`` from 32 random bits each: in (0, 1), on a grid of 2⁻³²
    (a decision ``u < p`` is off by less than 2.4·10⁻¹⁰), at half the cost of 64-bit ones."""
    bits = jax.random.bits(key, shape, jnp.uint32)
    return (bits.astype(dtype) + 0.5) * (1.0 / 4294967296.0)


def _categorical(key, logits):
    """One draw per row of ``logits`` by the inverse distribution function (one uniform per row)."""
    probs = jax.nn.softmax(logits, axis=-1)
    cdf = jnp.cumsum(probs, axis=-1)
    u = _uniform32(key, logits.shape[:-1], cdf.dtype) * cdf[..., -1]
    idx = jnp.sum(cdf <= u[..., None], axis=-1)
    # never a slot of zero probability: round-off at the top goes to the last possible slot
    last = logits.shape[-1] - 1 - jnp.argmax(jnp.flip(probs > 0, axis=-1), axis=-1)
    return jnp.minimum(idx, last)


_SITE_INDEX = {"births": 0, "content": 1, "tau0": 2, "move": 3, "dock": 4, "absorb": 5, "expire": 6, "tau_noise": 7}


def keyed_draw(key):
    """A ``draw`` callback for :func:`step` that samples with a JAX key.

    Each named choice uses its own key folded from ``key``. Categorical moves use
    one uniform per vesicle (the inverse distribution function) and Bernoulli
    choices one uniform each, made from 32 random bits (:func:`_uniform32`: a
    probability is off by less than 2.4·10⁻¹⁰). The distributions drawn from are
    those of the NumPyro program.
    """
    def draw(name, d, mask):
        sub = jax.random.fold_in(key, _SITE_INDEX[name])
        if isinstance(d, dist.CategoricalLogits):
            return _categorical(sub, d.logits)
        if isinstance(d, dist.BernoulliLogits):
            return _uniform32(sub, d.logits.shape, d.logits.dtype) < jax.nn.sigmoid(d.logits)
        if isinstance(d, dist.BernoulliProbs):
            return _uniform32(sub, jnp.shape(d.probs), jnp.result_type(d.probs)) < d.probs
        return d.sample(sub)
    return draw
