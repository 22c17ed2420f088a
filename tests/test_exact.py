"""The exact likelihood of partial observations (``nvppl.exact``) against independent computations.

- Monte Carlo: the exact probability of one observed history equals its frequency among
  runs simulated by ``nv.simulate`` and observed by ``traces.observe``, within 3 binomial
  standard errors ``sqrt(p (1 - p) / N)``.
- A forward recursion on one node written here in NumPy from the model description, with
  the true births and docks summed explicitly: equal to 1e-9 (both exact; the
  recursion's cap leaves less than 1e-12).
- The NumPy oracle of ``tests/_support/forward.py`` on 2- and 3-node graphs (sinks,
  budgets, two types, docks): equal within the truncation bounds both report, plus 1e-9.
- The bootstrap particle filter is unbiased: the mean of ``exp(log Ẑ − log Z)`` over
  independent seeds is 1 within 3 standard errors of that mean.
- Truncation and refusal messages; gradients against central finite differences.

Seeds are fixed.
"""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
from scipy import special, stats

import nvppl as nv
from nvppl.exact import (MAX_STATES, TruncationError, check_truncation, default_bounds, exact_forward,
                         exact_log_increments, exact_log_likelihood, exact_supported)
from tests._support.forward import exact_log_likelihood as oracle

CYCLE2 = nx.DiGraph([(0, 1), (1, 0)])


def two_node(budget=None, K=1, **changes):
    """The 2-node cycle with stay of ``tests/smc/test_filter.py``: small rates."""
    model = nv.VesicleModel(nv.Substrate.from_networkx(CYCLE2), n_types=K, budget=budget)
    params = model.default_params().replace(
        u=np.full((K, 1), -0.8), T=np.tile(np.array([[0.7, 0.3], [0.4, 0.6]]), (K, 1, 1)),
        w=np.full((K, 1), -0.85), a=np.array([0.1, 0.0]), delta=np.full(K, 0.3))
    return model, params.replace(**changes)


def observed(model, params, n_steps, key, detection="binomial", docks=True, n_runs=1, covariates=None):
    traces = nv.simulate(model, params, n_steps=n_steps, n_runs=n_runs, key=key, covariates=covariates)
    p_det = 0.7 if detection == "binomial" else None
    return traces.observe(counts=True, docks=docks, detection=detection, p_det=p_det, key=key + 1)


# ------------------------------------------------------------------ (a) Monte Carlo
TILTED = dict(u=np.array([[-1.3, 0.6]]), w=np.array([[-0.4, 0.8]]), v=np.array([[1.2]]), a=np.array([0.2, 0.0]),
              delta=np.array([0.25]), T=np.array([[[0.6, 0.4], [0.5, 0.5]]]))


@pytest.mark.parametrize("case", ["plain", "tilted"])
def test_probability_of_a_history_is_its_simulated_frequency(case):
    """Exact detection on 2 nodes and 3 steps: P(history) from the forward algorithm
    against the fraction of 40000 simulated runs showing that history, |z| < 3 for
    each of four histories fixed in advance (counts and docks, and counts alone)."""
    if case == "plain":
        model, params = two_node(u=np.full((1, 1), -1.2), w=np.full((1, 1), -0.5))
        F = None
    else:  # covariates, covariate tilt of migration, budget 1, absorption
        model = nv.VesicleModel(nv.Substrate.from_networkx(CYCLE2), n_types=1, covariate_dim=1, tilt=True, budget=1)
        params = model.default_params().replace(**TILTED)
        F = np.array([[[0.5], [-1.0]], [[-0.5], [1.0]], [[1.5], [0.0]]])  # (T, n, p), the same in every run
    N = 40_000
    traces = nv.simulate(model, params, n_steps=3, n_runs=N, key=11, covariates=F)
    counts, docks = traces.counts()[..., 0], traces.dock_counts()[..., 0]  # (N, T, n)
    histories = [  # (counts (T, n), docks (T, n) or None), chosen from a pilot run with another seed
        ([[0, 0], [0, 0], [1, 0]], [[0, 0], [0, 0], [0, 0]]),
        ([[0, 0], [0, 0], [0, 0]], [[0, 0], [0, 0], [1, 0]]),
        ([[0, 0], [0, 0], [0, 0]], [[1, 0], [0, 0], [0, 0]]),
        ([[0, 0], [0, 0], [0, 1]], None),
    ]
    for y, d in histories:
        y = np.array(y)
        hit = np.all(counts == y, axis=(1, 2))
        obs = nv.Observations(counts=y[None, :, :, None], docks=None if d is None else np.array(d)[None, :, :, None])
        if d is not None:
            hit &= np.all(docks == np.array(d), axis=(1, 2))
        p = float(np.exp(exact_log_likelihood(model, params, obs, covariates=F)))
        se = np.sqrt(p * (1 - p) / N)
        z = (hit.mean() - p) / se
        assert p > 0.005 and abs(z) < 3, (y.tolist(), d, p, hit.mean(), z)


