"""PMMH with the compiled particle filter against exact posteriors.

On a tiny system the exact likelihood of count observations comes from the
forward algorithm over the joint count state (``tests/_support/forward.py``), so the
exact posterior of one or two free parameters can be computed on a grid. PMMH
must match its quantiles within Monte Carlo error, and its 90 % intervals must
cover parameters drawn from the prior at the nominal rate.
"""

import warnings

import networkx as nx
import numpy as np
import pytest
from scipy import stats

import nvppl as nv
from tests._support.forward import TruncationError, exact_log_likelihood

T_ROWS = np.array([[[0.7, 0.3], [0.4, 0.6]]])
QUANTILES = np.array([0.05, 0.25, 0.5, 0.75, 0.95])


def tiny_model(free, priors=None):
    """2-node cycle with stay, one type, log link (λ = exp(u₀)); the fields in
    ``free`` have their default priors or those in ``priors``, the others are fixed."""
    sub = nv.Substrate.from_networkx(nx.DiGraph([(0, 1), (1, 0)]))
    fixed = {"u": -0.9, "T": T_ROWS, "w": -0.85, "a": np.array([0.1, 0.0]), "delta": 0.3}
    chosen = {k: v for k, v in fixed.items() if k not in free}
    return nv.VesicleModel(sub, n_types=1, emission_link="log", priors={**chosen, **(priors or {})})


def truth_of(model):
    return model.default_params().replace(delta=np.array([0.3]), u=np.array([[-0.9]]))


def observations(model, truth, n_steps=30, n_runs=4, key=0):
    """Binomial counts with p_det = 0.5: informative enough, and forgiving for a bootstrap
    filter (the standard deviation of log Ẑ stays near 1 with a few hundred particles)."""
    traces = nv.simulate(model, truth, n_steps=n_steps, n_runs=n_runs, key=key)
    return traces.observe(counts=True, detection="binomial", p_det=0.5, key=key + 100)


def exact_or_none(model, params, obs):
    """The exact log-likelihood, or None where the count state outgrows the forward
    algorithm's box (far from the posterior; the tests check that it is)."""
    try:
        return exact_log_likelihood(model, params, obs, cap=18, tol=1e-4).log_likelihood
    except TruncationError:
        return None


def grid_posterior(loglik, log_prior, grid):
    """Normalised posterior density and CDF on a uniform grid (trapezoid rule)."""
    lp = loglik + log_prior
    dens = np.exp(lp - lp.max())
    dens /= np.trapezoid(dens, grid)
    cdf = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(grid))])
    return dens, cdf / cdf[-1]


def assert_quantiles_match(draws, grid, dens, cdf, what):
    """Each quantile within 4 Monte Carlo standard errors (plus the grid step):
    se(q) = sqrt(q (1 - q) / ESS) / f(x_q), with f the exact density and ESS from ArviZ."""
    import arviz as az

    exact = np.interp(QUANTILES, cdf, grid)
    ess = float(az.ess(draws[None] if draws.ndim == 1 else draws))
    est = np.quantile(draws.ravel(), QUANTILES)
    f = np.interp(exact, grid, dens)
    se = np.sqrt(QUANTILES * (1 - QUANTILES) / ess) / f
    tol = 4 * se + (grid[1] - grid[0])
    assert ess > 150, (what, ess)
    assert np.all(np.abs(est - exact) < tol), (what, est, exact, tol)


@pytest.mark.slow
def test_pmmh_matches_the_exact_grid_posterior_of_delta():
    model = tiny_model({"delta"})
    truth = truth_of(model)
    obs = observations(model, truth, n_runs=2)
    grid = np.linspace(0.02, 0.9, 177)
    loglik = np.array([exact_or_none(model, truth.replace(delta=np.array([d])), obs) for d in grid], dtype=float)
    assert np.isfinite(loglik).all()
    dens, cdf = grid_posterior(loglik, np.zeros_like(grid), grid)  # Beta(1, 1) prior
    assert max(dens[0], dens[-1]) < 1e-4 * dens.max()  # the grid holds the posterior
    fit = nv.infer.fit(model, obs, method="pmmh", num_samples=1500, num_warmup=800, num_chains=4,
                       n_particles=256, key=0, progress_bar=False, posterior_predictive=False)
    draws = np.asarray(fit.idata.posterior["delta"])[..., 0]  # (chain, draw)
    assert_quantiles_match(draws, grid, dens, cdf, "delta")


