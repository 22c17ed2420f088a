"""The NumPyro programs of nvppl.

- :func:`life_cycle` — the generative vesicle life cycle of :ref:`design-model` as a
  NumPyro program: a ``scan`` over steps with a fixed vesicle capacity. Every
  random choice is a sample site (``births``, ``content``, ``tau0``, ``move``,
  ``dock``, ``absorb``, ``expire``, ``tau_noise``), so the program works with
  :class:`numpyro.infer.Predictive` and its log-density can be evaluated.
- :func:`trace_model` — the likelihood of fully observed traces as a NumPyro
  program (factors over sufficient statistics, or over vesicle-steps where a
  content- or tilt-dependent term needs them); see :mod:`nvppl.likelihood`.

Both declare the model's parameters through :meth:`VesicleModel.param_sites`,
so the prior is the same in both and the sites carry the ``Params`` names.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan

from . import likelihood
from .model import ModelKey
from .kernels import docking, emission, migration
from .traces import lifetime_bin_edges

__all__ = ["life_cycle", "trace_model", "LifeState", "StepRecord", "CAUSE_CODES", "default_capacity",
           "ModelKey", "PPC_STATISTICS"]

#: Summary statistics of posterior predictive checks, recorded by :func:`life_cycle`
#: as deterministic sites and computed from data by :meth:`Traces.summary_statistics`.
PPC_STATISTICS = ("occupancy", "dock_rate", "lifetime_hist", "path_length")

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


class _Stats(NamedTuple):
    occupancy: jax.Array   # (K, n) sum over runs and steps
    docks: jax.Array       # (K, n)
    hist: jax.Array        # (K, B)
    path: jax.Array        # (K,)
    count: jax.Array       # (K,)


def default_capacity(model, params, features, n_steps: int) -> int:
    """Vesicle slots per run for :func:`life_cycle`.

    An upper bound on the mean population (emission over all nodes, survival by
    decay alone: absorption, docking and sinks only remove more), plus eight
    Poisson standard deviations and a margin; rounded up to a multiple of 64.
    """
    F = np.asarray(features, dtype=np.float64)
    z = np.asarray(params.u)[:, 0] + np.einsum("rtnp,kp->rtnk", F, np.asarray(params.u)[:, 1:])
    if model.emission_link == "sigmoid":
        lam = np.asarray(params.r_max) / (1.0 + np.exp(-z))
    else:
        lam = np.exp(z)
    births = lam.sum(axis=2).max(axis=0)  # (T, K) worst run
    ages = np.arange(n_steps)
    if model.lifetime == "geometric":
        surv = (1.0 - np.asarray(params.delta))[None, :] ** ages[:, None]  # P(alive after k decays)
    else:
        from scipy.special import gammaincc

        surv = gammaincc(np.asarray(params.shape)[None, :], np.asarray(params.rate)[None, :] * ages[:, None])
    # mean population during step t: sum over birth steps s <= t of births[s] * surv[t - s]
    mean = sum(np.convolve(births[:, k], surv[:, k])[:n_steps] for k in range(births.shape[1]))
    peak = float(np.max(mean))
    cap = 1.25 * (peak + 8.0 * np.sqrt(peak)) + 32.0
    return int(64 * np.ceil(cap / 64.0))


def life_cycle(model, features, n_steps: int, capacity: int, params=None):
    """The generative vesicle life cycle (:ref:`design-model`) as a NumPyro program.

    Parameters
    ----------
    model : VesicleModel
    features : array, shape (R, T, n, p)
        User covariates ``F`` for ``R`` runs (``p`` may be 0).
    n_steps : int
        Number of steps ``T``.
    capacity : int
        Vesicle slots per run. If more vesicles are alive at once, the
        deterministic site ``overflow_step`` records the first such step per run
        (never silently truncated: :func:`nvppl.simulate` raises on it).
    params : Params, optional
        Parameters; when omitted they are drawn from the priors as sample sites
        named like the ``Params`` fields.

    Returns
    -------
    (LifeState, StepRecord)
        The final population and the per-step records (time first). The
        summary statistics of posterior predictive checks are recorded as
        deterministic sites ``occupancy``, ``dock_rate``, ``lifetime_hist`` and
        ``path_length`` (see :meth:`Traces.summary_statistics`).

    Examples
    --------
    >>> import jax, networkx as nx, numpy as np, nvppl as nv
    >>> from numpyro.infer import Predictive
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(3)), n_types=1)
    >>> F = np.zeros((1, 10, 3, 0))
    >>> draws = Predictive(life_cycle, num_samples=2)(jax.random.PRNGKey(0), model, F, 10, 64)
    >>> draws["occupancy"].shape, draws["delta"].shape
    ((2, 1, 3), (2, 1))
    """
    if params is None:
        params = model.param_sites()
    p = jax.tree.map(jnp.asarray, params)
    sub = model.substrate
    F = jnp.asarray(features)
    R = F.shape[0]
    n, K, C, dc = sub.n_nodes, model.n_types, int(capacity), model.content_dim
    X = emission.design_matrix(F)
    cand = jnp.asarray(sub.candidates)
    cmask = cand >= 0
    cand_safe = jnp.maximum(cand, 0)
    is_sink = jnp.asarray(sub.is_sink)
    budget = jnp.asarray(model.budget)
    gamma = jnp.asarray(model.gamma)
    edges = jnp.asarray(lifetime_bin_edges(n_steps))
    nb = len(edges) - 1
    tilted, countdown = model.tilted, model.lifetime == "countdown"
    ridx = jnp.arange(R)[:, None]
    fdt = X.dtype

    def bins(age):
        return jnp.clip(jnp.searchsorted(edges, age, side="right") - 1, 0, nb - 1)

    def step(carry, xs):
        state, stats = carry
        t, X_t, F_t = xs
        # 1. emission (eq. 9-13)
        lam = emission.emission_rate(X_t, p.u, p.r_max, model.emission_link)  # (R, n, K)
        births = numpyro.sample("births", dist.Poisson(lam)).astype(jnp.int64)
        flat = births.reshape(R, n * K)
        total = flat.sum(1)
        free = ~state.alive
        rank = jnp.cumsum(free, axis=1) - 1
        new = free & (rank < total[:, None])
        lost = total > free.sum(1)
        overflow_step = jnp.where((state.overflow_step < 0) & lost, t, state.overflow_step)
        cell = jax.vmap(lambda c, r: jnp.searchsorted(c, r, side="right"))(jnp.cumsum(flat, 1), rank)
        cell = jnp.minimum(cell, n * K - 1)
        node = jnp.where(new, cell // K, state.node)
        vtype = jnp.where(new, cell % K, state.vtype)
        vid = jnp.where(new, state.next_id[:, None] + rank, state.vid)
        content = state.content
        if dc:
            loc = emission.content_loc(F_t[ridx, node], p.content_mean, p.content_B)  # (R, C, K, dc)
            loc = jnp.take_along_axis(loc, vtype[..., None, None], axis=2)[:, :, 0]
            scale = p.content_scale[vtype]
            c_new = numpyro.sample("content", dist.Normal(loc, scale).to_event(1).mask(new))
            content = jnp.where(new[..., None], c_new, content)
        tau, tau0 = state.tau, jnp.zeros((R, C), fdt)
        if countdown:
            tau0 = numpyro.sample("tau0", dist.Gamma(p.shape[vtype], p.rate[vtype]).mask(new))
            tau = jnp.where(new, tau0, tau)
        left = jnp.where(new, budget[vtype], state.left)
        age = jnp.where(new, 0, state.age)
        away = jnp.where(new, 0, state.away)
        alive = state.alive | new

        # 2. migration (eq. 15-17); a vesicle on a sink is removed
        at_sink = alive & is_sink[node]
        movers = alive & ~is_sink[node]
        c_nodes = cand_safe[node]  # (R, C, M)
        score = None
        if tilted:
            F_cand = F_t[ridx[..., None], c_nodes]  # (R, C, M, p)
            Q_cand = p.Q[vtype[..., None], c_nodes] if dc else None
            score = migration.tilt_score(F_cand, p.v[vtype], content if dc else None, Q_cand)
        logits = migration.move_logits(p.T[vtype, node], cmask[node], gamma[vtype], score)
        logits = jnp.where(movers[..., None], logits, 0.0)
        slot = numpyro.sample("move", dist.Categorical(logits=logits).mask(movers))
        dest = jnp.take_along_axis(c_nodes, slot[..., None], axis=-1)[..., 0]
        node_to = jnp.where(movers, dest, -1)

        # 3. docking (eq. 18-19) and release budgets
        z = docking.dock_logit(X_t[ridx, dest], p.w[vtype],
                               content if dc else None, p.w_c[vtype] if dc else None)
        docked = numpyro.sample("dock", dist.Bernoulli(logits=z).mask(movers)).astype(bool) & movers
        left = left - docked
        depleted = docked & (left <= 0)

        # 4. absorption and 5. decay (eq. 37-38)
        stage_a = movers & ~depleted
        absorbed = numpyro.sample("absorb", dist.Bernoulli(probs=p.a[dest]).mask(stage_a)).astype(bool) & stage_a
        stage_d = stage_a & ~absorbed
        if countdown:
            eps = 0.0
            if model.sigma_tau > 0:
                eps = numpyro.sample("tau_noise", dist.Normal(jnp.zeros((R, C)), model.sigma_tau).mask(stage_d))
            tau = jnp.where(stage_d, tau - 1.0 + eps, tau)
            expired = stage_d & (tau <= 0)
        else:
            expired = numpyro.sample("expire", dist.Bernoulli(probs=p.delta[vtype]).mask(stage_d)).astype(bool)
            expired = expired & stage_d
        survive = stage_d & ~expired
        cause = jnp.select([expired, absorbed, depleted, at_sink], [1, 2, 3, 4], 0).astype(jnp.int8)

        age = age + movers
        away = away + (movers & (dest != node))
        removed = alive & ~survive
        onehot_k = jax.nn.one_hot(vtype, K, dtype=fdt)  # (R, C, K)
        onehot_n = jax.nn.one_hot(dest, n, dtype=fdt)   # (R, C, n)
        stats = _Stats(
            occupancy=stats.occupancy + jnp.einsum("rck,rcn->kn", onehot_k * survive[..., None], onehot_n),
            docks=stats.docks + jnp.einsum("rck,rcn->kn", onehot_k * docked[..., None], onehot_n),
            hist=stats.hist + jnp.einsum("rck,rcb->kb", onehot_k * removed[..., None],
                                         jax.nn.one_hot(bins(age), nb, dtype=fdt)),
            path=stats.path + jnp.einsum("rck,rc->k", onehot_k, (away * removed).astype(fdt)),
            count=stats.count + jnp.einsum("rck,rc->k", onehot_k, removed.astype(fdt)),
        )
        record = StepRecord(
            vid=jnp.where(alive, vid, -1), new=new, node_from=node, node_to=node_to, docked=docked,
            cause=cause, vtype=vtype, content=content, tau0=tau0,
        )
        state = LifeState(
            alive=survive, vid=vid, node=jnp.where(movers, dest, node), vtype=vtype, content=content,
            left=left, tau=tau, age=age, away=away, next_id=state.next_id + total,
            overflow_step=overflow_step,
        )
        return (state, stats), record

    itype = jnp.int64
    init = LifeState(
        alive=jnp.zeros((R, C), bool), vid=jnp.full((R, C), -1, itype), node=jnp.zeros((R, C), itype),
        vtype=jnp.zeros((R, C), itype), content=jnp.zeros((R, C, dc), fdt), left=jnp.zeros((R, C), fdt),
        tau=jnp.zeros((R, C), fdt), age=jnp.zeros((R, C), itype), away=jnp.zeros((R, C), itype),
        next_id=jnp.zeros(R, itype), overflow_step=jnp.full(R, -1, itype),
    )
    zeros = _Stats(jnp.zeros((K, n), fdt), jnp.zeros((K, n), fdt), jnp.zeros((K, nb), fdt),
                   jnp.zeros(K, fdt), jnp.zeros(K, fdt))
    xs = (jnp.arange(n_steps, dtype=itype), jnp.moveaxis(X, 1, 0), jnp.moveaxis(F, 1, 0))
    (final, stats), records = scan(step, (init, zeros), xs, length=n_steps)

    # vesicles alive after the last step are censored: count them in the lifetime statistics
    onehot_k = jax.nn.one_hot(final.vtype, K, dtype=fdt) * final.alive[..., None]
    hist = stats.hist + jnp.einsum("rck,rcb->kb", onehot_k, jax.nn.one_hot(bins(final.age), nb, dtype=fdt))
    path = stats.path + jnp.einsum("rck,rc->k", onehot_k, final.away.astype(fdt))
    count = jnp.maximum(stats.count + onehot_k.sum((0, 1)), 1.0)
    denom = R * n_steps
    numpyro.deterministic("occupancy", stats.occupancy / denom)
    numpyro.deterministic("dock_rate", stats.docks / denom)
    numpyro.deterministic("lifetime_hist", hist / count[:, None])
    numpyro.deterministic("path_length", path / count)
    numpyro.deterministic("overflow_step", final.overflow_step)
    return final, records


def trace_model(data, model):
    """Likelihood of fully observed traces as a NumPyro program.

    Declares the priors through :meth:`VesicleModel.param_sites` and adds one
    ``numpyro.factor`` per kernel (``emission``, ``content``, ``migration``,
    ``docking``, ``absorption``, ``decay``), computed by
    :func:`nvppl.likelihood.log_likelihood_terms` from the sufficient statistics
    in ``data`` (a :class:`~nvppl.traces.suffstats.TraceData`).
    """
    params = model.param_sites()
    for name, value in likelihood.log_likelihood_terms(params, data, model).items():
        numpyro.factor(name, value)
