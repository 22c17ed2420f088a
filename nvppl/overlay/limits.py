r"""FiLM, hypernetworks and attention as limits of many vesicles (paper abstract, §3.4, §5.3).

Each function runs the explicit vesicle population (:func:`nvppl.population.step`,
the step the overlay uses) for one step on a small graph, many times over, at a
growing expected number ``N̄`` of docking vesicles, and compares the release of
the vesicles that docked with its limit. The vesicles' effects are normalised by
``N̄`` (each vesicle carries ``1/N̄`` of the modulation), the scaling under which
the sum has a limit; the Monte Carlo error then shrinks as ``N̄^{-1/2}``, with the
constant the density predicts from the variance of one vesicle's effect.

:func:`film_limit`
    The summed FiLM release ``(1/N̄) Σ_v (W c_v + b)`` (eq. 21, 36) tends to the
    FiLM of the mean content, ``W m + b`` (eq. 53).
:func:`hypernetwork_limit`
    The summed rank-one release ``(1/N̄) Σ_v η (U c_v)(V c_v)ᵀ`` (eq. 27) tends to
    ``η U E[c cᵀ] Vᵀ = η (U m)(V m)ᵀ + η U Σ_c Vᵀ``: the weight a hypernetwork
    ``m ↦ η (U m)(V m)ᵀ`` generates from the mean content, exactly so as the
    content's spread ``Σ_c`` vanishes.
:func:`attention_limit`
    Vesicles emitted at a query node with content ``q`` migrate to one of the
    source nodes with the content-tilted kernel ``P(s) ∝ exp(q · K_s)`` (eq. 17,
    ``Q`` as keys), dock there, and release the source's value ``value_s``;
    averaged over the docked vesicles the release tends to softmax attention
    ``Σ_s softmax(q · K)_s value_s``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import population
from .._validate import as_jax_key
from ..kernels import emission
from ..kernels import release as kr
from ..model import VesicleModel
from ..substrate import Substrate

__all__ = ["LimitResult", "film_limit", "hypernetwork_limit", "attention_limit"]


class LimitResult(NamedTuple):
    """Monte Carlo release against its limit, per density.

    Attributes
    ----------
    density : (m,)
        Expected docking vesicles ``N̄``.
    mean : (m, d)
        Mean of the Monte Carlo release over the replicates.
    se : (m, d)
        Its standard error.
    error : (m,)
        Root-mean-square error of one replicate's release against the limit
        (over replicates and coordinates).
    predicted : (m,)
        That error as the variance of one vesicle's effect predicts, ``sqrt(E‖X − μ‖²/d/N̄)``
        (``E‖X‖²`` for the Poisson sums).
    limit : (d,)
        The limit.
    """

    density: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    error: np.ndarray
    predicted: np.ndarray
    limit: np.ndarray


def _one_step(model, params, capacity, n_reps, key, F):
    """The step records of ``n_reps`` fresh populations after one step (arrays ``(n_reps, C)``)."""
    p = jax.tree.map(jnp.asarray, params)
    consts = population.constants(model)
    Fj = jnp.asarray(F)[None]
    X = emission.design_matrix(Fj)

    @jax.jit
    def run(keys):
        def one(k):
            s0 = population.init_state(1, capacity, model.content_dim)
            s, rec, _ = population.step(model, p, consts, s0, 0, X, Fj, population.keyed_draw(k))
            return s.overflow_step[0], jax.tree.map(lambda a: a[0], rec)
        return jax.vmap(one)(keys)

    over, rec = run(jax.random.split(key, n_reps))
    if np.any(np.asarray(over) >= 0):
        raise AssertionError("internal: the limit's capacity was too small")
    return jax.tree.map(np.asarray, rec)


def _capacity(mean):
    return int(64 * np.ceil((mean + 10 * np.sqrt(mean) + 64) / 64))


def _single_node_model(content_dim):
    return VesicleModel(Substrate.from_edges([0], [], allow_stay=True), n_types=1, content_dim=content_dim,
                        emission_link="log", priors={"a": 0.0, "w_c": 0.0})


def _sums(rec):
    """Docked count, summed content and summed second moment per replicate (one node, one type)."""
    d = rec.docked.astype(float)
    c = rec.content
    return d.sum(1), np.einsum("rc,rcd->rd", d, c), np.einsum("rc,rcd,rce->rde", d, c, c)


def _result(densities, draws, limit, one_effect):
    draws = [np.asarray(x) for x in draws]
    mean = np.array([x.mean(0) for x in draws])
    se = np.array([x.std(0, ddof=1) / np.sqrt(len(x)) for x in draws])
    err = np.array([np.sqrt(np.mean((x - limit) ** 2)) for x in draws])
    pred = np.array([np.sqrt(one_effect / len(limit) / N) for N in densities])
    return LimitResult(np.asarray(densities, float), mean, se, err, pred, np.asarray(limit))


def _content_params(model, rate, p_dock, m, sigma):
    p = model.default_params()
    u = np.array([[np.log(rate)]])
    w = np.array([[np.log(p_dock / (1 - p_dock))]])
    return p.replace(u=u, w=w, delta=np.ones(1), content_mean=np.asarray(m, float)[None],
                     content_scale=np.asarray(sigma, float)[None])


def film_limit(densities=(4, 16, 64, 256), n_reps: int = 400, key=0, p_dock: float = 0.5) -> LimitResult:
    """Summed FiLM release of ``N̄`` docking vesicles per step against the FiLM of the mean content.

    Vesicles live one step (δ = 1) on one node, are emitted at rate ``N̄ / p_dock`` and
    dock with ``p_dock``; content ``c ~ Normal(m, diag σ²)`` with ``d_c = 3`` and FiLM
    maps for ``H = 2`` units (fixed, drawn once).

    Examples
    --------
    >>> r = film_limit(densities=(8, 32), n_reps=50)
    >>> r.limit.shape, bool(r.error[1] < r.error[0])
    ((4,), True)
    """
    rng = np.random.default_rng(1)
    m, sigma = np.array([0.5, -1.0, 0.8]), np.array([0.6, 0.3, 1.0])
    W, b = rng.normal(size=(1, 4, 3)), rng.normal(size=(1, 4))
    model = _single_node_model(3)
    limit = np.concatenate(kr.film_from_sums(jnp.asarray(m)[None], jnp.ones(1), W, b))
    one = np.sum(limit ** 2) + np.sum((W[0] ** 2) @ sigma ** 2)  # E‖W c + b‖²
    draws, k = [], as_jax_key(key)
    for i, N in enumerate(densities):
        rec = _one_step(model, _content_params(model, N / p_dock, p_dock, m, sigma), _capacity(N / p_dock),
                        n_reps, jax.random.fold_in(k, i), np.zeros((1, 0)))
        D, S, _ = _sums(rec)
        g, bb = kr.film_from_sums(jnp.asarray(S / N)[:, None], jnp.asarray(D / N)[:, None], W, b)
        draws.append(np.concatenate([np.asarray(g), np.asarray(bb)], axis=1))
    return _result(densities, draws, limit, one)


def hypernetwork_limit(densities=(4, 16, 64, 256), n_reps: int = 400, key=0, p_dock: float = 0.5,
                       spread: float = 0.3) -> LimitResult:
    """Summed rank-one release against ``η U E[c cᵀ] Vᵀ`` (flattened ``H × D = 2 × 3``).

    The content has mean ``m`` and standard deviation ``spread`` in each of its 2
    dimensions; :attr:`LimitResult.limit` is the exact limit, and the hypernetwork
    output from the mean content ``η (U m)(V m)ᵀ`` differs from it by ``η U Σ_c Vᵀ``.

    Examples
    --------
    >>> r = hypernetwork_limit(densities=(8, 32), n_reps=50)
    >>> r.limit.shape
    (6,)
    """
    rng = np.random.default_rng(2)
    m, sigma = np.array([1.0, -0.5]), np.full(2, spread)
    U, V, eta = rng.normal(size=(1, 2, 2)), rng.normal(size=(1, 3, 2)), np.array([0.7])
    model = _single_node_model(2)
    second = np.outer(m, m) + np.diag(sigma ** 2)
    limit = np.asarray(kr.rank_one_from_moment(jnp.asarray(second)[None], U, V, eta)).ravel()
    # E‖X‖² of one vesicle's effect, by a large sample of single contents
    c = m + sigma * rng.standard_normal((200_000, 2))
    X = eta[0] * np.einsum("nh,nj->nhj", c @ U[0].T, c @ V[0].T).reshape(len(c), -1)
    one = float(np.mean(np.sum(X ** 2, axis=1)))
    draws, k = [], as_jax_key(key)
    for i, N in enumerate(densities):
        rec = _one_step(model, _content_params(model, N / p_dock, p_dock, m, sigma), _capacity(N / p_dock),
                        n_reps, jax.random.fold_in(k, i), np.zeros((1, 0)))
        _, _, S2 = _sums(rec)
        d = kr.rank_one_from_moment(jnp.asarray(S2 / N)[:, None], U, V, eta)
        draws.append(np.asarray(d).reshape(n_reps, -1))
    return _result(densities, draws, limit, one)


def attention_limit(densities=(4, 16, 64, 256), n_reps: int = 400, key=0) -> LimitResult:
    """Release averaged over docked vesicles against softmax attention over 4 source nodes.

    A query node (label 0) emits ``N̄`` vesicles per step with content ``q`` (spread
    10⁻⁶); they move to one of the sources 1–4 with probability ``∝ exp(q · K_s)``
    (uniform ``T``, ``Q = K`` as keys, γ = 1), dock surely and release the
    source's value ``value_s ∈ R³`` (the ``β`` of its FiLM map). The limit is
    ``Σ_s softmax(q · K)_s value_s``.

    Examples
    --------
    >>> r = attention_limit(densities=(8, 32), n_reps=50)
    >>> r.limit.shape
    (3,)
    """
    rng = np.random.default_rng(3)
    S_n, dc = 4, 2
    q, keys, values = np.array([0.8, -0.4]), rng.normal(size=(S_n, dc)), rng.normal(size=(S_n, 3))
    edges = [(0, s) for s in range(1, S_n + 1)] + [(s, s) for s in range(1, S_n + 1)]
    sub = Substrate.from_edges(range(S_n + 1), edges, allow_stay=False)
    model = VesicleModel(sub, n_types=1, content_dim=dc, covariate_dim=1, emission_link="log", tilt=True,
                         priors={"a": 0.0, "w_c": 0.0})
    score = keys @ q
    attn = np.exp(score - score.max())
    attn /= attn.sum()
    limit = attn @ values
    one = float(attn @ np.sum((values - limit) ** 2, axis=1))  # ratio estimator: variance about the mean
    F = np.zeros((S_n + 1, 1))
    F[0, 0] = 1.0  # the query node's indicator: emission there only
    draws, k = [], as_jax_key(key)
    for i, N in enumerate(densities):
        p = model.default_params()
        Q = np.zeros((1, S_n + 1, dc))
        Q[0, 1:] = keys
        p = p.replace(u=np.array([[-40.0, 40.0 + np.log(N)]]), w=np.array([[40.0, 0.0]]), delta=np.zeros(1),
                      content_mean=q[None], content_scale=np.full((1, dc), 1e-6), Q=Q, v=np.zeros((1, 1)))
        rec = _one_step(model, p, _capacity(N), n_reps, jax.random.fold_in(k, i), F)
        d = rec.docked & (rec.node_to > 0)
        counts = np.stack([np.sum(d & (rec.node_to == s), axis=1) for s in range(1, S_n + 1)], axis=1)
        total = np.maximum(counts.sum(1, keepdims=True), 1)
        draws.append((counts / total) @ values)
    return _result(densities, draws, limit, one)
