"""Particle-marginal Metropolis–Hastings (``method="pmmh"``) with a mock likelihood estimator.

The particle filter is replaced by :class:`MockFilter`: an exact, closed-form
log-likelihood of ``delta`` (and of ``T[0, 0, 0]``) — binomial terms, so the
posterior is a product of Beta distributions — optionally multiplied by unbiased
log-normal noise, ``exp(σε − σ²/2)`` with ``ε ~ N(0, 1)``, whose mean is 1. PMMH
must then target the exact posterior, noise or not.

Tolerances: a posterior quantile ``q_p`` (from a grid) is checked through the
empirical CDF of the draws, ``|F̂(q_p) − p| ≤ 4 sqrt(p (1 − p) / ESS_p)`` where
``ESS_p`` is ArviZ's effective sample size of the indicator ``θ ≤ q_p`` (a 4σ
band: a correct sampler fails one check with probability ~6e-5). Seeds are fixed.
"""

from types import SimpleNamespace

import arviz as az
import jax
import networkx as nx
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC
from scipy import stats

import nvppl as nv
from nvppl.infer.pmmh import PMMH, PMMHState, fit_pmmh

SUB = nv.Substrate.from_networkx(nx.path_graph(2))
FIXED = {"u": 0.0, "w": 0.0, "a": 0.0}
# the one-parameter model: only delta is inferred
MODEL_1 = nv.VesicleModel(SUB, n_types=1, priors={**FIXED, "T": np.full((1, 2, 2), 0.5),
                                                   "delta": dist.Beta(2.0, 2.0)})
# delta and the two rows of T (Dirichlet(1, 1) each): three unconstrained dimensions
MODEL_T = nv.VesicleModel(SUB, n_types=1, priors={**FIXED, "delta": dist.Beta(2.0, 2.0)})
OBS = nv.Observations(counts=np.zeros((2, 4, 2, 1), int))
K, N = 7, 30  # binomial data for delta: posterior Beta(2 + K, 2 + N - K)
KT, NT = 12, 20  # binomial data for T[0, 0, 0]: posterior Beta(1 + KT, 1 + NT - KT)
PROBS = (0.05, 0.25, 0.5, 0.75, 0.95)


class MockFilter:
    """Stands in for ``nvppl.smc.particle_filter``: exact binomial log-likelihoods,
    optionally times unbiased log-normal noise of standard deviation ``noise(params)``."""

    def __init__(self, use_T=False, noise=None, forbid_above=None):
        self.use_T, self.noise, self.forbid_above = use_T, noise, forbid_above
        self.calls, self.returned = 0, []

    def exact(self, params):
        d = float(params.delta[0])
        ll = K * np.log(d) + (N - K) * np.log1p(-d)
        if self.use_T:
            p = float(params.T[0, 0, 0])
            ll += KT * np.log(p) + (NT - KT) * np.log(float(params.T[0, 0, 1]))
        return ll

    def __call__(self, model, params, obs, *, n_particles, key, n_threads=None, trajectory=False, **options):
        assert isinstance(key, int) and 0 <= key < 2**63 and not trajectory
        self.calls, self.options = self.calls + 1, options
        if self.forbid_above is not None and params.delta[0] > self.forbid_above:
            raise nv.ObservationError("every particle gives the observations probability zero")
        with np.errstate(divide="ignore"):
            ll = self.exact(params)
        if self.noise is not None:
            sd = self.noise(params)
            ll += sd * np.random.default_rng(key).normal() - sd**2 / 2
        self.returned.append(ll)
        R, T = obs.n_runs, obs.n_steps
        weights = np.arange(1, R * T + 1, dtype=float).reshape(R, T)
        return SimpleNamespace(log_evidence=ll, log_increments=ll * weights / weights.sum())


def hetero_noise(params):
    """Noise that depends on the parameter (σ from 0.5 to 2): a sampler that re-estimated the
    current state's likelihood would be biased; PMMH is not."""
    return 0.5 + 1.5 * float(params.delta[0])


