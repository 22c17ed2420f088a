"""Statistics of a vesicle model deployed on the emulator.

The emulator runs the deployed Params (``prog.quantized_params``); three checks
say that what it runs is the model at those Params:

1. occupancy and dock counts per (step, node, type) equal the density
   relaxation of the deployed Params within Monte Carlo error;
2. its traces and those of the compiled simulator at the deployed Params agree
   in distribution (the two-sample battery of ``tests/_support/battery.py``);
3. (slow) fitting the emulator's traces with NUTS recovers the deployed Params:
   90 % central intervals cover them at the nominal rate.

Each check has a power counterpart that must reject a 30 % change of the decay
δ. Seeds are fixed; every tolerance is derived at the test.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from scipy import stats

import nvppl as nv
from tests._support.battery import ALPHA, battery, family


def _sink_model():
    """12 nodes without self-loops, node 0 a sink; 2 types (budget 2 and unlimited),
    log emission link, absorption rising along the nodes, non-uniform rows of T."""
    G = nx.gnp_random_graph(12, 0.3, seed=2, directed=True)
    G.add_nodes_from(range(12))
    G.remove_edges_from(list(G.out_edges(0)))
    model = nv.VesicleModel(nv.Substrate.from_networkx(G, allow_stay=False), n_types=2, budget=[2, None],
                            emission_link="log")
    rng = np.random.default_rng(7)
    sub = model.substrate
    T = np.zeros(model.field_shape("T"))
    for k in range(2):
        for i in range(model.n_nodes):
            m = sub.n_candidates[i]
            if m:
                T[k, i, :m] = rng.dirichlet(np.ones(m))
    params = model.default_params().replace(
        T=T, u=np.log([[0.3], [0.15]]), w=np.array([[0.4], [-1.2]]), a=np.linspace(0.0, 0.15, 12),
        delta=np.array([0.08, 0.04]))
    return model, params


def _poisson_pvalues(total, mean):
    """Two-sided p-values of observed totals under Poisson(mean) (1 where both are 0)."""
    lower = stats.poisson.cdf(total, mean)
    upper = stats.poisson.sf(total - 1, mean)
    return np.minimum(1.0, 2 * np.minimum(lower, upper))


# --------------------------------------------------------------------------- 1. the density
R_DENSITY, T_DENSITY = 1000, 30


@pytest.fixture(scope="module")
def deployed_runs():
    model, params = _sink_model()
    prog = nv.backend.compile(model, params, chip=nv.backend.ChipConfig())
    traces = nv.backend.Emulator(prog).run(T_DENSITY, key=11, n_runs=R_DENSITY).traces
    return model, prog, traces


def _density_pvalues(model, params, traces):
    """Per (step, node, type): exact Poisson p-values of the occupancy and dock totals over the runs."""
    dens = nv.density.relax(model, params, n_steps=T_DENSITY)
    R = traces.n_runs
    return {name: _poisson_pvalues(observed.sum(axis=0), R * np.asarray(expected)) for name, observed, expected in (
        ("counts", traces.counts(), dens.rho), ("docks", traces.dock_counts(), dens.expected_docks))}


def test_emulator_is_exact_in_the_mean_of_the_deployed_params(deployed_runs):
    """Occupancy and dock counts of the emulator equal ``nv.density.relax(model, quantized_params)``.

    Vesicles are born by independent Poisson draws and move independently, so the
    count of vesicles present (or docking) in one (step, node, type) cell is
    Poisson with the density's mean, and its total over R independent runs is
    Poisson(R ρ) exactly. Each of the 2 × 720 cells gets an exact two-sided
    Poisson p-value; the smallest must exceed ALPHA / 1440 (Bonferroni: the
    family-wise false-alarm rate is at most ALPHA = 0.001, whatever the
    correlation between cells)."""
    model, prog, traces = deployed_runs
    causes = set(traces.vesicles["death_cause"])
    assert {"sink", "depleted", "absorbed", "expired", "censored"} <= causes
    assert traces.n_runs == R_DENSITY
    pv = _density_pvalues(model, prog.quantized_params, traces)
    n_cells = sum(p.size for p in pv.values())
    assert n_cells == 2 * T_DENSITY * model.n_nodes * model.n_types
    for name, p in pv.items():
        assert p.min() > ALPHA / n_cells, (name, np.unravel_index(p.argmin(), p.shape), p.min())


def test_density_check_rejects_a_changed_decay(deployed_runs):
    """Power: the same test rejects the density of the deployed Params with δ × 1.3."""
    model, prog, traces = deployed_runs
    q = prog.quantized_params
    pv = _density_pvalues(model, q.replace(delta=q.delta * 1.3), traces)
    n_cells = sum(p.size for p in pv.values())
    assert min(p.min() for p in pv.values()) < ALPHA / n_cells


# --------------------------------------------------------------------------- 2. the compiled simulator
RUNS, STEPS = 150, 20


def _deployment(name):
    if name == "geometric":  # the compiled-core family: 5 nodes, log link, budgets [2, ∞], absorption, a sink
        model, params, _ = family("geometric")
    else:
        model, params = _sink_model()
    return model, nv.backend.compile(model, params)


@pytest.fixture(scope="module", params=["geometric", "sink12"])
def emulator_pair(request):
    model, prog = _deployment(request.param)
    emulated = nv.backend.Emulator(prog).run(STEPS, key=1, n_runs=RUNS).traces
    simulated = nv.simulate(model, prog.quantized_params, n_steps=STEPS, n_runs=RUNS, key=2, backend="compiled")
    return request.param, model, prog, emulated, simulated


def test_emulator_and_compiled_simulator_agree_in_distribution(emulator_pair):
    """The battery of ``tests/_support/battery.py`` (Welch t-tests of occupancy and docks per
    node and type, chi-square tests of moves, moves away and death causes per
    type) between the emulator and ``nv.simulate(..., backend="compiled")`` at
    ``quantized_params``: the smallest p-value must exceed ALPHA / (number of
    tests) (Bonferroni, family-wise level ALPHA = 0.001)."""
    name, model, prog, emulated, simulated = emulator_pair
    pv = battery(model, emulated, simulated)
    assert len(pv) >= 10
    worst = min(pv, key=pv.get)
    assert pv[worst] > ALPHA / len(pv), (name, worst, pv[worst])


def test_battery_detects_a_changed_decay_against_the_emulator(emulator_pair):
    """Power: compiled-simulator traces with δ × 1.3 are told apart from the emulator's."""
    name, model, prog, emulated, simulated = emulator_pair
    q = prog.quantized_params
    changed = nv.simulate(model, q.replace(delta=q.delta * 1.3), n_steps=STEPS, n_runs=RUNS, key=3,
                          backend="compiled")
    pv = battery(model, emulated, changed)
    assert min(pv.values()) < ALPHA / len(pv), (name, min(pv.values()))


