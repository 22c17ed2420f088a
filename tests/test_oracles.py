"""Independent checks of the forward-algorithm oracle in ``tests/_support/forward.py``.

The oracle is validated against facts that do not use it:

- normalisation: on one node the observations are the whole state, so the
  probabilities of all observation sequences (up to the cap) sum to one; the
  missing mass is bounded by Poisson tails, since each count and each dock count
  is Poisson at a single step (docs/design.rst, "The density relaxation");
- the tower property ``Σ_y p(y_≤t) E[N_t | y_≤t] = E[N_t] = ρ_t``, with ``ρ_t`` from
  the density recursion of docs/design.rst ("The density relaxation") written out here;
- closed forms for the first step (Poisson thinning);
- the empirical frequencies of observation sequences simulated by
  ``nv.simulate`` (chi-square goodness of fit, categories chosen on a separate
  part of the sample);
- additivity over types, and the error paths.
"""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
from tests._support.forward import TruncationError, exact_log_likelihood
from scipy import special, stats

import nvppl as nv


# ----------------------------------------------------------------- helpers
def _dense_T(model, params, k):
    """Dense migration matrix ``T[i, j]`` of type ``k`` (zero rows on sinks)."""
    sub = model.substrate
    out = np.zeros((sub.n_nodes, sub.n_nodes))
    for i in range(sub.n_nodes):
        for slot, j in enumerate(sub.candidates[i]):
            if j >= 0:
                out[i, j] = params.T[k, i, slot]
    return out


def _rates(model, params, k):
    """Emission rate ``λ``, dock probability ``p`` and per-node survival of
    absorption and decay ``σ_j = (1 - a_j)(1 - δ)`` of type ``k``."""
    u0 = params.u[k, 0]
    lam = params.r_max[k] * special.expit(u0) if model.emission_link == "sigmoid" else np.exp(u0)
    p = special.expit(params.w[k, 0])
    return lam, p, (1 - params.a) * (1 - params.delta[k])


def _densities(model, params, k, n_steps):
    """``ρ_t`` (counts) and ``E[D_t]`` by the density recursion (docs/design.rst)."""
    lam, p, surv = _rates(model, params, k)
    Tk = _dense_T(model, params, k)
    depleted = np.isfinite(model.budget[k])  # budget 1
    rho, dock = [], []
    prev = np.zeros(model.n_nodes)
    for _ in range(n_steps):
        arrive = Tk.T @ (prev + lam)
        dock.append(p * arrive)
        prev = arrive * surv * (1 - p * depleted)
        rho.append(prev)
    return np.array(rho), np.array(dock)


def _all_sequences(n_values, n_entries):
    """Every integer vector in ``{0..n_values-1}^n_entries`` (one per row)."""
    return np.array(list(itertools.product(range(n_values), repeat=n_entries)), dtype=np.int64)


def _single_node_model(budget=None):
    G = nx.DiGraph()
    G.add_node(0)
    return nv.VesicleModel(nv.Substrate.from_networkx(G, allow_stay=True), n_types=1, budget=budget)


def _single_node_params(model):
    return model.default_params().replace(
        u=np.array([[special.logit(0.4)]]), delta=np.array([0.3]), a=np.array([0.1]),
        w=np.array([[special.logit(0.25)]]))


def _cycle_model(budget=None, link="sigmoid"):
    G = nx.DiGraph([(0, 1), (1, 0)])
    return nv.VesicleModel(nv.Substrate.from_networkx(G, allow_stay=True), n_types=1, budget=budget,
                           emission_link=link)


def _cycle_params(model):
    # candidates are [[0, 1], [0, 1]]: node 0 stays w.p. 0.7, node 1 moves to 0 w.p. 0.2
    u0 = special.logit(0.3) if model.emission_link == "sigmoid" else np.log(0.3)
    return model.default_params().replace(
        u=np.array([[u0]]), delta=np.array([0.25]), a=np.array([0.1, 0.3]),
        w=np.array([[special.logit(0.35)]]), T=np.array([[[0.7, 0.3], [0.2, 0.8]]]))


