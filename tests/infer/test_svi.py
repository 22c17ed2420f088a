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
    """The MVN guide reproduces the mean and standard deviation of the composite
    posterior prior(θ)·exp(ℓ_c(θ)) computed on a 81×81 grid in the unconstrained
    coordinates (u, logit δ), Jacobian included. This posterior is close to
    Gaussian, so the best Gaussian matches its moments to within a few percent:
    means within 0.15 sd (1000 guide draws add a Monte Carlo error of 0.03 sd),
    standard deviations within 15 %."""
    model, truth, obs = two_param
    fit = nv.infer.fit(model, obs, method="svi", num_steps=1500, num_samples=1000, key=0, progress_bar=False)
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
                               progress_bar=False, log_likelihood=False)
        try:
            fit = nv.infer.fit(model, obs, method="is", init=svi, num_draws=250, n_particles=512, key=rep,
                               progress_bar=False, log_likelihood=False)
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
