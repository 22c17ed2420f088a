"""Identifiability report: posterior contraction against the prior, weak directions.

The confounded case is one where the confounding is exact: on a single node,
counts depend on absorption ``a`` and decay ``δ`` only through the survival
``(1 − a)(1 − δ)``, so no amount of counts separates them, while full traces
(which record the death cause) do. The figures of the report are checked
against an independent computation on synthetic posteriors with known
distributions.
"""

import json
import warnings

import jax
import networkx as nx
import numpy as np
import pytest
import scipy.linalg
from numpyro import handlers
from scipy.special import logit, polygamma

import nvppl as nv
from nvppl.errors import WeakIdentificationWarning
from nvppl.infer import _arviz
from nvppl.infer.fit import Fit
from nvppl.infer.identify import check_identifiability, identifiability
from nvppl.infer.svi import fit_svi

dist = nv.model.dist


def one_node_model():
    """One node (vesicles stay), one type; emission and docking fixed; absorption and decay inferred."""
    g = nx.Graph()
    g.add_node(0)
    return nv.VesicleModel(nv.Substrate.from_networkx(g), n_types=1, priors={"u": 0.0, "w": -1.4})


@pytest.fixture(scope="module")
def one_node_traces():
    model = one_node_model()
    truth = model.default_params().replace(a=np.array([0.05]))
    return model, nv.simulate(model, truth, n_steps=40, n_runs=10, key=0)


def prior_draws(model, n: int, seed: int = 0) -> dict:
    """``n`` draws of the inferred fields from the model's prior program
    (``model.param_sites``, what ``model.sample_params`` runs once), vectorised."""
    sample = jax.jit(jax.vmap(lambda key: handlers.seed(model.param_sites, key)()))
    out = sample(jax.random.split(jax.random.PRNGKey(seed), n))
    return {k: np.asarray(getattr(out, k)) for k in model.inferred}


def numpy_prior_draws(model, n: int, seed: int = 0) -> dict:
    """``n`` draws of the inferred fields under nvppl's default priors (and the
    LogNormal(0, 0.5) content scale of the test below), drawn with NumPy."""
    rng = np.random.default_rng(seed)
    draw = {"u": lambda s: rng.normal(0, 1.5, s), "w": lambda s: rng.normal(0, 1.5, s),
            "w_c": lambda s: rng.normal(0, 1.5, s), "content_mean": lambda s: rng.normal(0, 1.5, s),
            "a": lambda s: rng.beta(1, 1, s), "delta": lambda s: rng.beta(1, 1, s),
            "shape": lambda s: rng.gamma(2.0, 1.0, s), "rate": lambda s: rng.gamma(2.0, 1.0, s),
            "content_scale": lambda s: rng.lognormal(0.0, 0.5, s)}
    out = {k: draw[k]((n,) + model.field_shape(k)) for k in model.inferred if k != "T"}
    if "T" in model.inferred:
        sub = model.substrate
        T = np.zeros((n,) + model.field_shape("T"))
        for k in range(model.n_types):
            for i in range(sub.n_nodes):
                m = int(sub.n_candidates[i])
                T[:, k, i, :m] = rng.dirichlet(np.ones(m), n) if m > 1 else 1.0
        out["T"] = T
    return out


def synthetic_fit(model, draws: dict) -> Fit:
    """A Fit whose posterior holds the given draws ``(S, *field_shape)`` (one chain)."""
    idata = _arviz.to_inference_data(model, {k: np.asarray(v)[None] for k, v in draws.items()})
    return Fit(idata, model, "synthetic")


def test_counts_alone_confound_absorption_and_decay(one_node_traces):
    """SVI on counts: a[0] and delta[0] lie on a ridge (their posterior
    correlation in the logit view is below −0.9); the check warns, names both
    and the survival that the counts identify, and records the pair."""
    model, traces = one_node_traces
    obs = traces.observe(counts=True, detection="exact")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nv.errors.ApproximationWarning)  # J singular: the same confounding
        fit = fit_svi(model, obs, num_steps=500, num_samples=4000, progress_bar=False, log_likelihood=False)
    with pytest.warns(WeakIdentificationWarning, match=r"a\[0\] and delta\[0\] are confounded") as rec:
        report = check_identifiability(fit)
    assert "(1−a[0])(1−delta[0])" in str(rec[0].message)
    stored = json.loads(fit.idata.posterior.attrs["nvppl_weak_directions"])
    pair = [d for d in stored if d["kind"] == "confounded"]
    assert len(pair) == 1 and pair[0]["parameters"] == ["a[0]", "delta[0]"]
    za = logit(fit.idata.posterior["a"].values.ravel())
    zd = logit(fit.idata.posterior["delta"].values.ravel())
    r = np.corrcoef(za, zd)[0, 1]
    assert r < -0.9 and pair[0]["corr"] == pytest.approx(r, abs=1e-4)
    assert report.weak and report.directions[0].kind == "confounded"


