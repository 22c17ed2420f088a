"""Density SVI, importance sampling from its guide, and PMMH started from it.

SVI is checked against the exact composite posterior of two parameters on a
grid (the density is deterministic, so the composite likelihood can be
evaluated anywhere), and for recovery against the sandwich standard error of
the composite estimator. Importance sampling is checked for coverage over
replicate data sets and for its refusal when the proposal is wrong.
"""

import warnings

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, gammaln, logit

import nvppl as nv
from nvppl import density
from nvppl.density import Density, composite_log_likelihood, relax
from nvppl.model import ModelKey
from nvppl.infer import svi as S
from nvppl.infer.pmmh import PMMH


def small_model(priors=None, n=4):
    """Cycle of ``n`` nodes (with stay), one type, uniform T and no absorption
    fixed; u, w, delta inferred unless fixed in ``priors``."""
    sub = nv.Substrate.from_networkx(nx.cycle_graph(n))
    base = nv.VesicleModel(sub, n_types=1).default_params().T
    return nv.VesicleModel(sub, n_types=1, priors={"a": 0.0, "T": base, **(priors or {})})


@pytest.fixture(scope="module")
def two_param():
    """u and δ free (w fixed), exact counts from 6 runs of 30 steps."""
    model = small_model({"w": np.log(0.2 / 0.8)})
    truth = model.default_params()
    obs = nv.simulate(model, truth, n_steps=30, n_runs=6, key=3).observe(counts=True, detection="exact")
    return model, truth, obs


def test_svi_matches_the_grid_composite_posterior(two_param):
    """Unadjusted (``adjust="none"``), the MVN guide reproduces the mean and standard deviation of the composite
    posterior prior(θ)·exp(ℓ_c(θ)) computed on a 81×81 grid in the unconstrained
    coordinates (u, logit δ), Jacobian included. This posterior is close to
    Gaussian, so the best Gaussian matches its moments to within a few percent:
    means within 0.15 sd (1000 guide draws add a Monte Carlo error of 0.03 sd),
    standard deviations within 15 %."""
    model, truth, obs = two_param
    fit = nv.infer.fit(model, obs, method="svi", num_steps=1500, num_samples=1000, key=0, progress_bar=False,
                       adjust="none")
    assert fit.extra["converged"]
    zu = np.asarray(fit.idata.posterior["u"]).reshape(-1)
    zd = logit(np.asarray(fit.idata.posterior["delta"]).reshape(-1))
    gu = np.linspace(zu.mean() - 6 * zu.std(), zu.mean() + 6 * zu.std(), 81)
    gd = np.linspace(zd.mean() - 6 * zd.std(), zd.mean() + 6 * zd.std(), 81)
    U, D = np.meshgrid(gu, gd, indexing="ij")

    run = density.relaxer(ModelKey(model), obs.n_steps, 1, False)
    fixed = {k: jnp.asarray(v) for k, v in model.params_with({}).to_dict().items()}
    F = jnp.zeros((obs.n_steps, model.n_nodes, 0))

    @jax.jit
    @jax.vmap
    def lp(u, zdelta):
        delta = jax.nn.sigmoid(zdelta)
        out = run({**fixed, "u": u.reshape(1, 1), "delta": delta.reshape(1)}, F)
        ll = composite_log_likelihood(Density(*out), obs).sum()
        prior = jax.scipy.stats.norm.logpdf(u, 0, 1.5) + jnp.log(delta) + jnp.log1p(-delta)  # Beta(1,1) + Jacobian
        return ll + prior

    vals = np.asarray(lp(jnp.asarray(U.ravel()), jnp.asarray(D.ravel()))).reshape(U.shape)
    w = np.exp(vals - vals.max())
    w /= w.sum()
    for z, grid in ((zu, U), (zd, D)):
        m = (w * grid).sum()
        sd = np.sqrt((w * (grid - m) ** 2).sum())
        assert abs(z.mean() - m) < 0.15 * sd, (z.mean(), m, sd)
        assert abs(z.std() / sd - 1) < 0.15, (z.std(), sd)


