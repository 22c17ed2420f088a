r"""One coupled step of a base network and its vesicles (paper eq. 39–45, DESIGN §7).

In order: (1) forward and backward pass of the network with the current
modulation (the FiLM and memory release of earlier docks, and a probe per site
that returns the activation and gradient statistics); (2) covariates and
emission; (3) migration; (4) docking and release; (5) absorption and decay —
(2)–(5) by :func:`nvppl.population.step` (explicit mode) or
:func:`nvppl.overlay.expectation.step` (density mode) — then (6) the parameter
update: the optimiser's update, modulated by the rule release of this step's
docks, plus the rank-one parameter release of this step's docks.

Gradients of the training loss reach the release maps: the FiLM and memory
release of a dock act on later forward passes as affine functions of the maps,
so their gradients are exact given the docked set; the parameter and rule
release of step ``t`` change the weights that step ``t + 1`` uses by ``d(φ)``, and
step ``t + 1`` adds ``⟨∂L_{t+1}/∂θ, ∂d/∂φ⟩`` (a vector-Jacobian product with the
weight gradient it computes anyway) to the maps' gradient — a one-step
lookahead. With the rule release placed before the optimiser its maps receive
no gradient (the optimiser's update is not differentiated). In density mode the
expected docks are recomputed inside the objective from the previous density
state, so that ``train_vesicles`` fields get the gradient through the step that
produced them.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import population
from ..kernels import emission
from . import covariates as cov
from . import expectation
from .release import Modulated, film, memory, rank_one, rule_maps, rule_modulation
from .sites import get_at, replace_at

__all__ = ["ReleaseState", "State", "StepOutput", "make_step", "init_state", "dock_sums", "modulated_network"]


class ReleaseState(NamedTuple):
    """What the release operators carry from one step to the next."""

    film_S: jax.Array    # (n, K, d_c) decayed docked content used by the last forward pass
    film_n: jax.Array    # (n, K)
    mem_S: jax.Array     # (n, K, d_c) decayed docked content in memory
    dock_n: jax.Array    # (n, K) docks of the last step
    dock_S: jax.Array    # (n, K, d_c)
    dock_S2: jax.Array   # (n, K, d_c, d_c)
    update: object       # the optimiser's last update (before the rule release)
    dens_prev: object    # density mode: the state before the last step
    F_prev: jax.Array    # (n, p) the last step's covariates


class State(NamedTuple):
    """Everything one coupled step changes."""

    theta: object        # the network's arrays (equinox partition)
    opt_state: object
    phi: object          # ReleaseParams
    phi_opt_state: object
    vparams: object      # Params of the vesicle model (JAX arrays)
    v_opt_state: object
    pop: object          # LifeState (explicit) or DensityState (density)
    rel: ReleaseState
    stats: cov.RunningStats
    t: jax.Array


class StepOutput(NamedTuple):
    """Per-step metrics and records."""

    loss: jax.Array
    alive: jax.Array        # vesicles alive after the step (expected, in density mode)
    docks: jax.Array        # (n_sites,) docks per site
    modulation: jax.Array   # (n_sites,) RMS of the activation release (γ, β, read) per site
    features: jax.Array     # (n, p) standardised covariates
    record: object          # StepRecord of the vesicles (explicit mode with record) or None
    overflow: jax.Array     # (2,) first overflow (step, node), or -1
    aux: object             # what loss_fn returned beside the loss (has_aux), or None


def dock_sums(model, record, need_S2: bool = True):
    """``(n, K)`` docks and their summed content and second moment from a one-run step record
    (the second moment zero unless ``need_S2``)."""
    n, K, dc = model.n_nodes, model.n_types, model.content_dim
    docked = record.docked[0]
    c = record.content[0]
    cell = jnp.where(docked, jnp.maximum(record.node_to[0], 0) * K + record.vtype[0], n * K)
    # a one-hot matrix product rather than a scatter (much faster on CPU for few cells)
    onehot = (cell[:, None] == jnp.arange(n * K)[None, :]).astype(c.dtype)  # (C, nK); undocked rows are zero
    cols = [jnp.ones_like(c[:, :1]), c]
    if need_S2:
        cols.append((c[:, :, None] * c[:, None, :]).reshape(c.shape[0], dc * dc))
    sums = onehot.T @ jnp.concatenate(cols, axis=1)  # (nK, 1 + dc [+ dc²])
    D = sums[:, 0].reshape(n, K)
    S = sums[:, 1:1 + dc].reshape(n, K, dc)
    S2 = sums[:, 1 + dc:].reshape(n, K, dc, dc) if need_S2 else jnp.zeros((n, K, dc, dc), c.dtype)
    return D, S, S2


def _site_leaf(tree, site, field):
    return getattr(get_at(tree, site.path), field)


def _add_at_sites(ov, tree, deltas: dict):
    """``tree`` with ``deltas[(site_index, field)]`` added to the sites' leaves (cast to their dtype)."""
    paths, values = [], []
    for (i, field), d in deltas.items():
        leaf = _site_leaf(tree, ov.sites[i], field)
        paths.append(ov.sites[i].path + (field,))
        values.append(leaf + d.reshape(leaf.shape).astype(leaf.dtype))
    return replace_at(tree, paths, values)


