"""Statistical checks of both simulators (compiled core and NumPyro program)
against the model's definition.

Each test compares simulated frequencies with the probabilities of the model (docs/design.rst, "The model")
computed in the test (not with nvppl's kernels), once per backend. Tests are at
level 0.001 (chi-square or z-tests as stated), with fixed seeds.
"""

import jax
import networkx as nx
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer import Predictive
from scipy import stats

import nvppl as nv
from nvppl.programs import life_cycle
from nvppl.simulate import records_to_traces

ALPHA = 1e-3
BACKENDS = ["compiled", "numpyro"]
GRAPH = nx.DiGraph([(0, 1), (0, 2), (1, 2), (2, 0), (2, 3), (3, 0)])


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture(scope="module", params=BACKENDS)
def covariate_case(request):
    """A two-type model with covariates, content and finite budgets (per backend)."""
    sub = nv.Substrate.from_networkx(GRAPH)
    model = nv.VesicleModel(sub, n_types=2, covariate_dim=1, content_dim=2, budget=[2, np.inf])
    rng = np.random.default_rng(5)
    F = rng.normal(size=(3, 60, 4, 1))
    params = model.default_params().replace(
        u=np.array([[0.0, 1.0], [-0.5, -0.7]]), r_max=np.array([1.5, 2.0]),
        w=np.array([[-1.0, 0.8], [-2.0, 0.0]]), w_c=np.array([[0.5, -0.5], [0.0, 0.0]]),
        a=np.array([0.0, 0.05, 0.1, 0.0]), delta=np.array([0.1, 0.05]),
        content_mean=np.array([[1.0, -1.0], [0.0, 2.0]]), content_B=np.array([[[0.5, 0.0]], [[0.0, -1.0]]]),
        content_scale=np.array([[0.5, 1.0], [2.0, 0.3]]))
    traces = nv.simulate(model, params, n_steps=60, n_runs=3, key=11, covariates=F, backend=request.param)
    return model, params, F, traces, request.param


def test_same_key_same_traces_and_different_keys_differ(covariate_case):
    model, params, F, traces, backend = covariate_case
    kw = dict(n_steps=60, n_runs=3, covariates=F, backend=backend)
    again = nv.simulate(model, params, key=11, **kw)
    assert traces.vesicles.equals(again.vesicles) and traces.steps.equals(again.steps)
    other = nv.simulate(model, params, key=12, **kw)
    assert not traces.steps.equals(other.steps)
    jax_key = nv.simulate(model, params, key=jax.random.PRNGKey(11), **kw)
    assert traces.steps.equals(jax_key.steps)


def test_emission_counts_are_poisson_with_the_model_rate(covariate_case):
    """Births per (run, step, node, type): dispersion chi-square against λ = r_max σ(X·u)."""
    model, params, F, traces, backend = covariate_case
    X = np.concatenate([np.ones(F.shape[:-1] + (1,)), F], -1)
    lam = params.r_max * sigmoid(X @ params.u.T)  # (R, T, n, K)
    births = np.zeros_like(lam)
    v = traces.vesicles
    np.add.at(births, (v.run, v.birth_step, v.birth_node.astype(int), v.type), 1)
    # sum over cells of (N - λ)² / λ has mean = #cells and variance ≈ 2·#cells + Σ 1/λ
    stat = ((births - lam) ** 2 / lam).sum()
    var = 2 * lam.size + (1 / lam).sum()
    z = (stat - lam.size) / np.sqrt(var)
    assert abs(z) < stats.norm.isf(ALPHA / 2)
    # and the total count per type is within its Poisson standard error
    for k in range(2):
        zk = (births[..., k].sum() - lam[..., k].sum()) / np.sqrt(lam[..., k].sum())
        assert abs(zk) < stats.norm.isf(ALPHA / 2)


def test_content_at_birth_is_normal_around_the_regression(covariate_case):
    """Standardised content residuals have mean 0 and variance 1 (z-tests)."""
    model, params, F, traces, backend = covariate_case
    v = traces.vesicles
    c = v[["content_0", "content_1"]].to_numpy()
    f = F[v.run, v.birth_step, v.birth_node.astype(int)]  # (N, 1)
    k = v.type.to_numpy()
    loc = params.content_mean[k] + np.einsum("np,npd->nd", f, params.content_B[k])
    z = (c - loc) / params.content_scale[k]
    n = len(z)
    assert np.all(np.abs(z.mean(0)) * np.sqrt(n) < stats.norm.isf(ALPHA / 4))
    assert np.all(np.abs(z.var(0) - 1) / np.sqrt(2 / n) < stats.norm.isf(ALPHA / 4))


def test_moves_follow_T(covariate_case):
    """Move counts from each node follow the row T[type, node] (chi-square per row, pooled)."""
    model, params, F, traces, backend = covariate_case
    sub = model.substrate
    s = traces.steps.merge(traces.vesicles[["run", "vesicle", "type"]], on=["run", "vesicle"])
    stat, dof = 0.0, 0
    for k in range(2):
        for i in range(4):
            cands = [c for c in sub.candidates[i] if c >= 0]
            rows = s[(s.type == k) & (s.node_from == i)]
            observed = np.array([(rows.node_to == c).sum() for c in cands])
            expected = len(rows) * params.T[k, i, : len(cands)]
            assert expected.min() > 5
            stat += ((observed - expected) ** 2 / expected).sum()
            dof += len(cands) - 1
    assert stats.chi2.sf(stat, dof) > ALPHA