def test_svi_recovers_parameters_within_sandwich_errors():
    """With many runs the composite estimate is close to the truth. Its honest
    standard error is the sandwich one (the guide's is too small); every
    coordinate of the guide mean lies within 4 sandwich standard errors."""
    model = small_model()
    truth = model.default_params()
    obs = nv.simulate(model, truth, n_steps=30, n_runs=40, key=5).observe(counts=True, docks=True,
                                                                          detection="binomial", p_det=0.8, key=6)
    fit = nv.infer.fit(model, obs, method="svi", num_steps=1000, num_samples=400, key=1, progress_bar=False,
                       log_likelihood=False)
    z_map, V = S.godambe_covariance(fit, n_boot=120, key=2)
    loc, C, unpack = S.guide_moments(fit)
    sites = unpack(jnp.asarray(z_map))
    t_sites = {"u": truth.u, "w": truth.w, "delta": logit(truth.delta)}
    se = np.sqrt(np.diag(V))
    idx = unpack(jnp.arange(len(z_map), dtype=float))
    for name, t in t_sites.items():
        i = int(np.asarray(idx[name]).ravel()[0])
        est = float(np.asarray(sites[name]).ravel()[0])
        assert abs(est - float(np.ravel(t)[0])) < 4 * se[i], (name, est, t, se[i])
        # the composite curvature overstates the information: sandwich ≥ guide (up to noise)
        assert se[i] > 0.8 * np.sqrt(C[i, i]), (name, se[i], np.sqrt(C[i, i]))


def test_composite_objective_equals_the_density_composite_likelihood(two_param):
    """The summed objective used by SVI (sufficient statistics over runs) equals
    the per-run composite log-likelihood up to the constant −Σ log y!, for each
    detection model."""
    model, truth, _ = two_param
    traces = nv.simulate(model, truth, n_steps=12, n_runs=3, key=9)
    for kw in (dict(detection="exact"), dict(detection="binomial", p_det=0.7), dict(detection="poisson")):
        obs = traces.observe(counts=True, docks=True, key=4, **kw)
        spec, data = S._prepare(model, obs, None, None)
        dens = relax(model, truth, 12)
        out = S._composite(spec, dens.rho[None], dens.expected_docks[None], data)
        const = 0.0 if kw["detection"] == "poisson" else -sum(gammaln(y + 1.0).sum() for y in (obs.counts, obs.docks))
        ref = float(composite_log_likelihood(dens, obs, n_mix=spec.n_mix).sum())
        assert np.isclose(float(out) + const, ref, rtol=1e-12, atol=1e-9), kw


def test_convergence_check():
    rng = np.random.default_rng(0)
    flat = 100 + rng.normal(0, 1, 1000)
    falling = 100 - np.linspace(0, 50, 1000) + rng.normal(0, 1, 1000)
    assert S._converged(flat)[0]
    ok, why = S._converged(falling)
    assert not ok and "still fell" in why


def test_svi_warns_when_not_converged(two_param, monkeypatch):
    """The fit reports the convergence check's verdict (the check itself is tested above)."""
    model, _, obs = two_param
    monkeypatch.setattr(S, "_converged", lambda losses: (False, f"checked {len(losses)} losses"))
    with pytest.warns(UserWarning, match="has not converged after 40 steps: checked 40 losses"):
        fit = nv.infer.fit(model, obs, method="svi", num_steps=40, num_samples=10, progress_bar=False,
                           log_likelihood=False)
    assert fit.extra["converged"] is False and fit.idata.posterior.attrs["converged"] == 0


def test_svi_fit_contents_and_round_trip(tmp_path, two_param):
    model, _, obs = two_param
    fit = nv.infer.fit(model, obs, method="svi", num_steps=200, num_samples=50, progress_bar=False)
    post = fit.idata.posterior
    assert post["u"].shape == (1, 50, 1, 1) and post["delta"].shape == (1, 50, 1)  # 50: not a multiple of 4
    assert fit.idata.log_likelihood["obs"].shape == (1, 50, obs.n_runs, obs.n_steps)
    assert fit.extra["elbo"].shape == (200,)
    # the stored composite terms are those of the draw
    p = fit.posterior_draw(0, 7)
    ref = composite_log_likelihood(relax(model, p, obs.n_steps), obs)
    np.testing.assert_allclose(fit.idata.log_likelihood["obs"].values[0, 7], ref, rtol=1e-10)
    fit.to_netcdf(tmp_path / "svi.nc")
    back = nv.load_fit(tmp_path / "svi.nc")
    assert back.method == "svi"
    np.testing.assert_array_equal(back.idata.posterior["u"].values, post["u"].values)


