"""NUTS on fully observed traces: the Fit object, closed-form posteriors, coverage.

Statistical tolerances are stated at each test; seeds are fixed.
"""

import arviz as az
import networkx as nx
import numpy as np
import pytest
from scipy import stats

import nvppl as nv
from nvppl.infer._hmc import NUTSSettings, run_chains
from nvppl.infer.nuts import likelihood_data
from nvppl.traces.suffstats import trace_data

GRAPH = nx.DiGraph([(0, 1), (0, 2), (1, 2), (2, 0), (2, 3), (3, 0), (3, 1)])


@pytest.fixture(scope="module")
def small_fit():
    sub = nv.Substrate.from_networkx(GRAPH)
    model = nv.VesicleModel(sub, n_types=2, content_dim=1, budget=[np.inf, 2])
    params = model.default_params().replace(a=np.array([0.0, 0.05, 0.1, 0.0]))
    traces = nv.simulate(model, params, n_steps=40, n_runs=2, key=0)
    fit = nv.infer.fit(model, traces, num_samples=200, num_warmup=200, num_chains=2, key=1,
                       progress_bar=False, num_ppc=20)
    return model, params, traces, fit


def test_fit_holds_every_group_with_model_names_and_shapes(small_fit):
    model, params, traces, fit = small_fit
    idata = fit.idata
    assert {"posterior", "sample_stats", "log_likelihood", "posterior_predictive", "observed_data"} <= set(idata.groups())
    for name in model.inferred:
        assert idata.posterior[name].shape == (2, 200) + model.field_shape(name), name
    assert set(idata.posterior.data_vars) == set(model.inferred)
    assert idata.posterior["T"].dims == ("chain", "draw", "type", "node", "slot")
    assert idata.log_likelihood["vesicle"].shape == (2, 200, traces.n_vesicles)
    for name in ("occupancy", "dock_rate", "lifetime_hist", "path_length"):
        assert idata.posterior_predictive[name].shape[:2] == (2, 20)
        assert idata.posterior_predictive[name].shape[2:] == idata.observed_data[name].shape
    assert {"lp", "diverging", "acceptance_rate", "step_size", "tree_depth", "energy"} <= set(idata.sample_stats)


def test_loo_summary_and_posterior_mean(small_fit):
    model, params, traces, fit = small_fit
    loo = az.loo(fit.idata)
    assert np.isfinite(loo.elpd_loo) and loo.n_data_points == traces.n_vesicles
    table = fit.summary()
    assert "r_hat" in table.columns and any(ix.startswith("delta[") for ix in table.index)
    mean = fit.posterior_mean()
    model.check_params(mean)  # a valid parameter set (T rows on the simplex)
    np.testing.assert_allclose(mean.a, fit.idata.posterior["a"].mean(("chain", "draw")).values)
    draw = fit.posterior_draw(1, 5)
    np.testing.assert_array_equal(draw.delta, fit.idata.posterior["delta"].values[1, 5])


def test_pointwise_log_likelihood_sums_to_vesicle_terms(small_fit):
    """The stored per-vesicle values are the likelihood's per-vesicle terms at each draw."""
    from nvppl import likelihood

    model, params, traces, fit = small_fit
    data = trace_data(model, traces)
    draw = fit.posterior_draw(0, 7)
    expect = np.asarray(likelihood.vesicle_log_likelihood(draw, data, model))
    np.testing.assert_allclose(fit.idata.log_likelihood["vesicle"].values[0, 7], expect, rtol=1e-10)


def test_fit_round_trips_through_netcdf(small_fit, tmp_path):
    model, params, traces, fit = small_fit
    path = tmp_path / "fit.nc"
    fit.to_netcdf(path)
    back = nv.load_fit(path)
    assert back.method == "nuts" and back.model.to_json() == model.to_json()
    for group in fit.idata.groups():
        assert getattr(back.idata, group).equals(getattr(fit.idata, group)), group
    np.testing.assert_array_equal(back.posterior_mean().T, fit.posterior_mean().T)
    with pytest.raises(ValueError, match="not an nvppl fit"):
        az.from_dict(posterior={"x": np.zeros((1, 2))}).to_netcdf(str(tmp_path / "other.nc"))
        nv.load_fit(tmp_path / "other.nc")


def test_ppc_and_plots(small_fit, tmp_path):
    model, params, traces, fit = small_fit
    result = nv.diagnostics.ppc(fit, traces, path=tmp_path / "ppc.png")
    assert (tmp_path / "ppc.png").stat().st_size > 1000
    assert set(result.table.statistic) == {"occupancy", "dock_rate", "lifetime_hist", "path_length"}
    # the data were simulated from the model: few observed statistics fall outside the 90 % band
    assert len(result.outside(0.9)) <= 0.35 * len(result.table)
    nv.diagnostics.plot_trace(fit, tmp_path / "trace.png")
    nv.diagnostics.plot_rank(fit, tmp_path / "rank.png")
    assert (tmp_path / "trace.png").exists() and (tmp_path / "rank.png").exists()