# ---------------------------------------------------------- normalisation
def test_normalisation_counts_exact_one_node():
    """Σ_y p(y) over all count sequences y ∈ {0..cap}^3 is 1 minus P(some N_t > cap)."""
    model = _single_node_model()
    params = _single_node_params(model)
    cap, T = 12, 3
    ys = _all_sequences(cap + 1, T)
    obs = nv.Observations(counts=ys.reshape(-1, T, 1, 1), detection="exact")
    res = exact_log_likelihood(model, params, obs, cap=cap)
    rho, _ = _densities(model, params, 0, T)
    missing = stats.poisson.sf(cap, rho[:, 0]).sum()  # ≥ P(some N_t > cap)
    assert missing < 1e-9
    total = np.exp(res.per_run).sum()
    assert 1 - missing - 1e-12 <= total <= 1 + 1e-12
    assert res.lost_mass == 0.0  # exact observations within the cap pin every state
    assert np.isclose(res.log_likelihood, res.per_run.sum())
    np.testing.assert_allclose(res.increments.sum(1), res.per_run)
    np.testing.assert_allclose(res.filtered_mean[..., 0, 0], ys)  # exact counts are the state


def test_normalisation_counts_and_docks_budget_one():
    """With counts and docks observed exactly, the sequences (y_t, D_t) sum to one."""
    model = _single_node_model(budget=1)
    params = _single_node_params(model)
    cap, T = 10, 2
    seq = _all_sequences(cap + 1, 2 * T).reshape(-1, T, 2)
    obs = nv.Observations(counts=seq[:, :, :1, None], docks=seq[:, :, 1:, None], detection="exact")
    res = exact_log_likelihood(model, params, obs, cap=cap)
    rho, dock = _densities(model, params, 0, T)
    missing = stats.poisson.sf(cap, rho).sum() + stats.poisson.sf(cap, dock).sum()
    assert missing < 1e-9
    total = np.exp(res.per_run).sum()
    assert 1 - missing - 1e-12 <= total <= 1 + 1e-12


@pytest.mark.parametrize("detection,p_det,n_values", [("binomial", 0.6, 13), ("poisson", None, 30)])
def test_normalisation_noisy_detection(detection, p_det, n_values):
    """Noisy count observations on one node: Σ_y p(y) = 1 up to truncation."""
    model = _single_node_model()
    params = _single_node_params(model)
    T = 2
    ys = _all_sequences(n_values, T)
    obs = nv.Observations(counts=ys.reshape(-1, T, 1, 1), detection=detection, p_det=p_det)
    # sequences near the cap are mostly explained by states beyond it (tol=inf lets
    # them through); averaged over the sequences the truncation is negligible
    res = exact_log_likelihood(model, params, obs, cap=12, tol=np.inf)
    prob = np.exp(res.per_run)
    assert (prob * res.lost_per_run).sum() < 1e-9
    assert np.all(np.isfinite(res.increments))
    assert abs(prob.sum() - 1) < 1e-9


def test_normalisation_binomial_counts_and_docks():
    model = _single_node_model()
    params = _single_node_params(model)
    seq = _all_sequences(13, 2)
    obs = nv.Observations(counts=seq[:, :1, None, None], docks=seq[:, 1:, None, None],
                          detection="binomial", p_det=0.7)
    res = exact_log_likelihood(model, params, obs, cap=12, tol=np.inf)
    prob = np.exp(res.per_run)
    assert (prob * res.lost_per_run).sum() < 1e-9
    assert abs(prob.sum() - 1) < 1e-9