def _rule_leaves(ov, tree, maps):
    """``(site, field, leaf, a, b)`` for every weight and bias the rule maps ``(α − 1, β)`` act on,
    with ``a`` and ``b`` shaped to broadcast over the leaf's rows."""
    for i, (a, b) in enumerate(maps):
        for field in ("weight", "bias") if ov.sites[i].has_bias else ("weight",):
            leaf = _site_leaf(tree, ov.sites[i], field)
            shape = (leaf.shape[0],) + (1,) * (leaf.ndim - 1)
            yield i, field, leaf, a.reshape(shape), b.reshape(shape)


def _rule_deltas(ov, maps, update):
    """``α ⊙ u + β − u`` per site leaf of ``update``."""
    return {(i, f): a * u + jnp.broadcast_to(b, u.shape) for i, f, u, a, b in _rule_leaves(ov, update, maps)}


def _rule_trees(ov, theta, maps):
    """``rule_scale`` and ``rule_shift`` pytrees like ``theta`` for :func:`rule_modulation`."""
    none = jax.tree.map(lambda _: None, theta)
    leaves = list(_rule_leaves(ov, theta, maps))
    paths = [ov.sites[i].path + (f,) for i, f, *_ in leaves]
    return (replace_at(none, paths, [1.0 + a for *_, a, _ in leaves]),
            replace_at(none, paths, [b for *_, b in leaves]))


def init_state(ov, net, optimizer, phi, release_optimizer, vparams, vesicle_optimizer, train_vesicles):
    """The state before the first step, and the network's static part."""
    theta, static = eqx.partition(net, eqx.is_inexact_array)
    model = ov.model
    n, K, dc, p = model.n_nodes, model.n_types, model.content_dim, len(ov.covariate_names)
    f = ov.dtype
    vparams = jax.tree.map(jnp.asarray, vparams)
    pop = population.init_state(1, ov.capacity, dc) if ov.mode == "explicit" else expectation.init(model)
    keep_update = "rule" in ov.release and ov.rule_placement == "after"
    zeros_u = jax.tree.map(jnp.zeros_like, theta) if keep_update else None
    rel = ReleaseState(jnp.zeros((n, K, dc), f), jnp.zeros((n, K), f), jnp.zeros((n, K, dc), f),
                       jnp.zeros((n, K), f), jnp.zeros((n, K, dc), f), jnp.zeros((n, K, dc, dc), f), zeros_u,
                       expectation.init(model) if train_vesicles else None,
                       jnp.zeros((n, p)))
    vtrain = {k: getattr(vparams, k) for k in train_vesicles}
    state = State(theta, optimizer.init(theta), phi, release_optimizer.init(phi), vparams,
                  vesicle_optimizer.init(vtrain) if train_vesicles else None, pop, rel, cov.init_stats(p),
                  jnp.zeros((), jnp.int64))
    return state, static