# ------------------------------------------------------------- (b) one node in NumPy
def one_node_forward(lam, p, surv, budget_one, y, d, pd, cap=40):
    """Forward recursion on one node with a self-loop, from the model description:
    births ``b ~ Poisson(λ_t)``, arrivals ``A = m + b``, true docks ``D ~ Bin(A, p_t)``,
    survivors ``Bin(A - D, σ)`` (budget 1) or ``Bin(A, σ)`` (budget ∞); counts and docks
    seen ``Bin(·, π)``. Returns the log-increments."""
    k = np.arange(cap + 1)
    alpha, out = np.eye(cap + 1)[0], []
    for t in range(len(lam)):
        new = np.zeros(cap + 1)
        for m in np.flatnonzero(alpha > 1e-300):
            for b in range(cap + 1 - m):
                A = m + b
                D = np.arange(A + 1)
                pD = stats.binom.pmf(D, A, p[t]) * stats.binom.pmf(d[t], D, pd)
                if budget_one:
                    pN = pD @ stats.binom.pmf(k[None, :], (A - D)[:, None], surv)
                else:
                    pN = pD.sum() * stats.binom.pmf(k, A, surv)
                new += alpha[m] * stats.poisson.pmf(b, lam[t]) * pN
        new *= stats.binom.pmf(y[t], k, pd)
        out.append(np.log(new.sum()))
        alpha = new / new.sum()
    return np.array(out)


@pytest.mark.parametrize("budget", [None, 1])
def test_one_node_matches_a_numpy_recursion(budget):
    """With covariates (time-varying emission and docking), binomial counts and docks."""
    sub = nv.Substrate.from_networkx(nx.DiGraph([(0, 0)]))
    model = nv.VesicleModel(sub, n_types=1, covariate_dim=1, budget=budget)
    params = model.default_params().replace(u=np.array([[-0.3, 0.8]]), w=np.array([[-1.0, 1.2]]),
                                            a=np.array([0.1]), delta=np.array([0.2]))
    F = np.random.default_rng(0).normal(size=(12, 1, 1))
    obs = observed(model, params, 12, key=5, covariates=F)
    inc = np.asarray(exact_log_increments(model, params, obs, covariates=F))[0]
    lam = special.expit(-0.3 + 0.8 * F[:, 0, 0])
    p = special.expit(-1.0 + 1.2 * F[:, 0, 0])
    ref = one_node_forward(lam, p, 0.9 * 0.8, budget == 1, obs.counts[0, :, 0, 0], obs.docks[0, :, 0, 0], 0.7)
    assert np.allclose(inc, ref, rtol=0, atol=1e-9), inc - ref


# --------------------------------------------------------- the oracle on small graphs
def graph_case(G, allow_stay=True, budget=None, K=1, seed=3):
    sub = nv.Substrate.from_networkx(G, allow_stay=allow_stay)
    model = nv.VesicleModel(sub, n_types=K, budget=budget)
    rng = np.random.default_rng(seed)
    T = np.zeros((K, sub.n_nodes, sub.max_candidates))
    for k in range(K):
        for i in range(sub.n_nodes):
            T[k, i, : sub.n_candidates[i]] = rng.dirichlet(np.ones(sub.n_candidates[i]))
    return model, model.default_params().replace(
        u=np.full((K, 1), -0.8), T=T, w=np.full((K, 1), -0.85), delta=np.full(K, 0.3),
        a=np.r_[0.1, np.zeros(sub.n_nodes - 1)])


ORACLE_CASES = {
    "cycle2 binomial docks": (dict(G=CYCLE2), dict(), 14),
    "cycle2 budget 1": (dict(G=CYCLE2, budget=1), dict(), 14),
    "cycle2 exact": (dict(G=CYCLE2), dict(detection="exact"), 14),
    "cycle2 two types": (dict(G=CYCLE2, K=2, budget=[1, None]), dict(), 14),
    "path3 sinks": (dict(G=nx.DiGraph([(0, 1), (1, 2)]), allow_stay=False, K=2, budget=[1, None]),
                    dict(docks=False), 9),
    "cycle3 counts": (dict(G=nx.DiGraph([(0, 1), (1, 2), (2, 0)])), dict(docks=False), 9),
}


