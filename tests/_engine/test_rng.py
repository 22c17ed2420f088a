"""The engines' random numbers: samplers follow their laws, streams are reproducible,
and a missing build says how to build it."""

import sys

import networkx as nx
import numpy as np
import pytest
from scipy import stats

import nvppl as nv
from nvppl._engine import bridge
from nvppl._validate import seed64

ALPHA = 1e-3  # level of each test


def test_samplers_follow_their_distributions():
    """Kolmogorov-Smirnov (continuous) and chi-square (Poisson) tests at level 0.001 each."""
    _core = bridge.engine("model")
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
    _core = bridge.engine("model")
    assert np.array_equal(_core.draw(5, 0, 100), _core.draw(5, 0, 100))
    assert not np.array_equal(_core.draw(5, 0, 100), _core.draw(6, 0, 100))
    assert not np.array_equal(_core.draw(5, 0, 100, stream=1), _core.draw(5, 0, 100, stream=2))


def test_jax_keys_and_int_seeds_agree():
    import jax

    assert seed64(7) == seed64(jax.random.PRNGKey(7))
    with pytest.raises(ValueError, match="non-negative"):
        seed64(-1)


@pytest.mark.parametrize("name", ["model", "simulate", "filter", "relax"])
def test_missing_extension_says_how_to_build_it(monkeypatch, name):
    monkeypatch.setitem(sys.modules, f"nvppl._engine.{name}", None)  # as if the extension were not built
    with pytest.raises(ImportError, match=r"pip install -e"):
        bridge.engine(name)


def test_simulation_without_the_engine_says_how_to_build_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvppl._engine.simulate", None)
    model = nv.VesicleModel(nv.Substrate.from_networkx(nx.path_graph(2)), n_types=1)
    with pytest.raises(ImportError, match=r"nvppl._engine.simulate is not built.*pip install -e"):
        nv.simulate(model, model.default_params(), n_steps=3, n_runs=1, backend="compiled")