def test_full_traces_separate_absorption_and_decay(one_node_traces):
    """The same model and parameters fitted by NUTS on the traces (the death
    cause is recorded): no weak direction, no warning, an empty record."""
    model, traces = one_node_traces
    fit = nv.infer.fit(model, traces, num_samples=1000, num_warmup=300, num_chains=1, progress_bar=False,
                       posterior_predictive=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeakIdentificationWarning)
        report = check_identifiability(fit)
    assert not report.weak and fit.idata.posterior.attrs["nvppl_weak_directions"] == "[]"
    assert (report.table["contraction"] > 0.99).all()


def test_a_fit_of_decay_alone_is_well_identified():
    """SVI with δ the only inferred parameter: no warning, contraction near one."""
    sub = nv.Substrate.from_networkx(nx.cycle_graph(4))
    T = nv.VesicleModel(sub, n_types=1).default_params().T
    model = nv.VesicleModel(sub, n_types=1, priors={"a": 0.0, "T": T, "u": 0.0, "w": -1.4})
    obs = nv.simulate(model, model.default_params(), n_steps=30, n_runs=4, key=0).observe(
        counts=True, detection="binomial", p_det=0.8, key=1)
    fit = fit_svi(model, obs, num_steps=300, num_samples=1000, progress_bar=False, log_likelihood=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeakIdentificationWarning)
        report = check_identifiability(fit)
    assert not report.weak
    assert report.table.loc["delta[0]", "contraction"] > 0.99


@pytest.fixture(scope="module")
def synthetic():
    """A 3-node cycle with T, a, δ and u inferred under non-default priors, and
    4000 posterior draws from known distributions: a[0] and δ on a ridge in
    the logit view (correlation −0.98), a[1] left at its prior."""
    sub = nv.Substrate.from_networkx(nx.cycle_graph(3))
    model = nv.VesicleModel(sub, n_types=1, priors={
        "u": dist.Normal(0.5, 2.0), "w": -1.4, "a": dist.Beta(2.0, 5.0), "delta": dist.Beta(1.0, 9.0),
        "T": dist.Dirichlet(np.array([1.0, 2.0, 3.0]))})
    rng = np.random.default_rng(7)
    S = 4000
    ridge = rng.normal(0, 1.0, S)
    a = np.empty((S, 3))
    a[:, 0] = 1 / (1 + np.exp(-(-2.0 + ridge + 0.2 * rng.normal(size=S))))
    a[:, 1] = rng.beta(2.0, 5.0, S)  # the prior itself
    a[:, 2] = rng.beta(40.0, 100.0, S)
    delta = 1 / (1 + np.exp(-(-3.0 - ridge + 0.2 * rng.normal(size=S))))
    T = np.stack([rng.dirichlet(200 * np.array([0.2, 0.3, 0.5]), S) for _ in range(3)], axis=1)[:, None]
    draws = {"u": rng.normal(0.3, 0.1, (S, 1, 1)), "T": T, "a": a, "delta": delta[:, None]}
    return model, draws


def _prior_moments():
    """Independent prior moments of the synthetic model: natural-scale variance
    and unconstrained-view covariance block per scalar."""
    beta_var = lambda p, q: p * q / ((p + q) ** 2 * (p + q + 1))  # noqa: E731
    alpha = np.array([1.0, 2.0, 3.0])
    nat = {"u[0, intercept]": 4.0, "delta[0]": beta_var(1.0, 9.0)}
    z = {"u[0, intercept]": 4.0, "delta[0]": polygamma(1, 1.0) + polygamma(1, 9.0)}
    for i in range(3):
        nat[f"a[{i}]"] = beta_var(2.0, 5.0)
        z[f"a[{i}]"] = polygamma(1, 2.0) + polygamma(1, 5.0)
        for j in range(3):
            nat[f"T[0, {i}, {j}]"] = beta_var(alpha[j], alpha.sum() - alpha[j])
    alr = np.diag(polygamma(1, alpha[:2])) + polygamma(1, alpha[2])
    return nat, z, alr


