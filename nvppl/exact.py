r"""The exact likelihood of partial observations (:ref:`design-partial`): a forward
algorithm over the vesicle counts per node.

**Scope** (:func:`exact_supported`): geometric lifetimes; content that acts on
nothing (no ``w_c``, no content tilt ``Q``; covariates and their tilt ``v`` are
fine); budgets 1 or infinite; exact or binomial detection; small graphs.

**The model as an HMM.** Types never interact: the log-likelihood is a sum over
types and runs. For one run and type, :math:`N_t \in \{0, 1, …\}^n` counts the
vesicles present after step ``t`` (:math:`N_{-1} = 0`). In a step
(:ref:`design-model`) node ``i`` emits :math:`\mathrm{Poisson}(λ_{t,i})` vesicles
(eq. 9–10); every vesicle, new ones included, moves :math:`i \to j` with
probability :math:`P_t[i, j]` (eq. 15–17), docks at ``j`` with probability
:math:`p_{t,j}` (eq. 18–19; with budget 1 a dock removes it) and survives
absorption and decay with probability :math:`σ_j = (1 - a_j)(1 - δ_κ)`
(eq. 37–38); a vesicle on a sink is removed. Each vesicle present, and each
dock, is seen with probability :math:`π` (``p_det``; 1 for exact detection). The
filter :math:`α_t(k) = P(N_t = k \mid \text{data}_{\le t})` obeys

.. math::

    c_t\, α_t(k) = \sum_m α_{t-1}(m)\, P(N_t = k,\; D^{seen}_t = D_t \mid N_{t-1} = m)
                   \prod_j \mathrm{Bin}(y_t[j];\, k_j, π), \qquad \log p(y, D) = \sum_t \log c_t .

**The transition, node by node** (no :math:`(B+1)^n \times (B+1)^n` matrix). The
destinations are swept one at a time. An arrivals axis :math:`A_j` collects from
each source ``i`` with ``j`` among its candidates a share
:math:`\mathrm{Bin}(m_i, P[i,j] / \sum_{j' \text{ not swept}} P[i, j'])` of what is
left at ``i`` (all of it at its last candidate): a matrix product in the
coordinates :math:`(m_i, m_i + A_j)`, reached by a reshape. A kernel maps the
arrivals to the survivors ``k``, with the births :math:`\mathrm{Poisson}(Λ_j)`,
:math:`Λ_j = \sum_i λ_i P[i, j]` (Poisson thinning), folded in as
:math:`\sum_b \mathrm{Poisson}(b; Λ_j)\, K_j(A + b, k)`. The true docks are summed
out in :math:`K_j`: an arrival is a *seen* dock with probability :math:`pπ`,
independently, so with :math:`D` docks seen

.. math::

    K_j(A, k) = \mathrm{Bin}(D; A, pπ)\, \mathrm{Bin}(k; A, σ) \;\; (\text{budget } ∞), \qquad
    K_j(A, k) = \frac{A!\,(pπ)^{D} ((1-p)σ)^{k}\, ρ^{A-D-k}}{D!\,k!\,(A-D-k)!} \;\; (\text{budget } 1),

:math:`ρ = p(1-π) + (1-p)(1-σ)`; without docks seen,
:math:`K_j(A, k) = \mathrm{Bin}(k; A, σ(1 - p[\text{budget} = 1]))`.

**Truncation.** Counts are held in ``0..max_count`` per node, births in
``0..max_births``; arrivals are never cut. What is dropped is added up, weighted
by a bound of the observation terms it would still meet, so given
:math:`α_{t-1}` the exact :math:`c_t` lies in :math:`[c_t, c_t(1 + ε_t)]`,
:math:`ε_t` = dropped / kept; a run with :math:`\sum_t ε_t > ` ``tol`` raises
:class:`TruncationError`. The sweep holds about :math:`(B+1)^{n+1}` numbers on a
path or a cycle, :math:`(B+1)^{2n-1}` on a complete graph.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

from .covariates import model_features
from .kernels import decay, docking, emission, migration
from .model import ModelKey, VesicleModel
from .traces import Observations

__all__ = ["ExactForward", "TruncationError", "MAX_STATES", "MAX_TENSOR", "DEFAULT_TOL", "exact_supported",
           "default_bounds", "exact_forward", "check_truncation", "exact_log_increments", "exact_log_likelihood"]

#: Largest number of count vectors :math:`(B + 1)^n` per type.
MAX_STATES = 20_000
#: Largest array of the sweep, in numbers per run and type.
MAX_TENSOR = 5_000_000
#: Default bound on a run's summed truncation share :math:`\sum_t ε_t`.
DEFAULT_TOL = 1e-6


class TruncationError(ValueError):
    """Too much probability lies beyond ``max_count`` or ``max_births``; the
    message names the run, step and type, and the bound to raise."""


class ExactForward(NamedTuple):
    """Result of :func:`exact_forward`: ``log_increments (R, T)``, :math:`\\log c_t`
    summed over types (``-inf`` from an impossible step on); ``lost (R, T, K)``,
    the truncation shares :math:`ε_t`, and ``lost_births``, their part due to
    births; ``filtered_mean (R, T, n, K)``, :math:`E[N_t \\mid \\text{data}_{\\le t}]`;
    the bounds ``max_count`` and ``max_births`` used."""
    log_increments: jax.Array
    lost: jax.Array
    lost_births: jax.Array
    filtered_mean: jax.Array
    max_count: int
    max_births: int


# ----------------------------------------------------------------------- scope
def _traced(tree) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


def _class_reason(model) -> str | None:
    if model.lifetime != "geometric":
        return (f"lifetime={model.lifetime!r}: the age of every vesicle would be part of the hidden state; "
                "the exact likelihood needs geometric lifetimes")
    if model.content_dependent_docking:
        return ("docking depends on content (w_c): the content of every vesicle would be part of the hidden "
                "state; fix w_c at 0, or use the particle filter (method='pmmh')")
    if model.content_dim > 0 and (model.tilt or np.any(model.fixed.get("Q", 0) != 0)):
        return ("migration depends on content (the tilt Q): the content of every vesicle would be part of the "
                "hidden state; use content_dim=0 or no tilt, or the particle filter (method='pmmh')")
    for k, b in enumerate(model.budget):
        if not (np.isinf(b) or b == 1):
            return (f"type {k} has a release budget of {int(b)}: the remaining budget of every vesicle would be "
                    "part of the hidden state; the exact likelihood takes budgets 1 or infinite (None)")
    return None


def _detection(obs, p_det):
    """``(π, None)``, or ``(None, reason)``."""
    if obs.detection != "binomial":
        return (1.0, None) if obs.detection == "exact" else (None, (
            f"detection={obs.detection!r}: the exact likelihood takes 'exact' or 'binomial' detection (the particle "
            "filter handles Poisson noise)"))
    pd = obs.p_det if p_det is None else p_det
    return (pd, None) if pd is not None else (None, "binomial detection with an unknown p_det: pass p_det=...")


def _size_reason(model, B) -> str | None:
    if (B + 1) ** (n := model.n_nodes) > MAX_STATES:
        return (f"the state space holds (max_count + 1)^n = {B + 1}^{n} = {(B + 1) ** n} count vectors per type, "
                f"above the limit MAX_STATES = {MAX_STATES}: the exact likelihood is for small graphs and small "
                "counts (use the particle filter, method='pmmh')")
    if (peak := _plan(model.substrate, B, True, True).peak) > MAX_TENSOR:
        return (f"the forward sweep on this graph needs an array of {peak} numbers per run and type at "
                f"max_count={B}, above the limit MAX_TENSOR = {MAX_TENSOR} (use the particle filter)")
    return None


def exact_supported(model, obs, *, p_det=None, max_count=None) -> str | None:
    """``None`` when :func:`exact_log_likelihood` covers ``model`` and ``obs``, else the reason.

    ``p_det`` stands for an unknown ``obs.p_det``; ``max_count`` (default: the
    largest count seen) sizes the state space.

    Examples
    --------
    >>> import networkx as nx, numpy as np, nvppl as nv
    >>> sub = nv.Substrate.from_networkx(nx.path_graph(2))
    >>> obs = nv.Observations(counts=np.zeros((1, 3, 2, 1), int))
    >>> exact_supported(nv.VesicleModel(sub, n_types=1), obs) is None
    True
    >>> print(exact_supported(nv.VesicleModel(sub, n_types=1, lifetime="countdown"), obs)[:60])
    lifetime='countdown': the age of every vesicle would be part
    """
    if not isinstance(model, VesicleModel) or not isinstance(obs, Observations):
        raise TypeError(f"expected a VesicleModel and Observations, got {type(model).__name__}, {type(obs).__name__}")
    try:
        obs.check_model(model)
    except ValueError as err:
        return str(err)
    top = 1 if obs.counts is None else max(int(obs.counts.max(initial=0)), 1)
    return (_class_reason(model) or _detection(obs, p_det)[1]
            or _size_reason(model, top if max_count is None else int(max_count)))


# ---------------------------------------------------------------- the kernels
def step_inputs(model, params, F):
    """The kernels of :mod:`nvppl.kernels` at every run, step and type: emission rates
    ``(K, R, T, n)`` (eq. 9), move probabilities over candidate slots ``(K, R, T, n, M)``
    (eq. 15–17), docking probabilities ``(K, R, T, n)`` (eq. 18) and :math:`σ`, :math:`1 - σ`
    ``(K, n)``, the probability of surviving absorption and decay (eq. 37–38)."""
    sub, F = model.substrate, jnp.asarray(F)
    mask, X = jnp.asarray(sub.candidate_mask), emission.design_matrix(F)  # X: (R, T, n, dx)
    lam = emission.emission_rate(X, params.u, params.r_max, model.emission_link)  # (R, T, n, K)
    score = gamma = None
    if model.tilted:
        F_cand = F[:, :, np.clip(sub.candidates, 0, None)]  # (R, T, n, M, p)
        score = migration.tilt_score(F_cand[:, :, None], params.v[:, None, :])  # (R, T, K, n, M)
        gamma = jnp.asarray(model.gamma)[:, None]
    P = jnp.where(mask, jnp.exp(migration.move_log_probs(params.T, mask, gamma, score)), 0.0)
    total = P.sum(-1, keepdims=True)  # rows normalised
    P = jnp.where(total > 0, P / jnp.where(total > 0, total, 1.0), 0.0)
    P = jnp.broadcast_to(P, F.shape[:2] + (model.n_types,) + P.shape[-2:])
    p_dock = docking.dock_prob(X[..., None, :], params.w)  # (R, T, n, K)
    log_surv = decay.geometric_log_hazard(params.delta)[1][:, None] + jnp.log1p(-params.a)[None, :]
    return (jnp.moveaxis(lam, -1, 0), jnp.moveaxis(P, 2, 0), jnp.moveaxis(p_dock, -1, 0), jnp.exp(log_surv),
            -jnp.expm1(log_surv))


@functools.lru_cache(maxsize=32)
def _inputs_fn(key: ModelKey):  # step_inputs, compiled once per model specification
    return jax.jit(functools.partial(step_inputs, key.model))


def _xlogy(k, q):
    """``k log q`` with ``0 log 0 = 0`` and finite gradients where ``q = 0``."""
    return jnp.where(k > 0, k * migration.safe_log(q), 0.0)


def _log_factorial(x, table):
    """``log x!`` from ``table``: NumPy indexing for static ``x``, a gather for data."""
    return table[x] if isinstance(x, np.ndarray) else jnp.take(jnp.asarray(table), jnp.clip(x, 0, len(table) - 1))


def _log_binom(k, m, q, q_c, table):
    """``log Bin(k; m, q)`` (``-inf`` unless ``0 <= k <= m``), ``q_c = 1 − q``; ``k``, ``m`` integers."""
    ok = (k >= 0) & (k <= m)
    coef = _log_factorial(m, table) - _log_factorial(k * ok, table) - _log_factorial((m - k) * ok, table)
    return jnp.where(ok, coef + _xlogy(k, q) + _xlogy(m - k, q_c), -jnp.inf)


def _skew(X):
    """``(..., R, L) -> (..., R, L + R - 1)`` with ``U[r, r + c] = X[r, c]`` (a reshape)."""
    *lead, R, L = X.shape
    flat = jnp.pad(X, [(0, 0)] * len(lead) + [(0, 0), (0, R)]).reshape(*lead, R * (L + R))
    return flat[..., : R * (L + R - 1)].reshape(*lead, R, L + R - 1)


def _unskew(U):
    """``(..., R, S) -> (..., R, S)`` with ``X[r, c] = U[r, r + c]`` (zero beyond ``S``)."""
    *lead, R, S = U.shape
    wide = jnp.pad(U, [(0, 0)] * len(lead) + [(0, 0), (0, R)]).reshape(*lead, R * (S + R))
    return jnp.pad(wide, [(0, 0)] * len(lead) + [(0, R)]).reshape(*lead, R, S + R + 1)[..., :S]


def _poisson(rate, B, table):
    """``Poisson(rate)`` on ``0..B`` and a bound of ``P(> B)``: beyond ``B`` the terms fall
    geometrically with ratio below ``rate / (B + 2)``, so where that is below 1/2 the tail is at
    most ``pmf(B + 1) / (1 − rate / (B + 2))`` (no cancellation); elsewhere it is ``1 − Σ pmf``."""
    k = np.arange(B + 2)
    pmf = jnp.exp(_xlogy(k, rate[..., None]) - rate[..., None] - table[k])
    ratio = rate / (B + 2.0)
    small = ratio < 0.5
    tail = jnp.where(small, pmf[..., B + 1] / (1.0 - jnp.where(small, ratio, 0.0)),
                     jnp.maximum(1.0 - pmf[..., : B + 1].sum(-1), 0.0))
    return pmf[..., : B + 1], tail


def _kernel(A, k, p, s, s_c, dock, pd, budget_one, docks: bool, budgets: str, table):
    """``K[A, k]`` of the module docstring (broadcasting); ``budgets`` is ``"one"``,
    ``"inf"`` or ``"mixed"`` (then ``budget_one`` chooses)."""
    if not docks:
        return jnp.exp(_log_binom(k, A, s * (1.0 - p * budget_one), s_c + s * p * budget_one, table))
    seen, unseen = p * pd, p * (1.0 - pd) + (1.0 - p)
    log_k = {}
    if budgets != "one":
        log_k["inf"] = _log_binom(dock, A, seen, unseen, table) + _log_binom(k, A, s, s_c, table)
    if budgets != "inf":
        left = A - k - dock  # arrivals neither seen docking nor surviving
        ok = left >= 0
        left = jnp.where(ok, left, 0)
        log_one = (table[A] - table[k] - _log_factorial(dock, table) - _log_factorial(left, table) + _xlogy(dock, seen)
                   + _xlogy(k, (1.0 - p) * s) + _xlogy(left, p * (1.0 - pd) + (1.0 - p) * s_c))
        log_k["one"] = jnp.where(ok, log_one, -jnp.inf)
    if budgets == "mixed":
        return jnp.exp(jnp.where(budget_one > 0, log_k["one"], log_k["inf"]))
    return jnp.exp(log_k[budgets])


# ------------------------------------------------------------------ the sweep
class _Plan(NamedTuple):
    """The static sweep of one step (hashable: it keys the compiled program)."""
    n: int
    B: int
    births: int         # bound on the births arriving at a node in a step
    counts: bool        # counts observed
    docks: bool         # docks observed
    budgets: str        # "one", "inf" or "mixed"
    sinks: tuple        # sources removed before the sweep
    ops: tuple          # per destination: (j, ((i, slot) whole),  ((i, rank) shared), has births)
    source_order: tuple  # per source: its candidate slots in sweep order
    inflow: tuple       # (i, slot, j) of every candidate move
    peak: int           # largest array of the sweep


def _sweep_cost(order, sources, R):
    """Work (multiply-adds) and largest array of sweeping the destinations in ``order``."""
    last = {i: max(c, key=order.index) for i, c in sources.items() if c}
    held, L, work, peak = R ** len(last), 1, 0, R ** len(last)  # held: numbers per value of the arrivals
    for j in order:
        for i in sorted((i for i, c in sources.items() if j in c), key=lambda i: last[i] != j):
            size = held * (L + R - 1) if L > 1 or last[i] != j else held  # the skewed array
            work, peak = work + size * (R if last[i] != j else 1), max(peak, size)
            held //= R if last[i] == j else 1  # whole sources first: they shrink the array
            L = R if L == 1 and last[i] == j else L + R - 1
        work, held, L = work + held * L * R, held * R, 1  # the node's kernel
        peak = max(peak, held)
    return work, peak


@functools.lru_cache(maxsize=64)
def _plan_cached(cand: tuple, B: int, births: int, counts: bool, docks: bool, budgets: str) -> _Plan:
    n = len(cand)
    sources = {i: [j for j in row if j >= 0] for i, row in enumerate(cand)}
    orders = itertools.permutations(range(n)) if n <= 6 else [tuple(range(n))]
    order = list(min(orders, key=lambda o: _sweep_cost(list(o), sources, B + 1)))
    source_order = tuple(tuple(sorted((m for m, j in enumerate(row) if j >= 0), key=lambda m: order.index(row[m])))
                         for row in cand)
    ops = []
    for j in order:
        into = [(i, source_order[i].index(m)) for i, row in enumerate(cand) for m, jj in enumerate(row) if jj == j]
        whole = tuple((i, r) for i, r in into if r == len(source_order[i]) - 1)
        shared = tuple((i, r) for i, r in into if r < len(source_order[i]) - 1)
        ops.append((j, whole, shared, bool(into)))
    inflow = tuple((i, m, j) for i, row in enumerate(cand) for m, j in enumerate(row) if j >= 0)
    return _Plan(n, B, births, counts, docks, budgets, tuple(i for i in range(n) if not sources[i]), tuple(ops),
                 source_order, inflow, int(_sweep_cost(order, sources, B + 1)[1]))


def _plan(substrate, B, counts, docks, budget=None, births=None) -> _Plan:
    cand = tuple(tuple(int(x) for x in row) for row in np.asarray(substrate.candidates))
    one = np.asarray([] if budget is None else budget) == 1
    budgets = "mixed" if budget is None or (one.any() and not one.all()) else ("one" if one.all() else "inf")
    return _plan_cached(cand, int(B), int(B if births is None else births), bool(counts), bool(docks), budgets)


class _StepIn(NamedTuple):
    """Inputs of one step of one run and type: rates ``λ (n,)``, moves ``P (n, M)``,
    ``p_dock (n,)``, counts ``y (n,)`` and docks ``dock (n,)`` seen (zeros when not observed)."""
    lam: jax.Array
    P: jax.Array
    p_dock: jax.Array
    y: jax.Array
    dock: jax.Array


class _TypeIn(NamedTuple):
    """Constants of one type: ``σ (n,)``, ``1 − σ``, budget 1 or not, ``π``."""
    surv: jax.Array
    surv_c: jax.Array
    budget_one: jax.Array
    pd: jax.Array


class _Tables(NamedTuple):
    """The matrices of one step, built before the sweep (all exponentials and logarithms are here)."""
    share: jax.Array   # (n * width, B+1, B+1): Bin(m - m'; m, q) of each (source, rank) share
    tail: jax.Array    # (n,): bound of P(births > max_births)
    kernel: jax.Array  # (n, S, C): arrivals -> survivors, births and docks seen included
    weight: jax.Array  # (n, B+1): Bin(y; k, π) (ones when counts are not observed)
    sup: jax.Array     # (n,): bound of the weight beyond B


def _into(inflow, n, M) -> np.ndarray:
    """``(n M, n)``: flat (source, slot) → destination."""
    into, (i, m, j) = np.zeros((n * M, n)), np.array(inflow, dtype=int).reshape(-1, 3).T
    into[i * M + m, j] = 1.0
    return into


def _tables_fn(plan: _Plan, M: int):
    """``(_StepIn, _TypeIn) -> _Tables`` for one step, in a few batched operations."""
    n, B, Bb, R = plan.n, plan.B, plan.births, plan.B + 1
    width = max([len(r) for r in plan.source_order] + [1])
    order_idx = np.array([list(r) + [M] * (width - len(r)) for r in plan.source_order])  # M: a zero column
    into = _into(plan.inflow, n, M)
    S = 1 + B * max(len(w) + len(s) for _, w, s, _ in plan.ops)  # length of the arrivals before the births
    C = max(S + Bb, R)
    table, r = special.gammaln(np.arange(C + 2) + 1.0), np.arange(R)[:, None]  # log k!
    A, k = np.arange(S + Bb)[None, :, None], np.arange(C)[None, None, :]

    def tables(xs: _StepIn, c: _TypeIn) -> _Tables:
        P = jnp.concatenate([xs.P, jnp.zeros((n, 1), xs.P.dtype)], axis=1)
        ordered = jnp.take_along_axis(P, jnp.asarray(order_idx), axis=1)
        left = jnp.flip(jnp.cumsum(jnp.flip(ordered, 1), 1), 1)
        q = jnp.where(left > 0, ordered / jnp.where(left > 0, left, 1.0), 0.0).reshape(-1, 1, 1)
        share = jnp.exp(_log_binom(r - r.T, r, q, 1.0 - q, table))  # [m, m']: m - m' of m move
        births, tail = _poisson((xs.lam[:, None] * xs.P).reshape(-1) @ into, Bb, table)  # Poisson thinning
        kernel = _kernel(A, k, xs.p_dock[:, None, None], c.surv[:, None, None], c.surv_c[:, None, None],
                         xs.dock.astype(int)[:, None, None], c.pd, c.budget_one, plan.docks, plan.budgets, table)
        toeplitz = _skew(jnp.broadcast_to(births[:, None, :], (n, S, Bb + 1)))  # [a, a + b] = Poisson(b)
        kernel = toeplitz @ kernel  # K'[a, k] = Σ_b Poisson(b) K[a + b, k]
        if not plan.counts:
            return _Tables(share, tail, kernel, jnp.ones((n, R)), jnp.ones(n))
        y = xs.y.astype(int)
        weight = jnp.exp(_log_binom(y[:, None], np.arange(R)[None, :], c.pd, 1.0 - c.pd, table))
        # Bin(y; k, π) falls with k from y/π - 1 on, so its sup over k > B is at B + 1 there
        top = jnp.exp(_log_binom(y, np.full(n, R), c.pd, 1.0 - c.pd, table))
        return _Tables(share, tail, kernel, weight, jnp.where(R + 1.0 >= xs.y / c.pd, top, 1.0))

    return tables


def _sweep_fn(plan: _Plan):
    """``(α_{t-1}, _Tables) -> (α_t, (log c_t, ε_t (2,), E[N_t]))`` for one run and type."""
    n, R, width = plan.n, plan.B + 1, max([len(r) for r in plan.source_order] + [1])
    grid = np.arange(R, dtype=float)

    def sweep(alpha, tab: _Tables):
        X, lost, lost_births, axes = alpha, 0.0, 0.0, [("old", i) for i in range(n)]  # axes of X; arrivals last
        for i in plan.sinks:
            X = X.sum(axes.index(("old", i)))
            axes.remove(("old", i))
        for j, whole, shared, births in plan.ops:
            X = X[..., None]  # no arrivals at j yet
            for i, _ in whole:  # j is the last candidate of i: all that is left at i arrives
                X = jnp.moveaxis(X, axes.index(("old", i)), -2)
                axes.remove(("old", i))
                X = X[..., 0] if X.shape[-1] == 1 else _skew(X).sum(-2)
            for i, rank in shared:  # a binomial share of what is left at i arrives
                X = jnp.moveaxis(X, axes.index(("old", i)), -2)
                axes.append(axes.pop(axes.index(("old", i))))
                X = _unskew(jnp.einsum("...rs,rk->...ks", _skew(X), tab.share[i * width + rank]))
            if births:
                lost_births = lost_births + X.sum() * tab.tail[j]
            K = tab.kernel[j, : X.shape[-1]]
            lost = lost + (X @ K[:, R:].sum(-1)).sum() * tab.sup[j]  # survivors beyond B
            X = (X @ K[:, :R]) * tab.weight[j]
            axes.append(("new", j))
        X = jnp.transpose(X, [axes.index(("new", j)) for j in range(n)])
        ok = (total := X.sum()) > 0
        safe = jnp.where(ok, total, 1.0)
        alpha = jnp.where(ok, X / safe, 0.0)
        eps = jax.lax.stop_gradient(jnp.stack([lost + lost_births, lost_births]))
        eps = jnp.where(ok, eps / safe, jnp.where(eps > 0, jnp.inf, 0.0))
        means = jnp.stack([alpha.sum(tuple(a for a in range(n) if a != j)) @ grid for j in range(n)])
        return alpha, (jnp.where(ok, jnp.log(safe), -jnp.inf), eps, jax.lax.stop_gradient(means))

    return sweep


@functools.lru_cache(maxsize=32)
def _compiled(plan: _Plan, M: int, remat: bool):
    """``(_StepIn (K, R, T, ...), _TypeIn (K, ...)) -> (log c (K, R, T), ε (K, R, T, 2), E[N] (K, R, T, n))``;
    ``remat``: recompute each step's sweep for the gradient instead of storing it (for large sweeps)."""
    tables = jax.vmap(_tables_fn(plan, M), in_axes=(0, None))
    sweep = jax.checkpoint(_sweep_fn(plan), prevent_cse=False) if remat else _sweep_fn(plan)
    alpha0 = np.zeros((plan.B + 1,) * plan.n)  # N_{-1} = 0 (NumPy: this builder may run inside a trace)
    alpha0.flat[0] = 1.0

    def chain(xs: _StepIn, c: _TypeIn):
        return jax.lax.scan(sweep, alpha0, tables(xs, c))[1]

    return jax.jit(jax.vmap(jax.vmap(chain, in_axes=(0, None)), in_axes=(0, 0)))