def test_same_key_same_draws(small_fit):
    model, params, traces, fit = small_fit
    again = nv.infer.fit(model, traces, num_samples=200, num_warmup=200, num_chains=2, key=1,
                         progress_bar=False, num_ppc=20)
    np.testing.assert_array_equal(again.idata.posterior["u"].values, fit.idata.posterior["u"].values)
    np.testing.assert_array_equal(again.idata.posterior_predictive["occupancy"].values,
                                  fit.idata.posterior_predictive["occupancy"].values)
    # without host devices, parallel chains say so and run one after the other: the same draws
    with pytest.warns(UserWarning, match="set_host_device_count"):
        par = nv.infer.fit(model, traces, num_samples=200, num_warmup=200, num_chains=2, key=1,
                           progress_bar=False, posterior_predictive=False, chain_method="parallel")
    np.testing.assert_array_equal(par.idata.posterior["u"].values, fit.idata.posterior["u"].values)


def test_bad_fit_arguments():
    sub = nv.Substrate.from_networkx(GRAPH)
    model = nv.VesicleModel(sub, n_types=1)
    traces = nv.simulate(model, model.default_params(), n_steps=10, n_runs=1, key=0)
    with pytest.raises(ValueError, match="unknown method"):
        nv.infer.fit(model, traces, method="magic")
    with pytest.raises(TypeError, match="Traces"):
        nv.infer.fit(model, np.zeros(3))
    other = nv.VesicleModel(sub, n_types=1, content_dim=1)
    with pytest.raises(nv.TraceError, match="content dimension"):
        nv.infer.fit(other, traces, progress_bar=False)
    with pytest.raises(nv.TraceError, match="budget"):
        nv.infer.fit(nv.VesicleModel(sub, n_types=1, budget=2), traces, progress_bar=False)
    with pytest.raises(ValueError, match="num_samples"):
        nv.infer.fit(model, traces, num_samples=0)


def test_t_rows_match_the_closed_form_dirichlet_posterior():
    """With fully observed moves and no tilt, each row of T has posterior Dirichlet(α + counts).

    NUTS posterior means and variances are compared with the exact ones within
    4.5 Monte Carlo standard errors (mean: sd/√ESS; variance: var·√(2/ESS₂), where
    ESS₂ is the effective sample size of the squared deviations — NUTS draws are
    often antithetic, so the ESS of the mean can exceed the number of draws while
    that of the variance does not).
    """
    sub = nv.Substrate.from_networkx(GRAPH)
    alpha = 2.0
    model = nv.VesicleModel(sub, n_types=1, priors={"T": nv.model.dist.Dirichlet(np.full(3, alpha)), "a": 0.0})
    truth = model.default_params().replace(T=np.array([[[0.2, 0.3, 0.5], [0.6, 0.4, 0.0], [0.1, 0.1, 0.8],
                                                        [0.3, 0.3, 0.4]]]))
    traces = nv.simulate(model, truth, n_steps=30, n_runs=1, key=3)
    fit = nv.infer.fit(model, traces, num_samples=2000, num_warmup=500, num_chains=2, key=4,
                       progress_bar=False, posterior_predictive=False, log_likelihood=False)
    T = fit.idata.posterior["T"]
    ess = az.ess(fit.idata, var_names=["T"])["T"].values
    counts = trace_data(model, traces).mig_counts[0]
    for i in range(4):
        m = sub.n_candidates[i]
        post = alpha + counts[i, :m]
        total = post.sum()
        exact_mean = post / total
        exact_var = exact_mean * (1 - exact_mean) / (total + 1)
        draws = T.values[:, :, 0, i, :m].reshape(-1, m)
        se_mean = np.sqrt(exact_var / ess[0, i, :m])
        chains = T.values[:, :, 0, i, :m]
        ess_sq = np.array([az.ess((chains[..., j] - exact_mean[j]) ** 2) for j in range(m)])
        se_var = exact_var * np.sqrt(2 / ess_sq)
        np.testing.assert_array_less(np.abs(draws.mean(0) - exact_mean), 4.5 * se_mean)
        np.testing.assert_array_less(np.abs(draws.var(0) - exact_var), 4.5 * se_var)


