"""The compiled core against the NumPyro program, and its random numbers.

Two implementations of one model (docs/design.rst, "Three implementations of one model") must agree in distribution. For
each kernel family a battery of two-sample tests compares the compiled and the
NumPyro simulators (fixed seeds):

- occupancy (vesicles present, summed over steps) and dock counts per run, node
  and type: Welch t-tests (runs are independent);
- moves per vesicle (lifetime), moves to another node (path length) and death
  causes per type: chi-square tests of homogeneity (vesicles are independent
  draws of a Poisson process);
- content at birth and the initial countdown lifetime per type: two-sample
  Kolmogorov-Smirnov tests.

The family-wise level of each battery is 0.001 (Bonferroni over its tests). A
last test shows the battery has power: it rejects a 30% change of δ.
"""

import networkx as nx
import numpy as np
import pytest

import nvppl as nv
from tests._support.battery import ALPHA, battery, family



RUNS, STEPS = 150, 20


@pytest.fixture(scope="module", params=["geometric", "countdown", "content"])
def pair(request):
    model, params, F = family(request.param)
    kw = dict(n_steps=STEPS, n_runs=RUNS, covariates=F)
    a = nv.simulate(model, params, key=1, backend="compiled", **kw)
    b = nv.simulate(model, params, key=2, backend="numpyro", **kw)
    return request.param, model, params, F, a, b


def test_compiled_and_numpyro_agree_in_distribution(pair):
    name, model, params, F, a, b = pair
    pv = battery(model, a, b)
    assert len(pv) >= 10
    worst = min(pv, key=pv.get)
    assert pv[worst] > ALPHA / len(pv), (name, worst, pv[worst])


def test_the_battery_detects_a_changed_decay(pair):
    name, model, params, F, a, b = pair
    if name == "countdown":
        changed = params.replace(rate=params.rate * 1.3)
    else:
        changed = params.replace(delta=params.delta * 1.3)
    c = nv.simulate(model, changed, n_steps=STEPS, n_runs=RUNS, key=3, covariates=F, backend="compiled")
    pv = battery(model, c, b)
    assert min(pv.values()) < ALPHA / len(pv)


def test_same_key_same_traces_for_any_thread_count(pair):
    name, model, params, F, a, b = pair
    kw = dict(n_steps=STEPS, n_runs=RUNS, covariates=F, backend="compiled")
    one = nv.simulate(model, params, key=1, n_threads=1, **kw)
    two = nv.simulate(model, params, key=1, n_threads=2, **kw)
    assert one.vesicles.equals(two.vesicles) and one.steps.equals(two.steps)
    assert one.vesicles.equals(a.vesicles) and one.steps.equals(a.steps)  # default thread count too


def test_compiled_traces_pass_full_validation(pair):
    """The compiled backend skips validation for speed; its output must pass it."""
    name, model, params, F, a, b = pair
    checked = nv.Traces.from_dataframes(a.vesicles, a.steps, model.substrate, n_steps=STEPS, covariates=F)
    assert checked.n_vesicle_steps == a.n_vesicle_steps
    np.testing.assert_array_equal(checked._s["slot"], a._s["slot"])