# ------------------------------------------------------------------ the driver
def _least(mean, budget, start, seen=0):
    """The least ``b >= start`` with ``Σ P(seen + Poisson(mean) > b) <= budget`` over the cells."""
    b = int(start)
    while b < 10_000 and stats.poisson.sf(b - seen, mean).sum() > budget:
        b += 1
    return b


def default_bounds(model, params, obs, *, covariates=None, p_det=None, tol=DEFAULT_TOL, _inputs=None) -> tuple:
    r"""The default ``(max_count, max_births)``: the least bounds whose predicted dropped mass, summed
    over the cells, is at most ``tol / 10``, taking a count as seen plus Poisson(:math:`2(1 - π)ρ`)
    unseen (Poisson(:math:`2ρ`) without counts) and the births arriving at a node as Poisson(:math:`2Λ`),
    with :math:`ρ`, :math:`Λ` the expected counts and birth rates (the density's mean recursion), or
    without ``params`` (or traced) a node's mean count (or dock count) seen over :math:`π`, for both."""
    pd = float(_check_class(model, obs, p_det))
    seen = np.moveaxis(obs.counts if obs.counts is not None else obs.docks, -1, 0) / pd  # (K, R, T, n)
    rho = rate = np.broadcast_to(seen.mean((1, 2), keepdims=True), seen.shape)
    if params is not None and not _traced(params):
        F = model_features(model, covariates, obs.n_runs, obs.n_steps)
        lam, P, p_dock, surv, _ = map(np.asarray, _inputs or _inputs_fn(ModelKey(model))(model.check_params(params), F))
        K, R, T, n, M = P.shape
        into = _into(_plan(model.substrate, 1, True, True).inflow, n, M)
        keep = surv[:, None, None, :] * (1.0 - p_dock * (model.budget == 1)[:, None, None, None])
        rate, rho = (lam[..., None] * P).reshape(K, R, T, n * M) @ into, np.zeros((K, R, T, n))  # births arriving
        for t in range(T):  # the mean recursion of the density
            last = rho[:, :, t - 1] if t else np.zeros((K, R, n))
            rho[:, :, t] = keep[:, :, t] * ((last[..., None] * P[:, :, t]).reshape(K, R, n * M) @ into + rate[:, :, t])
    y = 0 if obs.counts is None else np.moveaxis(obs.counts, -1, 0)  # a count is y + unseen, or all unseen
    B = _least(2 * (1 - pd if obs.counts is not None else 1) * rho, tol / 10, max(np.max(y), 1), y)
    return B, _least(2 * rate, tol / 10, B)


