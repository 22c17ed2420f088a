"""The vesicle field (eq. 57–59): the same process as the model's density, the field equal to the
brute-force sum of eq. 57, the event-driven advance exact against the clocked one, and closed-loop learning."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nvppl as nv
from nvppl.errors import CapacityError
from nvppl.snn import field as F


def _net(n=6, key=1, bias=0.0):
    return nv.snn.LIFNetwork.random(n, 0.4, key=key, neuron=nv.snn.Neuron(bias=bias))


def _scan(fld, net, T, key, st=None, spikes=None):
    """Alive counts, docks, m and events of T field ticks (spikes: (T, n_units) recorded before each tick)."""
    prep = F._prepare(fld, net)
    st = nv.snn.field_init(fld, net) if st is None else st
    spikes = jnp.zeros((T, net.n_units), bool) if spikes is None else spikes

    def body(s, xs):
        k, sp = xs
        s = F.record_spikes(fld, prep, s, sp)
        s, m, info = F._field_step(fld, prep, s, jnp.zeros(0), k, net.n_synapses)
        return s, (info.alive, info.docks, m, info.event)

    return jax.lax.scan(body, st, (jax.random.split(key, T), spikes))


def test_field_vesicles_have_the_densitys_mean_counts():
    """The field's vesicles (``nvppl.population.step``, the NumPyro program's step) have, per node and type and
    tick, the mean count of the density recursion (``nv.density.relax``, exact in the mean for this model). Over
    2000 runs each cell's mean lies within 5 standard errors (Poisson: sd ≈ √mean). Catches a field that emits
    from the wrong covariate column, moves with a transposed kernel or forgets a death."""
    net = _net()
    sub, node_of = nv.snn.neuron_substrate(net)
    model = nv.VesicleModel(sub, n_types=2, covariate_dim=1)
    p = model.default_params().replace(delta=np.array([0.1, 0.3]), a=np.full(model.n_nodes, 0.05))
    fld = nv.snn.VesicleField(model, p, node_of, alpha=[1.0, 0.5], which="alive", capacity=128)
    T, R = 12, 2000
    run = jax.jit(jax.vmap(lambda k: _scan(fld, net, T, k)[1][0]))
    alive = np.asarray(run(jax.random.split(jax.random.key(0), R)), dtype=float)   # (R, T, n, K)
    rho = np.asarray(nv.density.relax(model, p, n_steps=T, covariates=np.zeros((T, model.n_nodes, 1))).rho)
    mean = alive.mean(0)
    se = np.sqrt(np.maximum(rho, 0.05) / R)
    z = np.abs(mean - rho) / se
    assert z.max() < 5, f"largest deviation {z.max():.2f} standard errors at {np.unravel_index(z.argmax(), z.shape)}"


@pytest.mark.parametrize("nb", ["post", "pre_post", 1])
def test_field_equals_the_brute_force_sum_of_eq_57(nb):
    """m_ij from the node strengths equals eq. 57 summed vesicle by vesicle and synapse by synapse (NumPy loop)
    for the post, pre-and-post and 1-hop neighbourhoods, with content weights. Catches a union counted twice
    where pre and post share a node, a neighbourhood taken in one direction only, or content ignored."""
    net = _net(n=7, key=4)
    sub, node_of = nv.snn.neuron_substrate(net)
    model = nv.VesicleModel(sub, n_types=2, covariate_dim=1, content_dim=2)
    p = model.default_params().replace(content_mean=np.array([[0.5, -1.0], [1.0, 0.2]]),
                                       content_scale=np.full((2, 2), 0.7))
    fld = nv.snn.VesicleField(model, p, node_of, alpha=[1.0, -0.5], alpha_c=[[0.3, 0.1], [-0.2, 0.4]],
                              neighbourhood=nb, which="alive", capacity=256)
    final, (_, _, ms, _) = _scan(fld, net, 6, jax.random.key(2))
    pop = final.pop
    nodes, types = np.asarray(pop.node[0]), np.asarray(pop.vtype[0])
    contents, mask = np.asarray(pop.content[0], dtype=float), np.asarray(pop.alive[0])
    assert mask.sum() > 10
    expected = F.brute_force_field(fld, net, nodes, types, contents, mask)
    np.testing.assert_allclose(np.asarray(ms[-1]), expected, rtol=1e-5, atol=1e-5)


def test_docked_field_counts_this_ticks_docks_only():
    """``which="docked"``: the strength of a node is α summed over the vesicles that docked there this tick, so
    with one type and α = 2 the total strength is twice the docks. Catches docks of earlier ticks kept."""
    net = _net()
    sub, node_of = nv.snn.neuron_substrate(net)
    model = nv.VesicleModel(sub, n_types=1, covariate_dim=1)
    fld = nv.snn.VesicleField(model, model.default_params(), node_of, alpha=[2.0], neighbourhood="post")
    st = nv.snn.field_init(fld, net)
    total = 0
    for t in range(8):
        st, m, info = nv.snn.field_step(fld, net, st, jnp.zeros(0), jax.random.key(t))
        assert float(info.strength.sum()) == pytest.approx(2.0 * int(info.docks.sum()))
        post_node = node_of[net.n_input + np.asarray(net.post)]
        np.testing.assert_allclose(np.asarray(m), np.asarray(info.strength)[post_node])
        total += int(info.docks.sum())
    assert total > 0


def test_event_driven_with_an_event_every_tick_is_the_clocked_field():
    """When every tick has a spike event, the event-driven field is the clocked one draw for draw (eq. 59 with
    events on every tick)."""
    net = _net(bias=1.5)         # every neuron fires every tick
    sub, node_of = nv.snn.neuron_substrate(net)
    model = nv.VesicleModel(sub, n_types=1, covariate_dim=1)
    p = model.default_params()
    out = {}
    for ev in (False, True):
        fld = nv.snn.VesicleField(model, p, node_of, alpha=[1.0], event_driven=ev, capacity=256)
        res = nv.snn.learn(net, nv.snn.Plasticity(eta=0.0), n_ticks=30, signals=np.zeros((30, 1)), key=3,
                           modulation=fld, record_every=1)
        out[ev] = res
    assert out[True].n_events == 30
    np.testing.assert_array_equal(out[True].docks, out[False].docks)
    np.testing.assert_array_equal(out[True].modulation, out[False].modulation)


def test_event_driven_vesicles_only_age_between_events():
    """Without spikes the life cycle runs only at tick 0; geometric lifetimes are thinned at the next event by
    the survival over the skipped ticks, (1 − δ)^k: the survivors of N vesicles are Binomial(N, (1 − δ)^k), checked
    within 5 standard errors. Catches ageing dropped (all survive) or applied per skipped tick twice."""
    net = _net()
    sub, node_of = nv.snn.neuron_substrate(net)
    model = nv.VesicleModel(sub, n_types=1, covariate_dim=1)
    delta = 0.05
    p = model.default_params().replace(delta=np.array([delta]), u=np.array([[3.0, 0.0]]),
                                       r_max=np.array([20.0]), w=np.array([[-8.0, 0.0]]))
    fld = nv.snn.VesicleField(model, p, node_of, alpha=[1.0], event_driven=True, which="alive", capacity=2048)
    k = 10
    st, (alive, _, _, events) = _scan(fld, net, k + 1, jax.random.key(5))
    assert np.asarray(events).tolist() == [True] + [False] * k
    assert int(st.skipped) == k and int(st.n_events) == 1
    n0 = int(np.asarray(alive[0]).sum())
    assert int(np.asarray(alive[-1]).sum()) == n0, "between events vesicles do not die"
    prep = F._prepare(fld, net)
    surv = F._age_geometric(fld, prep, st.pop, st.skipped, jax.random.key(9))
    n1 = int(surv.alive.sum())
    q = (1 - delta) ** k
    assert abs(n1 - n0 * q) < 5 * math.sqrt(n0 * q * (1 - q)), (n0, n1, n0 * q)


def test_overflow_is_an_error_naming_tick_and_node():
    net = _net()
    sub, node_of = nv.snn.neuron_substrate(net)
    model = nv.VesicleModel(sub, n_types=1, covariate_dim=1)
    p = model.default_params().replace(u=np.array([[4.0, 0.0]]), r_max=np.array([50.0]))
    fld = nv.snn.VesicleField(model, p, node_of, alpha=[1.0], capacity=16)
    with pytest.raises(CapacityError, match=r"at tick 0 the vesicles emitted at node \d+ did not fit in the 16"):
        nv.snn.learn(net, nv.snn.Plasticity(), n_ticks=5, signals=np.zeros((5, 1)), key=0, modulation=fld)


def test_bad_fields_are_refused_naming_the_item():
    net = _net()
    sub, node_of = nv.snn.neuron_substrate(net)
    model = nv.VesicleModel(sub, n_types=1, covariate_dim=2)
    with pytest.raises(ValueError, match="covariate_dim = 2 but the field gives 1"):
        nv.snn.VesicleField(model, model.default_params(), node_of, alpha=[1.0])
    model = nv.VesicleModel(sub, n_types=1, covariate_dim=1)
    bad = node_of.copy()
    bad[2] = 99
    with pytest.raises(ValueError, match=r"node_of\[2\] = 99: unit 2"):
        nv.snn.VesicleField(model, model.default_params(), bad, alpha=[1.0])
    with pytest.raises(ValueError, match="alpha must hold 1"):
        nv.snn.VesicleField(model, model.default_params(), node_of, alpha=[1.0, 2.0])
    with pytest.raises(ValueError, match="neighbourhood"):
        nv.snn.VesicleField(model, model.default_params(), node_of, alpha=[1.0], neighbourhood="everywhere")


def test_learn_with_a_field_changes_only_synapses_near_docks():
    """With the post neighbourhood, a synapse moves only if a vesicle docked at its postsynaptic neuron's node at
    some tick (eq. 58 with m from eq. 57), and with α = 0 nothing moves at all."""
    net = nv.snn.LIFNetwork.random(12, 0.3, key=2, n_input=4, input_p=0.6, input_weight=0.8, w_min=-5, w_max=5)
    sub, node_of = nv.snn.neuron_substrate(net)
    model = nv.VesicleModel(sub, n_types=1, covariate_dim=1)
    p = model.default_params().replace(u=np.array([[-3.0, 0.0]]))
    rng = np.random.default_rng(0)
    inputs = rng.random((150, 4)) < 0.3
    rule = nv.snn.Plasticity(eta=0.1)
    for alpha in (0.0, 1.0):
        fld = nv.snn.VesicleField(model, p, node_of, alpha=[alpha], neighbourhood="post", capacity=512)
        res = nv.snn.learn(net, rule, inputs=inputs, signals=np.zeros((150, 1)), key=1, modulation=fld)
        moved = np.abs(res.w - np.asarray(net.weights)) > 0
        if alpha == 0.0:
            assert not moved.any()
        else:
            assert moved.any() and res.docks.sum() > 0
            assert not moved[~np.asarray(net.plastic)].any()


def test_learn_with_global_modulation_follows_the_concentration():
    """Global modulation: d(t) = d(t−1) e^{−1/τ_d} + r(t) is the mean modulator, and no reward means no
    learning. Catches a concentration that does not decay or is read before the reward of the tick."""
    net = nv.snn.LIFNetwork.random(10, 0.3, key=0, n_input=3, input_p=0.7, w_min=0, w_max=2)
    rng = np.random.default_rng(1)
    inputs = rng.random((60, 3)) < 0.3
    r = np.zeros(60)
    r[[5, 20]] = [1.0, 0.5]
    res = nv.snn.learn(net, nv.snn.Plasticity(eta=0.05), inputs=inputs, signals=r, key=0, tau_mod=10.0)
    d = np.zeros(60)
    for t in range(60):
        d[t] = (d[t - 1] * math.exp(-0.1) if t else 0.0) + r[t]
    np.testing.assert_allclose(res.modulation, d, rtol=1e-5, atol=1e-7)
    none = nv.snn.learn(net, nv.snn.Plasticity(eta=0.05), inputs=inputs, signals=np.zeros(60), key=0)
    np.testing.assert_array_equal(none.w, np.asarray(net.weights))


def test_learn_reuses_its_compiled_loop_and_gives_the_same_result():
    """A second call with the same network, rule and field reuses the compiled loop (one cache entry) and, with
    the same key, gives the same weights and docks; another key gives other docks."""
    net = nv.snn.LIFNetwork.random(10, 0.3, key=2, n_input=3, input_p=0.6, input_weight=0.8, w_min=-5, w_max=5)
    sub, node_of = nv.snn.neuron_substrate(net)
    model = nv.VesicleModel(sub, n_types=1, covariate_dim=1)
    fld = nv.snn.VesicleField(model, model.default_params(), node_of, alpha=[1.0], capacity=256)
    inputs = np.random.default_rng(0).random((80, 3)) < 0.3
    runs = [nv.snn.learn(net, nv.snn.Plasticity(eta=0.1), inputs=inputs, signals=np.zeros(80), key=k,
                         modulation=fld) for k in (4, 4, 5)]
    assert sum(1 for k in net._compiled if k[0] == "learn") == 1
    np.testing.assert_array_equal(runs[0].w, runs[1].w)
    np.testing.assert_array_equal(runs[0].docks, runs[1].docks)
    assert not np.array_equal(runs[0].docks, runs[2].docks)
