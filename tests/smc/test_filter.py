"""The compiled particle filter against the exact likelihood of tiny systems.

The exact likelihood comes from the forward algorithm over the joint count
state in ``tests/_support/forward.py`` (an independent implementation). Statistical
tests are at level 0.001 with fixed seeds, tolerances from standard errors.
"""

import networkx as nx
import numpy as np
import pytest
from scipy import stats

import nvppl as nv
from tests._support.forward import exact_log_likelihood

ALPHA = 1e-3
Z_CRIT = stats.norm.isf(ALPHA / 2)


def two_node_case(budget=None, K=1, n_steps=8, detection="binomial", docks=True, key=3):
    """2-node cycle with stay, small rates; observations from one simulated run."""
    sub = nv.Substrate.from_networkx(nx.DiGraph([(0, 1), (1, 0)]), allow_stay=True)
    model = nv.VesicleModel(sub, n_types=K, budget=budget)
    params = model.default_params().replace(
        u=np.full((K, 1), -0.8), T=np.tile(np.array([[0.7, 0.3], [0.4, 0.6]]), (K, 1, 1)),
        w=np.full((K, 1), -0.85), a=np.array([0.1, 0.0]), delta=np.full(K, 0.3))
    traces = nv.simulate(model, params, n_steps=n_steps, n_runs=1, key=key)
    p_det = 0.7 if detection == "binomial" else None
    obs = traces.observe(counts=True, docks=docks, detection=detection, p_det=p_det, key=key + 1)
    return model, params, obs


def zhat_over_z(model, params, obs, exact, n_particles, seeds, proposal="auto"):
    """Ẑ/Z per seed; a filter stopped because every particle had weight zero estimated Ẑ = 0."""
    out = []
    for s in seeds:
        try:
            out.append(np.exp(nv.smc.particle_filter(model, params, obs, n_particles=n_particles, key=s,
                                                     trajectory=False, proposal=proposal).log_evidence - exact))
        except nv.ObservationError:
            out.append(0.0)
    return np.array(out)


@pytest.mark.parametrize("proposal", ["bootstrap", "guided"])
@pytest.mark.parametrize("budget,detection,docks", [(None, "binomial", True), (1, "binomial", True),
                                                     (None, "poisson", False), (None, "exact", False),
                                                     (None, "exact", True)])
def test_likelihood_estimate_is_unbiased(budget, detection, docks, proposal):
    """Mean of Ẑ/Z over independent seeds is 1 within Z_CRIT standard errors (z-test, level 0.001),
    for the bootstrap and the guided filter (Poisson detection: bootstrap only)."""
    if proposal == "guided" and detection == "poisson":
        pytest.skip("the guided filter needs a thinning detection model (binomial or exact)")
    model, params, obs = two_node_case(budget=budget, detection=detection, docks=docks)
    exact = exact_log_likelihood(model, params, obs, cap=14).log_likelihood
    n_particles = 512 if detection == "exact" else 64
    ratio = zhat_over_z(model, params, obs, exact, n_particles, range(300), proposal)
    se = ratio.std(ddof=1) / np.sqrt(len(ratio))
    assert abs(ratio.mean() - 1.0) < Z_CRIT * se, (ratio.mean(), se)
    assert 0.2 < ratio.mean() < 5  # the check has power: the estimate is not off by orders of magnitude


def test_two_types_are_filtered_jointly():
    model, params, obs = two_node_case(K=2, docks=False)
    exact = exact_log_likelihood(model, params, obs, cap=14).log_likelihood
    ratio = zhat_over_z(model, params, obs, exact, 128, range(200))
    se = ratio.std(ddof=1) / np.sqrt(len(ratio))
    assert abs(ratio.mean() - 1.0) < Z_CRIT * se


def test_log_evidence_converges_as_particles_grow():
    """The root-mean-square error of log Ẑ shrinks like N^-1/2: by about 4x per 16x particles."""
    model, params, obs = two_node_case(n_steps=12, docks=False, detection="poisson")  # Ẑ is never 0
    exact = exact_log_likelihood(model, params, obs, cap=14)
    rmse = []
    for n_particles in (32, 512, 8192):
        err = [nv.smc.particle_filter(model, params, obs, n_particles=n_particles, key=s,
                                      trajectory=False).log_evidence - exact.log_likelihood for s in range(12)]
        rmse.append(float(np.sqrt(np.mean(np.square(err)))))
    assert rmse[0] > 2 * rmse[1] and rmse[1] > 2 * rmse[2], rmse  # expected ratio 4; 12 seeds per size
    assert rmse[2] < 0.1, rmse


def test_filtered_means_and_increments_match_the_forward_algorithm():
    model, params, obs = two_node_case(n_steps=10)
    exact = exact_log_likelihood(model, params, obs, cap=14)
    runs = [nv.smc.particle_filter(model, params, obs, n_particles=4096, key=s, trajectory=False) for s in range(8)]
    filt = np.stack([r.filtered_counts for r in runs])
    mean, se = filt.mean(0), filt.std(0, ddof=1) / np.sqrt(len(runs))
    # tolerance: 5 standard errors of the mean over seeds plus the O(1/N) bias of the ratio estimator
    assert np.all(np.abs(mean - exact.filtered_mean) < 5 * se + 0.02)
    inc = np.stack([r.log_increments for r in runs]).mean(0)
    assert np.allclose(inc, exact.increments, atol=0.05)


