"""The generative program, the trace likelihood and a brute-force likelihood agree.

Three independent computations of the log-density of the same traces:
1. the NumPyro generative program's log-density at the random choices it made
   (``numpyro.infer.util.log_density``),
2. ``nvppl.likelihood`` on sufficient statistics (and per vesicle-step),
3. a loop-by-loop brute force over the DataFrames (``tests/_support/bruteforce.py``).
"""

import jax
import networkx as nx
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density

import nvppl as nv
from tests._support.bruteforce import log_likelihood as brute_log_likelihood
from nvppl import likelihood
from nvppl.programs import life_cycle
from nvppl.simulate import records_to_traces
from nvppl.traces.suffstats import pad_rows, trace_data

def _jit(fn, model):
    """Compile a likelihood function of (params, data) for one model."""
    return jax.jit(lambda p, d: fn(p, d, model))


GRAPH = nx.DiGraph([(0, 1), (1, 2), (2, 0), (2, 3), (1, 3)])  # node 3 is a sink when stays are off

CASES = {
    "plain": dict(n_types=2),
    "covariates+absorption+budget": dict(n_types=2, covariate_dim=2, budget=[1, 3]),
    "content+tilt": dict(n_types=1, content_dim=2, covariate_dim=1, tilt=True, gamma=0.7),
    "log-link+content docking": dict(n_types=2, content_dim=1, emission_link="log", budget=2),
    "no-stay sinks": dict(n_types=1, content_dim=1, tilt=True),
}


def _setup(name, seed=0):
    kw = dict(CASES[name])
    sub = nv.Substrate.from_networkx(GRAPH, allow_stay=(name != "no-stay sinks"))
    model = nv.VesicleModel(sub, **kw)
    params = model.sample_params(seed)
    params = params.replace(a=np.array([0.05, 0.1, 0.0, 0.2]), w=params.w - 1.0,
                            delta=np.full(model.n_types, 0.12))
    u = params.u.copy()
    u[:, 0] = np.log(0.6) if model.emission_link == "log" else 0.3
    params = params.replace(u=u)
    F = np.random.default_rng(seed).normal(size=(2, 12, 4, model.covariate_dim))
    return model, params, F


@pytest.mark.parametrize("name", list(CASES))
def test_program_density_equals_trace_likelihood(name):
    """log p(choices) of the generative program equals the likelihood of the traces it produced."""
    model, params, F = _setup(name)
    key = jax.random.PRNGKey(7)

    @jax.jit
    def run(F, params):
        args = (model, F, 12, 64, params)
        tr = handlers.trace(handlers.seed(life_cycle, key)).get_trace(*args)
        sites = {k: s["value"] for k, s in tr.items() if s["type"] == "sample"}
        program_ld, _ = log_density(life_cycle, args, {}, sites)
        return program_ld, handlers.seed(life_cycle, key)(*args)[1]

    program_ld, records = run(F, params)
    traces = records_to_traces(model, jax.tree.map(np.asarray, records), F if model.covariate_dim else None)
    assert traces.n_vesicles > 20 and len(traces) > 40  # a non-trivial case
    data = trace_data(model, traces)
    ll = float(_jit(likelihood.log_likelihood, model)(params, data))
    assert ll == pytest.approx(float(program_ld), rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("name", list(CASES))
def test_trace_likelihood_equals_brute_force(name):
    """Sufficient statistics, per-vesicle terms and a brute-force loop give the same value."""
    model, params, F = _setup(name, seed=1)
    traces = nv.simulate(model, params, n_steps=12, n_runs=2, key=3, covariates=F)
    data = trace_data(model, traces)
    total = float(_jit(likelihood.log_likelihood, model)(params, data))
    terms = _jit(likelihood.log_likelihood_terms, model)(params, data)
    brute = brute_log_likelihood(model, params, traces)
    assert total == pytest.approx(brute, rel=1e-11, abs=1e-9)
    per_vesicle = float(np.sum(_jit(likelihood.vesicle_log_likelihood, model)(params, data)))
    brute_lives = brute_log_likelihood(model, params, traces, emission=False)
    assert per_vesicle == pytest.approx(brute_lives, rel=1e-11, abs=1e-9)
    assert per_vesicle == pytest.approx(total - float(terms["emission"]), rel=1e-11, abs=1e-9)
    # padding rows for compilation reuse changes nothing
    assert float(_jit(likelihood.log_likelihood, model)(params, pad_rows(data))) == pytest.approx(total, rel=1e-13)


@pytest.mark.parametrize("budget", [None, 2])
def test_countdown_likelihood_equals_brute_force(budget):
    """Countdown lifetimes: discretised Gamma hazard with competing causes and censoring."""
    sub = nv.Substrate.from_networkx(GRAPH)
    model = nv.VesicleModel(sub, n_types=2, lifetime="countdown", budget=budget, content_dim=1)
    params = model.default_params().replace(
        shape=np.array([2.5, 1.2]), rate=np.array([0.4, 0.15]), a=np.array([0.05, 0.0, 0.1, 0.2]))
    traces = nv.simulate(model, params, n_steps=25, n_runs=2, key=4)
    causes = set(traces.vesicles.death_cause)
    assert {"expired", "absorbed", "censored"} <= causes
    data = trace_data(model, traces)
    total = float(_jit(likelihood.log_likelihood, model)(params, data))
    assert total == pytest.approx(brute_log_likelihood(model, params, traces), rel=1e-11)
    per_vesicle = float(np.sum(_jit(likelihood.vesicle_log_likelihood, model)(params, data)))
    assert per_vesicle == pytest.approx(brute_log_likelihood(model, params, traces, emission=False), rel=1e-11)


def test_countdown_lifetime_matches_ceiling_of_tau0():
    """With sigma_tau = 0 an unhindered vesicle lives exactly ceil(tau0) steps."""
    sub = nv.Substrate.from_networkx(nx.cycle_graph(3))
    model = nv.VesicleModel(sub, n_types=1, lifetime="countdown", priors={"a": 0.0})
    params = model.default_params().replace(w=np.array([[-30.0]]), shape=np.array([3.0]), rate=np.array([0.5]))
    traces = nv.simulate(model, params, n_steps=40, n_runs=2, key=0)
    v = traces.vesicles
    done = v[v.death_cause == "expired"]
    assert len(done) > 50
    lived = done.death_step - done.birth_step + 1
    np.testing.assert_array_equal(lived.to_numpy(), np.ceil(done.tau0.to_numpy()))
    alive = v[v.death_cause == "censored"]
    assert np.all(np.ceil(alive.tau0) > alive.death_step - alive.birth_step + 1)


def test_likelihood_gradients_are_finite_at_boundaries():
    """Fixed zero absorption and zero T entries give finite values and gradients."""
    sub = nv.Substrate.from_networkx(GRAPH)
    model = nv.VesicleModel(sub, n_types=1)
    params = model.default_params().replace(a=np.zeros(4))
    traces = nv.simulate(model, params, n_steps=15, n_runs=1, key=0)
    data = trace_data(model, traces)
    grads = jax.jit(jax.grad(lambda p: likelihood.log_likelihood(p, data, model)))(jax.tree.map(np.asarray, params))
    for name in ("u", "w", "delta", "T"):
        assert np.all(np.isfinite(getattr(grads, name))), name