def test_report_figures_match_an_independent_computation(synthetic):
    """Posterior sd, prior sd and contraction per scalar (natural scale and
    logit/identity view) equal a direct computation from the draws and the
    priors' closed forms; the weakest direction's contraction is one minus the
    largest generalised eigenvalue of (Σ, Π) (scipy), and the flagged pair's
    correlation is that of the logit draws."""
    model, draws = synthetic
    report = identifiability(synthetic_fit(model, draws))
    table = report.table
    nat, zvar, alr = _prior_moments()
    flat = {"u[0, intercept]": draws["u"][:, 0, 0], "delta[0]": draws["delta"][:, 0]}
    zflat = {"u[0, intercept]": flat["u[0, intercept]"], "delta[0]": logit(flat["delta[0]"])}
    for i in range(3):
        flat[f"a[{i}]"] = draws["a"][:, i]
        zflat[f"a[{i}]"] = logit(draws["a"][:, i])
        for j in range(3):
            flat[f"T[0, {i}, {j}]"] = draws["T"][:, 0, i, j]
    assert sorted(table.index) == sorted(flat)
    for name, x in flat.items():
        row = table.loc[name]
        assert row["post_sd"] == pytest.approx(x.std(ddof=1), rel=1e-10)
        assert row["prior_sd"] == pytest.approx(np.sqrt(nat[name]), rel=1e-10)
        assert row["contraction"] == pytest.approx(1 - x.var(ddof=1) / nat[name], rel=1e-10)
        if name in zflat:
            assert row["z_contraction"] == pytest.approx(1 - zflat[name].var(ddof=1) / zvar[name], rel=1e-10)
        else:
            assert np.isnan(row["z_contraction"])
    # the unconstrained view, built independently: ALR coordinates of T against the last slot
    cols, blocks = [], []
    for i in range(3):
        for j in range(2):
            cols.append(np.log(draws["T"][:, 0, i, j] / draws["T"][:, 0, i, 2]))
        blocks.append(alr)
    names = ["u[0, intercept]"] + [f"a[{i}]" for i in range(3)] + ["delta[0]"]
    Z = np.column_stack([zflat["u[0, intercept]"]] + cols + [zflat[n] for n in names[1:]])
    Pi = scipy.linalg.block_diag(np.array([[zvar["u[0, intercept]"]]]), *blocks,
                                 *[np.array([[zvar[n]]]) for n in names[1:]])
    Sigma = np.cov(Z, rowvar=False)
    contraction = 1 - scipy.linalg.eigh(Sigma, Pi, eigvals_only=True)  # ascending eigenvalues
    # weakest: the a[0]–δ ridge (wider than the prior: contraction < 0), reported as the confounded
    # pair; next, a[1] left at its prior (contraction near 0); every other direction is contracted
    assert contraction[-1] < 0 < contraction[-2] < 0.05 < 0.5 < contraction[-3]
    weak = [d for d in report.directions if d.kind == "weak"]
    assert len(weak) == 1 and weak[0].parameters == ["a[1]"]
    assert weak[0].contraction == pytest.approx(contraction[-2], rel=1e-8)
    pair = [d for d in report.directions if d.kind == "confounded"]
    assert [d.parameters for d in pair] == [["a[0]", "delta[0]"]] and report.directions[0] is pair[0]
    i, j = names.index("a[0]") + 6, names.index("delta[0]") + 6  # after u and the 6 log-ratios
    ridge = 1 - scipy.linalg.eigh(Sigma[np.ix_([i, j], [i, j])], Pi[np.ix_([i, j], [i, j])], eigvals_only=True).max()
    assert pair[0].contraction == pytest.approx(ridge, rel=1e-8)
    assert pair[0].corr == pytest.approx(np.corrcoef(zflat["a[0]"], zflat["delta[0]"])[0, 1], rel=1e-10)
    assert report.corr.loc["a[0]", "delta[0]"] == pytest.approx(pair[0].corr, rel=1e-12)


def test_prior_sd_agrees_with_draws_from_the_model(synthetic):
    """The table's prior variances equal those of 20000 draws from the model's
    prior program within four standard errors of a sample variance
    (SE = sqrt((m4 − s⁴)/n), from the draws' fourth central moment)."""
    model, draws = synthetic
    table = identifiability(synthetic_fit(model, draws)).table
    prior = prior_draws(model, 20000, seed=3)
    got = {"u[0, intercept]": prior["u"][:, 0, 0], "delta[0]": prior["delta"][:, 0], "a[0]": prior["a"][:, 0],
           "T[0, 1, 2]": prior["T"][:, 0, 1, 2]}
    for name, x in got.items():
        c = x - x.mean()
        var, m4 = np.mean(c ** 2), np.mean(c ** 4)
        se = np.sqrt((m4 - var ** 2) / len(x))
        assert abs(table.loc[name, "prior_sd"] ** 2 - var) < 4 * se, (name, table.loc[name, "prior_sd"] ** 2, var)