def grid_quantiles(log_density, probs=PROBS, lo=1e-9, hi=1 - 1e-9, n=200_001):
    """Quantiles of an unnormalised density on (lo, hi) by a fine grid."""
    x = np.linspace(lo, hi, n)
    logp = log_density(x)
    w = np.exp(logp - logp.max())
    cdf = np.concatenate([[0.0], np.cumsum((w[1:] + w[:-1]) / 2 * np.diff(x))])
    return np.interp(np.asarray(probs) * cdf[-1], cdf, x)


def delta_log_posterior(x):
    return stats.beta(2, 2).logpdf(x) + K * np.log(x) + (N - K) * np.log1p(-x)


def check_quantiles(draws, quantiles, probs=PROBS, min_ess=150):
    """Empirical CDF of ``draws`` (chain, draw) at the true quantiles, within 4 MC standard errors."""
    for p, q in zip(probs, quantiles):
        ind = (draws <= q).astype(float)
        ess = float(az.ess(ind))
        assert ess >= min_ess, f"ESS of the indicator at p={p} is only {ess:.0f}"
        tol = 4 * np.sqrt(p * (1 - p) / ess)
        assert abs(ind.mean() - p) <= tol, f"F({q:.4f}) = {ind.mean():.4f}, expected {p} ± {tol:.4f} (ESS {ess:.0f})"


# ------------------------------------------------------------------ fits shared by several tests
@pytest.fixture(scope="module")
def exact_fit():
    """Exact likelihood of delta and T[0, 0, 0]; three unconstrained dimensions (delta and the
    two Dirichlet rows of T); through ``nv.infer.fit``."""
    mock = MockFilter(use_T=True)
    fit = nv.infer.fit(MODEL_T, OBS, method="pmmh", num_samples=4000, num_warmup=600, num_chains=2, key=1,
                       progress_bar=False, _particle_filter=mock)
    return fit, mock


@pytest.fixture(scope="module")
def noisy_fit():
    """Heteroscedastic unbiased noise, and zero-probability estimates (the filter raising
    ObservationError) above delta = 0.6, 4.5 posterior standard deviations out; MCMC's compiled loop."""
    mock = MockFilter(noise=hetero_noise, forbid_above=0.6)
    fit = fit_pmmh(MODEL_1, OBS, num_samples=2500, num_warmup=400, num_chains=2, key=2, progress_bar=False,
                   _particle_filter=mock)
    mock.calls_in_fit = mock.calls  # (the reproducibility test re-runs the fit's MCMC)
    return fit, mock


# ------------------------------------------------------------------ (a) exact likelihood
def test_grid_matches_closed_form():
    """The test's own grid posterior is right (Beta(2 + K, 2 + N - K))."""
    np.testing.assert_allclose(grid_quantiles(delta_log_posterior), stats.beta(2 + K, 2 + N - K).ppf(PROBS),
                               atol=1e-6)


def T_log_posterior(x):
    return KT * np.log(x) + (NT - KT) * np.log1p(-x)  # Dirichlet(1, 1) = uniform prior on T[0, 0, 0]


def test_exact_likelihood_recovers_grid_posterior(exact_fit):
    fit, _ = exact_fit
    post = fit.idata.posterior
    check_quantiles(post["delta"].values[..., 0], grid_quantiles(delta_log_posterior))
    check_quantiles(post["T"].values[..., 0, 0, 0], grid_quantiles(T_log_posterior))
    check_quantiles(post["T"].values[..., 0, 1, 0], grid_quantiles(lambda x: 0 * x))  # prior only: uniform
    # three dimensions, no noise: the scale adapts toward an acceptance rate of 0.234
    acc = fit.idata.sample_stats["acceptance_rate"].values.mean()
    assert 0.12 < acc < 0.4, acc


def test_T_plumbing_and_dispatch(exact_fit):
    fit, mock = exact_fit
    assert nv.infer.METHODS["pmmh"] == "Observations" and fit.method == "pmmh"
    post = fit.idata.posterior
    assert set(post.data_vars) == {"T", "delta"}  # Params names, not the T_rows_<m> sites
    assert post["T"].dims == ("chain", "draw", "type", "node", "slot") and post["T"].shape == (2, 4000, 1, 2, 2)
    np.testing.assert_allclose(post["T"].values.sum(-1), 1.0)
    assert mock.calls == 2 * (1 + 600 + 4000)
    model_T_mean = fit.posterior_mean()
    MODEL_T.check_params(model_T_mean)