# --------------------------------------------------------- tower property
@pytest.mark.parametrize("budget", [None, 1])
@pytest.mark.parametrize("what", ["counts_binomial", "docks_exact"])
def test_tower_property_two_nodes(budget, what):
    """Σ_y p(y_≤t) E[N_t | y_≤t] = ρ_t on a 2-node cycle for t = 0, 1."""
    model = _cycle_model(budget=budget)
    params = _cycle_params(model)
    cap, T = 7, 2
    seq = _all_sequences(cap + 1, 2 * T).reshape(-1, T, 2, 1)
    if what == "counts_binomial":
        obs = nv.Observations(counts=seq, detection="binomial", p_det=0.6)
    else:
        obs = nv.Observations(docks=seq, detection="exact")
    res = exact_log_likelihood(model, params, obs, cap=cap, tol=np.inf)  # see the noisy normalisation test
    rho, _ = _densities(model, params, 0, T)
    # E[N_0 | y_0] weighted by p(y_0, y_1): summing over y_1 marginalises it away
    prob = np.exp(res.per_run)
    assert (prob * res.lost_per_run).sum() < 1e-8
    assert abs(prob.sum() - 1) < 1e-7
    for t in range(T):
        mean = (prob[:, None] * res.filtered_mean[:, t, :, 0]).sum(0)
        np.testing.assert_allclose(mean, rho[t], rtol=0, atol=1e-7)
    # the first-step marginal p(y_0) sums to one over the distinct y_0
    _, idx = np.unique(seq[:, 0].reshape(len(seq), -1), axis=0, return_index=True)
    assert abs(np.exp(res.increments[idx, 0]).sum() - 1) < 1e-7


# ------------------------------------------------------ first step closed forms
@pytest.mark.parametrize("link", ["sigmoid", "log"])
@pytest.mark.parametrize("budget", [None, 1])
def test_first_step_closed_forms(link, budget):
    """At step 0, arrivals at j are Poisson(A_j), A = Tᵀλ. Binomial counts:
    y_j ~ Poisson(ρ_j p_det), E[N_j | y] = y_j + ρ_j (1 - p_det). Exact docks:
    D_j ~ Poisson(p A_j), E[N_j | D] = σ_j (D_j + (1 - p) A_j) (budget ∞) or
    σ_j (1 - p) A_j (budget 1)."""
    model = _cycle_model(budget=budget, link=link)
    params = _cycle_params(model)
    lam, p, surv = _rates(model, params, 0)
    A = _dense_T(model, params, 0).T @ np.full(2, lam)
    rho, _ = _densities(model, params, 0, 1)
    y = _all_sequences(4, 2)  # (16, 2)
    p_det = 0.45
    res = exact_log_likelihood(model, params, nv.Observations(counts=y[:, None, :, None], detection="binomial",
                                                              p_det=p_det))
    np.testing.assert_allclose(res.increments[:, 0], stats.poisson.logpmf(y, rho[0] * p_det).sum(1), rtol=1e-10)
    np.testing.assert_allclose(res.filtered_mean[:, 0, :, 0], y + rho[0] * (1 - p_det), rtol=1e-10)

    res = exact_log_likelihood(model, params, nv.Observations(docks=y[:, None, :, None], detection="exact"))
    np.testing.assert_allclose(res.increments[:, 0], stats.poisson.logpmf(y, p * A).sum(1), rtol=1e-10)
    expected = np.broadcast_to(surv * (1 - p) * A + (0 if budget == 1 else surv * y), y.shape)
    np.testing.assert_allclose(res.filtered_mean[:, 0, :, 0], expected, rtol=1e-9)


def test_first_step_three_nodes_small_cap():
    """n = 3 with docks tracked at a small cap: exact docks at step 0 are Poisson."""
    model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(3)), n_types=1)
    params = model.default_params().replace(u=np.array([[special.logit(0.1)]]), delta=np.array([0.4]))
    lam, p, surv = _rates(model, params, 0)
    A = _dense_T(model, params, 0).T @ np.full(3, lam)
    d = _all_sequences(2, 3)
    res = exact_log_likelihood(model, params, nv.Observations(docks=d[:, None, :, None]), cap=4, tol=1e-6)
    exact = stats.poisson.logpmf(d, p * A).sum(1)
    # the truncated increment is low by at most its reported share (plus rounding)
    assert np.all(res.increments[:, 0] <= exact + 1e-12)
    assert np.all(exact - res.increments[:, 0] <= np.log1p(res.lost_per_run) + 1e-12)
    assert res.lost_mass > 0
    np.testing.assert_allclose(res.filtered_mean[:, 0, :, 0], surv * ((1 - p) * A + d), rtol=1e-5)