def test_the_check_survives_unusual_fits(synthetic, tmp_path):
    """Boundary draws (δ = 0, a zero in a T row), a non-finite draw, a single
    draw, a fit read back from disk, and fields of other lifetime and content
    options: the check returns a report (or records why not) and never raises."""
    model, draws = synthetic
    odd = {k: v.copy() for k, v in draws.items()}
    odd["delta"][:5] = 0.0
    odd["T"][:5, 0, 0] = np.array([0.0, 0.4, 0.6])
    odd["u"][7] = np.nan
    fit = synthetic_fit(model, odd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeakIdentificationWarning)
        report = check_identifiability(fit)
    assert report is not None and report.n_draws == 3999
    one = synthetic_fit(model, {k: v[:1] for k, v in draws.items()})
    assert check_identifiability(one).n_draws == 1
    fit.to_netcdf(tmp_path / "fit.nc")
    back = nv.load_fit(tmp_path / "fit.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeakIdentificationWarning)
        assert check_identifiability(back) is not None
    sub = nv.Substrate.from_networkx(nx.path_graph(2))
    other = nv.VesicleModel(sub, n_types=1, lifetime="countdown", content_dim=1,
                            priors={"content_scale": dist.LogNormal(0.0, 0.5), "T": np.array([[[1.0, 0], [0, 1]]])})
    draws = numpy_prior_draws(other, 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeakIdentificationWarning)
        rep = check_identifiability(synthetic_fit(other, draws))
    assert rep is not None and {"shape", "rate", "content_scale"} <= set(rep.table["field"])
    # draws from the prior itself: every contraction is near zero (within sampling error)
    assert (rep.table["contraction"].abs() < 0.4).all()


def test_the_check_handles_a_large_posterior():
    """4000 draws of 51 scalars (T on a 12-node cycle, a, u, w, δ): the
    analysis the fits run at their end (its time is reported by the
    identifiability benchmark figures, not checked here)."""
    sub = nv.Substrate.from_networkx(nx.cycle_graph(12))
    model = nv.VesicleModel(sub, n_types=1)
    fit = synthetic_fit(model, numpy_prior_draws(model, 4000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeakIdentificationWarning)
        report = check_identifiability(fit)
    assert len(report.table) == 51 and report.n_draws == 4000
    assert len(report.corr) == 39  # 24 log-ratios of T, 12 a, u, w, δ


def test_a_flat_direction_of_the_composite_likelihood_is_named():
    """Two nodes, absorption at each and decay inferred, counts only: the
    counts fix the two survivals (1 − a_i)(1 − δ), so one direction of the
    three is flat. The SVI fit's score covariance is singular there; the
    report names a[0], a[1] and delta[0] with the weights of that direction,
    which in the logit view is n ∝ (−δ/a₀, −δ/a₁, 1) at the composite MAP
    (d log(1 − x)/d logit x = −x), computed here independently."""
    sub = nv.Substrate.from_networkx(nx.path_graph(2))
    T = nv.VesicleModel(sub, n_types=1).default_params().T
    model = nv.VesicleModel(sub, n_types=1, priors={"u": 0.0, "w": -1.4, "T": T})
    truth = model.default_params().replace(a=np.array([0.05, 0.1]))
    obs = nv.simulate(model, truth, n_steps=40, n_runs=10, key=2).observe(counts=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nv.errors.ApproximationWarning)
        fit = fit_svi(model, obs, num_steps=300, num_samples=2000, progress_bar=False, log_likelihood=False)
    with pytest.warns(WeakIdentificationWarning, match="flat along 1 direction over"):
        report = check_identifiability(fit)
    flat = [d for d in report.directions if d.kind == "unidentified"]
    assert len(flat) == 1 and sorted(flat[0].parameters) == ["a[0]", "a[1]", "delta[0]"]
    assert "(1−a_i)(1−δ_κ)" in flat[0].message
    z = fit.extra["map_latent"]
    idx = fit.extra["guide"]._unpack_latent(np.arange(3.0))
    a = 1 / (1 + np.exp(-z[np.asarray(idx["a"]).round().astype(int)]))
    d = 1 / (1 + np.exp(-z[int(np.ravel(idx["delta"])[0])]))
    n = np.array([-d / a[0], -d / a[1], 1.0])
    expected = dict(zip(["a[0]", "a[1]", "delta[0]"], n ** 2 / np.sum(n ** 2)))
    got = dict(zip(flat[0].parameters, flat[0].loadings))
    for name, w in expected.items():
        assert got[name] == pytest.approx(w, rel=1e-3, abs=1e-4), (name, got, expected)