# ------------------------------------------------------------------ (b) noisy unbiased estimator
def test_noisy_unbiased_estimator_still_targets_exact_posterior(noisy_fit):
    fit, _ = noisy_fit
    draws = fit.idata.posterior["delta"].values[..., 0]
    check_quantiles(draws, grid_quantiles(delta_log_posterior))


def test_zero_probability_estimates_are_rejected_not_raised(noisy_fit):
    """An ObservationError from the filter is a log-likelihood of -inf: the proposal is rejected."""
    fit, mock = noisy_fit
    assert len(mock.returned) < mock.calls  # some proposals did hit the forbidden region (in warm-up at least)
    assert fit.idata.posterior["delta"].values.max() <= 0.6
    assert np.isfinite(fit.idata.sample_stats["loglik"].values).all()


# ------------------------------------------------------------------ (c) the stored estimate
def test_one_filter_call_per_iteration(noisy_fit):
    fit, mock = noisy_fit
    # per chain: one call for the initial point, one per warm-up and per kept iteration
    assert mock.calls_in_fit == 2 * (1 + 400 + 2500)
    assert fit.idata.posterior.attrs["n_filter_calls"] == mock.calls_in_fit


def test_stored_estimate_is_kept_not_recomputed(noisy_fit):
    fit, mock = noisy_fit
    ss = fit.idata.sample_stats
    loglik, accepted = ss["loglik"].values, ss["accepted"].values
    delta = fit.idata.posterior["delta"].values[..., 0]
    returned = set(np.round(mock.returned, 10))
    assert set(np.round(loglik.ravel(), 10)) <= returned  # every stored value came from one filter call
    stay = ~accepted[:, 1:]
    assert stay.mean() > 0.3 and accepted.mean() > 0.05
    # a rejected proposal leaves the point AND its estimate bit-identical (the noise would change a recomputation)
    np.testing.assert_array_equal(loglik[:, 1:][stay], loglik[:, :-1][stay])
    np.testing.assert_array_equal(delta[:, 1:][stay], delta[:, :-1][stay])
    assert np.all(loglik[:, 1:][~stay] != loglik[:, :-1][~stay])
    # the per-run-step increments are those of the stored estimate
    steps = fit.idata.log_likelihood["obs"].values
    np.testing.assert_allclose(steps.sum(axis=(2, 3)), loglik, rtol=1e-12, atol=1e-9)


# ------------------------------------------------------------------ the Fit
def test_fit_groups_names_dims_and_loo(noisy_fit, tmp_path):
    fit, _ = noisy_fit
    idata = fit.idata
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data"} <= set(idata.groups())
    assert set(idata.posterior.data_vars) == {"delta"}
    assert idata.posterior["delta"].dims == ("chain", "draw", "type")
    assert {"lp", "loglik", "log_prior", "acceptance_rate", "accepted", "proposal_scale"} <= set(idata.sample_stats)
    np.testing.assert_allclose(idata.sample_stats["lp"], idata.sample_stats["loglik"] + idata.sample_stats["log_prior"])
    assert idata.log_likelihood["obs"].dims == ("chain", "draw", "run", "step")
    assert idata.log_likelihood["obs"].shape == (2, 2500, 2, 4)
    assert idata.observed_data["counts"].dims == ("run", "step", "node", "type")
    np.testing.assert_array_equal(idata.observed_data["counts"].values, OBS.counts)
    # the proposal is frozen after warm-up
    scale = idata.sample_stats["proposal_scale"].values
    np.testing.assert_array_equal(scale, scale[:, :1] * np.ones_like(scale))
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo) and loo.n_data_points == 8
    assert fit.posterior_mean().delta.shape == (1,)
    assert "delta[0]" in fit.summary().index
    fit.to_netcdf(tmp_path / "pmmh.nc")
    back = nv.load_fit(tmp_path / "pmmh.nc")
    assert back.method == "pmmh"
    np.testing.assert_array_equal(back.idata.posterior["delta"].values, idata.posterior["delta"].values)
    # ArviZ's own converter takes the MCMC run (site names, acceptance_rate)
    converted = az.from_numpyro(fit.extra["mcmc"])
    assert "delta" in converted.posterior and "acceptance_rate" in converted.sample_stats