def test_svi_and_is_reject_bad_input(two_param):
    model, truth, obs = two_param
    traces = nv.simulate(model, truth, n_steps=5, key=0)
    with pytest.raises(TypeError, match="partial observations"):
        nv.infer.fit(model, traces, method="svi")
    unknown = nv.Observations(counts=obs.counts, detection="binomial")
    with pytest.raises(ValueError, match="unknown p_det"):
        nv.infer.fit(model, unknown, method="svi")
    with pytest.raises(ValueError, match="guide must be"):
        nv.infer.fit(model, obs, method="svi", guide="flow")
    with pytest.raises(ValueError, match="num_steps"):
        nv.infer.fit(model, obs, method="svi", num_steps=0)
    nuts = nv.infer.fit(model, traces, num_samples=20, num_warmup=20, num_chains=1, progress_bar=False,
                        posterior_predictive=False)
    with pytest.raises(TypeError, match="method='svi'"):
        nv.infer.fit(model, obs, method="is", init=nuts)
    other = small_model({"w": -1.0}, n=4)
    fit = nv.infer.fit(model, obs, method="svi", num_steps=100, num_samples=20, progress_bar=False,
                       log_likelihood=False)
    with pytest.raises(ValueError, match="different model"):
        nv.infer.fit(other, obs, method="is", init=fit)


def test_pmmh_from_svi_uses_the_guide_covariance(two_param):
    """PMMH's initial proposal covariance is the guide's, mapped to PMMH's
    coordinates: it equals the covariance of guide draws unconstrained by the
    kernel itself (1000 draws: entries agree within 4 Monte Carlo standard errors)."""
    model, _, obs = two_param
    fit = nv.infer.fit(model, obs, method="svi", num_steps=300, num_samples=4000, key=2, progress_bar=False,
                       log_likelihood=False)
    kernel = PMMH(model, obs, init=fit)
    cov = np.asarray(kernel.chol0 @ kernel.chol0.T)
    post = fit.idata.posterior
    draws = {n: post[n].values.reshape((-1,) + post[n].shape[2:]) for n in model.inferred}
    zs = np.asarray(jax.vmap(kernel._flat)(draws))
    emp = np.cov(zs, rowvar=False)
    se = np.sqrt((emp ** 2 + np.outer(np.diag(emp), np.diag(emp))) / len(zs))
    assert np.all(np.abs(cov - emp) < 4 * se + 1e-9), (cov, emp)
    assert kernel._init_z.shape == (len(zs), kernel.dim)


@pytest.mark.slow
def test_importance_sampling_covers_the_truth():
    """Central 90 % intervals of IS (sandwich Student-t proposal around the SVI
    fit, particle-filter weights) cover δ and u₀ drawn from the prior at the
    nominal rate: 10 replicate data sets (Poisson-detected counts); among the
    accepted fits the number of covered components must lie in the central
    99.9 % interval of Binomial(2·accepted, 0.9). Refusals (k̂ > 0.7, the filter's
    noise or the proposal) are allowed but must stay rare: at most 3 of 10."""
    sub = nv.Substrate.from_networkx(nx.cycle_graph(3))
    model = nv.VesicleModel(sub, n_types=1, priors={"a": 0.0, "T": np.full((1, 3, 3), 1 / 3), "w": -1.4,
                                                    "delta": nv.model.dist.Beta(2.0, 8.0)})
    covered = total = refused = 0
    for rep in range(10):
        truth = model.sample_params(300 + rep)
        truth = truth.replace(u=np.clip(truth.u, -1.0, 1.5))
        traces = nv.simulate(model, truth, n_steps=20, n_runs=2, key=rep)
        obs = traces.observe(counts=True, detection="poisson", key=rep + 100)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            svi = nv.infer.fit(model, obs, method="svi", num_steps=400, num_samples=100, key=rep,
                               progress_bar=False, log_likelihood=False, posterior_predictive=False)
        try:
            fit = nv.infer.fit(model, obs, method="is", init=svi, num_draws=250, n_particles=512, key=rep,
                               progress_bar=False, log_likelihood=False, posterior_predictive=False)
        except nv.ImportanceSamplingError:
            refused += 1
            continue
        for name in ("delta", "u"):
            x = np.asarray(fit.idata.posterior[name]).reshape(-1)
            lo, hi = np.quantile(x, [0.05, 0.95])
            t = float(np.asarray(getattr(truth, name)).ravel()[0])
            covered += int(lo <= t <= hi)
            total += 1
    assert refused <= 3, f"{refused} of 10 importance-sampling fits refused"
    lo_ok, hi_ok = stats.binom.ppf([0.0005, 0.9995], total, 0.9)
    assert lo_ok <= covered <= hi_ok, f"{covered}/{total} covered ({refused} refused)"