@pytest.mark.parametrize("name", sorted(ORACLE_CASES))
def test_agrees_with_the_numpy_oracle(name):
    """Log-likelihood, increments and filtered means against ``tests/_support/forward.py``."""
    kw, obs_kw, cap = ORACLE_CASES[name]
    model, params = graph_case(**kw)
    obs = observed(model, params, 8, key=3, n_runs=2, **obs_kw)
    ref = oracle(model, params, obs, cap=cap, tol=1e-6)
    res = exact_forward(model, params, obs)
    check_truncation(res)
    # each side is exact up to its truncation share (to first order a bound of the relative error)
    tol = 1e-9 + ref.lost_mass + float(np.asarray(res.lost).sum(1).max())
    assert abs(float(res.log_increments.sum()) - ref.log_likelihood) < tol
    assert np.allclose(np.asarray(res.log_increments), ref.increments, rtol=0, atol=tol)
    assert np.allclose(np.asarray(res.filtered_mean), ref.filtered_mean, rtol=0, atol=1e-6)


# ------------------------------------------------------ (c) the particle filter
@pytest.mark.parametrize("budget", [None, 1])
def test_particle_filter_is_unbiased_against_it(budget):
    """Counts and docks, binomial detection: mean of Ẑ/Z over 300 seeds (64 particles)
    is 1 within 3 standard errors, and the check has power (0.5 < mean < 2)."""
    model, params = two_node(budget=budget)
    obs = observed(model, params, 8, key=3)
    exact = float(exact_log_likelihood(model, params, obs))
    ratio = []
    for seed in range(300):
        try:
            pf = nv.smc.particle_filter(model, params, obs, n_particles=64, key=seed, trajectory=False)
            ratio.append(np.exp(pf.log_evidence - exact))
        except nv.ObservationError:  # every particle impossible: the estimate is 0
            ratio.append(0.0)
    ratio = np.array(ratio)
    se = ratio.std(ddof=1) / np.sqrt(len(ratio))
    assert abs(ratio.mean() - 1) < 3 * se and 0.5 < ratio.mean() < 2, (ratio.mean(), se)


# ----------------------------------------------------- (d) truncation and refusals
def test_truncation_is_measured_and_refused():
    model, params = two_node()
    obs = observed(model, params, 8, key=3)
    B, Bb = default_bounds(model, params, obs)
    res = exact_forward(model, params, obs)
    assert (res.max_count, res.max_births) == (B, Bb) and float(np.asarray(res.lost).sum(1).max()) < 1e-6
    top = int(obs.counts.max())
    with pytest.raises(TruncationError, match=r"run \d+, step \d+, type 0: .*pass a larger max_count"):
        exact_log_likelihood(model, params, obs, max_count=top, max_births=Bb)
    with pytest.raises(ValueError, match=f"max_count={top - 1} is below the count {top} seen at run 0"):
        exact_log_likelihood(model, params, obs, max_count=top - 1)
    # a larger bound changes the value by less than the share it reported
    small = exact_forward(model, params, obs, max_count=top + 2)
    gap = abs(float(small.log_increments.sum()) - float(res.log_increments.sum()))
    assert 0 < gap <= 1.01 * float(np.asarray(small.lost).sum(1).max())


def test_births_bound_is_measured():
    """Docks alone put no bound on the counts: births beyond max_births are reported as such."""
    model, params = two_node(u=np.full((1, 1), 1.5))
    obs = observed(model, params, 6, key=3)
    docks = nv.Observations(docks=obs.docks, detection="binomial", p_det=0.7)
    with pytest.raises(TruncationError, match=r"type 0: with max_count=\d+ and max_births=3 .*larger max_births"):
        exact_log_likelihood(model, params, docks, max_births=3, max_count=30)


def test_impossible_observations_give_minus_infinity():
    """Nothing reaches node 0 of the path 0 -> 1 without stay: a count there is impossible."""
    model = nv.VesicleModel(nv.Substrate.from_networkx(nx.DiGraph([(0, 1)]), allow_stay=False), n_types=1)
    y = np.zeros((1, 4, 2, 1), int)
    y[0, 2, 0, 0] = 1
    res = exact_forward(model, model.default_params(), nv.Observations(counts=y), max_births=400)
    inc = np.asarray(res.log_increments)[0]
    assert np.all(np.isfinite(inc[:2])) and np.all(inc[2:] == -np.inf)