# ------------------------------------------------------------------ coverage
COVERAGE_MODELS = {
    # family: (model options, extra priors, steps, runs, covariates?)
    "emission+docking with covariates, absorption, geometric decay": (
        dict(n_types=2, covariate_dim=1),
        {"a": nv.model.dist.Beta(1.0, 8.0), "delta": nv.model.dist.Beta(2.0, 30.0)}, 30, 2, True),
    "tilted migration, content docking and content at birth": (
        dict(n_types=1, content_dim=1, covariate_dim=1, tilt=True),
        {"a": 0.0, "delta": nv.model.dist.Beta(2.0, 30.0), "content_mean": 0.0,
         "content_scale": nv.model.dist.Gamma(20.0, 20.0)},
        30, 2, True),
    "countdown lifetimes with finite budgets": (
        dict(n_types=1, lifetime="countdown", budget=3),
        {"a": nv.model.dist.Beta(1.0, 8.0), "shape": nv.model.dist.Gamma(8.0, 2.0),
         "rate": nv.model.dist.Gamma(4.0, 20.0)}, 40, 2, False),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(COVERAGE_MODELS))
def test_nuts_intervals_cover_the_truth(family):
    """Central 90 % intervals cover parameters drawn from the prior 90 % of the time.

    For each of 14 replicate data sets the truth is drawn from the prior and every
    scalar component of every inferred field is checked. Treating the checks as
    independent Bernoulli(0.9) trials, the number covered must lie in the central
    99.9 % interval of Binomial(N, 0.9). Posterior means must also move towards
    the truth: their error is well below the prior's spread on average.
    """
    options, priors, n_steps, n_runs, with_cov = COVERAGE_MODELS[family]
    sub = nv.Substrate.from_networkx(GRAPH)
    model = nv.VesicleModel(sub, priors=priors, **options)
    rng = np.random.default_rng(0)
    F = rng.normal(size=(n_runs, n_steps, 4, 1)) if with_cov else None
    settings = NUTSSettings(num_warmup=300, num_samples=400)
    covered, total, err_post, err_prior = 0, 0, [], []
    for rep in range(14):
        truth = model.sample_params(100 + rep)
        if "u" in model.inferred:  # keep emission informative: λ between 0.3 and 0.9
            u = truth.u.copy()
            u[:, 0] = np.clip(u[:, 0], -0.8, 2.2)
            truth = truth.replace(u=u)
        traces = nv.simulate(model, truth, n_steps=n_steps, n_runs=n_runs, key=rep, covariates=F)
        draws, info, valid = run_chains(model, likelihood_data(trace_data(model, traces), model),
                                        np.asarray([0, rep], np.uint32), 1, settings, "sequential", False)
        assert valid.all()
        for name in model.inferred:
            x = draws[name][0]
            lo, hi = np.quantile(x, [0.05, 0.95], axis=0)
            t = np.asarray(getattr(truth, name))
            free = _free_mask(model, name)
            covered += int(((lo <= t) & (t <= hi))[free].sum())
            total += int(free.sum())
            err_post.append(np.abs(x.mean(0) - t)[free])
            err_prior.append(x.std(0)[free] * 0 + np.abs(t - t.mean())[free])
    lo_ok, hi_ok = stats.binom.ppf([0.0005, 0.9995], total, 0.9)
    assert lo_ok <= covered <= hi_ok, f"{family}: {covered}/{total} covered"


def _free_mask(model, name):
    shape = model.field_shape(name)
    if name != "T":
        return np.ones(shape, bool)
    sub = model.substrate
    slots = np.arange(sub.max_candidates)[None, :] < sub.n_candidates[:, None]
    return np.broadcast_to(slots & (sub.n_candidates[:, None] >= 2), shape)


@pytest.mark.slow
def test_sbc_ranks_are_uniform():
    """Simulation-based calibration: for every free scalar, the chi-square test of
    uniform ranks (10 bins, 199 simulations, 99 thinned draws) passes at the
    Bonferroni-corrected level 0.001 / (number of components)."""
    sub = nv.Substrate.from_networkx(nx.DiGraph([(0, 1), (1, 2), (2, 0), (1, 0)]))
    model = nv.VesicleModel(sub, n_types=1, priors={"a": 0.0, "delta": nv.model.dist.Beta(2.0, 20.0)})
    result = nv.diagnostics.sbc(model, n_sims=199, n_steps=25, n_runs=1, num_samples=400, num_warmup=300,
                                key=0, progress=False)
    table = result.uniformity()
    assert len(result.ranks) == 199 and result.ranks.to_numpy().max() <= 99
    assert table.p_value.min() > 1e-3 / len(table), table.sort_values("p_value").head()
    fig = result.plot()
    assert fig is not None