def test_binomial_increments_finite_over_many_steps():
    model = _cycle_model()
    params = _cycle_params(model)
    rng = np.random.default_rng(3)
    y = rng.poisson(0.5, size=(3, 12, 2, 1))
    d = rng.poisson(0.2, size=(3, 12, 2, 1))
    res = exact_log_likelihood(model, params, nv.Observations(counts=y, docks=d, detection="binomial",
                                                              p_det=0.8))
    assert np.all(np.isfinite(res.increments)) and np.all(res.increments < 0)
    assert np.all(res.filtered_mean[..., 0] >= y[..., 0] - 1e-12)  # at least what was seen
    assert res.lost_mass < 1e-9


# ------------------------------------------------------ against simulation
N_RUNS, N_SELECT, N_STEPS = 20000, 5000, 3


@pytest.fixture(scope="module")
def simulated():
    """Two types on a graph with a self-loop and a sink (node 1), allow_stay=False:
    type 0 has an infinite budget, type 1 budget 1; absorption at both nodes."""
    sub = nv.Substrate.from_networkx(nx.DiGraph([(0, 0), (0, 1)]), allow_stay=False)
    assert sub.candidates.tolist() == [[0, 1], [-1, -1]]
    model = nv.VesicleModel(sub, n_types=2, budget=[None, 1])
    params = model.default_params().replace(
        u=np.array([[special.logit(0.3)], [special.logit(0.2)]]), r_max=np.array([1.0, 1.5]),
        delta=np.array([0.3, 0.5]), a=np.array([0.2, 0.3]),
        w=np.array([[special.logit(0.4)], [special.logit(0.3)]]),
        T=np.array([[[0.6, 0.4], [0.0, 0.0]], [[0.3, 0.7], [0.0, 0.0]]]))
    traces = nv.simulate(model, params, n_steps=N_STEPS, n_runs=N_RUNS, key=20240611, backend="numpyro",
                         capacity=24)
    return model, params, traces.observe(counts=True, docks=True, detection="exact")


def _chi_square(model, params, counts, docks, k):
    """Chi-square goodness of fit of the per-run observation sequences of type ``k``:
    categories are the sequences seen at least 5 times among the first N_SELECT
    runs whose expected count in the other runs is at least 5; the rest is pooled."""
    arrays = {name: a[..., k] for name, a in (("counts", counts), ("docks", docks)) if a is not None}
    seq = np.concatenate([a.reshape(N_RUNS, -1) for a in arrays.values()], axis=1)
    cand, seen = np.unique(seq[:N_SELECT], axis=0, return_counts=True)
    cand = cand[seen >= 5]
    width = N_STEPS * model.n_nodes
    cand_obs = {name: cand[:, i * width:(i + 1) * width].reshape(-1, N_STEPS, model.n_nodes, 1)
                for i, name in enumerate(arrays)}
    sub_model = nv.VesicleModel(model.substrate, n_types=1, budget=[model.budget[k]])
    sub_params = sub_model.default_params().replace(
        u=params.u[k:k + 1], r_max=params.r_max[k:k + 1], T=params.T[k:k + 1], w=params.w[k:k + 1],
        delta=params.delta[k:k + 1], a=params.a)
    res = exact_log_likelihood(sub_model, sub_params, nv.Observations(**cand_obs, detection="exact"), cap=12)
    prob = np.exp(res.per_run)
    test = seq[N_SELECT:]
    n_test = len(test)
    keep = prob * n_test >= 5
    cand, prob = cand[keep], prob[keep]
    lookup = {row.tobytes(): c for c, row in enumerate(cand)}
    observed = np.zeros(len(cand) + 1)
    for row in test:
        observed[lookup.get(row.tobytes(), len(cand))] += 1
    expected = n_test * np.append(prob, 1 - prob.sum())
    assert expected[-1] >= 5 or observed[-1] == 0
    stat = ((observed - expected) ** 2 / expected).sum()
    return stat, len(cand), stats.chi2.sf(stat, len(cand))


@pytest.mark.parametrize("k", [0, 1])
@pytest.mark.parametrize("what", ["counts_docks", "counts", "docks"])
def test_agrees_with_simulation(simulated, k, what):
    model, params, obs = simulated
    counts = obs.counts if "counts" in what else None
    docks = obs.docks if "docks" in what else None
    stat, n_cat, pvalue = _chi_square(model, params, counts, docks, k)
    assert n_cat >= 8, "too few categories for a meaningful test"
    assert pvalue > 1e-3, f"chi-square {stat:.1f} on {n_cat} degrees of freedom (p = {pvalue:.2g})"