# ------------------------------------------------------------------ (d) reproducibility
def test_same_key_same_chain_in_compiled_and_python_loops(monkeypatch):
    """Two fits with the same key give the same chain, whether MCMC runs a compiled loop
    (progress_bar=False) or a Python loop of compiled steps (progress_bar=True); the chains of a
    fit (other keys) differ."""
    monkeypatch.delenv("CI", raising=False)  # numpyro turns the progress bar off under CI
    fits = [fit_pmmh(MODEL_1, OBS, num_samples=25, num_warmup=25, num_chains=2, key=5, progress_bar=bar,
                     _particle_filter=MockFilter(noise=hetero_noise)) for bar in (False, True)]
    a, b = (f.idata for f in fits)
    np.testing.assert_array_equal(a.posterior["delta"].values, b.posterior["delta"].values)
    np.testing.assert_array_equal(a.sample_stats["loglik"].values, b.sample_stats["loglik"].values)
    assert not np.array_equal(a.posterior["delta"].values[0], a.posterior["delta"].values[1])
    state = fits[1].extra["mcmc"].last_state
    assert isinstance(state, PMMHState) and np.all(np.asarray(state.i) == 50)


# ------------------------------------------------------------------ (e) bad inputs
@pytest.mark.parametrize("obs, error, match", [
    (OBS.counts, TypeError, "nvppl.Observations"),
    (nv.Observations(counts=np.zeros((1, 3, 5, 1), int)), nv.ObservationError, "3 nodes|5 nodes|2"),
    (nv.Observations(counts=np.zeros((1, 3, 2, 2), int)), nv.ObservationError, "types"),
    (nv.Observations(counts=np.zeros((1, 3, 2, 1), int), detection="binomial"), ValueError, "p_det"),
])
def test_bad_observations(obs, error, match):
    with pytest.raises(error, match=match):
        nv.infer.fit(MODEL_1, obs, method="pmmh", _particle_filter=MockFilter())


def test_nothing_to_infer():
    fixed = nv.VesicleModel(SUB, n_types=1, priors={**FIXED, "T": np.full((1, 2, 2), 0.5), "delta": 0.1})
    with pytest.raises(ValueError, match="no inferred parameter"):
        fit_pmmh(fixed, OBS, _particle_filter=MockFilter())
    # T "inferred" but every row has a single candidate: nothing free either
    no_stay = nv.VesicleModel(nv.Substrate.from_networkx(nx.path_graph(2), allow_stay=False), n_types=1,
                              priors={**FIXED, "delta": 0.1})
    assert no_stay.inferred == ("T",)
    with pytest.raises(ValueError, match="no free parameter"):
        fit_pmmh(no_stay, OBS, _particle_filter=MockFilter())