def test_docking_probability_matches(covariate_case):
    """Docks versus the sum of σ(X·w + c·w_c) over trials, per type (z-test)."""
    model, params, F, traces, backend = covariate_case
    s = traces.steps.merge(traces.vesicles, on=["run", "vesicle"])
    X = np.concatenate([np.ones((len(s), 1)), F[s.run, s.step, s.node_to.astype(int)]], 1)
    c = s[["content_0", "content_1"]].to_numpy()
    k = s.type.to_numpy()
    p = sigmoid((X * params.w[k]).sum(1) + (c * params.w_c[k]).sum(1))
    for kk in range(2):
        sel = k == kk
        z = (s.docked[sel].sum() - p[sel].sum()) / np.sqrt((p[sel] * (1 - p[sel])).sum())
        assert abs(z) < stats.norm.isf(ALPHA / 4)


def test_budgets_absorption_and_decay(covariate_case):
    """Depletion exactly at the budget; absorption and decay rates among the vesicle-steps at risk."""
    model, params, F, traces, backend = covariate_case
    v, s = traces.vesicles, traces.steps
    docks = s.groupby(["run", "vesicle"]).docked.sum()
    v = v.set_index(["run", "vesicle"]).join(docks.rename("docks")).fillna({"docks": 0})
    finite = v[v.type == 0]
    assert (finite.docks <= 2).all()
    assert ((finite.docks == 2) == (finite.death_cause == "depleted")).all()
    assert (v[v.type == 1].death_cause != "depleted").all()
    rows = s.merge(traces.vesicles, on=["run", "vesicle"])
    last = rows.step == rows.death_step
    at_risk_absorb = rows[~(last & (rows.death_cause == "depleted"))]
    for node in range(4):
        here = at_risk_absorb[at_risk_absorb.node_to == node]
        absorbed = ((here.step == here.death_step) & (here.death_cause == "absorbed")).sum()
        a = params.a[node]
        if a == 0:
            assert absorbed == 0
        else:
            z = (absorbed - a * len(here)) / np.sqrt(len(here) * a * (1 - a))
            assert abs(z) < stats.norm.isf(ALPHA / 8)
    at_risk_decay = at_risk_absorb[~((at_risk_absorb.step == at_risk_absorb.death_step)
                                     & (at_risk_absorb.death_cause == "absorbed"))]
    for k in range(2):
        here = at_risk_decay[at_risk_decay.type == k]
        expired = ((here.step == here.death_step) & (here.death_cause == "expired")).sum()
        d = params.delta[k]
        z = (expired - d * len(here)) / np.sqrt(len(here) * d * (1 - d))
        assert abs(z) < stats.norm.isf(ALPHA / 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tilted_migration_follows_the_score(backend):
    """With tilt, moves follow T·exp(γ q) normalised over candidates (chi-square on aggregated expected counts)."""
    sub = nv.Substrate.from_networkx(GRAPH)
    model = nv.VesicleModel(sub, n_types=1, covariate_dim=1, content_dim=1, tilt=True, gamma=1.5)
    F = np.random.default_rng(2).normal(size=(2, 80, 4, 1))
    params = model.default_params().replace(v=np.array([[0.8]]), Q=np.array([[[1.0], [-1.0], [0.5], [0.0]]]),
                                            w=np.array([[-3.0, 0.0]]))
    traces = nv.simulate(model, params, n_steps=80, n_runs=2, key=3, covariates=F, backend=backend)
    s = traces.steps.merge(traces.vesicles, on=["run", "vesicle"])
    observed = np.zeros((4, 3))
    expected = np.zeros((4, 3))
    for row in s.itertuples():
        i = row.node_from
        cands = [c for c in sub.candidates[i] if c >= 0]
        q = np.array([F[row.run, row.step, c, 0] * 0.8 + row.content_0 * params.Q[0, c, 0] for c in cands])
        w = params.T[0, i, : len(cands)] * np.exp(1.5 * q)
        expected[i, : len(cands)] += w / w.sum()
        observed[i, cands.index(row.node_to)] += 1
    mask = expected > 0
    stat = ((observed[mask] - expected[mask]) ** 2 / expected[mask]).sum()
    dof = int(mask.sum() - 4)
    assert stats.chi2.sf(stat, dof) > ALPHA


@pytest.mark.parametrize("backend", BACKENDS)
def test_countdown_initial_lifetimes_are_gamma(backend):
    """tau0 at birth ~ Gamma(shape, rate): Kolmogorov-Smirnov test."""
    sub = nv.Substrate.from_networkx(nx.cycle_graph(3))
    model = nv.VesicleModel(sub, n_types=1, lifetime="countdown", sigma_tau=0.5, priors={"a": 0.0})
    params = model.default_params().replace(shape=np.array([3.0]), rate=np.array([0.5]), w=np.array([[-30.0]]))
    traces = nv.simulate(model, params, n_steps=50, n_runs=2, key=1, backend=backend)
    tau0 = traces.vesicles.tau0.to_numpy()
    assert stats.kstest(tau0, stats.gamma(a=3.0, scale=2.0).cdf).pvalue > ALPHA
    # with lifetime noise the lifetime differs from ceil(tau0) for some vesicles
    done = traces.vesicles[traces.vesicles.death_cause == "expired"]
    lived = (done.death_step - done.birth_step + 1).to_numpy()
    assert np.any(lived != np.ceil(done.tau0.to_numpy()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_sinks_remove_vesicles_and_have_no_step_row(backend):
    """A vesicle at a sink is removed at its next step with cause 'sink' and no step row for that step."""
    sub = nv.Substrate.from_networkx(nx.DiGraph([(0, 1), (1, 2)]), allow_stay=False)
    model = nv.VesicleModel(sub, n_types=1, priors={"a": 0.0})
    params = model.default_params().replace(delta=np.array([0.0]), w=np.array([[-30.0]]))
    traces = nv.simulate(model, params, n_steps=10, n_runs=1, key=0, backend=backend)
    v, s = traces.vesicles, traces.steps
    done = v[v.death_cause != "censored"]
    assert (done.death_cause == "sink").all() and len(done) > 5
    moves = s.groupby("vesicle").size().reindex(v.vesicle, fill_value=0).to_numpy()
    expect = {0: 2, 1: 1, 2: 0}  # moves from the birth node to the sink at node 2
    for row, m in zip(v.itertuples(), moves):
        if row.death_cause == "sink":
            assert m == expect[row.birth_node]
            assert row.death_step == row.birth_step + m


def test_capacity_overflow_is_an_error_not_a_truncation():
    sub = nv.Substrate.from_networkx(nx.cycle_graph(3))
    model = nv.VesicleModel(sub, n_types=1)
    with pytest.raises(nv.CapacityError, match=r"capacity=\d+"):
        nv.simulate(model, model.default_params(), n_steps=30, n_runs=1, key=0, capacity=4, backend="numpyro")
    with pytest.raises(ValueError, match="no capacity limit"):
        nv.simulate(model, model.default_params(), n_steps=30, n_runs=1, key=0, capacity=4, backend="compiled")


def test_program_runs_under_predictive_and_its_statistics_match_the_traces():
    """Prior predictive draws with Predictive; in-program statistics equal Traces.summary_statistics."""
    sub = nv.Substrate.from_networkx(GRAPH)
    model = nv.VesicleModel(sub, n_types=2, budget=1)
    F = np.zeros((2, 20, 4, 0))
    prior = Predictive(life_cycle, num_samples=3)(jax.random.PRNGKey(0), model, F[:, :5], 5, 256)
    assert prior["delta"].shape == (3, 2) and prior["T"].shape == (3, 2, 4, 3)
    assert prior["occupancy"].shape == (3, 2, 4) and (prior["overflow_step"] < 0).all()

    params = model.default_params().replace(w=np.array([[0.0], [-1.0]]), a=np.array([0.1, 0.0, 0.2, 0.0]))

    @jax.jit
    def run(key):
        tr = handlers.trace(handlers.seed(life_cycle, key)).get_trace(model, F, 20, 128, params)
        names = ("occupancy", "dock_rate", "lifetime_hist", "path_length")
        return {k: tr[k]["value"] for k in names}, handlers.seed(life_cycle, key)(model, F, 20, 128, params)[1]

    in_program, records = run(jax.random.PRNGKey(4))
    traces = records_to_traces(model, jax.tree.map(np.asarray, records), None)
    direct = traces.summary_statistics()
    for name, value in direct.items():
        np.testing.assert_allclose(np.asarray(in_program[name]), value, rtol=1e-12, atol=1e-12, err_msg=name)


def test_bad_arguments_are_rejected():
    sub = nv.Substrate.from_networkx(nx.cycle_graph(3))
    model = nv.VesicleModel(sub, n_types=1, covariate_dim=1)
    params = model.default_params()
    with pytest.raises(ValueError, match="covariates"):
        nv.simulate(model, params, n_steps=5)  # covariates needed
    with pytest.raises(ValueError, match="shape"):
        nv.simulate(model, params, n_steps=5, covariates=np.zeros((5, 3, 2)))
    with pytest.raises(ValueError, match="not finite"):
        nv.simulate(model, params, n_steps=5, covariates=np.full((3, 1), np.nan))
    with pytest.raises(ValueError, match="backend"):
        nv.simulate(model, params, n_steps=5, covariates=np.zeros((3, 1)), backend="gpu")
    with pytest.raises(ValueError, match=r"T\[type 0, node 0\] sums to 2"):
        nv.simulate(model, params.replace(T=params.T * 2), n_steps=5, covariates=np.zeros((3, 1)))
    with pytest.raises(ValueError, match="n_steps"):
        nv.simulate(model, params, n_steps=0, covariates=np.zeros((3, 1)))