def _check_class(model, obs, p_det):
    if reason := exact_supported(model, obs, p_det=p_det, max_count=1):
        raise ValueError(f"no exact likelihood for this case: {reason}")
    return _detection(obs, p_det)[0]


def exact_forward(model, params, obs, *, covariates=None, max_count=None, max_births=None,
                  p_det=None) -> ExactForward:
    """The forward algorithm of the module docstring, without the truncation check (arguments as
    for :func:`exact_log_likelihood`; check the :class:`ExactForward` with :func:`check_truncation`)."""
    pd = _check_class(model, obs, p_det)
    traced = _traced(params)
    params = params if traced else model.check_params(params)
    (R, T), K, n, sub = obs.shape[:2], model.n_types, model.n_nodes, model.substrate
    inputs = _inputs_fn(ModelKey(model))(params, model_features(model, covariates, R, T))
    for name, v in (("max_count", max_count), ("max_births", max_births)):
        if v is not None and (isinstance(v, bool) or int(v) != v or v < 1):
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if max_count is None or max_births is None:
        if _traced(pd):
            raise ValueError("p_det is traced by JAX: pass max_count and max_births (see default_bounds)")
        B0, Bb0 = default_bounds(model, None if traced else params, obs, covariates=covariates, p_det=pd,
                                 _inputs=inputs)
        max_count, max_births = max_count or B0, max_births or max(max_count or B0, Bb0)
    B, Bb = int(max_count), int(max_births)
    if obs.counts is not None and obs.counts.max(initial=0) > B:
        r, t, i, k = np.unravel_index(int(np.argmax(obs.counts)), obs.counts.shape)
        raise ValueError(f"max_count={B} is below the count {obs.counts[r, t, i, k]} seen at run {r}, step {t}, node "
                         f"{sub.labels[i]!r}, type {k}; pass a larger max_count")
    if reason := _size_reason(model, B):
        raise ValueError(reason)
    plan = _plan(sub, B, obs.counts is not None, obs.docks is not None, model.budget, Bb)
    seen = [jnp.zeros((K, R, T, n)) if x is None else jnp.asarray(np.moveaxis(x, -1, 0), dtype=float)
            for x in (obs.counts, obs.docks)]
    consts = _TypeIn(*inputs[3:], jnp.asarray(model.budget == 1, dtype=float), jnp.full(K, pd, dtype=float))
    remat = plan.peak * K * R * T > 5_000_000
    log_c, eps, means = _compiled(plan, sub.max_candidates, remat)(_StepIn(*inputs[:3], *seen), consts)
    return ExactForward(log_c.sum(0), jnp.moveaxis(eps[..., 0], 0, -1), jnp.moveaxis(eps[..., 1], 0, -1),
                        jnp.moveaxis(means, 0, -1), B, Bb)