@pytest.mark.parametrize("kwargs, match", [
    ({"num_samples": 0}, "num_samples"), ({"num_warmup": -1}, "num_warmup"), ({"num_chains": 1.5}, "num_chains"),
    ({"n_particles": 0}, "n_particles"), ({"n_threads": 0}, "n_threads"), ({"chain_method": "bogus"}, "chain_method"),
    ({"init": {"a": np.zeros(2)}}, "not inferred.*fixed"), ({"init": {"delta": np.ones(3)}}, "shape"),
    ({"init": {"delta": np.ones(1)}}, "boundary"), ({"init": [0.1]}, "init must be"),
    ({"proposal_cov": np.eye(2)}, "proposal_cov"), ({"proposal_scale": -1.0}, "proposal_scale"),
    ({"target_accept_prob": 1.5}, "target_accept_prob"), ({"filter_options": {"key": 3}}, "filter_options"),
])
def test_bad_options(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fit_pmmh(MODEL_1, OBS, progress_bar=False, _particle_filter=MockFilter(), **kwargs)


def test_no_finite_initial_point_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no initial point with a finite likelihood"):
        fit_pmmh(MODEL_1, OBS, num_samples=5, num_warmup=5, num_chains=1, progress_bar=False, max_init_tries=3,
                 _particle_filter=MockFilter(forbid_above=-1.0))


def test_second_round_of_initial_points_from_the_prior():
    """Observations only possible for delta < 0.11: the prior mean (0.5) and logit-uniform points
    in (-2, 2) (delta > 0.119) all fail; prior draws (Beta(2, 2)) reach the region. Single and
    batched (vectorised) chains."""
    mock = MockFilter(forbid_above=0.11)
    kernel = PMMH(MODEL_1, OBS, max_init_tries=150, _particle_filter=mock)
    post = kernel.postprocess_fn((), {})
    state = kernel.init(jax.random.PRNGKey(0), 10, None, (), {})
    assert float(post(state.z)["delta"][0]) < 0.11 and np.isfinite(float(state.loglik))
    states = kernel.init(jax.random.split(jax.random.PRNGKey(1), 2), 10, None, (), {})
    assert np.all(np.asarray(jax.vmap(post)(states.z)["delta"]) < 0.11)


def test_filter_contract_violation_is_reported_unwrapped():
    def bad(model, params, obs, **kw):
        return SimpleNamespace(log_evidence=0.0, log_increments=np.zeros(3))

    with pytest.raises(ValueError, match=r"log_increments of shape \(3,\), expected \(runs, steps\) = \(2, 4\)"):
        fit_pmmh(MODEL_1, OBS, num_samples=5, num_warmup=5, num_chains=1, progress_bar=False, _particle_filter=bad)


def test_without_adaptation_the_given_proposal_is_kept():
    """adapt=False: the scale and the (diagonal) covariance stay as given through warm-up and
    sampling, and no warm-up proposal is a null move (each one moves the point or is rejected)."""
    kernel = PMMH(MODEL_T, OBS, proposal_scale=0.5, proposal_cov=np.array([0.1, 0.2, 0.3]), adapt=False,
                  dense=False, _particle_filter=MockFilter(use_T=True))
    mcmc = MCMC(kernel, num_warmup=30, num_samples=30, num_chains=1, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(4), extra_fields=("log_scale", "accept_prob"))
    np.testing.assert_array_equal(mcmc.get_extra_fields()["log_scale"], np.log(0.5))
    np.testing.assert_allclose(mcmc.last_state.chol, np.sqrt([0.1, 0.2, 0.3]), rtol=1e-15)
    assert int(mcmc.last_state.adapt.null_count) == 0


def test_init_values_and_filter_options_are_used():
    mock = MockFilter()
    F = np.zeros((2, 4, 2, 0))
    kernel = PMMH(MODEL_1, OBS, init={"delta": np.array([0.9])}, covariates=F,
                  filter_options={"ess_threshold": 0.3}, _particle_filter=mock)
    state = kernel.init(jax.random.PRNGKey(0), 10, None, (), {})
    assert mock.options["ess_threshold"] == 0.3 and mock.options["covariates"] is F
    np.testing.assert_allclose(kernel.postprocess_fn((), {})(state.z)["delta"], [0.9])
    np.testing.assert_allclose(float(state.loglik), mock.exact(MODEL_1.params_with({"delta": [0.9]})))
    np.testing.assert_allclose(float(state.log_prior),
                               stats.beta(2, 2).logpdf(0.9) + np.log(0.9 * 0.1))  # with the logit Jacobian


# ------------------------------------------------------------------ heavier checks
@pytest.mark.slow
def test_mcmc_rerun_with_the_fit_key_reproduces_the_fit(noisy_fit):
    """The chain is a function of the key alone: re-running the fit's MCMC with the fit's key gives
    the same draws and estimates."""
    fit, _ = noisy_fit
    mcmc = fit.extra["mcmc"]
    mcmc.run(jax.random.PRNGKey(2), extra_fields=("loglik",))
    np.testing.assert_array_equal(np.asarray(mcmc.get_samples(group_by_chain=True)["delta"]),
                                  fit.idata.posterior["delta"].values)
    np.testing.assert_array_equal(np.asarray(mcmc.get_extra_fields(group_by_chain=True)["loglik"]),
                                  fit.idata.sample_stats["loglik"].values)


@pytest.mark.slow
@pytest.mark.parametrize("chain_method", ["sequential"])
def test_kernel_under_numpyro_mcmc_chain_methods(chain_method, monkeypatch):
    """The kernel as a plain NumPyro MCMC kernel: chains one after the other (MCMC's sequential
    map), compiled loop and Python loop alike, give the chains of the vectorised run; ArviZ's
    from_numpyro converts the run."""
    monkeypatch.delenv("CI", raising=False)
    draws = []
    for method, bar in (("vectorized", False), (chain_method, False), (chain_method, True)):
        kernel = PMMH(MODEL_T, OBS, _particle_filter=MockFilter(use_T=True, noise=hetero_noise))
        mcmc = MCMC(kernel, num_warmup=40, num_samples=40, num_chains=2, chain_method=method, progress_bar=bar)
        mcmc.run(jax.random.PRNGKey(3), extra_fields=("loglik", "accept_prob"))
        draws.append(mcmc.get_samples(group_by_chain=True))
    for other in draws[1:]:
        for name in ("delta", "T"):
            np.testing.assert_allclose(other[name], draws[0][name], rtol=1e-9)
    idata = az.from_numpyro(mcmc)
    assert {"delta", "T"} <= set(idata.posterior.data_vars)


@pytest.mark.slow
@pytest.mark.parametrize("sd", [1.0, 1.5])
def test_strong_noise_does_not_collapse_the_scale(sd):
    """With noise the acceptance rate cannot reach the noise-free target; the noise-aware target
    keeps the scale near the posterior's (no collapse), and the posterior is still exact."""
    fit = fit_pmmh(MODEL_1, OBS, num_samples=4000, num_warmup=1000, num_chains=4, key=9, progress_bar=False,
                   _particle_filter=MockFilter(noise=lambda p: sd))
    check_quantiles(fit.idata.posterior["delta"].values[..., 0], grid_quantiles(delta_log_posterior))
    # the warm-up's null moves measure the noise (about ±15% from ~60 null moves per chain)
    np.testing.assert_allclose(np.mean(fit.idata.posterior.attrs["loglik_sd_warmup"]), sd, rtol=0.25)
    mcmc = fit.extra["mcmc"]
    step = np.asarray(fit.idata.sample_stats["proposal_scale"].values[:, 0]) * \
        np.abs(np.asarray(mcmc.last_state.chol)).reshape(4)
    assert np.all(step > 0.3 * 0.35), step  # the posterior sd of logit(delta) is about 0.35


@pytest.mark.slow
def test_very_noisy_estimator_warns():
    with pytest.warns(UserWarning, match="very noisy.*n_particles"):
        fit_pmmh(MODEL_1, OBS, num_samples=50, num_warmup=400, num_chains=2, key=10, progress_bar=False,
                 _particle_filter=MockFilter(noise=lambda p: 4.0))


@pytest.mark.slow
def test_long_noisy_chain_and_init_from_fit(noisy_fit):
    """Four vectorised chains started from a previous fit (its draws as starting points and its
    covariance as the initial proposal), strong heteroscedastic noise."""
    previous, _ = noisy_fit
    mock = MockFilter(noise=lambda p: 0.5 + 3.0 * float(p.delta[0]))
    fit = fit_pmmh(MODEL_1, OBS, num_samples=6000, num_warmup=1000, num_chains=4, key=8, progress_bar=False,
                   chain_method="vectorized", init=previous, _particle_filter=mock)
    check_quantiles(fit.idata.posterior["delta"].values[..., 0], grid_quantiles(delta_log_posterior))
    assert mock.calls == 4 * (1 + 1000 + 6000)