def test_importance_sampling_refuses_a_wrong_guide(two_param):
    """A guide fitted to data from other parameters (δ three times larger) is
    used as the proposal as it is: the weights are dominated by a few draws,
    k̂ > 0.7, and the fit is refused with an error carrying the weights."""
    model, truth, obs = two_param
    wrong = nv.simulate(model, truth.replace(delta=np.array([0.15])), n_steps=30, n_runs=6,
                        key=11).observe(counts=True, detection="exact")
    wrong_fit = nv.infer.fit(model, wrong, method="svi", num_steps=300, num_samples=20, progress_bar=False,
                             log_likelihood=False)
    poisson_obs = nv.Observations(counts=obs.counts, detection="poisson")
    with pytest.raises(nv.ImportanceSamplingError, match="k̂") as err:
        nv.infer.fit(model, poisson_obs, method="is", init=wrong_fit, proposal="guide", num_draws=200,
                     n_particles=256, progress_bar=False)
    assert err.value.khat > 0.7
    assert err.value.result is not None and err.value.result.log_weights.shape == (200,)


def test_fit_is_weights_are_prior_times_likelihood_over_proposal(two_param):
    """With a stub filter returning a known log-likelihood, the raw log weights are
    log prior + log-likelihood − log q exactly (checked against an independent
    evaluation of the prior and the guide density)."""
    model, truth, obs = two_param
    poisson_obs = nv.Observations(counts=obs.counts, detection="poisson")
    svi = nv.infer.fit(model, poisson_obs, method="svi", num_steps=300, num_samples=20, progress_bar=False,
                       log_likelihood=False)

    class Stub:
        def __init__(self, ll):
            self.log_evidence = ll
            self.log_increments = np.full((obs.n_runs, obs.n_steps), ll / (obs.n_runs * obs.n_steps))

    def stub_filter(model_, params, obs_, **kwargs):
        return Stub(-50.0 * (float(params.delta[0]) - 0.05) ** 2)  # a smooth fake likelihood

    fit = nv.infer.fit(model, poisson_obs, method="is", init=svi, proposal="guide", num_draws=300,
                       progress_bar=False, khat_max=np.inf, _particle_filter=stub_filter)
    res = fit.extra["importance"]
    g, params = svi.extra["guide"], svi.extra["guide_params"]
    post = g.get_posterior(params)
    zu = res.draws["u"].reshape(-1)
    zd = logit(res.draws["delta"].reshape(-1))
    idx = g._unpack_latent(jnp.arange(2.0))
    z = np.zeros((len(zu), 2))
    z[:, int(np.ravel(idx["u"])[0])] = zu
    z[:, int(np.ravel(idx["delta"])[0])] = zd
    delta = expit(zd)
    log_prior = stats.norm.logpdf(zu, 0, 1.5) + np.log(delta) + np.log1p(-delta)
    ll = -50.0 * (delta - 0.05) ** 2
    expected = log_prior + ll - np.asarray(post.log_prob(jnp.asarray(z)))
    np.testing.assert_allclose(res.log_weights, expected, rtol=1e-9, atol=1e-9)
    assert fit.idata.posterior.attrs["khat"] == pytest.approx(res.khat)


# ----------------------------------------------------------------------------- curvature adjustment
def _scores_with_covariance(J, B, rng):
    """``B`` scores whose sample covariance is exactly ``J`` times ``(B − d − 2)/(B − 1)``, so
    that its bias-corrected inverse (the adjustment's estimate of ``J⁻¹``) is exactly ``J⁻¹``."""
    d = len(J)
    X = rng.normal(size=(B, d))
    X -= X.mean(0)
    X = X @ np.linalg.inv(np.linalg.cholesky(np.cov(X, rowvar=False))).T  # sample covariance exactly I
    return X @ np.linalg.cholesky(J * (B - d - 2) / (B - 1)).T