def check_truncation(result: ExactForward, tol: float = DEFAULT_TOL) -> None:
    """Raise :class:`TruncationError` when a run's summed truncation share
    :math:`\\sum_t ε_t` of one type exceeds ``tol``, naming the run, the type, its
    worst step and the bound to raise."""
    eps = np.asarray(result.lost)
    if np.all((per_run := eps.sum(1)) <= tol):  # (R, K)
        return
    r, k = np.unravel_index(int(np.argmax(np.where(np.isnan(per_run), np.inf, per_run))), per_run.shape)
    t, B, Bb = int(np.argmax(eps[r, :, k])), result.max_count, result.max_births
    births = float(np.asarray(result.lost_births)[r, :, k].sum())
    fix = f"max_births (now {Bb})" if births > per_run[r, k] / 2 else f"max_count (now {B})"
    what = ("the observations have probability zero within the bounds, and mass beyond them was dropped"
            if np.isinf(eps[r, t, k])
            else f"a share {eps[r, t, k]:.3g} of the step's likelihood lies beyond the bounds ({per_run[r, k]:.3g} "
                 f"over the run, {births:.3g} of it from births)")
    raise TruncationError(f"run {r}, step {t}, type {k}: with max_count={B} and max_births={Bb} {what}, above "
                          f"tol={tol:g}; pass a larger {fix}")