@pytest.mark.parametrize("kwargs,obs_kwargs,reason", [
    (dict(lifetime="countdown"), {}, "lifetime='countdown': the age of every vesicle"),
    (dict(content_dim=1, priors={"w_c": 0.5}), {}, r"docking depends on content \(w_c\)"),
    (dict(content_dim=1, tilt=True, priors={"w_c": 0.0}), {}, r"migration depends on content \(the tilt Q\)"),
    (dict(budget=2), {}, "type 0 has a release budget of 2"),
    ({}, dict(detection="poisson"), "detection='poisson'"),
    ({}, dict(detection="binomial"), "binomial detection with an unknown p_det"),
])
def test_models_outside_the_class_are_refused(kwargs, obs_kwargs, reason):
    model = nv.VesicleModel(nv.Substrate.from_networkx(CYCLE2), n_types=1, **kwargs)
    obs = nv.Observations(counts=np.ones((1, 3, 2, 1), int), **obs_kwargs)
    assert exact_supported(model, obs) is not None
    with pytest.raises(ValueError, match=reason):
        exact_log_likelihood(model, model.default_params(), obs)


def test_supported_cases_and_size_limits():
    model = nv.VesicleModel(nv.Substrate.from_networkx(nx.path_graph(5)), n_types=2, covariate_dim=1, tilt=True,
                            budget=[1, None])
    obs = nv.Observations(counts=np.full((1, 3, 5, 2), 6), detection="binomial", p_det=0.5)
    assert exact_supported(model, obs, max_count=6) is None  # 7^5 = 16807 states
    inert = nv.VesicleModel(model.substrate, n_types=2, content_dim=2, priors={"w_c": 0.0})  # content acts on nothing
    assert exact_supported(inert, obs) is None
    big = nv.Observations(counts=np.full((1, 3, 5, 2), 7))
    assert f"MAX_STATES = {MAX_STATES}" in exact_supported(model, big)
    with pytest.raises(ValueError, match=r"\(max_count \+ 1\)\^n = 8\^5 = 32768 .* MAX_STATES = 20000"):
        exact_log_likelihood(model, model.default_params(), big, covariates=np.zeros((5, 1)))
    full = nv.VesicleModel(nv.Substrate.from_networkx(nx.complete_graph(4)), n_types=1)
    assert "MAX_TENSOR" in exact_supported(full, nv.Observations(counts=np.full((1, 3, 4, 1), 10)))


# ------------------------------------------------------------------ (e) gradients
def test_gradient_matches_finite_differences():
    """Every inferred field, with covariates, covariate tilt, budget 1, binomial counts and
    docks. Central differences with h = 1e-5 err by about h² f'''/6 (~1e-10) plus
    rounding 1e-16 |f| / h (~1e-10); the tolerance 1e-7 is a thousand times that."""
    model = nv.VesicleModel(nv.Substrate.from_networkx(CYCLE2), n_types=1, covariate_dim=1, tilt=True, budget=1)
    params = model.default_params().replace(**{**TILTED, "a": np.array([0.2, 0.05])})
    F = np.random.default_rng(1).normal(size=(2, 6, 2, 1))
    obs = observed(model, params, 6, key=4, n_runs=2, covariates=F)

    def f(p):
        return exact_log_likelihood(model, p, obs, covariates=F, max_count=12, max_births=12)

    f_jit, point = jax.jit(f), jax.tree.map(jnp.asarray, params)
    grad = jax.jit(jax.grad(f))(point)
    assert float(f_jit(point)) == pytest.approx(float(f(params)), abs=1e-12)
    h = 1e-5
    for name in ("u", "w", "v", "a", "delta", "T"):
        base = np.asarray(getattr(params, name), float)
        for idx in np.ndindex(base.shape):
            step = np.zeros_like(base)
            step[idx] = h
            if name == "T":  # along the simplex of the row
                if idx[-1] > 0:
                    continue
                step[idx[:-1] + (1,)] = -h
            up, down = (point.replace(**{name: jnp.asarray(base + sign * step)}) for sign in (1, -1))
            fd = (float(f_jit(up)) - float(f_jit(down))) / (2 * h)
            ad = float(np.sum(np.asarray(getattr(grad, name)) * step) / h)
            assert ad == pytest.approx(fd, abs=1e-7), (name, idx, ad, fd)
