"""NUTS on the exact likelihood of partial observations (``nvppl.infer.exact.fit_exact``).

Recovery: one node with a self-loop; emission ``u``, docking ``w`` and decay ``delta``
inferred (absorption fixed at 0); four runs of 50 steps simulated at known values and seen
with binomial detection (``p_det = 0.8``), counts and docks. For every parameter the
posterior mean lies within 3 posterior standard deviations of the truth (a calibrated
posterior fails one such check with probability about 0.003 on a data set; the seeds are
fixed) and the posterior standard deviation is below a third of the prior's (Normal(0, 1.5)
on ``u`` and ``w``, Beta(1, 1), sd 0.289, on ``delta``): the data inform all three.
"""

import networkx as nx
import numpy as np
import pytest

import nvppl as nv
from nvppl.exact import TruncationError, exact_log_likelihood
from nvppl.infer.exact import fit_exact

SUB = nv.Substrate.from_networkx(nx.DiGraph([(0, 0)]))
MODEL = nv.VesicleModel(SUB, n_types=1, priors={"a": 0.0})
TRUTH = MODEL.default_params().replace(u=np.array([[-0.5]]), w=np.array([[-1.0]]), delta=np.array([0.2]))
PRIOR_SD = {"u": 1.5, "w": 1.5, "delta": 1 / np.sqrt(12)}


def data(n_runs=4, n_steps=50):
    traces = nv.simulate(MODEL, TRUTH, n_steps=n_steps, n_runs=n_runs, key=0)
    return traces.observe(counts=True, docks=True, detection="binomial", p_det=0.8, key=1)


@pytest.mark.slow
def test_nuts_on_the_exact_likelihood_recovers_the_parameters():
    obs = data()
    fit = fit_exact(MODEL, obs, num_samples=300, num_warmup=300, num_chains=2, key=2, progress_bar=False,
                    chain_method="vectorized", posterior_predictive=False)
    post = fit.idata.posterior
    for name, sd_prior in PRIOR_SD.items():
        draws = post[name].values.reshape(-1)
        mean, sd, truth = draws.mean(), draws.std(ddof=1), float(np.ravel(getattr(TRUTH, name))[0])
        assert abs(mean - truth) < 3 * sd, (name, mean, sd, truth)
        assert sd < sd_prior / 3, (name, sd, sd_prior)
    # what the Fit records
    assert post.attrs["method"] == "exact" and post.attrs["nvppl_exactness"] == "exact"
    assert post.attrs["truncation_share"] <= 1e-6
    assert fit.idata.log_likelihood["obs"].dims == ("chain", "draw", "run", "step")
    assert set(fit.idata.observed_data.data_vars) == {"counts", "docks"}
    assert fit.idata.sample_stats["diverging"].values.sum() == 0
    # the stored increments of a draw are the exact log-likelihood of that draw
    ll = float(exact_log_likelihood(MODEL, fit.posterior_draw(1, 7), obs))
    assert fit.idata.log_likelihood["obs"].values[1, 7].sum() == pytest.approx(ll, abs=1e-8)


def test_cases_outside_the_class_are_refused():
    obs = nv.Observations(counts=np.ones((1, 4, 1, 1), int))
    model = nv.VesicleModel(SUB, n_types=1, lifetime="countdown")
    with pytest.raises(ValueError, match="method='exact' does not apply: lifetime='countdown'"):
        fit_exact(model, obs, num_samples=10, num_warmup=10, num_chains=1, progress_bar=False)
    poisson = nv.Observations(counts=np.ones((1, 4, 1, 1), int), detection="poisson")
    with pytest.raises(ValueError, match="detection='poisson'"):
        fit_exact(MODEL, poisson, num_samples=10, num_warmup=10, num_chains=1, progress_bar=False)


@pytest.mark.slow
def test_truncation_at_the_draws_is_refused():
    """With max_count at the largest count seen and a births bound of 2, the kept draws put
    more than tol of a run's likelihood beyond the bounds: refused, naming the draw."""
    obs = data(n_runs=1, n_steps=20)
    with pytest.raises(TruncationError, match=r"posterior draw \(chain 0, draw \d+\): run 0, step \d+, type 0"):
        fit_exact(MODEL, obs, num_samples=20, num_warmup=20, num_chains=1, progress_bar=False,
                  max_count=int(obs.counts.max()), max_births=2, posterior_predictive=False)
