"""``method="auto"``, correlated PMMH and replicated observations for every partial-data method."""

from __future__ import annotations

import json
import warnings

import jax
import networkx as nx
import numpy as np
import pytest

import nvppl as nv
from nvppl.infer._pmmh_kernel import PMMH


def _case(n_runs=2, n_steps=8):
    sub = nv.Substrate.from_networkx(nx.cycle_graph(3))
    base = nv.VesicleModel(sub, n_types=1)
    model = nv.VesicleModel(sub, n_types=1, priors={"a": 0.0, "T": base.default_params().T, "u": 0.0})
    truth = model.default_params()
    obs = nv.simulate(model, truth, n_steps=n_steps, n_runs=n_runs, key=1).observe(
        counts=True, docks=True, detection="binomial", p_det=0.8, key=2)
    return model, obs


def test_pmmh_replicates_observations_like_the_data():
    model, obs = _case()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = nv.infer.fit(model, obs, method="pmmh", num_samples=20, num_warmup=20, num_chains=1,
                           n_particles=16, progress_bar=False, num_ppc=5)
    pp, od = fit.idata.posterior_predictive, fit.idata.observed_data
    for name in ("counts", "docks"):
        assert pp[name].dims == ("chain", "draw") + od[name].dims
        assert pp[name].shape[2:] == od[name].shape
        assert pp[name].shape[:2] == (1, 5)  # num_ppc=5 draws in all, one chain
    # replicated counts come from the fitted model: their mean is near the data's (same model, 5 draws)
    rep = pp["counts"].values.reshape(5, -1).mean(1)
    assert np.all(np.abs(rep - od["counts"].values.mean()) < 6 * np.sqrt(od["counts"].values.mean() / od["counts"].size
                                                                       * 10))
    assert fit.idata.posterior.attrs["filter_proposal"] == "guided"
    assert fit.idata.posterior.attrs["correlated"] == 1


def test_correlated_pmmh_renews_one_run_seed_per_proposal():
    model, obs = _case(n_runs=3)
    kernel = PMMH(model, obs, n_particles=16, proposal_scale=0.05)
    state = kernel.init(jax.random.PRNGKey(0), 0, None, (), {})
    assert kernel.correlated and state.seeds.shape == (3, 2)
    changed = []
    for _ in range(12):
        new = kernel.sample(state, (), {})
        rows = int(np.sum(np.any(np.asarray(new.seeds) != np.asarray(state.seeds), axis=1)))
        assert rows == (1 if bool(new.accepted) else 0)
        changed.append(rows)
        state = new
    assert sum(changed) > 0  # small steps: some proposals are accepted
    assert not PMMH(model, obs, n_particles=16, correlated=False).correlated


@pytest.mark.slow
def test_auto_records_what_ran():
    model, obs = _case()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = nv.infer.fit(model, obs, key=0, progress_bar=False, num_samples=200, num_ppc=4,
                           svi_options={"num_steps": 300}, pmmh_options={"num_warmup": 50, "num_chains": 1})
    record = json.loads(fit.idata.posterior.attrs["nvppl_auto"])
    assert record["steps"][0] == "svi" and record["steps"][1] in ("is", "pmmh")
    assert record["n_particles"] >= 64 and np.isfinite(record["khat"])
    assert "posterior_predictive" in fit.idata.groups()
    assert "nvppl_weak_directions" in fit.idata.posterior.attrs
    traces = nv.simulate(model, model.default_params(), n_steps=10, n_runs=2, key=0)
    fit = nv.infer.fit(model, traces, num_samples=50, num_warmup=50, num_chains=1, progress_bar=False,
                       posterior_predictive=False)
    assert json.loads(fit.idata.posterior.attrs["nvppl_auto"]) == {"steps": ["nuts"]}


def test_unknown_method_and_bad_correlated():
    model, obs = _case()
    with pytest.raises(ValueError, match="unknown method"):
        nv.infer.fit(model, obs, method="magic")
    with pytest.raises(ValueError, match="correlated"):
        PMMH(model, obs, correlated="yes")