# --------------------------------------------------------------------------- 3. NUTS round trip
ROUND_TRIP_GRAPH = nx.DiGraph([(0, 1), (0, 2), (1, 2), (2, 0), (2, 3), (3, 4), (4, 0), (4, 5), (5, 3), (5, 6),
                               (1, 6)])  # node 6 is a sink, node 3 has a single candidate
REPLICATES = 20
NUTS_OPTIONS = dict(num_samples=300, num_warmup=300, num_chains=1, progress_bar=False, posterior_predictive=False,
                    log_likelihood=False)


def _free_entries(model, name):
    """Mask of the free scalars of a field: every entry, except in T where a row of m
    candidates has m − 1 free entries (none for a single candidate or a sink)."""
    shape = model.field_shape(name)
    if name != "T":
        return np.ones(shape, bool)
    sub = model.substrate
    slots = np.arange(sub.max_candidates)[None, :] < sub.n_candidates[:, None] - 1
    return np.broadcast_to(slots, shape)


def _truth(model, rng):
    """Parameters drawn from the model's priors with NumPy; emission λ = σ(u) kept in [0.31, 0.9]."""
    sub = model.substrate
    T = np.zeros(model.field_shape("T"))
    for i in range(model.n_nodes):
        m = sub.n_candidates[i]
        if m:
            T[0, i, :m] = rng.dirichlet(np.ones(m))
    return model.default_params().replace(
        T=T, u=np.clip(rng.normal(0, 1.5, (1, 1)), -0.8, 2.2), w=rng.normal(0, 1.5, (1, 1)),
        a=rng.beta(1.0, 8.0, model.n_nodes), delta=rng.beta(2.0, 30.0, 1))