def test_same_key_same_result_for_one_and_two_threads():
    """Bit-identical log-evidence, weights, filtered means and trajectory for any thread count."""
    sub = nv.Substrate.from_networkx(nx.cycle_graph(5))
    model = nv.VesicleModel(sub, n_types=2, content_dim=1, covariate_dim=1, tilt=True, lifetime="countdown",
                            budget=[2, None])
    params = model.default_params().replace(w_c=np.array([[0.5], [-0.5]]))
    F = np.random.default_rng(0).normal(size=(2, 15, 5, 1))
    traces = nv.simulate(model, params, n_steps=15, n_runs=2, key=1, covariates=F)
    obs = traces.observe(counts=True, docks=True, detection="poisson", key=2)
    a = nv.smc.particle_filter(model, params, obs, n_particles=200, key=7, n_threads=1, covariates=F)
    b = nv.smc.particle_filter(model, params, obs, n_particles=200, key=7, n_threads=2, covariates=F)
    assert a.log_evidence == b.log_evidence and np.isfinite(a.log_evidence)
    for name in ("log_increments", "ess", "resampled", "filtered_counts"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.resampled.any()
    assert a.trajectory.vesicles.equals(b.trajectory.vesicles) and a.trajectory.steps.equals(b.trajectory.steps)
    c = nv.smc.particle_filter(model, params, obs, n_particles=200, key=8, n_threads=2, covariates=F)
    assert c.log_evidence != a.log_evidence


def test_trajectory_reproduces_exact_observations():
    """Under exact detection a smoothed trajectory must show exactly the observed counts and docks."""
    model, params, obs = two_node_case(detection="exact", docks=True, n_steps=6)
    pf = nv.smc.particle_filter(model, params, obs, n_particles=4096, key=0, proposal="bootstrap")
    traj = pf.trajectory  # validated Traces
    assert traj.n_runs == 1 and traj.n_steps == 6
    assert np.array_equal(traj.counts(), obs.counts)
    assert np.array_equal(traj.dock_counts(), obs.docks)


def test_trajectory_is_consistent_with_binomial_detection():
    model, params, obs = two_node_case(n_steps=10)
    pf = nv.smc.particle_filter(model, params, obs, n_particles=512, key=0, proposal="bootstrap")
    assert np.all(pf.trajectory.counts() >= obs.counts) and np.all(pf.trajectory.dock_counts() >= obs.docks)


def test_zero_probability_observations_name_the_step_and_node():
    model, params, obs = two_node_case(detection="exact", docks=False)
    counts = np.array(obs.counts)
    counts[0, 3, 1, 0] = 40  # far more vesicles than any particle can hold
    bad = nv.Observations(counts=counts, detection="exact")
    with pytest.raises(nv.ObservationError,
                       match=r"run 0, step 3: .*count 40 at node 1, type 0 is impossible for 64 of the 64"):
        nv.smc.particle_filter(model, params, bad, n_particles=64, key=0, proposal="bootstrap")


def test_capacity_overflow_is_an_error():
    model, params, obs = two_node_case()
    with pytest.raises(nv.CapacityError, match=r"capacity=\d+"):
        nv.smc.particle_filter(model, params, obs, n_particles=16, key=0, capacity=1, proposal="bootstrap")


def test_bad_observations_are_rejected():
    model, params, obs = two_node_case(docks=False)
    with pytest.raises(nv.ObservationError, match="is -1, must be >= 0"):
        nv.Observations(counts=-np.ones((1, 3, 2, 1), int))
    with pytest.raises(nv.ObservationError, match="3 nodes"):
        nv.smc.particle_filter(model, params, nv.Observations(counts=np.zeros((1, 4, 3, 1), int)))
    with pytest.raises(nv.ObservationError, match="type index 1 is unknown"):
        nv.smc.particle_filter(model, params, nv.Observations(counts=np.zeros((1, 4, 2, 2), int)))
    with pytest.raises(nv.ObservationError, match="4 dimensions"):
        nv.Observations(counts=np.zeros((4, 2, 1), int))
    with pytest.raises(nv.ObservationError, match="unknown p_det"):
        nv.smc.particle_filter(model, params, nv.Observations(counts=obs.counts, detection="binomial"))
    with pytest.raises(TypeError, match="Observations"):
        nv.smc.particle_filter(model, params, obs.counts)
    with pytest.raises(ValueError, match="n_particles"):
        nv.smc.particle_filter(model, params, obs, n_particles=0)
    with pytest.raises(ValueError, match="ess_threshold"):
        nv.smc.particle_filter(model, params, obs, ess_threshold=1.5)