def test_adjustment_recovers_the_posterior_of_a_likelihood_counted_k_times():
    """A Gaussian likelihood N(y; z, A⁻¹) counted k = 3 times (composite curvature
    H = kA, score covariance J = k²A) with a Gaussian prior N(0, P⁻¹): the
    composite MAP is (kA + P)⁻¹ kA y and the Godambe information is A, so the
    adjusted posterior must be the honest one, N((A + P)⁻¹ A y, (A + P)⁻¹),
    exactly (the quadratic model is exact); centring at the MAP would not be."""
    from nvppl.infer._adjust import adjust

    rng = np.random.default_rng(0)
    A = np.array([[4.0, 1.0], [1.0, 2.0]])
    P = np.array([[0.5, 0.0], [0.0, 0.2]])
    y = np.array([1.0, -2.0])
    k = 3.0
    z_map = np.linalg.solve(k * A + P, k * A @ y)
    scores = _scores_with_covariance(k ** 2 * A, 400, rng)
    adj = adjust(z_map, k * A + P, P, scores, -P @ z_map)
    assert adj.applied and adj.notes == []
    np.testing.assert_allclose(adj.G, A, rtol=1e-10)
    np.testing.assert_allclose(adj.cov, np.linalg.inv(A + P), rtol=1e-10)
    np.testing.assert_allclose(adj.center, np.linalg.solve(A + P, A @ y), rtol=1e-10)
    assert not np.allclose(z_map, adj.center, rtol=1e-3)
    # an honest composite likelihood (k = 1) is left as it is
    z1 = np.linalg.solve(A + P, A @ y)
    one = adjust(z1, A + P, P, _scores_with_covariance(A, 400, rng), -P @ z1)
    np.testing.assert_allclose(one.cov, np.linalg.inv(A + P), rtol=1e-10)
    np.testing.assert_allclose(one.center, z1, rtol=1e-10)


def test_godambe_information_on_the_span_of_the_scores():
    """Scores confined to one direction u (the likelihood depends on one
    combination): G on u is the Godambe value (uᵀHu)²/(uᵀJu) with the Wishart
    factor (B − 3)/(B − 1); along the orthogonal direction the composite
    curvature is kept; too few data sets or no score variance are refused."""
    from nvppl.infer._adjust import godambe_information

    rng = np.random.default_rng(1)
    u = np.array([1.0, 1.0]) / np.sqrt(2)
    n = np.array([1.0, -1.0]) / np.sqrt(2)
    H = 50.0 * np.outer(u, u) + 0.7 * np.outer(n, n)
    B = 300
    scores = np.outer(rng.normal(0, 20.0, B), u)
    G, J, rank, notes = godambe_information(H, scores)
    assert rank == 1 and notes == []
    Ju = u @ J @ u
    assert u @ G @ u == pytest.approx(50.0 ** 2 / Ju * (B - 3) / (B - 1), rel=1e-10)
    assert n @ G @ n == pytest.approx(0.7, rel=1e-10)
    assert np.linalg.matrix_rank(J, tol=1e-8 * np.abs(J).max()) == 1
    assert godambe_information(H, scores[:20])[3]  # 20 < 1 + 2 + MIN_EXTRA_BOOT
    assert "does not vary" in godambe_information(H, np.zeros((50, 2)))[3][0]


def test_adjusted_fit_draws_come_from_the_adjusted_gaussian(two_param):
    """The stored posterior is the adjusted Gaussian (draws in the guide's
    coordinates: mean and covariance within 4 Monte Carlo standard errors;
    ``log_q`` its log density), the attributes say what was done, and the
    unadjusted guide stays reachable."""
    import json

    model, _, obs = two_param
    fit = S.fit_svi(model, obs, num_steps=300, num_samples=4000, key=3, progress_bar=False, log_likelihood=False)
    adj = fit.extra["adjustment"]
    attrs = fit.idata.posterior.attrs
    record = json.loads(attrs["nvppl_adjustment"])
    assert attrs["nvppl_exactness"] == "approximate"
    assert record["applied"] and record["n_boot"] == adj.n_boot == 200 and record["notes"] == []
    assert set(record["seconds"]) == {"simulate", "scores", "prior_curvature", "total"}
    g, params = fit.extra["guide"], fit.extra["guide_params"]
    idx = g._unpack_latent(jnp.arange(2.0))
    post = fit.idata.posterior
    z = np.zeros((fit.num_draws, 2))
    z[:, int(np.ravel(idx["u"])[0])] = post["u"].values.reshape(-1)
    z[:, int(np.ravel(idx["delta"])[0])] = logit(post["delta"].values.reshape(-1))
    sd = np.sqrt(np.diag(adj.cov))
    assert np.all(np.abs(z.mean(0) - adj.center) < 4 * sd / np.sqrt(len(z)))
    emp = np.cov(z, rowvar=False)
    se = np.sqrt((emp ** 2 + np.outer(np.diag(emp), np.diag(emp))) / len(z))
    assert np.all(np.abs(emp - adj.cov) < 4 * se)
    ref = stats.multivariate_normal(adj.center, adj.cov).logpdf(z)
    np.testing.assert_allclose(fit.idata.sample_stats["log_q"].values.reshape(-1), ref, rtol=1e-8)
    loc, C, _ = S.guide_moments(fit)
    np.testing.assert_allclose(C, adj.cov)
    raw_loc, raw_C, _ = S.guide_moments(fit, adjusted=False)
    q = g.get_posterior(params)
    np.testing.assert_allclose(raw_C, np.asarray(q.covariance_matrix))
    # the composite curvature overstates the information: the adjusted spread is wider
    assert np.all(np.diag(adj.cov) > np.diag(raw_C))