def make_step(ov, static, loss_fn: Callable, optimizer, release_optimizer, vesicle_optimizer=None,
              train_vesicles=(), record: bool = False, has_aux: bool = False):
    """The coupled step ``(state, (x, y), key) → (state, StepOutput)``, a pure function."""
    model = ov.model
    ops = set(ov.release)
    act, par, rule, mem = "act" in ops, "param" in ops, "rule" in ops, "memory" in ops
    after = ov.rule_placement == "after"
    explicit = ov.mode == "explicit"
    consts = population.constants(model)
    rule_tx = rule_modulation()
    ar, mr = ov.act_retain, ov.memory_retain
    user = list(ov.user_covariates.values())
    site_of_node = jnp.asarray(ov.site_of_node)
    n_sites = ov.n_sites
    dtype = ov.dtype
    zero_absorption = "a" not in model.priors and not np.any(model.fixed["a"])

    def dock_inputs(vtrain, state):
        """The docked sums of the last step: carried, or recomputed from the vesicle parameters
        being trained (density mode) so that their gradient flows."""
        rel = state.rel
        if not train_vesicles:
            return rel.dock_n, rel.dock_S, rel.dock_S2
        vp = state.vparams.replace(**vtrain)
        _, sums = expectation.step(model, vp, rel.dens_prev, rel.F_prev)
        return tuple(a.astype(dtype) for a in sums)

    def weight_change(phi, vtrain, state):
        """The parameter and rule release of the last step's docks, per site leaf: the change
        of the weights that this step's forward pass sees (its lookahead gradient)."""
        D, S, S2 = dock_inputs(vtrain, state)
        deltas = {}
        if par:
            for i, d in enumerate(rank_one(ov, phi, S2)):
                deltas[(i, "weight")] = d
        if rule and after:
            for k, d in _rule_deltas(ov, rule_maps(ov, phi, S, D), state.rel.update).items():
                deltas[k] = deltas[k] + d if k in deltas else d
        return deltas

    lookahead = par or (rule and after)

    def objective(theta, phi, vtrain, probes, state, x, y):
        rel = state.rel
        D, S, S2 = dock_inputs(vtrain, state)
        net = eqx.combine(theta, static)
        film_S, film_n, mem_S = ar * rel.film_S + S, ar * rel.film_n + D, mr * rel.mem_S + S
        gb = film(ov, phi, film_S, film_n) if act else [(None, None)] * n_sites
        if mem:
            reads, norms = memory(ov, phi, mem_S)
        else:
            reads, norms = [None] * n_sites, None
        wrapped = [Modulated(get_at(net, s.path), gb[i][0], gb[i][1], reads[i], probes[i])
                   for i, s in enumerate(ov.sites)]
        net = replace_at(net, [s.path for s in ov.sites], wrapped)
        loss = loss_fn(net, x, y)
        user_aux = None
        if has_aux:
            loss, user_aux = loss
        mods = []
        for i in range(n_sites):
            m2 = 0.0
            if act:
                m2 = m2 + jnp.mean(gb[i][0] ** 2) + jnp.mean(gb[i][1] ** 2)
            if mem:
                m2 = m2 + jnp.mean(reads[i] ** 2)
            mods.append(jnp.sqrt(m2))
        return loss, (film_S, film_n, mem_S, norms, jnp.stack([jnp.asarray(m, float) for m in mods]), user_aux)

    value_and_grad = jax.value_and_grad(objective, argnums=(0, 1, 2, 3), has_aux=True)

    def grad(theta, phi, vtrain, probes, state, x, y):
        """Gradients of the loss; for the parameter and rule maps (and the vesicle parameters
        behind them) the lookahead term ``⟨∂L/∂θ, ∂d/∂φ⟩`` of the weight change ``d`` of the
        last step's docks, which this step's weights contain."""
        out, (g_theta, g_phi, g_v, g_probe) = value_and_grad(theta, phi, vtrain, probes, state, x, y)
        if lookahead:
            deltas, pull = jax.vjp(lambda q, v: weight_change(q, v, state), phi, vtrain)
            cot = {k: _site_leaf(g_theta, ov.sites[k[0]], k[1]).reshape(d.shape).astype(d.dtype)
                   for k, d in deltas.items()}
            g_phi2, g_v2 = pull(cot)
            g_phi = jax.tree.map(jnp.add, g_phi, g_phi2)
            g_v = jax.tree.map(jnp.add, g_v, g_v2)
        return out, (g_theta, g_phi, g_v, g_probe)

    def step(state: State, batch, key):
        x, y = batch
        t = state.t
        probes = [jnp.zeros((3, s.width), _site_leaf(state.theta, s, "weight").dtype) for s in ov.sites]
        vtrain = {k: getattr(state.vparams, k) for k in train_vesicles}
        (loss, aux), (g_theta, g_phi, g_v, g_probe) = grad(state.theta, state.phi, vtrain, probes, state, x, y)
        film_S, film_n, mem_S, norms, mods, user_aux = aux

        # (2) covariates, then emission, migration, docking, absorption, decay
        psi = cov.raw(ov, g_probe, loss, norms, [fn(x, y, loss) for fn in user])
        stats, F_t = cov.standardise(state.stats, jax.lax.stop_gradient(psi))
        X_t = emission.design_matrix(F_t)
        rec = None
        if explicit:
            pop, rec, _ = population.step(model, state.vparams, consts, state.pop, t, X_t[None], F_t[None],
                                          population.keyed_draw(key), zero_absorption=zero_absorption)
            D, S, S2 = dock_sums(model, rec, need_S2=par)
            alive = jnp.sum(pop.alive)
            overflow = jnp.stack([pop.overflow_step[0], pop.overflow_node[0]])
        else:
            pop, (D, S, S2) = expectation.step(model, state.vparams, state.pop, F_t)
            alive = jnp.sum(pop.rho)
            overflow = jnp.full(2, -1)
        D, S, S2 = (a.astype(dtype) for a in (D, S, S2))

        # (6) the update: optimiser, rule release (eq. 31-32), parameter release (eq. 27-28)
        phi_sg = jax.lax.stop_gradient(state.phi)
        maps = rule_maps(ov, phi_sg, S, D) if rule else None
        if rule and not after:
            sc, sh = _rule_trees(ov, state.theta, maps)
            g_theta, _ = rule_tx.update(g_theta, None, state.theta, rule_scale=sc, rule_shift=sh)
        u, opt_state = optimizer.update(g_theta, state.opt_state, state.theta)
        u_mod = u
        if rule and after:
            sc, sh = _rule_trees(ov, state.theta, maps)
            u_mod, _ = rule_tx.update(u, None, state.theta, rule_scale=sc, rule_shift=sh)
        if par:
            u_mod = _add_at_sites(ov, u_mod, {(i, "weight"): d for i, d in enumerate(rank_one(ov, phi_sg, S2))})
        theta = eqx.apply_updates(state.theta, u_mod)
        if ops:
            phi_u, phi_opt_state = release_optimizer.update(g_phi, state.phi_opt_state, state.phi)
            phi = eqx.apply_updates(state.phi, phi_u)
        else:  # nothing released: the maps have no gradient
            phi, phi_opt_state = state.phi, state.phi_opt_state
        vparams, v_opt_state = state.vparams, state.v_opt_state
        if train_vesicles:
            vu, v_opt_state = vesicle_optimizer.update(g_v, state.v_opt_state, vtrain)
            vparams = vparams.replace(**eqx.apply_updates(vtrain, vu))

        rel = ReleaseState(film_S, film_n, mem_S, D, S, S2, u if (rule and after) else None,
                           state.pop if train_vesicles else None, F_t)
        new = State(theta, opt_state, phi, phi_opt_state, vparams, v_opt_state, pop, rel, stats, t + 1)
        docks_site = jax.ops.segment_sum(D.sum(-1), site_of_node, n_sites)
        if rec is not None and record:
            rec = jax.tree.map(lambda a: a[0], rec)
        else:
            rec = None
        return new, StepOutput(loss, alive, docks_site, mods, F_t, rec, overflow, user_aux)

    step.objective = objective  # (theta, phi, vtrain, probes, state, x, y) -> (loss, aux): for checks
    step.gradients = grad       # the same -> ((loss, aux), (g_theta, g_phi, g_vtrain, g_probes))
    return step


def modulated_network(ov, state: State, static):
    """The network with the activation release its next forward pass would get (no probes).

    The parameter and rule release are already in ``state.theta``; the FiLM and
    memory read of the docks so far are installed as :class:`Modulated` wrappers.
    """
    net = eqx.combine(state.theta, static)
    ops, rel = set(ov.release), state.rel
    act, mem = "act" in ops, "memory" in ops
    if not (act or mem):
        return net
    gb = film(ov, state.phi, ov.act_retain * rel.film_S + rel.dock_S, ov.act_retain * rel.film_n + rel.dock_n) \
        if act else [(None, None)] * ov.n_sites
    reads = memory(ov, state.phi, ov.memory_retain * rel.mem_S + rel.dock_S)[0] if mem else [None] * ov.n_sites
    wrapped = [Modulated(get_at(net, s.path), gb[i][0], gb[i][1], reads[i], None) for i, s in enumerate(ov.sites)]
    return replace_at(net, [s.path for s in ov.sites], wrapped)
