"""The LIF network of nvppl.snn (eq. 54): the membrane against its closed form for constant input, the
refractory period, the chip's float reference on a random network, and errors naming the item."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import nvppl as nv
from nvppl.backend import LIF, Network
from nvppl.backend.reference import simulate_float


def _single(neuron):
    return nv.snn.LIFNetwork(0, 1, pre=np.zeros(0, int), post=np.zeros(0, int), weights=np.zeros(0), neuron=neuron)


@pytest.mark.parametrize("tau", [4.0, 10.0, math.inf])
def test_membrane_follows_the_closed_form_for_constant_input(tau):
    """Constant current J without a threshold crossing gives V_t = J Σ_{k<t} (1 − 1/τ)^k = J τ (1 − (1 − 1/τ)^t)
    (J t without leak), and the first spike is at the first t with V_t ≥ v_th. Catches a leak applied after the
    input, a wrong τ, or input counted twice."""
    J, T = 0.05, 60
    net = _single(nv.snn.Neuron(tau_mem=tau, v_th=1.0))
    out = nv.snn.run(net, current=np.full((T, 1), J), n_ticks=T, inputs=np.zeros((T, 0)))
    t = np.arange(1, T + 1)
    closed = J * t if math.isinf(tau) else J * tau * (1 - (1 - 1 / tau) ** t)
    first = np.flatnonzero(closed >= 1.0)
    v = np.asarray(out.v[:, 0], dtype=float)
    spikes = np.asarray(out.spikes[:, 0])
    if first.size:
        f = first[0]
        np.testing.assert_allclose(v[:f], closed[:f], rtol=1e-5)
        assert spikes[f] and not spikes[:f].any(), "the spike is at the first crossing of the closed form"
    else:
        np.testing.assert_allclose(v, closed, rtol=1e-5)
        assert not spikes.any()


def test_refractory_period_lengthens_the_interspike_interval_by_its_ticks():
    """With constant suprathreshold drive the neuron fires every k ticks; a refractory period of r ticks holds
    V at the reset for r ticks, so the interval becomes k + r. Catches a refractory counter off by one or a
    neuron that fires while held."""
    J = 0.4   # V: 0.4, 0.8, 1.2 -> fires every third tick without leak
    T = 40
    intervals = {}
    for r in (0, 2, 5):
        net = _single(nv.snn.Neuron(tau_mem=math.inf, v_th=1.0, refractory=r))
        out = nv.snn.run(net, current=np.full((T, 1), J), inputs=np.zeros((T, 0)))
        times = np.flatnonzero(np.asarray(out.spikes[:, 0]))
        intervals[r] = set(np.diff(times).tolist())
    assert intervals == {0: {3}, 2: {5}, 5: {8}}


def test_network_equals_the_chips_float_reference():
    """A random recurrent network with inputs and synaptic currents gives the spikes of
    ``nvppl.backend.reference.simulate_float`` (same update order, the chip's timing) at every tick, and the
    same potentials to float32 precision. Catches an input delivered in the same tick, a swapped pre/post, or a
    segment sum over the wrong index."""
    rng = np.random.default_rng(3)
    n_in, n, T = 6, 30, 120
    neuron = nv.snn.Neuron(tau_mem=8.0, tau_syn=4.0, v_th=1.0, v_reset=0.0, bias=0.02)
    W_in = (rng.random((n_in, n)) < 0.4) * rng.uniform(0.2, 0.6, (n_in, n))
    W = (rng.random((n, n)) < 0.15) * rng.uniform(-0.4, 0.5, (n, n))
    np.fill_diagonal(W, 0.0)
    pre_i, post_i = np.nonzero(W_in)
    pre_r, post_r = np.nonzero(W)
    net = nv.snn.LIFNetwork(n_in, n, np.concatenate([pre_i, n_in + pre_r]), np.concatenate([post_i, post_r]),
                            np.concatenate([W_in[pre_i, post_i], W[pre_r, post_r]]), neuron=neuron)
    inputs = rng.random((T, n_in)) < 0.2
    out = nv.snn.run(net, inputs=inputs)

    ref = Network()
    a = ref.add_input("in", n_in)
    b = ref.add_lif("net", n, LIF(tau_mem=8.0, tau_syn=4.0, v_th=1.0, v_reset=0.0, bias=0.02))
    ref.connect(a, b, W_in)
    ref.connect(b, b, W)
    exp = simulate_float(ref, T, inputs={"in": inputs.astype(int)})
    assert np.asarray(out.spikes).sum() > 20, "the network must be active for the comparison to mean anything"
    np.testing.assert_array_equal(np.asarray(out.spikes), exp["spikes"]["net"])
    np.testing.assert_allclose(np.asarray(out.v), exp["v"]["net"], atol=1e-4)


def test_random_network_has_the_asked_connectivity_and_no_self_loops():
    """``LIFNetwork.random`` draws each ordered pair with probability p: the edge count is within 5 binomial
    standard errors of n(n−1)p, no neuron connects to itself and no pair repeats; the same key gives the same
    network."""
    n, p = 300, 0.05
    net = nv.snn.LIFNetwork.random(n, p, key=7)
    m = n * (n - 1)
    assert abs(net.n_synapses - m * p) < 5 * math.sqrt(m * p * (1 - p))
    pre, post = np.asarray(net.pre), np.asarray(net.post)
    assert not np.any(pre == post)
    assert len(set(zip(pre.tolist(), post.tolist()))) == net.n_synapses
    again = nv.snn.LIFNetwork.random(n, p, key=7)
    np.testing.assert_array_equal(np.asarray(again.pre), pre)


def test_bad_networks_are_refused_naming_the_synapse_or_field():
    with pytest.raises(ValueError, match=r"post\[1\] = 5: synapse 1"):
        nv.snn.LIFNetwork(1, 2, pre=[0, 1], post=[0, 5], weights=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"weights: synapse 0 holds nan"):
        nv.snn.LIFNetwork(1, 2, pre=[0], post=[0], weights=[float("nan")])
    with pytest.raises(ValueError, match="v_reset"):
        nv.snn.Neuron(v_th=1.0, v_reset=1.0)
    with pytest.raises(ValueError, match="refractory"):
        nv.snn.Neuron(refractory=-1)
    with pytest.raises(ValueError, match=r"weights\[0\] = 2.0 lies outside"):
        nv.snn.LIFNetwork(0, 2, pre=[0], post=[1], weights=[2.0], w_max=1.0)
    net = nv.snn.LIFNetwork(2, 2, pre=[0], post=[1], weights=[0.5])
    with pytest.raises(ValueError, match=r"tick 1, input 0 holds 2"):
        nv.snn.run(net, inputs=np.array([[0, 0], [2, 0]]))
    with pytest.raises(ValueError, match=r"shape \(ticks, n_input = 2\)"):
        nv.snn.run(net, inputs=jnp.zeros((3, 3)))


@pytest.mark.parametrize("max_spikes", [3, 40])
def test_event_driven_synaptic_input_gives_the_full_sums_spikes(max_spikes):
    """``max_spikes`` sums only the outgoing synapses of the units that spiked; with the synapses in ``pre``
    order it adds the same terms as the full segment sum, so spikes are equal and potentials agree to float32
    rounding (1e-6) — also at ticks with more spikes than the capacity (3), where it falls back to the full sum. Catches a gather
    that misses the last synapse of a row, a padding slot that reaches a neuron, or a broken fallback."""
    kw = dict(n=80, p_connect=0.1, key=5, n_input=10, input_p=0.3, input_weight=0.6, weight=0.15,
              neuron=nv.snn.Neuron(tau_mem=10.0, tau_syn=3.0))
    full = nv.snn.LIFNetwork.random(**kw)
    ev = nv.snn.LIFNetwork.random(**kw, max_spikes=max_spikes)
    inputs = np.random.default_rng(0).random((150, 10)) < 0.15
    a, b = nv.snn.run(full, inputs=inputs), nv.snn.run(ev, inputs=inputs)
    counts = np.asarray(a.spikes).sum(1)
    assert counts.sum() > 50 and (max_spikes > counts.max() or (counts > max_spikes).any())
    np.testing.assert_array_equal(np.asarray(a.spikes), np.asarray(b.spikes))
    np.testing.assert_allclose(np.asarray(a.v), np.asarray(b.v), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="max_events needs max_spikes"):
        nv.snn.LIFNetwork(1, 2, pre=[0], post=[1], weights=[0.5], max_events=4)