def exact_log_increments(model, params, obs, *, covariates=None, max_count=None, max_births=None, p_det=None,
                         tol: float = DEFAULT_TOL):
    """Exact one-step-ahead log-likelihoods :math:`\\log p(\\text{data}_t \\mid \\text{data}_{<t})`,
    an array ``(R, T)`` summing to :func:`exact_log_likelihood` (arguments as there)."""
    res = exact_forward(model, params, obs, covariates=covariates, max_count=max_count, max_births=max_births,
                        p_det=p_det)
    if not _traced((params, p_det)):
        check_truncation(res, tol)
    return res.log_increments


def exact_log_likelihood(model, params, obs, *, covariates=None, max_count=None, max_births=None, p_det=None,
                         tol: float = DEFAULT_TOL):
    r"""Exact log-likelihood :math:`\log p(y, D \mid θ)` of partial observations, summed over runs.

    The forward algorithm of the module docstring: a hidden Markov model on the
    counts per node of each type, advanced by Poisson births, binomial shares
    along the migration kernel and per-node kernels of docking, absorption and
    decay that sum the true docks out exactly. A JAX scalar; ``jax.jit`` and
    ``jax.grad`` work through every field of ``params``, so NUTS can use it.

    Parameters
    ----------
    model : VesicleModel
        Within the class of :func:`exact_supported`.
    params : Params
    obs : Observations
        Counts and/or dock counts, ``"exact"`` or ``"binomial"`` detection.
    covariates : array, optional
        Covariates ``F`` of the observed runs, as for :func:`nvppl.simulate`.
    max_count, max_births : int, optional
        Bounds on the count per node (:math:`(B + 1)^n` count vectors per type)
        and on the births arriving at a node in a step; default
        :func:`default_bounds` (from the observations alone when ``params`` are traced).
    p_det : float, optional
        Detection probability when ``obs.p_det`` is unknown (binomial detection).
    tol : float, default 1e-6
        Largest accepted summed truncation share of a run, checked unless
        ``params`` are traced (then check :func:`exact_forward` with :func:`check_truncation`).

    Raises
    ------
    ValueError
        A case outside the class (saying why), ``max_count`` below a count seen, or
        a state space above :data:`MAX_STATES` or :data:`MAX_TENSOR` (naming the limit).
    TruncationError
        Too much probability beyond the bounds (naming run, step and type).

    Examples
    --------
    One node with a self-loop (births ``λ = 0.5``, docking 0.2, decay 0.05), the
    counts 1, 1, 0 seen exactly: :math:`p = 0.475 e^{-0.475} · e^{-0.475}(0.95 +
    0.05 · 0.475) · 0.05\, e^{-0.475}`.

    >>> import networkx as nx, numpy as np, nvppl as nv
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.DiGraph([(0, 0)])), n_types=1,
    ...                         priors={"a": 0.0})
    >>> obs = nv.Observations(counts=np.array([1, 1, 0]).reshape(1, 3, 1, 1))
    >>> round(float(exact_log_likelihood(model, model.default_params(), obs)), 6)
    -5.191773
    >>> round(float(np.log(0.475 * 0.05 * 0.97375) - 3 * 0.475), 6)
    -5.191773
    """
    return exact_log_increments(model, params, obs, covariates=covariates, max_count=max_count,
                                max_births=max_births, p_det=p_det, tol=tol).sum()