@pytest.mark.slow
def test_pmmh_matches_the_exact_grid_posterior_of_two_parameters():
    """Free δ (Beta(2, 6)) and log emission rate u₀ (Normal(0, 1.5)): marginal quantiles of both.

    Counts pin down mostly λ/δ; the Beta(2, 6) prior closes the ridge toward δ = 1 so that
    the grid holds the whole posterior."""
    model = tiny_model({"delta", "u"}, priors={"delta": nv.model.dist.Beta(2.0, 6.0)})
    truth = truth_of(model)
    obs = observations(model, truth, key=3)
    gd, gu = np.linspace(0.01, 0.99, 61), np.linspace(-3.0, 2.5, 61)
    loglik = np.array([[exact_or_none(model, truth.replace(delta=np.array([d]), u=np.array([[u]])), obs)
                        for u in gu] for d in gd], dtype=float)
    lp = (np.where(np.isnan(loglik), -np.inf, loglik) + stats.norm(0, 1.5).logpdf(gu)[None, :]
          + stats.beta(2.0, 6.0).logpdf(gd)[:, None])
    post = np.exp(lp - lp.max())
    # the posterior lies inside the grid and away from the points the forward algorithm cannot hold
    border = np.zeros_like(post, bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    missing = np.isnan(loglik)
    near_missing = missing | np.roll(missing, 1, 0) | np.roll(missing, -1, 0) | np.roll(missing, 1, 1) \
        | np.roll(missing, -1, 1)
    assert post[(border | near_missing) & ~missing].max() < 1e-4
    fit = nv.infer.fit(model, obs, method="pmmh", num_samples=700, num_warmup=500, num_chains=4,
                       n_particles=256, key=1, progress_bar=False, posterior_predictive=False)
    for name, grid, marginal in (("delta", gd, np.trapezoid(post, gu, axis=1)),
                                 ("u", gu, np.trapezoid(post, gd, axis=0))):
        dens, cdf = grid_posterior(np.log(marginal), np.zeros_like(grid), grid)
        draws = np.asarray(fit.idata.posterior[name]).reshape(4, -1)
        assert_quantiles_match(draws, grid, dens, cdf, name)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:the log-likelihood estimate is very noisy")
def test_pmmh_intervals_cover_the_truth():
    """Central 90 % intervals of δ, u₀ and w₀ cover prior draws at the nominal rate,
    with PMMH started from a density-SVI fit (its draws start the chains, its
    guide's covariance shapes the first proposals).

    12 replicate data sets, truths drawn from the prior (u₀ clipped to keep
    emission informative); the number of covered components must lie in the
    central 99.9 % interval of Binomial(36, 0.9).
    """
    sub = nv.Substrate.from_networkx(nx.cycle_graph(3))
    model = nv.VesicleModel(sub, n_types=1, priors={"a": 0.0, "T": np.full((1, 3, 3), 1 / 3),
                                                    "delta": nv.model.dist.Beta(2.0, 8.0)})
    covered = total = 0
    for rep in range(12):
        truth = model.sample_params(200 + rep)
        truth = truth.replace(u=np.clip(truth.u, -1.0, 1.5))
        traces = nv.simulate(model, truth, n_steps=25, n_runs=2, key=rep)
        obs = traces.observe(counts=True, detection="binomial", p_det=0.5, key=rep + 100)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            svi = nv.infer.fit(model, obs, method="svi", num_steps=400, num_samples=400, key=rep,
                               progress_bar=False, log_likelihood=False, posterior_predictive=False)
        fit = nv.infer.fit(model, obs, method="pmmh", init=svi, num_samples=400, num_warmup=400, num_chains=2,
                           n_particles=128, key=rep, progress_bar=False, log_likelihood=False, posterior_predictive=False)
        for name in ("delta", "u", "w"):
            x = np.asarray(fit.idata.posterior[name]).reshape(-1)
            lo, hi = np.quantile(x, [0.05, 0.95])
            t = float(np.asarray(getattr(truth, name)).ravel()[0])
            covered += int(lo <= t <= hi)
            total += 1
    lo_ok, hi_ok = stats.binom.ppf([0.0005, 0.9995], total, 0.9)
    assert lo_ok <= covered <= hi_ok, f"{covered}/{total} covered"
