r"""Density relaxation of the vesicle process (:ref:`design-density`, paper §5, eq. 46–53).

Instead of following vesicles one by one, track for every node ``i`` and type
``κ`` the expected number of vesicles :math:`ρ[t, i, κ]` present after step
``t`` (eq. 46) and their expected summed content :math:`C[t, i, κ]` (eq. 47).

Vesicles are born by Poisson emission and then move independently, so the
expected count obeys a *linear* recursion on the graph. One step (emission,
migration, docking, absorption, decay, in the order of :ref:`design-model`) reads

.. math::

    ρ_t = S_t \odot \big(T_κ^\top (ρ_{t-1} + λ_t)\big),\qquad
    S_t[i, κ] = (1 - a_i)(1 - δ_κ)\big(1 - p_{dock}[t, i, κ]\,[\text{budget}_κ = 1]\big),

the discrete-time reaction–diffusion system of eq. 48–52 written so that it is
**exact in the mean** for the process of §1.3 (births migrate in the step they
are born, as in the simulators). nvppl extends it in two exact ways:

* **release budgets** ``s > 1``: the mass is split by remaining budget; a dock
  moves mass one level down and depletes it from level 1;
* **countdown lifetimes**: the mass is split by age, and the age-``k`` mass
  survives expiry with probability :math:`1 - h_k` (:mod:`nvppl.kernels.decay`).

When migration or docking depends on content (content tilt ``Q`` or docking
weights ``w_c``) a vesicle's fate depends on its own content, and the recursion
is the mean-field approximation of eq. 53: the kernels are evaluated at the
mean content :math:`C/ρ` of the mass that moves (:func:`exact_in_mean` says
which case applies).

Because births are Poisson and vesicles move independently, the count at one
``(t, i, κ)`` is exactly ``Poisson(ρ[t, i, κ])`` and the number of docks is
``Poisson(expected_docks[t, i, κ])`` (one-time marginals; counts at different
times are correlated). :func:`composite_log_likelihood` uses these marginals.

Cost: one step is a gather over the candidate lists (``O(|E|·K)``, times the
number of budget levels, times the horizon for countdown lifetimes); no dense
``n × n`` matrix is formed. The transposed migration ``T_κ^\top x`` is a sum over
each node's incoming edges, with a hand-written adjoint (a gather along the
candidate lists), so that reverse-mode gradients need no scatter.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._engine.bridge import engine
from ._validate import positive_int
from .covariates import model_features
from .kernels import decay, docking, emission, migration
from .model import ModelKey

__all__ = ["Density", "relax", "exact_in_mean", "expected_release", "composite_log_likelihood",
           "predicted_mean", "detected_mean"]


class Density(NamedTuple):
    r"""Result of :func:`relax`. Arrays have shape ``(T, n, K)`` (with a leading
    run axis when the covariates differ per run); content arrays add ``d_c``.

    Attributes
    ----------
    rho : array (..., T, n, K)
        :math:`ρ[t, i, κ]`: expected number of vesicles at node ``i`` after step
        ``t`` (eq. 46).
    expected_docks : array (..., T, n, K)
        Expected number of docks (release events) at node ``i`` during step ``t``.
    arrivals : array (..., T, n, K)
        Expected number of vesicles arriving at ``i`` by migration in step ``t``
        (before docking, absorption and decay).
    content_total : array (..., T, n, K, d_c)
        :math:`C[t, i, κ]`: expected summed content of the vesicles present (eq. 47).
    docked_content : array (..., T, n, K, d_c)
        Expected summed content of the vesicles that dock at ``i`` in step ``t``.
    """

    rho: jax.Array
    expected_docks: jax.Array
    arrivals: jax.Array
    content_total: jax.Array
    docked_content: jax.Array

    @property
    def content_mean(self):
        """Mean content per vesicle :math:`C/ρ` (``NaN`` where ``ρ = 0``)."""
        rho = self.rho[..., None]
        return jnp.where(rho > 0, self.content_total / jnp.where(rho > 0, rho, 1.0), jnp.nan)

    @property
    def n_steps(self) -> int:
        """Number of steps ``T``."""
        return int(self.rho.shape[-3])

    def expected_release(self, h, W_act, b_act):
        """Expected FiLM activation release, see :func:`expected_release`."""
        return expected_release(self, h, W_act, b_act)


def exact_in_mean(model) -> bool:
    """Whether :func:`relax` is exact in the mean for ``model``.

    True unless migration depends on content (a content tilt ``Q``) or docking
    does (weights ``w_c``); then the recursion is the mean-field approximation
    of eq. 53.

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> sub = nv.Substrate.from_networkx(nx.cycle_graph(4))
    >>> exact_in_mean(nv.VesicleModel(sub, n_types=1))
    True
    >>> exact_in_mean(nv.VesicleModel(sub, n_types=1, content_dim=1, priors={"w_c": 0.5}))
    False
    """
    return not (_content_tilt(model) or model.content_dependent_docking)


def _content_tilt(model) -> bool:
    if model.content_dim == 0:
        return False
    return model.tilt or bool(np.any(model.fixed.get("Q", 0) != 0))


def relax(model, params, n_steps: int, covariates=None, max_age: int | None = None) -> Density:
    r"""Relax the vesicle process to its density: expected counts, docks and content.

    Parameters
    ----------
    model : VesicleModel
    params : Params
        Parameters (NumPy or JAX arrays; ``jax.grad`` and ``jax.jit`` work through
        this function in every field).
    n_steps : int
        Horizon ``T``.
    covariates : array, optional
        User covariates ``F``: ``(n, p)``, ``(T, n, p)`` or ``(R, T, n, p)`` (the
        result then has a leading run axis), as for :func:`nvppl.simulate`.
    max_age : int, optional
        Countdown lifetimes only: ages tracked separately. The default, ``T``, is
        exact. A smaller value pools older vesicles into one class that expires
        with the hazard of age ``max_age`` (exact when the hazard is constant
        from there on, an approximation otherwise).

    Returns
    -------
    Density
        ``rho``, ``expected_docks``, ``arrivals``, ``content_total``,
        ``docked_content`` and the derived ``content_mean``.

    Raises
    ------
    ValueError
        ``n_steps`` not a positive integer, invalid parameters (named by
        :meth:`VesicleModel.check_params`), covariates of the wrong shape, or
        countdown lifetimes with noise ``σ_τ > 0`` (no closed-form hazard).

    Notes
    -----
    Exact in the mean (eq. 46–52 with the process's order of events) unless
    :func:`exact_in_mean` is False, when migration and docking use the mean
    content :math:`C/ρ` of the moving mass (eq. 53).

    Examples
    --------
    A single node with a self-loop: births ``λ = 0.5`` per step, survival
    ``0.95`` per step, so :math:`ρ_t = 0.95 (ρ_{t-1} + 0.5)`, tending to 9.5.

    >>> import networkx as nx, nvppl as nv
    >>> G = nx.DiGraph([(0, 0)])
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(G), n_types=1)
    >>> dens = relax(model, model.default_params(), n_steps=200)
    >>> dens.rho.shape
    (200, 1, 1)
    >>> round(float(dens.rho[0, 0, 0]), 6), round(float(dens.rho[-1, 0, 0]), 3)
    (0.475, 9.5)
    >>> round(float(dens.expected_docks[0, 0, 0]), 6)  # p_dock = 0.2 of the 0.5 arrivals
    0.1
    """
    n_steps = positive_int(n_steps, "n_steps")
    if model.lifetime == "countdown" and model.sigma_tau > 0:
        raise ValueError("the density of countdown lifetimes with noise sigma_tau > 0 has no closed-form "
                         "hazard; use sigma_tau=0 or estimate the density by simulation")
    if max_age is None or model.lifetime == "geometric":
        A = n_steps if model.lifetime == "countdown" else 1
    else:
        A = min(positive_int(max_age, "max_age"), n_steps)
    if not _traced(params):
        params = model.check_params(params)
    per_run = covariates is not None and np.ndim(covariates) == 4
    if isinstance(covariates, jax.core.Tracer):
        F = covariates if per_run else jnp.broadcast_to(covariates, (n_steps,) + covariates.shape[-2:])[None]
    else:
        F = model_features(model, covariates, np.shape(covariates)[0] if per_run else 1, n_steps)
    p = {k: jnp.asarray(v) for k, v in params.to_dict().items() if v is not None}
    varying = isinstance(F, jax.core.Tracer) or not np.array_equal(F, np.broadcast_to(F[:, :1], F.shape))
    run = relaxer(ModelKey(model), n_steps, A, bool(varying))
    out = jax.vmap(run, in_axes=(None, 0))(p, jnp.asarray(F))
    if not per_run:
        out = jax.tree.map(lambda x: x[0], out)
    return Density(*out)


def fast_path(model) -> bool:
    """Whether :func:`relax` runs the compiled linear recursion for ``model``:
    geometric lifetimes, budgets of 1 or infinite, content-independent kernels
    (the general recursion in JAX handles the rest)."""
    budgets_ok = bool(np.all((model.budget == 1) | np.isinf(model.budget)))
    return model.lifetime == "geometric" and budgets_ok and exact_in_mean(model)


def _traced(params) -> bool:
    return any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(params))


class _Graph(NamedTuple):
    cand: np.ndarray      # (n, M) candidates, -1 padded
    cand_pad: np.ndarray  # (n, M) candidates with padding pointing at the zero entry n
    mask: np.ndarray      # (n, M)
    in_idx: np.ndarray    # (n, max_in) flat slot indices i*M+m of the moves into each node; n*M pads


def _graph(sub) -> _Graph:
    cand = np.asarray(sub.candidates)
    n, M = cand.shape
    flat = cand.reshape(-1)
    valid = flat >= 0
    counts = np.bincount(flat[valid], minlength=n)
    width = max(int(counts.max(initial=0)), 1)
    order = np.argsort(np.where(valid, flat, n), kind="stable")[: int(valid.sum())]
    dest = flat[order]
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(order)) - start[dest]
    in_idx = np.full((n, width), n * M, dtype=np.int64)
    in_idx[dest, pos] = order
    return _Graph(cand, np.where(cand >= 0, cand, n), cand >= 0, in_idx)


def _inflow(graph: _Graph):
    """``x ↦ Σ over moves into each node`` for flows ``(..., n, M)`` → ``(..., n)``, with the
    adjoint ``ḡ ↦ ḡ[cand]`` written out (a gather, not a scatter)."""
    in_idx = jnp.asarray(graph.in_idx)
    cand_pad = jnp.asarray(graph.cand_pad)
    n, M = graph.cand.shape

    @jax.custom_vjp
    def inflow(flows):
        flat = flows.reshape(flows.shape[:-2] + (n * M,))
        flat = jnp.concatenate([flat, jnp.zeros(flat.shape[:-1] + (1,), flat.dtype)], axis=-1)
        return jnp.take(flat, in_idx, axis=-1).sum(-1)

    def fwd(flows):
        return inflow(flows), None

    def bwd(_, g):
        g = jnp.concatenate([g, jnp.zeros(g.shape[:-1] + (1,), g.dtype)], axis=-1)
        return (jnp.take(g, cand_pad, axis=-1),)

    inflow.defvjp(fwd, bwd)
    return inflow


@functools.lru_cache(maxsize=32)
def relaxer(key: ModelKey, n_steps: int, A: int, varying: bool):
    """The compiled relaxation of one run: ``(params, F (T, n, p)) → tuple of arrays``."""
    model = key.model
    if fast_path(model):
        return _linear_relaxer(model, n_steps, varying)
    sub = model.substrate
    graph = _graph(sub)
    inflow = _inflow(graph)
    n, K, dc = sub.n_nodes, model.n_types, model.content_dim
    mask = jnp.asarray(graph.mask)
    cand_pad = jnp.asarray(graph.cand_pad)
    gamma = jnp.asarray(model.gamma)
    finite = np.isfinite(model.budget)
    B = int(np.max(model.budget[finite])) if finite.any() else 1
    birth_level = jnp.asarray(np.stack([np.where(finite, model.budget, B) - 1 == b for b in range(B)]),
                              dtype=float)  # (B, K)
    finite_j = jnp.asarray(finite)[:, None]  # (K, 1)
    tilted = model.tilted
    content_tilt = _content_tilt(model)
    content_dock = model.content_dependent_docking
    countdown = model.lifetime == "countdown"
    Ch = 1 + dc

    def run(p, F):
        X = emission.design_matrix(F)  # (T, n, dx)
        lam = emission.emission_rate(X, p["u"], p["r_max"], model.emission_link)  # (T, n, K)
        births = jnp.moveaxis(lam, -1, -2)[:, None]  # (T, 1, K, n)
        if dc:
            loc = emission.content_loc(F, p["content_mean"], p["content_B"])  # (T, n, K, dc)
            births = jnp.concatenate([births, jnp.moveaxis(loc, (1, 2, 3), (3, 2, 1)) * births], axis=1)
        births = births[:, None] * birth_level[None, :, None, :, None]  # (T, B, Ch, K, n)
        zlog = jnp.moveaxis(docking.dock_logit(X[:, :, None, :], p["w"]), -1, -2)  # (T, K, n)
        keep = (1.0 - p["a"])[None, :]  # (1, n)
        if countdown:
            ages = jnp.arange(1, A + 1, dtype=lam.dtype)[:, None]
            _, log_keep = decay.countdown_log_hazard(ages, p["shape"][None], p["rate"][None])  # (A, K)
            surv = jnp.exp(log_keep)[:, None, None, :, None] * keep  # (A, 1, 1, K, n)
        else:
            surv = ((1.0 - p["delta"])[:, None] * keep)[None, None, None]  # (1, 1, 1, K, n)
        T_rows = p["T"]  # (K, n, M)
        Fv = None
        if tilted:
            Fv = jnp.einsum("tnp,kp->tkn", F, p["v"])  # (T, K, n)
        Q_cand = p["Q"][:, cand_pad.clip(max=n - 1)] if content_tilt else None  # (K, n, M, dc)

        def probs(t_Fv, cbar):
            if not tilted:
                return T_rows
            score = jnp.where(mask, t_Fv[:, cand_pad.clip(max=n - 1)], 0.0)  # (K, n, M)
            if content_tilt:
                score = score + jnp.einsum("knmd,dkn->knm", Q_cand, cbar)
            logp = migration.move_log_probs(T_rows, mask, gamma[:, None], score)
            return jnp.where(mask, jnp.exp(logp), 0.0)

        def mean_content(x):  # (…, Ch, K, n) → (dc, K, n): C/ρ pooled over ages and levels
            mass = x[..., 0, :, :].reshape((-1, K, n)).sum(0)
            tot = jnp.moveaxis(x[..., 1:, :, :], -3, 0).reshape((dc, -1, K, n)).sum(1)
            return tot / jnp.where(mass > 0, mass, 1.0)

        def step(state, xs):
            b_t, z_t, Fv_t = xs
            if countdown:
                pre = jnp.concatenate([b_t[None], state[:-1]], axis=0)
                pre = pre.at[-1].add(state[-1]) if A > 1 else pre + state
            else:
                pre = state + b_t[None]
            P = probs(Fv_t, mean_content(pre) if content_tilt else None)
            arr = inflow(pre[..., None] * P)  # (A, B, Ch, K, n)
            if content_dock:
                z_t = z_t + jnp.einsum("dkn,kd->kn", mean_content(arr), p["w_c"])
            pd = jax.nn.sigmoid(z_t)  # (K, n)
            docked = arr * pd
            after = arr
            if finite.any():
                down = jnp.concatenate([docked[:, 1:], jnp.zeros_like(docked[:, :1])], axis=1)
                after = jnp.where(finite_j, arr - docked + down, arr)
            new = after * surv
            out = (new[:, :, 0].sum((0, 1)), docked[:, :, 0].sum((0, 1)), arr[:, :, 0].sum((0, 1)),
                   new[:, :, 1:].sum((0, 1)), docked[:, :, 1:].sum((0, 1)))
            return new, out

        init = jnp.zeros((A, B, Ch, K, n), lam.dtype)
        xs = (births, zlog, Fv if tilted else jnp.zeros((n_steps,), lam.dtype))
        _, (rho, docks, arrivals, cont, dcont) = jax.lax.scan(step, init, xs)
        tr = lambda x: jnp.swapaxes(x, -1, -2)  # (T, K, n) → (T, n, K)  # noqa: E731
        tc = lambda x: jnp.moveaxis(x, 1, 3)  # (T, dc, K, n) → (T, K, n, dc) → (T, n, K, dc)  # noqa: E731
        return tr(rho), tr(docks), tr(arrivals), jnp.swapaxes(tc(cont), 1, 2), jnp.swapaxes(tc(dcont), 1, 2)

    return jax.jit(run)

def _recursion(sub, n_steps: int):
    """The compiled linear recursion ``a = rec(P, src, S)`` of :mod:`nvppl._engine.relax` as a JAX
    function with a custom adjoint, both run on the host through ``pure_callback``.
    Layouts: ``P (T|1, n, M, K)``, ``src (T|1, Ch, n, K)``, ``S (T|1, n, K)`` → ``a (T, Ch, n, K)``."""
    core = engine("relax")
    cand = np.ascontiguousarray(sub.candidates, dtype=np.int64)
    n_cand = np.ascontiguousarray(sub.n_candidates, dtype=np.int64)
    ptr, esrc, slot = core.incoming(cand, n_cand)

    def c64(x):
        return np.ascontiguousarray(np.asarray(x, dtype=np.float64))

    def host_fwd(P, src, S):
        return core.forward(c64(P), c64(src), c64(S), ptr, esrc, slot, n_steps)

    def host_bwd(P, src, S, a, a_bar):
        return core.backward(c64(P), c64(src), c64(S), c64(a), c64(a_bar), cand, n_cand)

    def call_fwd(P, src, S):
        shape = jax.ShapeDtypeStruct((n_steps,) + src.shape[1:], jnp.float64)
        return jax.pure_callback(host_fwd, shape, P, src, S, vmap_method="sequential")

    @jax.custom_vjp
    def rec(P, src, S):
        return call_fwd(P, src, S)

    def fwd(P, src, S):
        a = call_fwd(P, src, S)
        return a, (P, src, S, a)

    def bwd(res, a_bar):
        P, src, S, a = res
        shapes = tuple(jax.ShapeDtypeStruct(x.shape, jnp.float64) for x in (P, src, S))
        return jax.pure_callback(host_bwd, shapes, P, src, S, a, a_bar, vmap_method="sequential")

    rec.defvjp(fwd, bwd)
    return rec


def _linear_relaxer(model, n_steps: int, varying: bool):
    """Relaxation through the compiled linear recursion (:func:`fast_path` models):
    ``a_t = Pᵀ(S_{t−1} ⊙ a_{t−1} + src_t)``, ``ρ_t = S_t ⊙ a_t``, docks ``p_dock ⊙ a_t``.
    Without time-varying covariates every input is shared by the steps."""
    sub = model.substrate
    rec = _recursion(sub, n_steps)
    dc = model.content_dim
    mask = jnp.asarray(sub.candidate_mask)
    cand_safe = jnp.asarray(np.maximum(sub.candidates, 0))
    gamma = jnp.asarray(model.gamma)
    one = jnp.asarray(model.budget == 1)  # (K,): a dock depletes

    def run(p, F):
        if not varying:
            F = F[:1]
        X = emission.design_matrix(F)  # (Tv, n, dx)
        lam = emission.emission_rate(X, p["u"], p["r_max"], model.emission_link)  # (Tv, n, K)
        src = lam[:, None]  # (Tv, 1, n, K)
        if dc:
            loc = emission.content_loc(F, p["content_mean"], p["content_B"])  # (Tv, n, K, dc)
            src = jnp.concatenate([src, jnp.moveaxis(loc, -1, 1) * src], axis=1)
        pd = jax.nn.sigmoid(docking.dock_logit(X[:, :, None, :], p["w"]))  # (Tv, n, K)
        S = (1.0 - p["a"])[:, None] * (1.0 - p["delta"]) * jnp.where(one, 1.0 - pd, 1.0)
        if model.tilted:
            score = jnp.einsum("tnp,kp->tkn", F, p["v"])[:, :, cand_safe]  # (Tv, K, n, M)
            logp = migration.move_log_probs(p["T"][None], mask, gamma[None, :, None], score)
            P = jnp.moveaxis(jnp.where(mask, jnp.exp(logp), 0.0), 1, -1)  # (Tv, n, M, K)
        else:
            P = jnp.moveaxis(p["T"], 0, -1)[None]  # (1, n, M, K)
        a = rec(P, src, S)  # (T, Ch, n, K)
        mass, cont = a[:, 0], jnp.moveaxis(a[:, 1:], 1, -1)  # (T, n, K), (T, n, K, dc)
        return S * mass, pd * mass, mass, S[..., None] * cont, pd[..., None] * cont

    return jax.jit(run)


def expected_release(density: Density, h, W_act, b_act):
    r"""Expected FiLM activation release per node and step (eq. 53).

    A docking vesicle of type ``κ`` with content ``c`` changes the activation
    ``h`` at its node by :math:`γ ⊙ h + β` with :math:`(γ, β) = W_{act}^κ c +
    b_{act}^κ` (eq. 21–22), and docks add (eq. 36). Because this is affine in
    ``c``, its expectation is the FiLM output driven by the expected docks
    :math:`D` and their expected summed content :math:`C^{dock}`:

    .. math::

        E[Δh_{total}(t, i)] = \sum_κ \big(W^κ_{act} C^{dock}[t,i,κ] + b^κ_{act} D[t,i,κ]\big)_γ ⊙ h
        + \big(\cdots\big)_β ,

    that is eq. 53 with the density of *docking* vesicles (release happens at
    docking, :ref:`design-model`) and mean content :math:`C^{dock}/D`. Exact whenever the
    density is (:func:`exact_in_mean`).

    Parameters
    ----------
    density : Density
    h : array (H,) or broadcastable to (..., T, n, H)
        Pre-activations.
    W_act : array (K, 2H, d_c)
    b_act : array (K, 2H)

    Returns
    -------
    array (..., T, n, H)
    """
    D = density.expected_docks  # (..., T, n, K)
    C = density.docked_content  # (..., T, n, K, dc)
    gb = jnp.einsum("khd,...nkd->...nh", jnp.asarray(W_act), C) + jnp.einsum("kh,...nk->...nh",
                                                                                jnp.asarray(b_act), D)
    H = gb.shape[-1] // 2
    return gb[..., :H] * jnp.asarray(h) + gb[..., H:]



def predicted_mean(density: Density, kind: str, detection: str, p_det=None, floor: float = 0.1):
    """Mean of an observed count under the detection model: ``ρ`` (exact),
    ``p_det·ρ`` (binomial thinning) or ``ρ + floor`` (Poisson noise); ``kind`` is
    ``"counts"`` or ``"docks"`` (``expected_docks`` in place of ``ρ``)."""
    base = density.rho if kind == "counts" else density.expected_docks
    return detected_mean(base, detection, p_det, floor)


def detected_mean(base, detection: str, p_det=None, floor: float = 0.1):
    """The detection model applied to expected true counts ``base`` (see :func:`predicted_mean`)."""
    if detection == "binomial":
        return p_det * base
    if detection == "poisson":
        return base + floor
    return base


def composite_log_likelihood(density: Density, obs, p_det=None, n_mix: int | None = None):
    r"""Composite log-likelihood of observations under the density's one-time marginals.

    Every observed count is taken as independent with its exact one-time
    marginal: the true count at ``(t, i, κ)`` is ``Poisson(ρ)`` (docks:
    ``Poisson(expected_docks)``), so an observation seen through

    * ``"exact"`` detection is ``Poisson(ρ)``;
    * ``"binomial"`` detection (each vesicle seen with probability ``p_det``) is
      ``Poisson(p_det ρ)`` (thinning);
    * ``"poisson"`` detection (``y | N ~ Poisson(N + floor)``) is the mixture
      :math:`\sum_N \mathrm{Poisson}(N; ρ)\,\mathrm{Poisson}(y; N + f)`, computed
      exactly for any ``ρ`` by Panjer's recursion up to the largest observation
      (``n_mix`` terms, default that value plus one).

    The product over steps ignores the correlation of counts over time, so it
    is a *composite* likelihood (Lindsay 1988): its maximiser is consistent, but
    a posterior built from it is too narrow (see :mod:`nvppl.infer.svi`).

    Parameters
    ----------
    density : Density
        With a run axis matching ``obs`` or without one (shared by all runs).
    obs : Observations
    p_det : float, optional
        Overrides ``obs.p_det``; required for binomial detection with unknown ``p_det``.
    n_mix : int, optional
        Terms of the Poisson-detection mixture.

    Returns
    -------
    array (R, T)
        Log-likelihood terms per run and step (summed over nodes, types and kinds).
    """
    from jax.scipy.special import gammaln, xlogy

    detection = obs.detection
    pd = obs.p_det if p_det is None else float(p_det)
    if detection == "binomial" and pd is None:
        raise ValueError("binomial detection with an unknown p_det: pass p_det=... (the composite likelihood "
                         "confounds p_det with the emission rate)")
    total = 0.0
    for kind in ("counts", "docks"):
        y = getattr(obs, kind)
        if y is None:
            continue
        y = jnp.asarray(y, dtype=float)
        if detection == "poisson":
            base = density.rho if kind == "counts" else density.expected_docks
            total = total + poisson_mix(y, base, obs.floor, n_mix).sum((-1, -2))
        else:
            mu = predicted_mean(density, kind, detection, pd, obs.floor)
            total = total + (xlogy(y, mu) - mu - gammaln(y + 1.0)).sum((-1, -2))
    return jnp.broadcast_to(total, (obs.n_runs, obs.n_steps))


def poisson_mix(y, rho, floor, n_mix=None):
    r"""``log P(y)`` for ``y = Z + X``, ``Z ~ Poisson(floor)`` independent of
    ``X | N ~ Poisson(N)``, ``N ~ Poisson(ρ)`` (Poisson detection of a Poisson count).

    ``X`` is compound Poisson (Neyman type A) with Poisson(1) summands; its pmf
    follows Panjer's recursion

    .. math::

        P_X(0) = e^{-ρ(1 - e^{-1})},\qquad
        P_X(k) = \frac{ρ}{k}\sum_{j=1}^{k} j\,\frac{e^{-1}}{j!}\,P_X(k - j),

    run in log space up to the largest observation (``n_mix`` terms, default
    its value plus one), so it is exact for any ``ρ``; then
    :math:`P(y) = \sum_{k \le y} \mathrm{Poisson}(y - k; f)\,P_X(k)`.
    """
    from jax.scipy.special import gammaln, logsumexp, xlogy

    if n_mix is None:
        n_mix = int(np.max(np.asarray(y))) + 1 if np.size(y) else 1
    n_mix = max(int(n_mix), 1)
    rho = jnp.asarray(rho, dtype=float)
    lr = jnp.log(jnp.where(rho > 0, rho, 1.0))
    j = jnp.arange(1, n_mix, dtype=float)
    lsev = jnp.log(j) - 1.0 - gammaln(j + 1.0)  # log(j e^{-1} / j!)
    first = -rho * (1.0 - np.exp(-1.0))
    logp = jnp.full((n_mix,) + rho.shape, -jnp.inf).at[0].set(first)

    def body(k, logp):
        # terms j = 1..k of P(k) = ρ/k Σ_j j g(j) P(k - j)
        prev = logp[jnp.clip(k - jnp.arange(1, n_mix), 0, n_mix - 1)]  # (n_mix-1, ...)
        valid = (jnp.arange(1, n_mix) <= k).reshape((-1,) + (1,) * rho.ndim)
        terms = jnp.where(valid, lsev.reshape((-1,) + (1,) * rho.ndim) + prev, -jnp.inf)
        val = lr - jnp.log(k) + logsumexp(terms, axis=0)
        return logp.at[k].set(jnp.where(rho > 0, val, -jnp.inf))

    logp = jax.lax.fori_loop(1, n_mix, body, logp)  # (n_mix, ...): log P_X(k)
    y = jnp.asarray(y, dtype=float)
    k = jnp.arange(n_mix, dtype=float).reshape((-1,) + (1,) * y.ndim)
    d = y[None] - k
    lz = jnp.where(d >= 0, xlogy(d, floor) - floor - gammaln(jnp.maximum(d, 0.0) + 1.0), -jnp.inf)
    shape = jnp.broadcast_shapes(rho.shape, y.shape)
    logp = logp.reshape((n_mix,) + (1,) * (len(shape) - rho.ndim) + rho.shape)
    return logsumexp(lz + logp, axis=0)