def test_simulated_runs_never_impossible(simulated):
    """Every simulated observation sequence has positive probability."""
    model, params, obs = simulated
    res = exact_log_likelihood(model, params, nv.Observations(counts=obs.counts[:300], docks=obs.docks[:300]))
    assert np.all(np.isfinite(res.per_run))


# ----------------------------------------------------- types, scope, errors
def test_types_add_up():
    """Types never interact: a 2-type log-likelihood is the sum of 1-type ones."""
    sub = nv.Substrate.from_networkx(nx.DiGraph([(0, 1), (1, 0)]))
    model = nv.VesicleModel(sub, n_types=2, budget=[1, None])
    params = model.default_params().replace(
        u=np.array([[-1.0], [0.2]]), delta=np.array([0.2, 0.5]), w=np.array([[0.3], [-1.0]]),
        a=np.array([0.0, 0.4]), T=np.array([[[0.5, 0.5], [0.1, 0.9]], [[0.9, 0.1], [0.6, 0.4]]]))
    rng = np.random.default_rng(5)
    y = rng.poisson(0.6, size=(2, 5, 2, 2))
    d = rng.poisson(0.3, size=(2, 5, 2, 2))
    obs = nv.Observations(counts=y, docks=d, detection="poisson", floor=0.2)
    both = exact_log_likelihood(model, params, obs, cap=10, tol=1e-8)
    total = np.zeros(2)
    for k in range(2):
        m1 = nv.VesicleModel(sub, n_types=1, budget=[model.budget[k]])
        p1 = m1.default_params().replace(u=params.u[k:k + 1], delta=params.delta[k:k + 1], w=params.w[k:k + 1],
                                         a=params.a, T=params.T[k:k + 1])
        one = exact_log_likelihood(m1, p1, nv.Observations(counts=y[..., k:k + 1], docks=d[..., k:k + 1],
                                                           detection="poisson", floor=0.2), cap=10, tol=1e-8)
        total += one.per_run
        np.testing.assert_allclose(both.filtered_mean[..., k], one.filtered_mean[..., 0])
    np.testing.assert_allclose(both.per_run, total, rtol=1e-12)


def test_impossible_observation():
    """Node 0 of 0 -> 1 without stay is always empty after a step."""
    sub = nv.Substrate.from_networkx(nx.DiGraph([(0, 1)]), allow_stay=False)
    model = nv.VesicleModel(sub, n_types=1)
    y = np.zeros((2, 3, 2, 1), int)
    y[1, 1, 0, 0] = 1
    res = exact_log_likelihood(model, model.default_params(), nv.Observations(counts=y))
    assert np.isfinite(res.per_run[0]) and res.per_run[1] == -np.inf
    assert res.increments[1, 1] == -np.inf and np.isnan(res.increments[1, 2])
    assert np.all(np.isnan(res.filtered_mean[1, 1:]))


def test_truncation_is_never_silent():
    model = _single_node_model()
    params = model.default_params().replace(u=np.array([[3.0]]), r_max=np.array([4.0]), delta=np.array([0.05]))
    obs = nv.Observations(counts=np.ones((1, 6, 1, 1), int), detection="binomial", p_det=0.3)
    with pytest.raises(TruncationError, match="raise cap"):
        exact_log_likelihood(model, params, obs, cap=4)
    with pytest.raises(TruncationError):  # an exact count beyond the cap
        exact_log_likelihood(model, params, nv.Observations(counts=np.full((1, 1, 1, 1), 5)), cap=4)
    res = exact_log_likelihood(model, params, obs, cap=4, tol=np.inf)
    assert res.lost_mass > 1


@pytest.mark.parametrize("kwargs", [{"lifetime": "countdown"}, {"budget": 2}, {"content_dim": 1},
                                    {"covariate_dim": 1}])
def test_out_of_scope(kwargs):
    model = nv.VesicleModel(nv.Substrate.from_networkx(nx.path_graph(2)), n_types=1, **kwargs)
    obs = nv.Observations(counts=np.zeros((1, 2, 2, 1), int))
    with pytest.raises(NotImplementedError):
        exact_log_likelihood(model, model.default_params(), obs)