@pytest.mark.slow
def test_nuts_recovers_the_deployed_params_from_emulator_traces():
    """Simulate → fit → deploy the posterior mean → emulate → re-fit: the re-fit's 90 %
    central intervals cover the deployed Params (``prog.quantized_params``).

    One vesicle type on a 7-node graph with a sink, budget 3; inferred: u, w, a
    (7 nodes), δ and the free entries of T (5 rows of 2 candidates), 15 scalars
    per replicate. Over 20 replicates (truth drawn from the priors, data of 2 runs
    of 40 steps, emulator traces of 8 runs of 40 steps) 300 scalars are checked;
    treating the checks as independent Bernoulli(0.9) trials, the number covered
    must not fall below the 0.001 quantile of Binomial(300, 0.9) (= 253).
    Over-coverage is not tested: the deployed values are posterior means, not
    prior draws, and quantities the data barely inform are covered by their
    prior-like intervals almost surely.

    (Absorption is the least well covered field, near 88 % over 560 checks, and
    equally so when the re-fit data come from the compiled simulator at the same
    deployed Params: finite-sample behaviour of the posterior near a = 0.)

    Power: the same count for δ × 1.3 (20 checks, one per replicate) falls below
    the 0.001 quantile of Binomial(20, 0.9) (= 13)."""
    sub = nv.Substrate.from_networkx(ROUND_TRIP_GRAPH, allow_stay=False)
    model = nv.VesicleModel(sub, n_types=1, budget=3,
                            priors={"a": nv.model.dist.Beta(1.0, 8.0), "delta": nv.model.dist.Beta(2.0, 30.0)})
    assert set(model.inferred) == {"u", "T", "w", "a", "delta"}
    rng = np.random.default_rng(20)
    covered, checked, missed = 0, 0, {}
    delta_covered_wrong = 0
    for rep in range(REPLICATES):
        truth = _truth(model, rng)
        data = nv.simulate(model, truth, n_steps=40, n_runs=2, key=100 + rep, backend="compiled")
        first = nv.infer.fit(model, data, key=200 + rep, **NUTS_OPTIONS)
        prog = nv.backend.compile(model, first)
        q = prog.quantized_params
        emulated = nv.backend.Emulator(prog).run(40, key=300 + rep, n_runs=8).traces
        refit = nv.infer.fit(model, emulated, key=400 + rep, **NUTS_OPTIONS)
        post = refit.idata.posterior
        for name in model.inferred:
            x = post[name].values[0]
            lo, hi = np.quantile(x, [0.05, 0.95], axis=0)
            value = np.asarray(getattr(q, name))
            free = _free_entries(model, name)
            inside = ((lo <= value) & (value <= hi))[free]
            covered += int(inside.sum())
            checked += int(free.sum())
            missed[name] = missed.get(name, 0) + int((~inside).sum())
        lo, hi = np.quantile(post["delta"].values[0], [0.05, 0.95], axis=0)
        delta_covered_wrong += int(np.all((lo <= q.delta * 1.3) & (q.delta * 1.3 <= hi)))
    assert checked == 15 * REPLICATES
    bound = stats.binom.ppf(0.001, checked, 0.9)
    assert covered >= bound, f"{covered}/{checked} covered (bound {bound:.0f}); misses per field: {missed}"
    assert delta_covered_wrong < stats.binom.ppf(0.001, REPLICATES, 0.9), delta_covered_wrong

