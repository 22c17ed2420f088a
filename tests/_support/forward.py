"""An exact forward-algorithm log-likelihood of partial observations on tiny graphs.

A test oracle for :class:`nvppl.Observations`, written from the model description
(docs/design.rst, "The model" and "Data formats") with NumPy/SciPy only; it shares no numerical code with
nvppl (the model and the parameters are only read, and validated through
``model.check_params``).

The maths
---------
Types never interact, so for each type ``κ`` the counts form their own hidden
Markov chain and

    log p(y | θ) = Σ_κ Σ_r Σ_t log p(y[r,t,·,κ] | y[r,<t,·,κ]).

Fix a type and write ``N_t ∈ {0,1,…}^n`` for the vesicles present after step
``t`` (``N_{-1} = 0``) and ``D_t`` for the true docks per node during step ``t``.
With geometric lifetimes, no content and no covariates, one step is (§1.3):
births ``B_i ~ Poisson(λ)`` at every node (``λ = r_max σ(u_0)`` or ``exp(u_0)``);
every vesicle at ``i`` (new ones included) moves to candidate ``j`` with
probability ``T̃[i, j]`` (the row of ``T`` normalised; a vesicle on a sink is
removed); at ``j`` it docks with ``p = σ(w_0)``; then it is removed by the budget
(budget 1: a dock removes it), by absorption (``a_j``) or by decay (``δ``).
Each vesicle therefore ends the step in one category ``(j, d, s)``: destination
``j``, docked ``d ∈ {0, 1}``, survived ``s ∈ {0, 1}``, with

    π_j(d, s) = p^d (1-p)^(1-d) · σ_j^s (1-σ_j)^(1-s),  σ_j = (1-a_j)(1-δ)   (budget ∞)
    π_j(1, 1) = 0,  π_j(1, 0) = p,  π_j(0, s) = (1-p) σ_j^s (1-σ_j)^(1-s)      (budget 1)

and ``q_i(j, d, s) = T̃[i, j] π_j(d, s)`` (all mass "removed" on a sink). Then

    D_t[j] = Σ_{d=1} #(j, d, s),   N_t[j] = Σ_{s=1} #(j, d, s).

Given ``N_{t-1} = m``, the ``m_i`` old vesicles at ``i`` split
``Multinomial(m_i, q_i)``, independently over ``i``; the births are thinned
Poisson: the new vesicles in category ``(j, d, s)`` are independent
``Poisson(Λ_j(d, s))``, ``Λ_j(d, s) = Σ_i λ_i q_i(j, d, s)``. So

    P(D_t, N_t | m) = [⊛_j Poisson-joint_j] ⊛ [⊛_i q_i^{⊛ m_i}],

a convolution that is built for every ``m`` at once by the recursion
``P(· | m) = P(· | m - e_i) ⊛ q_i`` (adding one old vesicle at a time).

Observations enter through detection weights that factorise over nodes:
``g_t(N) = Π_j f(y[t,j] | N[j])`` and ``h_t(D) = Π_j f(D_obs[t,j] | D[j])`` with
``f(y | x) = [y = x]`` (exact), ``Binomial(y; x, p_det)`` or ``Poisson(y; x + floor)``
(a missing array has weight 1). The forward recursion over the filter
``α̂_t(k) = P(N_t = k | y_≤t)`` is

    c_t = Σ_m α̂_{t-1}(m) Σ_{D, k} P(D, k | m) h_t(D) g_t(k),
    α̂_t(k) = Σ_m α̂_{t-1}(m) Σ_D P(D, k | m) h_t(D) g_t(k) / c_t,

with ``c_t = p(y_t | y_<t)`` (the ``increments``) and ``log p(y) = Σ_t log c_t``.

Truncation
----------
Every count (each ``N[j]``, and each ``D[j]`` when docks are observed) is held in
``0..cap`` plus one overflow bin "> cap" that absorbs everything beyond (a
saturating sum, so no probability is dropped while building ``P``). The
filter keeps only states in the box; the overflow carries the truncation
error. For each run, type and step, the overflow's share

    ε_t = [Σ_m α̂_{t-1}(m) Σ_{(D,k) ∉ box} P(D, k | m) h̄_t(D) ḡ_t(k)] / c_t

uses the detection weights bounded from above beyond the cap
(``ḡ(> cap) = sup_{x > cap} f(y | x)``; zero for exact detection of a value
``≤ cap``), so given the filter at ``t-1`` the exact increment lies in
``[c_t, c_t (1 + ε_t)]``. ``lost_per_run`` sums ``ε_t`` over steps and types
(to first order a bound on the error of the run's log-likelihood) and
``lost_mass`` is its maximum; a value above ``tol`` raises
:class:`TruncationError` (never a silent truncation). An observation that is
impossible inside the box but possible beyond it gives ``ε = ∞``.

Scope: ``lifetime="geometric"``, ``content_dim=0``, ``covariate_dim=0``, no tilt,
budgets 1 or ∞ per type, any ``K``, links ``"sigmoid"``/``"log"``, any ``a``,
sinks. Anything else raises ``NotImplementedError``. Sizes: the transition
array has ``(cap+1)^n (cap+2)^{n or 2n}`` entries (``2n`` when docks are
observed): with ``n = 2, cap = 12, T = 20`` counts alone take milliseconds and
counts with docks about half a second; ``n = 3`` with docks needs ``cap ≈ 4``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

__all__ = ["ForwardResult", "TruncationError", "exact_log_likelihood"]

_KEY_BATCH = 32  # dock-weight patterns contracted per matrix product


class TruncationError(RuntimeError):
    """The cap is too small: too much probability lies beyond it."""


@dataclass(frozen=True)
class ForwardResult:
    """Result of :func:`exact_log_likelihood`.

    Attributes
    ----------
    log_likelihood : float
        ``log p(y)``, summed over runs (and types).
    per_run : ndarray (R,)
        ``log p(y_r)``.
    increments : ndarray (R, T)
        ``log p(y_t | y_<t)`` summed over types; ``-inf`` at the first impossible
        step of a run and ``nan`` after it.
    filtered_mean : ndarray (R, T, n, K)
        ``E[N_t | y_≤t]`` (``nan`` after an impossible step).
    lost_mass : float
        ``max_r lost_per_run[r]`` (see the module docstring).
    lost_per_run : ndarray (R,)
        Truncation shares ``ε_t`` summed over steps and types.
    """

    log_likelihood: float
    per_run: np.ndarray
    increments: np.ndarray
    filtered_mean: np.ndarray
    lost_mass: float
    lost_per_run: np.ndarray


# ------------------------------------------------------------------- scope
def _check_scope(model):
    if model.lifetime != "geometric":
        raise NotImplementedError(f"the forward oracle handles geometric lifetimes only, not {model.lifetime!r}")
    if model.content_dim != 0:
        raise NotImplementedError("the forward oracle handles content_dim=0 only")
    if model.covariate_dim != 0:
        raise NotImplementedError("the forward oracle handles covariate_dim=0 only")
    if model.tilt or model.tilted:
        raise NotImplementedError("the forward oracle handles untilted migration only")
    if model.emission_link not in ("sigmoid", "log"):
        raise NotImplementedError(f"unknown emission link {model.emission_link!r}")
    for k, b in enumerate(np.asarray(model.budget, dtype=float)):
        if not (np.isinf(b) or b == 1):
            raise NotImplementedError(f"the forward oracle handles budgets 1 and infinite only (type {k}: {b})")


# --------------------------------------------------------- per-type kernel
def _categories(model, params, k):
    """Emission rate per node, normalised migration rows and ``π_j(d, s)``.

    Returns ``lam (n,)``, ``Tn (n, n)`` (``Tn[i, j] = T̃[i, j]``; zero rows on
    sinks) and ``pi (n, 2, 2)`` indexed ``[j, d, s]``.
    """
    sub = model.substrate
    n = sub.n_nodes
    u0 = float(params.u[k, 0])
    if model.emission_link == "sigmoid":
        lam_k = float(params.r_max[k]) * special.expit(u0)
    else:
        lam_k = float(np.exp(u0))
    lam = np.full(n, lam_k)  # X = (1,) at every node and step
    Tn = np.zeros((n, n))
    for i in range(n):
        row = np.asarray(params.T[k, i], dtype=float)
        total = row.sum()
        if sub.n_candidates[i] == 0 or total == 0:
            continue  # sink: removed at the migration stage
        for slot, j in enumerate(sub.candidates[i]):
            if j >= 0:
                Tn[i, j] += row[slot] / total
    p = float(special.expit(params.w[k, 0]))
    a = np.asarray(params.a, dtype=float)
    delta = float(params.delta[k])
    surv = (1.0 - a) * (1.0 - delta)
    gone = a + (1.0 - a) * delta  # 1 - surv without cancellation
    pi = np.zeros((n, 2, 2))
    if np.isinf(model.budget[k]):
        pi[:, 1, 1], pi[:, 1, 0] = p * surv, p * gone
    else:  # budget 1: a dock depletes the vesicle
        pi[:, 1, 1], pi[:, 1, 0] = 0.0, p
    pi[:, 0, 1], pi[:, 0, 0] = (1.0 - p) * surv, (1.0 - p) * gone
    return lam, Tn, pi


def _pmf_overflow(rate, C):
    """Poisson pmf on ``0..C-2`` plus the tail ``P(X > C-2)`` in the last bin."""
    x = np.arange(C - 1)
    return np.concatenate([stats.poisson.pmf(x, rate), [stats.poisson.sf(C - 2, rate)]])


def _shift_pmf(pmf, x):
    """The pmf of ``x + X`` on ``0..C-2`` with overflow bin (``x = C-1``: overflow)."""
    C = len(pmf)
    out = np.zeros(C)
    if x < C - 1:
        out[x:C - 1] = pmf[:C - 1 - x]
        out[C - 1] = pmf[C - 1 - x:].sum()
    else:
        out[C - 1] = pmf.sum()
    return out


def _add_shifted(out, X, axes, q):
    """``out += q · X`` with the counts on ``axes`` raised by one (saturating: the
    last bin, the overflow, is absorbing). ``axes`` are positions in ``X``."""
    parts = ((slice(None, -1), slice(1, None)), (slice(-1, None), slice(-1, None)))
    pieces = [[]]
    for _ in axes:  # per axis: bins 0..C-2 move up by one; the overflow stays
        pieces = [p + [part] for p in pieces for part in parts]
    for piece in pieces:
        src = [slice(None)] * X.ndim
        dst = [slice(None)] * X.ndim
        for ax, (s, d) in zip(axes, piece):
            src[ax], dst[ax] = s, d
        out[tuple(dst)] += q * X[tuple(src)]


def _transition(model, params, k, cap, track_docks):
    """``P[(D_1..D_n,) m_1..m_n, N_1..N_n] = P(D, N | m)`` for one type.

    State axes have length ``cap + 1``; count axes ``cap + 2`` (the last bin is
    the overflow "> cap"). For every state ``m`` the entries sum to one.
    """
    lam, Tn, pi = _categories(model, params, k)
    n = model.n_nodes
    S, C = cap + 1, cap + 2
    # births thinned into categories: Λ_j(d, s) = Σ_i λ_i T̃[i, j] π_j(d, s)
    Lam = (lam @ Tn)[:, None, None] * pi
    factors = []
    for j in range(n):
        if track_docks:
            p_ds = _pmf_overflow(Lam[j, 1, 1], C)
            p_dg = _pmf_overflow(Lam[j, 1, 0], C)
            p_ns = _pmf_overflow(Lam[j, 0, 1], C)
            joint = sum(p_ds[x] * np.multiply.outer(_shift_pmf(p_dg, x), _shift_pmf(p_ns, x)) for x in range(C))
            factors.append(joint)  # (D_j, N_j)
        else:
            factors.append(_pmf_overflow(Lam[j, 1, 1] + Lam[j, 0, 1], C))  # N_j
    letters = "abcdefghijklmnopqrstuvwxyz"
    if track_docks:
        dl, nl = letters[:n], letters[n:2 * n]
        P0 = np.einsum(",".join(dl[j] + nl[j] for j in range(n)) + "->" + dl + nl, *factors)
    else:
        P0 = np.einsum(",".join(letters[j] for j in range(n)) + "->" + letters[:n], *factors)

    # one old vesicle at source i: atoms (axis shifts, probability) and the null outcome
    atoms, null = [], []
    for i in range(n):
        at, nu = [], 0.0
        for j in range(n):
            t_ij = Tn[i, j]
            if t_ij == 0:
                continue
            if track_docks:
                d_ax, n_ax = j, -n + j
                at += [((d_ax, n_ax), t_ij * pi[j, 1, 1]), ((d_ax,), t_ij * pi[j, 1, 0]),
                       ((n_ax,), t_ij * pi[j, 0, 1])]
                nu += t_ij * pi[j, 0, 0]
            else:
                at.append(((-n + j,), t_ij * (pi[j, 1, 1] + pi[j, 0, 1])))
                nu += t_ij * (pi[j, 1, 0] + pi[j, 0, 0])
        if Tn[i].sum() == 0:
            nu = 1.0  # sink
        atoms.append([(axes, q) for axes, q in at if q > 0])
        null.append(nu)

    # layout (D_1..D_n, m_1..m_n, N_1..N_n): docks first, so that contracting them
    # is one matrix product over a reshaped view
    n_d = n if track_docks else 0
    P = np.zeros((C,) * n_d + (S,) * n + (C,) * n)
    lead = (slice(None),) * n_d
    P[lead + (0,) * n] = P0
    for i in range(n):  # fill state axis i, for every value of the state axes before it
        for mi in range(1, S):
            X = P[lead + (slice(None),) * i + (mi - 1,) + (0,) * (n - i - 1)]
            out = null[i] * X
            for axes, q in atoms[i]:  # X axes: D (n_d), state axes before i (i), N (n)
                _add_shifted(out, X, tuple(ax if ax >= 0 else X.ndim + ax for ax in axes), q)
            P[lead + (slice(None),) * i + (mi,) + (0,) * (n - i - 1)] = out
    return P


# --------------------------------------------------------- detection weights
def _weights(values, detection, p_det, floor, cap):
    """Detection weights ``f(y | x)`` for ``x = 0..cap`` and an upper bound of
    ``sup_{x > cap} f(y | x)`` in the last bin; ``values (R, T, n)`` →
    ``(R, T, n, cap + 2)``."""
    y = np.asarray(values)[..., None].astype(float)
    x = np.arange(cap + 1, dtype=float)
    if detection == "exact":
        inside = (y == x).astype(float)
        beyond = (y[..., 0] > cap).astype(float)
    elif detection == "binomial":
        inside = stats.binom.pmf(y, x, p_det)
        # f(y | x) is unimodal in x with its mode near y / p_det
        top = int(np.ceil(np.max(y, initial=0.0) / p_det)) + 2
        grid = np.arange(cap + 1, max(cap + 2, top + 1), dtype=float)
        beyond = stats.binom.pmf(y, grid, p_det).max(-1)
    elif detection == "poisson":
        inside = stats.poisson.pmf(y, x + floor)
        top = int(np.max(y, initial=0.0)) + 2
        grid = np.arange(cap + 1, max(cap + 2, top + 1), dtype=float)
        beyond = stats.poisson.pmf(y, grid + floor).max(-1)
    else:
        raise ValueError(f"unknown detection {detection!r}")
    return np.concatenate([inside, beyond[..., None]], axis=-1)


def _dock_weighted(P3, H, S):
    """Contract the dock axes of ``P3 (C^n [docks], S^n * C^n [state, counts])``
    with the dock weights of several observation patterns ``H (U, n, C)``.

    Returns ``(W_in, W_all)``, each ``(U, S^n, C^n)``: docks restricted to the box,
    and all docks with the overflow bins weighted by their bounds.
    """
    U, n, C = H.shape
    h_all = _outer_nodes(H)  # (U, C^n)
    inside = _outer_nodes(np.broadcast_to((np.arange(C) < S).astype(float), (1, n, C)))[0]
    nz = h_all != 0
    if nz.sum(1).max() <= 4:  # e.g. exact detection: a few rows of P3
        W_in = np.empty((U, P3.shape[1]))
        W_all = np.empty((U, P3.shape[1]))
        for u in range(U):
            rows = np.flatnonzero(nz[u])
            W_all[u] = h_all[u, rows] @ P3[rows]
            W_in[u] = (h_all[u, rows] * inside[rows]) @ P3[rows]
        return W_in.reshape(U, S ** n, -1), W_all.reshape(U, S ** n, -1)
    W = (np.concatenate([h_all * inside, h_all]) @ P3).reshape(2, U, S ** n, -1)
    return W[0], W[1]


def _outer_nodes(G):
    """``G (R, n, C)`` → ``(R, C^n)``: product of the per-node weights."""
    R, n, _ = G.shape
    out = G[:, 0]
    for j in range(1, n):
        out = (out[:, :, None] * G[:, j][:, None, :]).reshape(R, -1)
    return out


# ------------------------------------------------------------------ forward
def exact_log_likelihood(model, params, obs, cap: int = 12, tol: float = 1e-9, p_det=None) -> ForwardResult:
    """Exact log-likelihood ``log p(y | θ)`` of partial observations by the
    forward algorithm over the joint count state (see the module docstring).

    Parameters
    ----------
    model : nvppl.VesicleModel
        Within the oracle's scope (else ``NotImplementedError``).
    params : nvppl.Params
    obs : nvppl.Observations
        Counts and/or docks; detection ``"exact"``, ``"binomial"`` (needs
        ``obs.p_det`` or the ``p_det`` argument) or ``"poisson"``.
    cap : int
        Largest count held per node (and per node's docks).
    tol : float
        Largest accepted truncation share ``lost_mass``.
    p_det : float, optional
        Detection probability when ``obs.p_det`` is ``None``.

    Returns
    -------
    ForwardResult

    Raises
    ------
    TruncationError
        ``lost_mass > tol``.
    """
    _check_scope(model)
    params = model.check_params(params)
    obs.check_model(model)
    cap = int(cap)
    if cap < 1:
        raise ValueError("cap must be >= 1")
    if obs.detection == "binomial":
        p_det = obs.p_det if obs.p_det is not None else p_det
        if p_det is None:
            raise ValueError("binomial detection needs p_det (obs.p_det is None: pass p_det=...)")
    R, T, n, K = obs.shape
    S, C = cap + 1, cap + 2
    track_docks = obs.docks is not None
    grid = np.stack(np.meshgrid(*([np.arange(S)] * n), indexing="ij"), axis=-1).reshape(-1, n)  # (S^n, n)
    box = np.ix_(*([np.arange(S)] * n))

    inc = np.zeros((R, T))
    fmean = np.zeros((R, T, n, K))
    lost = np.zeros(R)
    dead_at = np.full(R, T)  # first impossible step per run

    for k in range(K):
        P = _transition(model, params, k, cap, track_docks)
        if track_docks:  # (docks, state * counts), a view
            P3 = P.reshape(C ** n, -1)
        else:
            Wfixed = P.reshape(S ** n, -1)
        del P
        G = np.ones((R, T, n, C)) if obs.counts is None else \
            _weights(obs.counts[..., k], obs.detection, p_det, obs.floor, cap)
        H = _weights(obs.docks[..., k], obs.detection, p_det, obs.floor, cap) if track_docks else None

        alpha = np.zeros((R, S ** n))
        alpha[:, 0] = 1.0
        for t in range(T):
            if track_docks:
                keys, inverse = np.unique(H[:, t].reshape(R, -1), axis=0, return_inverse=True)
                inverse = inverse.reshape(-1)
                pred_in = np.empty((R, C ** n))
                pred_all = np.empty((R, C ** n))
                for lo in range(0, len(keys), _KEY_BATCH):
                    W_in, W_all = _dock_weighted(P3, keys[lo:lo + _KEY_BATCH].reshape(-1, n, C), S)
                    for u in range(len(W_in)):
                        idx = np.flatnonzero(inverse == lo + u)
                        pred_in[idx] = alpha[idx] @ W_in[u]
                        pred_all[idx] = alpha[idx] @ W_all[u]
            else:
                pred_in = pred_all = alpha @ Wfixed
            g = _outer_nodes(G[:, t])  # (R, C^n), overflow bins bounded
            total = (pred_all * g).sum(-1)
            joint = (pred_in * g).reshape((R,) + (C,) * n)[(slice(None),) + box].reshape(R, -1)
            c = joint.sum(-1)
            over = np.maximum(total - c, 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                share = np.where(c > 0, over / c, np.where(over > 0, np.inf, 0.0))
                alpha = np.where(c[:, None] > 0, joint / c[:, None], 0.0)
                inc_t = np.log(c)
            alive = dead_at > t
            lost += np.where(alive, share, 0.0)
            newly_dead = alive & (c <= 0)
            dead_at[newly_dead] = t
            inc[:, t] += np.where(dead_at >= t, inc_t, 0.0)
            fmean[:, t, :, k] = alpha @ grid

    for r in range(R):
        if dead_at[r] < T:
            inc[r, dead_at[r]] = -np.inf
            inc[r, dead_at[r] + 1:] = np.nan
            fmean[r, dead_at[r]:] = np.nan
    per_run = np.where(dead_at < T, -np.inf, np.nansum(inc, axis=1))
    lost_mass = float(lost.max(initial=0.0))
    if not lost_mass <= tol:
        r = int(np.argmax(lost))
        raise TruncationError(
            f"truncation at cap={cap} carries a share {lost_mass:.3g} of the likelihood (run {r}), "
            f"above tol={tol:g}: raise cap")
    return ForwardResult(log_likelihood=float(per_run.sum()), per_run=per_run, increments=inc,
                         filtered_mean=fmean, lost_mass=lost_mass, lost_per_run=lost)
