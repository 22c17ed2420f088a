"""The vesicle-carried modulatory field of a spiking network (paper §6.2–6.3, eq. 57–59).

Vesicles of a :class:`~nvppl.VesicleModel` live on a graph whose nodes are the
network's neurons (:func:`neuron_substrate`) or groups of them
(:func:`group_substrate`); ``node_of[u]`` says which node unit ``u`` belongs to
(−1: none). Each tick they run the life cycle of :func:`nvppl.population.step`
(emission, migration, docking, absorption, decay — the same implementation as
the NumPyro program), emitted from spiking covariates of their node:

- ``"rate"``: the spikes of the node's units in the last ``window`` ticks
  divided by ``window × size`` (spikes per unit and tick);
- any named global signal given per tick (a reward, a reward prediction error,
  the HMN signal G′), the same at every node.

A vesicle of type κ with content c carries the strength α_κ(c) = α_κ + c·α^c_κ.
The field of a synapse j → i is the sum over vesicles in its neighbourhood
N(i, j) (eq. 57),

.. math::

    m_{ij}(t) = \\sum_\\kappa \\sum_{v \\in \\mathcal{V}_t} \\mathbf{1}[\\ell_v \\in \\mathcal{N}(i, j)]\\,
                \\alpha_\\kappa(\\mathbf{c}_v),

over the vesicles that docked this tick (``which="docked"``, a dock is a release,
as on the chip) or all alive ones (``which="alive"``). N(i, j) is the node of the
postsynaptic neuron (``"post"``, the chip's reward trace), the nodes of both
ends (``"pre_post"``, the default) or every node within ``r`` hops of either
(an integer ``r``). The update ``Δw = η e m`` of eq. 58 then moves only synapses
on the vesicles' path.

**Chip timing** (``release_trace=τ_r``, ``release_once=True``): the field acts
as the reward trace of a deployed network does — a (node, type) releases α_κ at
most once per tick, the release reaches the node one tick later and decays with
τ_r, A_ℓ(t) = A_ℓ(t−1)(1 − 1/τ_r) + S_ℓ(t−1), and m is made of A
(``nvppl.backend.snn_deploy`` gives the mapping).

**Event-driven advance** (eq. 59, ``event_driven=True``): the life cycle runs
only at ticks with a spike event (a spike anywhere in the network in the
previous tick); in between vesicles only age — a countdown lifetime loses one
per tick, a geometric one is thinned at the next event with the survival
probability of the ticks skipped. With an event at every tick this is the
clocked field, draw for draw.

Examples
--------
>>> import numpy as np, nvppl as nv
>>> net = nv.snn.LIFNetwork.random(20, 0.2, key=0)
>>> sub, node_of = nv.snn.neuron_substrate(net)
>>> model = nv.VesicleModel(sub, n_types=1, covariate_dim=1)
>>> fld = nv.snn.VesicleField(model, model.default_params(), node_of, alpha=[1.0], capacity=256)
>>> st = nv.snn.field_init(fld, net)
>>> st, m, info = nv.snn.field_step(fld, net, st, signals=np.zeros(0), key=0)
>>> m.shape == (net.n_synapses,)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from .. import population
from .._validate import as_jax_key, positive_int
from ..errors import CapacityError
from ..kernels import emission
from ..model import VesicleModel
from ..substrate import Substrate

__all__ = ["VesicleField", "FieldState", "FieldInfo", "neuron_substrate", "group_substrate", "field_init",
           "field_step", "neighbourhood", "field_from_docks", "MAX_INCIDENCE"]

#: Largest synapse-node incidence :func:`neighbourhood` builds (entries) before refusing.
MAX_INCIDENCE = 50_000_000


def neuron_substrate(net, allow_stay: bool = True):
    """The network's neurons as a substrate (an edge per recurrent synapse) and ``node_of`` per unit.

    Inputs belong to no node (−1).
    """
    n_in = net.n_input
    pre = np.asarray(net.pre) - n_in
    post = np.asarray(net.post)
    keep = pre >= 0
    pairs = sorted(set(zip(pre[keep].tolist(), post[keep].tolist())) - {(a, a) for a in range(net.n)})
    sub = Substrate.from_edges(range(net.n), pairs, allow_stay=allow_stay)
    node_of = np.concatenate([np.full(n_in, -1), np.arange(net.n)])
    return sub, node_of


def group_substrate(net, groups, allow_stay: bool = True):
    """A coarser substrate: one node per group of neurons, an edge where any synapse joins two groups.

    Parameters
    ----------
    groups : array of int (n,)
        Group of every neuron (labels become the nodes; inputs belong to none).
    """
    g = np.asarray(groups)
    if g.shape != (net.n,) or not np.issubdtype(g.dtype, np.integer) or g.dtype == bool:
        raise ValueError(f"groups must hold one integer label per neuron, shape ({net.n},), got {g.dtype} {g.shape}")
    labels = np.unique(g)
    idx = np.searchsorted(labels, g)
    n_in = net.n_input
    pre = np.asarray(net.pre)
    keep = pre >= n_in
    a = idx[pre[keep] - n_in]
    b = idx[np.asarray(net.post)[keep]]
    pairs = sorted({(int(x), int(y)) for x, y in zip(a, b) if x != y})
    sub = Substrate.from_edges([int(x) for x in labels], [(int(labels[x]), int(labels[y])) for x, y in pairs],
                               allow_stay=allow_stay)
    return sub, np.concatenate([np.full(n_in, -1), idx])


@dataclass(frozen=True, eq=False)
class VesicleField:
    """Vesicles on a spiking network and the field they make (see the module docstring).

    Parameters
    ----------
    model : VesicleModel
        On the substrate of the field; ``covariate_dim`` must equal the number of
        ``covariates``.
    params : Params
    node_of : array of int (n_units,)
        Node of every unit of the network (inputs first), −1 for none.
    alpha : sequence of float (K,)
        α_κ: the strength of a vesicle of type κ.
    alpha_c : array (K, d_c), optional
        Content weights α^c_κ (default zero).
    covariates : tuple of str
        ``"rate"`` and the names of global signals, in the order of the model's covariates.
    window : int
        Ticks of the rate window.
    neighbourhood : {"post", "pre_post"} or int
        N(i, j) of eq. 57.
    which : {"docked", "alive"}
        Vesicles that make the field.
    capacity : int
        Vesicle slots; running out is an error naming tick and node.
    event_driven : bool
        Advance only at spike events (eq. 59).
    release_trace : float or None
        τ_r: the field acts through a per-node release trace with a one-tick
        delay, A_ℓ(t) = A_ℓ(t−1)(1 − 1/τ_r) + S_ℓ(t−1) (S the strength released
        at ℓ in a tick), and m is made of A instead of S — the reward trace of
        the chip (``nvppl.backend.snn_deploy``). None (default): m is made of
        this tick's S.
    release_once : bool
        A (node, type) releases α_κ at most once per tick however many of its
        vesicles dock (the chip's release port); default False: every dock
        releases (eq. 36). Needs ``which="docked"``.
    """

    model: VesicleModel
    params: object
    node_of: object
    alpha: object
    alpha_c: object = None
    covariates: tuple = ("rate",)
    window: int = 20
    neighbourhood: object = "pre_post"
    which: str = "docked"
    capacity: int = 4096
    event_driven: bool = False
    release_trace: float | None = None
    release_once: bool = False

    def __post_init__(self):
        model = self.model
        if not isinstance(model, VesicleModel):
            raise TypeError(f"model must be a VesicleModel, got {type(model).__name__}")
        covs = tuple(self.covariates)
        if len(set(covs)) != len(covs) or not all(isinstance(c, str) for c in covs):
            raise ValueError(f"covariates must be distinct names, got {covs!r}")
        if model.covariate_dim != len(covs):
            raise ValueError(f"the model has covariate_dim = {model.covariate_dim} but the field gives "
                             f"{len(covs)} covariates {covs!r}")
        object.__setattr__(self, "covariates", covs)
        node_of = np.asarray(self.node_of)
        if node_of.ndim != 1 or not np.issubdtype(node_of.dtype, np.integer) or node_of.dtype == bool:
            raise ValueError(f"node_of must be a 1-d integer array (one node per unit), got {node_of.dtype} "
                             f"{node_of.shape}")
        bad = (node_of < -1) | (node_of >= model.n_nodes)
        if bad.any():
            u = int(np.flatnonzero(bad)[0])
            raise ValueError(f"node_of[{u}] = {node_of[u]}: unit {u} must belong to a node in "
                             f"0..{model.n_nodes - 1} or to none (-1)")
        object.__setattr__(self, "node_of", node_of.astype(np.int64))
        K, dc = model.n_types, model.content_dim
        alpha = np.asarray(self.alpha, dtype=np.float64)
        if alpha.shape != (K,) or not np.all(np.isfinite(alpha)):
            raise ValueError(f"alpha must hold {K} finite numbers (one per type), got {self.alpha!r}")
        object.__setattr__(self, "alpha", alpha)
        ac = np.zeros((K, dc)) if self.alpha_c is None else np.asarray(self.alpha_c, dtype=np.float64)
        if ac.shape != (K, dc) or not np.all(np.isfinite(ac)):
            raise ValueError(f"alpha_c must be a finite ({K}, {dc}) array, got shape {ac.shape}")
        object.__setattr__(self, "alpha_c", ac)
        object.__setattr__(self, "window", positive_int(self.window, "window"))
        object.__setattr__(self, "capacity", positive_int(self.capacity, "capacity"))
        nb = self.neighbourhood
        if not (nb in ("post", "pre_post") or (isinstance(nb, (int, np.integer)) and not isinstance(nb, bool)
                                              and nb >= 0)):
            raise ValueError(f"neighbourhood must be 'post', 'pre_post' or a hop radius ≥ 0, got {nb!r}")
        if self.which not in ("docked", "alive"):
            raise ValueError(f"which must be 'docked' or 'alive', got {self.which!r}")
        rt = self.release_trace
        if rt is not None and (isinstance(rt, bool) or not isinstance(rt, (int, float, np.integer, np.floating))
                               or not (1.0 <= rt < np.inf)):
            raise ValueError(f"release_trace must be None or a finite time constant ≥ 1 tick, got {rt!r}")
        if self.release_once and self.which != "docked":
            raise ValueError("release_once=True counts docks per (node, type); it needs which='docked'")
        model.check_params(self.params)

    @property
    def signals(self) -> tuple:
        """Names of the global signals among the covariates."""
        return tuple(c for c in self.covariates if c != "rate")


class FieldState(NamedTuple):
    """Vesicles, the rate window and the event clock."""

    pop: population.LifeState
    counts: jax.Array    # (W, n_nodes) spikes per node in the last W ticks (ring buffer)
    t: jax.Array         # tick
    skipped: jax.Array   # ticks without an event since the last one
    n_events: jax.Array  # ticks at which the life cycle ran
    release: jax.Array   # (n_nodes,) the release trace A (release_trace; zeros without)
    pending: jax.Array   # (n_nodes,) the strength released in the previous tick (release_trace)


class FieldInfo(NamedTuple):
    """What a tick of the field did: docks and alive vesicles per node and type, the node strengths A, the
    step record of every slot and the covariates that drove the tick."""

    docks: jax.Array     # (n_nodes, K)
    alive: jax.Array     # (n_nodes, K)
    strength: jax.Array  # (n_nodes,) Σ α over the vesicles that make the field
    event: jax.Array     # bool
    overflow: jax.Array  # (2,) tick and node of a capacity overflow, or -1
    record: population.StepRecord  # what every slot did (one run)
    covariates: jax.Array  # (n_nodes, p) the covariates F of the tick


def neighbourhood(fld: VesicleField, net):
    """The synapse–node incidence of N(i, j): arrays ``(synapse, node)`` of every pair ``ℓ ∈ N(i, j)``."""
    node_of = fld.node_of
    if node_of.shape != (net.n_units,):
        raise ValueError(f"node_of has {node_of.shape[0]} entries; the network has {net.n_units} units")
    pre_node = node_of[np.asarray(net.pre)]
    post_node = node_of[net.n_input + np.asarray(net.post)]
    E = net.n_synapses
    syn = np.arange(E)
    nb = fld.neighbourhood
    if nb == "post":
        keep = post_node >= 0
        return syn[keep], post_node[keep]
    if nb == "pre_post" or nb == 0:
        s = np.concatenate([syn, syn])
        nd = np.concatenate([post_node, pre_node])
        keep = (nd >= 0) & ~np.concatenate([np.zeros(E, bool), pre_node == post_node])
        return s[keep], nd[keep]
    # r hops (either direction) from either end
    n = fld.model.n_nodes
    cand = np.asarray(fld.model.substrate.candidates)
    rows = np.repeat(np.arange(n), cand.shape[1])
    cols = cand.ravel()
    ok = cols >= 0
    A = sp.csr_matrix((np.ones(ok.sum(), bool), (rows[ok], cols[ok])), shape=(n, n))
    A = (A + A.T + sp.identity(n, dtype=bool, format="csr")).astype(bool).tocsr()
    R = sp.identity(n, dtype=bool, format="csr")
    for _ in range(int(nb)):
        R = (R @ A).astype(bool).tocsr()
    sizes = np.diff(R.indptr)
    est = int(sizes[np.maximum(pre_node, 0)].sum() + sizes[np.maximum(post_node, 0)].sum())
    if est > MAX_INCIDENCE:
        raise CapacityError(f"neighbourhood radius {nb}: about {est:,} synapse-node pairs (more than "
                            f"{MAX_INCIDENCE:,}); use a smaller radius or a coarser substrate (group_substrate)")
    out_s, out_n = [], []
    for e in range(E):
        members = set()
        for nd in (pre_node[e], post_node[e]):
            if nd >= 0:
                members.update(R.indices[R.indptr[nd]:R.indptr[nd + 1]].tolist())
        out_s.extend([e] * len(members))
        out_n.extend(sorted(members))
    return np.asarray(out_s, np.int64), np.asarray(out_n, np.int64)


def field_from_docks(fld: VesicleField, strength, inc_syn, inc_node, n_synapses):
    """m_ij = Σ_{ℓ ∈ N(i, j)} A_ℓ with A the per-node strength (eq. 57 grouped by node)."""
    return jax.ops.segment_sum(strength[inc_node], inc_syn, num_segments=n_synapses)


class _Prepared(NamedTuple):
    consts: population.Constants
    params: object
    alpha: jax.Array
    alpha_c: jax.Array
    node_of: jax.Array
    size: jax.Array
    inc_syn: jax.Array
    inc_node: jax.Array
    rate_col: int
    jitted: object = None


_PREPARED = {}


def _prepare(fld: VesicleField, net) -> _Prepared:
    key = (id(fld), id(net))
    hit = _PREPARED.get(key)
    if hit is not None and hit[0] is fld and hit[1] is net:
        return hit[2]
    inc_syn, inc_node = neighbourhood(fld, net)
    n = fld.model.n_nodes
    size = np.bincount(fld.node_of[fld.node_of >= 0], minlength=n).astype(np.float32)
    rate_col = fld.covariates.index("rate") if "rate" in fld.covariates else -1
    f32 = (lambda a: jnp.asarray(a, jnp.float32) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
           else jnp.asarray(a))
    prep = _Prepared(jax.tree.map(f32, population.constants(fld.model)), jax.tree.map(f32, fld.params),
                     jnp.asarray(fld.alpha, jnp.float32), jnp.asarray(fld.alpha_c, jnp.float32),
                     jnp.asarray(fld.node_of, jnp.int32), jnp.asarray(np.maximum(size, 1.0)),
                     jnp.asarray(inc_syn, jnp.int32), jnp.asarray(inc_node, jnp.int32), rate_col)
    n_syn = net.n_synapses
    prep = prep._replace(jitted=jax.jit(lambda st, sig, key: _field_step(fld, prep, st, sig, key, n_syn)))
    if len(_PREPARED) > 16:
        _PREPARED.clear()
    _PREPARED[key] = (fld, net, prep)
    return prep


def field_init(fld: VesicleField, net) -> FieldState:
    """No vesicles, an empty rate window, tick 0."""
    _prepare(fld, net)
    pop = population.init_state(1, fld.capacity, fld.model.content_dim, jnp.float32)
    n = fld.model.n_nodes
    return FieldState(pop, jnp.zeros((fld.window, n), jnp.float32), jnp.asarray(0, jnp.int32),
                      jnp.asarray(0, jnp.int32), jnp.asarray(0, jnp.int32), jnp.zeros(n, jnp.float32),
                      jnp.zeros(n, jnp.float32))


def covariates_now(fld: VesicleField, prep: _Prepared, st: FieldState, signals) -> jax.Array:
    """F (n_nodes, p): the rate over the window and the global signals, in ``fld.covariates`` order."""
    n = fld.model.n_nodes
    sig = jnp.asarray(signals, jnp.float32).reshape(-1)
    cols, s = [], 0
    rate = st.counts.sum(0) / (fld.window * prep.size)
    for name in fld.covariates:
        if name == "rate":
            cols.append(rate)
        else:
            cols.append(jnp.broadcast_to(sig[s], (n,)))
            s += 1
    return jnp.stack(cols, axis=-1) if cols else jnp.zeros((n, 0), jnp.float32)


def _age_geometric(fld, prep, pop, skipped, key):
    """Thin geometric lifetimes by the survival over ``skipped`` event-free ticks (eq. 59)."""
    p_die = 1.0 - (1.0 - prep.params.delta[pop.vtype]) ** skipped
    u = jax.random.uniform(key, pop.alive.shape)
    return pop._replace(alive=pop.alive & ~(u < p_die))


def field_step(fld: VesicleField, net, st: FieldState, signals, key, spikes_prev=None):
    """One tick of the field: the life cycle (or ageing only), then the field m (E,) of eq. 57.

    Parameters
    ----------
    st : FieldState
    signals : array (n_signals,)
        This tick's global signals, in the order of ``fld.signals``.
    key : JAX key or int
    spikes_prev : array (n_units,) bool, optional
        The spikes of the previous tick, added to the rate window after this
        tick's vesicle step (call :func:`record_spikes` instead to add them later).

    Returns
    -------
    (FieldState, m, FieldInfo)
    """
    prep = _prepare(fld, net)
    if not isinstance(key, jax.core.Tracer):   # inside jit a traced key is used as it is
        key = as_jax_key(key)
    if spikes_prev is not None:
        st = record_spikes(fld, prep, st, spikes_prev)
    return prep.jitted(st, jnp.asarray(signals, jnp.float32), key)


def record_spikes(fld: VesicleField, prep: _Prepared, st: FieldState, spikes) -> FieldState:
    """Add a tick's spikes (n_units,) to the node counts of the rate window."""
    node = prep.node_of
    c = jax.ops.segment_sum(spikes.astype(jnp.float32) * (node >= 0), jnp.maximum(node, 0),
                            num_segments=fld.model.n_nodes)
    slot = st.t % fld.window
    return st._replace(counts=st.counts.at[slot].set(c))


def _field_step(fld, prep, st, signals, key, E):
    model = fld.model
    n, K, dc = model.n_nodes, model.n_types, model.content_dim
    F_t = covariates_now(fld, prep, st, signals)
    X_t = emission.design_matrix(F_t)
    k_age, k_step = jax.random.split(key)
    if fld.event_driven:
        last = st.counts[st.t % fld.window]   # the spikes of the previous tick (record_spikes)
        event = (st.t == 0) | (last.sum() > 0)
    else:
        event = jnp.asarray(True)

    def run(pop):
        if model.lifetime == "geometric":
            pop = jax.lax.cond(st.skipped > 0, lambda p: _age_geometric(fld, prep, p, st.skipped, k_age),
                               lambda p: p, pop)
        new, rec, _ = population.step(model, prep.params, prep.consts, pop, st.t, X_t[None], F_t[None],
                                      population.keyed_draw(k_step))
        new = jax.tree.map(lambda a, b: a.astype(b.dtype), new, pop)
        rec = jax.tree.map(lambda a: a[0], rec)
        return new, rec._replace(content=rec.content.astype(pop.content.dtype), tau0=rec.tau0.astype(pop.tau.dtype))

    def idle(pop):
        if model.lifetime == "countdown":
            pop = pop._replace(tau=jnp.where(pop.alive, pop.tau - 1.0, pop.tau))
        C = fld.capacity
        none = jnp.full(C, -1, pop.node.dtype)
        rec = population.StepRecord(vid=none, new=jnp.zeros(C, bool), node_from=pop.node[0], node_to=none,
                                    docked=jnp.zeros(C, bool), cause=jnp.zeros(C, jnp.int8), vtype=pop.vtype[0],
                                    content=pop.content[0], tau0=jnp.zeros(C, pop.tau.dtype))
        return pop, rec

    pop, rec = jax.lax.cond(event, run, idle, st.pop)
    docked, node_to, vtype, content = rec.docked, rec.node_to, rec.vtype, rec.content
    alpha = prep.alpha[vtype] + (content @ prep.alpha_c.T)[jnp.arange(fld.capacity), vtype] if dc else \
        prep.alpha[vtype]
    if fld.which == "docked":
        weight = jnp.where(docked, alpha, 0.0)
        where = jnp.maximum(node_to, 0)
    else:
        weight = jnp.where(pop.alive[0], alpha, 0.0)
        where = pop.node[0]
    cell = jnp.maximum(node_to, 0) * K + vtype
    docks = jax.ops.segment_sum(docked.astype(jnp.int32), cell, num_segments=n * K).reshape(n, K)
    if fld.release_once:
        strength = (docks > 0).astype(jnp.float32) @ prep.alpha
    else:
        strength = jax.ops.segment_sum(weight, where, num_segments=n)
    release, pending = st.release, st.pending
    if fld.release_trace is not None:
        release = release * (1.0 - 1.0 / fld.release_trace) + pending
        pending = strength
    m = field_from_docks(fld, release if fld.release_trace is not None else strength, prep.inc_syn, prep.inc_node, E)
    acell = pop.node[0] * K + pop.vtype[0]
    alive = jax.ops.segment_sum(pop.alive[0].astype(jnp.int32), acell, num_segments=n * K).reshape(n, K)
    overflow = jnp.stack([pop.overflow_step[0], pop.overflow_node[0]])
    st = FieldState(pop, st.counts, st.t + 1, jnp.where(event, 0, st.skipped + 1),
                    st.n_events + event.astype(jnp.int32), release, pending)
    return st, m, FieldInfo(docks, alive, strength, event, overflow, rec, F_t)


def check_overflow(fld: VesicleField, overflow) -> None:
    """Raise :class:`~nvppl.CapacityError` when a tick's vesicles did not fit in ``fld.capacity`` slots."""
    tick, node = (int(v) for v in np.asarray(overflow).reshape(-1)[:2])
    if tick >= 0:
        raise CapacityError(f"vesicle field: at tick {tick} the vesicles emitted at node "
                            f"{fld.model.substrate.labels[node]!r} did not fit in the {fld.capacity} slots "
                            "(capacity=); raise the capacity or lower the emission")


def brute_force_field(fld: VesicleField, net, nodes, types, contents, mask) -> np.ndarray:
    """Eq. 57 term by term in NumPy (for tests): the sum over vesicles and synapses of α where ℓ_v ∈ N(i, j)."""
    inc_syn, inc_node = neighbourhood(fld, net)
    members = [set() for _ in range(net.n_synapses)]
    for s, nd in zip(inc_syn, inc_node):
        members[s].add(int(nd))
    m = np.zeros(net.n_synapses)
    for v in np.flatnonzero(mask):
        a = fld.alpha[types[v]] + (float(np.dot(contents[v], fld.alpha_c[types[v]])) if fld.model.content_dim else 0)
        for e in range(net.n_synapses):
            if int(nodes[v]) in members[e]:
                m[e] += a
    return m