def test_bootstrap_scores_are_composite_gradients(two_param):
    """The batched scores of simulated data sets equal the gradient of the
    density's composite log-likelihood (``composite_log_likelihood``, per run,
    summed) evaluated independently for each data set; differences of rows
    cancel the prior's gradient."""
    from nvppl.infer._adjust import simulate_observed

    model, _, obs = two_param
    fit = S.fit_svi(model, obs, num_steps=100, num_samples=10, key=1, progress_bar=False, log_likelihood=False)
    comp, z = fit.extra["composite"], fit.extra["map_latent"]
    sites = comp.programs.constrain(jnp.asarray(z), fit.extra["guide_params"])
    scores, _ = comp.boot(z, sites, 5, 11)
    params = model.params_with({n: np.asarray(sites[n]) for n in model.inferred})
    counts, _, _ = simulate_observed(model, params, obs, 5, 11)
    idx = fit.extra["guide"]._unpack_latent(jnp.arange(2.0))
    iu, idl = int(np.ravel(idx["u"])[0]), int(np.ravel(idx["delta"])[0])

    def ll(zz, y):
        p = params.replace(u=zz[iu].reshape(1, 1), delta=jax.nn.sigmoid(zz[idl]).reshape(1))
        ob = nv.Observations(counts=y, detection="exact")
        return composite_log_likelihood(relax(model, p, obs.n_steps), ob).sum()

    ref = np.stack([np.asarray(jax.grad(ll)(jnp.asarray(z), counts[b])) for b in range(5)])
    np.testing.assert_allclose(scores[1:] - scores[0], ref[1:] - ref[0], rtol=1e-8, atol=1e-8)


def test_svi_warns_when_the_adjustment_does_not_apply(two_param, monkeypatch):
    """Too few simulated data sets, no MAP search: an ApproximationWarning, the
    guide's draws kept, the attribute saying why. A mean-field density: the
    adjustment is applied and the warning says what it does not cover."""
    import json

    model, _, obs = two_param
    kw = dict(method="svi", num_steps=100, num_samples=20, progress_bar=False, log_likelihood=False)
    with pytest.warns(nv.errors.ApproximationWarning, match="too few to estimate J"):
        fit = nv.infer.fit(model, obs, n_boot=10, **kw)
    record = json.loads(fit.idata.posterior.attrs["nvppl_adjustment"])
    assert not record["applied"] and "too few" in record["notes"][0]
    assert not fit.extra["adjustment"].applied
    loc, C, _ = S.guide_moments(fit)
    raw = fit.extra["guide"].get_posterior(fit.extra["guide_params"])
    np.testing.assert_allclose(C, np.asarray(raw.covariance_matrix))
    with pytest.warns(nv.errors.ApproximationWarning, match="no composite MAP search"):
        fit = nv.infer.fit(model, obs, map_iter=0, **kw)
    assert fit.extra["adjustment"] is None
    monkeypatch.setattr(density, "exact_in_mean", lambda m: False)
    with pytest.warns(nv.errors.ApproximationWarning, match="mean-field"):
        fit = nv.infer.fit(model, obs, **kw)
    assert json.loads(fit.idata.posterior.attrs["nvppl_adjustment"])["applied"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", nv.errors.ApproximationWarning)
        fit = nv.infer.fit(model, obs, adjust="none", **kw)
    assert json.loads(fit.idata.posterior.attrs["nvppl_adjustment"]) == {"method": "none", "applied": False}
    with pytest.raises(ValueError, match="adjust"):
        nv.infer.fit(model, obs, adjust="godambe", **kw)
