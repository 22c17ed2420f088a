"""Eligibility traces (eq. 56, hmn eq. 2) against hand-computed spike pairs, and the three-factor update
(eq. 58)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import nvppl as nv


def _pair_net():
    # neuron 0 -> neuron 1, one plastic synapse
    return nv.snn.LIFNetwork(0, 2, pre=[0], post=[1], weights=[0.5], plastic=[True], w_min=0.0, w_max=1.0)


def _drive(rule, raster):
    net = _pair_net()
    st = nv.snn.plasticity_init(net, rule)
    es = []
    for row in raster:
        st = nv.snn.eligibility_step(net, rule, st, jnp.asarray(row, bool))
        es.append((float(st.e_fast[0]), float(st.e_slow[0])))
    return np.array(es)


@pytest.mark.parametrize("gap", [1, 2, 5])
def test_pre_before_post_potentiates_by_the_trace_then_decays(gap):
    """Pre at tick 0, post at tick ``gap``: F = A₊ e^{−(gap−1)/τ₊} at the post tick, then ψ_f decays by
    e^{−1/τ_f} per tick and ψ_s by e^{−1/τ_s}. Catches a trace read after its own increment, a wrong sign, or a
    decay applied to F in its own tick."""
    a_plus, tp, tf, ts = 0.8, 7.0, 30.0, 300.0
    rule = nv.snn.Plasticity(a_plus=a_plus, a_minus=-1.0, tau_plus=tp, tau_minus=5.0, tau_fast=tf, tau_slow=ts)
    T = gap + 6
    raster = np.zeros((T, 2), bool)
    raster[0, 0] = True
    raster[gap, 1] = True
    es = _drive(rule, raster)
    F = a_plus * math.exp(-(gap - 1) / tp)
    after = np.arange(T - gap)
    np.testing.assert_allclose(es[:gap], 0.0, atol=1e-7)
    np.testing.assert_allclose(es[gap:, 0], F * np.exp(-after / tf), rtol=1e-5)
    np.testing.assert_allclose(es[gap:, 1], F * np.exp(-after / ts), rtol=1e-5)


@pytest.mark.parametrize("gap", [1, 3])
def test_post_before_pre_depresses(gap):
    """Post at tick 0, pre at tick ``gap``: F = A₋ e^{−(gap−1)/τ₋}; spikes in the same tick give nothing."""
    a_minus, tm = -1.2, 5.0
    rule = nv.snn.Plasticity(a_plus=1.0, a_minus=a_minus, tau_plus=5.0, tau_minus=tm, tau_fast=50.0)
    raster = np.zeros((gap + 1, 2), bool)
    raster[0, 1] = True
    raster[gap, 0] = True
    es = _drive(rule, raster)
    np.testing.assert_allclose(es[-1, 0], a_minus * math.exp(-(gap - 1) / tm), rtol=1e-5)
    same = np.array([[True, True]])
    np.testing.assert_allclose(_drive(rule, same)[:, 0], 0.0)


def test_pairs_add_and_slow_part_is_off_by_default():
    """Two pairings add their terms, each decayed since its own tick; without ``tau_slow`` ψ_s stays 0."""
    rule = nv.snn.Plasticity(a_plus=1.0, a_minus=-1.0, tau_plus=4.0, tau_minus=4.0, tau_fast=20.0)
    raster = np.zeros((12, 2), bool)
    raster[0, 0] = raster[1, 1] = True          # pair 1: F = 1 at tick 1
    raster[5, 0] = raster[8, 1] = True          # pair 2: pre at 5 (x_pre = e^{-5/4}·... ) post at 8
    es = _drive(rule, raster)
    x_at_7 = math.exp(-7 / 4) + math.exp(-2 / 4)   # pre trace after tick 7: spikes at 0 and 5
    y_at_4 = math.exp(-3 / 4)                      # post trace at tick 4 (spike at 1); read at pre tick 5
    F5 = -1.0 * y_at_4
    expected = math.exp(-10 / 20) + F5 * math.exp(-6 / 20) + x_at_7 * math.exp(-3 / 20)
    np.testing.assert_allclose(es[-1, 0], expected, rtol=1e-5)
    assert np.all(es[:, 1] == 0)


def test_product_eligibility_is_the_trace_product():
    """``eligibility="product"`` (the chip's rule) gives e = x_pre · y_post after this tick's increments."""
    rule = nv.snn.Plasticity(eligibility="product", tau_plus=3.0, tau_minus=6.0)
    raster = np.zeros((5, 2), bool)
    raster[0, 0] = raster[2, 1] = True
    es = _drive(rule, raster)
    x = np.array([math.exp(-t / 3.0) for t in range(5)])
    y = np.array([0, 0] + [math.exp(-(t - 2) / 6.0) for t in range(2, 5)])
    np.testing.assert_allclose(es[:, 0], x * y, rtol=1e-5)


def test_three_factor_moves_only_plastic_synapses_and_keeps_the_bounds():
    """Δw = η e m (eq. 58) at plastic synapses with m a scalar or one value per synapse; weights stay in
    [w_min, w_max] and static synapses never move. Catches an update of non-plastic synapses or a missing
    clip."""
    net = nv.snn.LIFNetwork(1, 3, pre=[0, 1, 2, 3], post=[0, 1, 2, 0], weights=[0.5, 0.5, 0.9, 0.1],
                            plastic=[False, True, True, True], w_min=0.0, w_max=1.0)
    rule = nv.snn.Plasticity(eta=0.5)
    e = jnp.array([1.0, 0.2, 1.0, -1.0])
    w = nv.snn.three_factor(net, rule, net.weights, e, 1.0)
    np.testing.assert_allclose(np.asarray(w), [0.5, 0.6, 1.0, 0.0], rtol=1e-6)
    m = jnp.array([3.0, 0.0, -0.2, 0.1])
    w = nv.snn.three_factor(net, rule, net.weights, e, m)
    np.testing.assert_allclose(np.asarray(w), [0.5, 0.5, 0.8, 0.05], rtol=1e-6)


def test_bad_rules_are_refused_naming_the_field():
    with pytest.raises(ValueError, match="eligibility"):
        nv.snn.Plasticity(eligibility="bcm")
    with pytest.raises(ValueError, match="tau_fast"):
        nv.snn.Plasticity(tau_fast=0)
    with pytest.raises(ValueError, match="eta"):
        nv.snn.Plasticity(eta=float("inf"))
