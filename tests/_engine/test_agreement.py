"""The compiled core against the NumPyro program, and its random numbers.

Two implementations of one model (DESIGN §4) must agree in distribution. For
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

import sys

import networkx as nx
import numpy as np
import pytest
from scipy import stats

import nvppl as nv
from nvppl.smc import _compiled
from tests._support.battery import ALPHA, battery, family



# --------------------------------------------------------------------------- random numbers
def test_samplers_follow_their_distributions():
    """Kolmogorov-Smirnov (continuous) and chi-square (Poisson) tests at level 0.001 each."""
    _core = _compiled.core()
    u = _core.draw(1, 0, 20000)
    assert u.min() >= 0 and u.max() < 1 and stats.kstest(u, "uniform").pvalue > ALPHA
    z = _core.draw(2, 1, 20000)
    assert stats.kstest(z, "norm").pvalue > ALPHA
    for shape, rate in ((0.4, 2.0), (3.0, 0.5)):
        g = _core.draw(3, 3, 20000, shape, rate)
        assert stats.kstest(g, stats.gamma(a=shape, scale=1 / rate).cdf).pvalue > ALPHA
    for lam in (0.5, 4.0, 25.0, 400.0):  # inversion below 10, transformed rejection above
        x = _core.draw(4, 2, 20000, lam).astype(int)
        lo, hi = stats.poisson.ppf([1e-4, 1 - 1e-4], lam).astype(int)
        edges = np.arange(lo, hi + 2)
        observed = np.histogram(np.clip(x, lo, hi), edges)[0]
        p = np.diff(stats.poisson.cdf(edges - 1, lam))
        p[0], p[-1] = stats.poisson.cdf(lo, lam), stats.poisson.sf(hi - 1, lam)
        expected = p / p.sum() * len(x)
        keep = expected >= 5
        stat = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
        assert stats.chi2.sf(stat, keep.sum() - 1) > ALPHA, lam


def test_streams_are_reproducible_and_distinct():
    _core = _compiled.core()
    assert np.array_equal(_core.draw(5, 0, 100), _core.draw(5, 0, 100))
    assert not np.array_equal(_core.draw(5, 0, 100), _core.draw(6, 0, 100))
    assert not np.array_equal(_core.draw(5, 0, 100, stream=1), _core.draw(5, 0, 100, stream=2))


def test_jax_keys_and_int_seeds_agree():
    import jax

    assert _compiled.seed64(7) == _compiled.seed64(jax.random.PRNGKey(7))
    with pytest.raises(ValueError, match="non-negative"):
        _compiled.seed64(-1)


def test_missing_extension_says_how_to_build_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvppl.smc._core", None)  # as if the extension were not built
    monkeypatch.delattr(nv.smc, "_core", raising=False)
    with pytest.raises(ImportError, match=r"pip install -e"):
        _compiled.core()


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
