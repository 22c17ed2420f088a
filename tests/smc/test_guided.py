"""The guided particle filter (``nvppl.smc.guided``): unbiased, never failing on data
the model produces, low variance, reproducible.

Statistical checks compare means of likelihood *ratios* ``Ẑ / Z_ref``: each is an
average of independent estimates, so its standard error is the sample sd over
the square root of the number of estimates, and a test passes within 4 standard
errors (a false alarm about once in 16 000 runs)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

import nvppl as nv
from nvppl.errors import ObservationError
from nvppl.smc.guided import guided_supported, unseen_rates, life_tables


def _cycle_model(n=6, **kw):
    sub = nv.Substrate.from_networkx(nx.cycle_graph(n))
    return nv.VesicleModel(sub, n_types=1, **kw)


def _data(model, params, key, n_steps=20, n_runs=2, docks=True, detection="binomial", p_det=0.8):
    tr = nv.simulate(model, params, n_steps=n_steps, n_runs=n_runs, key=key)
    kw = {"p_det": p_det} if detection == "binomial" else {}
    return tr.observe(counts=True, docks=docks, detection=detection, key=key + 1000, **kw)


def test_auto_takes_the_guided_filter_where_it_applies():
    model = _cycle_model(3)
    obs = _data(model, model.default_params(), 0, n_steps=5, n_runs=1)
    assert nv.smc.particle_filter(model, model.default_params(), obs, n_particles=16).proposal == "guided"
    pois = nv.Observations(counts=obs.counts, detection="poisson")
    assert guided_supported(model, pois) == "Poisson detection is not a thinning of the vesicles"
    assert nv.smc.particle_filter(model, model.default_params(), pois, n_particles=16).proposal == "bootstrap"
    with pytest.raises(ValueError, match="guided filter does not apply here: Poisson detection"):
        nv.smc.particle_filter(model, model.default_params(), pois, n_particles=16, proposal="guided")
    countdown = nv.VesicleModel(model.substrate, n_types=1, lifetime="countdown")
    assert "countdown" in guided_supported(countdown, obs)
    budget2 = nv.VesicleModel(model.substrate, n_types=1, budget=2)
    assert "budget of 2" in guided_supported(budget2, obs)


def test_never_fails_and_has_small_variance_on_the_six_node_cycle():
    """The setting where the bootstrap filter fails at 256-4096 particles: a 6-node cycle,
    20 steps, 2 runs, counts and docks seen with p_det = 0.8, at the true parameters."""
    model = _cycle_model(6)
    params = model.default_params()
    for d in range(4):
        obs = _data(model, params, 10 + d)
        ll = np.array([nv.smc.particle_filter(model, params, obs, n_particles=256, key=s).log_evidence
                       for s in range(8)])
        assert np.all(np.isfinite(ll))
        assert np.std(ll, ddof=1) < 1.5, (d, ll)
    with pytest.raises(ObservationError, match="probability zero"):
        nv.smc.particle_filter(model, params, obs, n_particles=4096, key=0, proposal="bootstrap")


def test_unbiased_against_the_bootstrap_filter():
    """Both filters are unbiased: the means of Ẑ / Z_ref agree (Z_ref a common scale).
    A small case where the bootstrap works: 3-node cycle, 6 steps, binomial counts."""
    model = _cycle_model(3)
    params = model.default_params().replace(delta=np.array([0.2]))
    obs = _data(model, params, 3, n_steps=6, n_runs=1, docks=True)
    g = np.array([nv.smc.particle_filter(model, params, obs, n_particles=8, key=s).log_evidence
                  for s in range(400)])
    b = np.array([nv.smc.particle_filter(model, params, obs, n_particles=256, key=s, proposal="bootstrap",
                                         trajectory=False).log_evidence for s in range(400)])
    ref = np.log(np.mean(np.exp(b - b.max()))) + b.max()
    rg, rb = np.exp(g - ref), np.exp(b - ref)
    se = np.sqrt(rg.var(ddof=1) / len(rg) + rb.var(ddof=1) / len(rb))
    assert abs(rg.mean() - rb.mean()) < 4 * se, (rg.mean(), rb.mean(), se)
    # and the guided filter is the more precise one despite 32 times fewer particles
    assert np.std(g) < np.std(b)


def test_same_result_for_any_thread_count_and_block_seeds():
    model = _cycle_model(6)
    params = model.default_params()
    obs = _data(model, params, 7)
    one = nv.smc.particle_filter(model, params, obs, n_particles=64, key=3, n_threads=1)
    two = nv.smc.particle_filter(model, params, obs, n_particles=64, key=3, n_threads=2)
    np.testing.assert_array_equal(one.log_increments, two.log_increments)
    np.testing.assert_array_equal(one.filtered_counts, two.filtered_counts)
    # renewing run 1's seed leaves run 0's estimate as it was (block pseudo-marginal MCMC)
    a = nv.smc.particle_filter(model, params, obs, n_particles=64, run_keys=[11, 12])
    b = nv.smc.particle_filter(model, params, obs, n_particles=64, run_keys=[11, 99])
    assert a.log_evidence_runs[0] == b.log_evidence_runs[0]
    assert a.log_evidence_runs[1] != b.log_evidence_runs[1]
    with pytest.raises(ValueError, match="one seed per run"):
        nv.smc.particle_filter(model, params, obs, n_particles=8, run_keys=[1])


def test_exact_detection_and_budget_one():
    """Exact counts (p_det = 1) and a one-release budget (a dock removes the vesicle)."""
    model = _cycle_model(4, budget=1)
    params = model.default_params()
    obs = _data(model, params, 5, n_steps=15, n_runs=1, detection="exact")
    ll = [nv.smc.particle_filter(model, params, obs, n_particles=128, key=s).log_evidence for s in range(5)]
    assert np.all(np.isfinite(ll))
    # the filtered mean of exactly seen counts is the count itself
    pf = nv.smc.particle_filter(model, params, obs, n_particles=128, key=0)
    np.testing.assert_allclose(pf.filtered_counts, obs.counts, atol=1e-12)


def test_never_seen_intensity_is_the_thinned_density():
    """Without detection the never-seen intensity is the density recursion itself
    (the mean count), computed independently here for a 3-node cycle."""
    model = _cycle_model(3)
    params = model.default_params()
    tabs = life_tables(model, params, np.zeros((1, 5, 3, 0)))
    rates = unseen_rates(tabs, 0, 5, 0.0, 0.0)
    T = np.zeros((3, 3))
    for i in range(3):
        for s, j in enumerate(model.substrate.candidates[i]):
            if j >= 0:
                T[i, j] += params.T[0, i, s]
    lam = float(tabs["lam"].ravel()[0])
    surv = 1 - float(params.delta[0])
    rho = np.zeros(3)
    for t in range(5):
        rho = surv * ((rho + lam) @ T)
        np.testing.assert_allclose(rates["mu"][t, :, 0], rho, rtol=1e-12)
    assert not rates["nuA"].any() and not rates["nuC"].any()
