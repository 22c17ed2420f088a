"""The coupled step (nvppl.overlay.step): training unchanged without release, and each
release operator acting exactly as eq. 21-23, 27, 31-32 and 33-35 say, for one docked vesicle."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nvppl as nv
from nvppl import population
from nvppl.overlay import step as ovstep
from nvppl.overlay.sites import get_at


def _net(dtype=jnp.float32):
    return eqx.nn.MLP(3, 2, 4, depth=1, key=jax.random.key(0), dtype=dtype)


def _loss(net, x, y):
    return jnp.mean((jax.vmap(net)(x) - y) ** 2)


def _batches(n, key=0, B=5):
    rng = np.random.default_rng(key)
    return [(jnp.asarray(rng.normal(size=(B, 3)), jnp.float32), jnp.asarray(rng.normal(size=(B, 2)), jnp.float32))
            for _ in range(n)]


def _plain(net, opt, batches):
    params, static = eqx.partition(net, eqx.is_inexact_array)
    st = opt.init(params)

    @jax.jit
    def one(params, st, x, y):
        loss, g = jax.value_and_grad(lambda q: _loss(eqx.combine(q, static), x, y))(params)
        u, st = opt.update(g, st, params)
        return eqx.apply_updates(params, u), st, loss

    losses = []
    for x, y in batches:
        params, st, loss = one(params, st, x, y)
        losses.append(loss)
    return eqx.combine(params, static), np.asarray(losses)


@pytest.mark.parametrize("release, zero", [((), False), (nv.overlay.OPERATORS, True)])
def test_without_release_training_is_plain_optax_training(release, zero):
    """No release operator: the network and the losses are those of plain optax training on
    the same batches, to the last bit. All four operators with zero maps (not trained): the
    same up to rounding — the zero terms change how XLA fuses the float32 arithmetic, so
    results may differ in the last bit (measured: 1 ulp); 12 steps of Adam keep that below
    8 ulps (rtol 1e-6)."""
    net, opt, batches = _net(), optax.adam(1e-2), _batches(12)
    ov = nv.overlay.Overlay.from_network(net, content_dim=2, release=release, capacity=512)
    kw = dict(release_params=ov.zero_release(), train_release=False) if zero else {}
    res = nv.overlay.train(ov, net, opt, _loss, batches, n_steps=12, key=3, progress=False, **kw)
    ref, losses = _plain(net, opt, batches)
    assert res.metrics["docks"].sum() > 0  # vesicles docked and released nothing
    check = (lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)) if zero else \
        np.testing.assert_array_equal
    check(res.metrics["loss"], losses)
    for a, b in zip(jax.tree.leaves(eqx.filter(res.net, eqx.is_array)), jax.tree.leaves(eqx.filter(ref, eqx.is_array))):
        check(np.asarray(a), np.asarray(b))


# ---------------------------------------------------------------- one docked vesicle

C_VES = np.array([0.7, -1.3])


def _one_vesicle_setup(release, opt, site=1, placement="after"):
    """An overlay with one vesicle (content C_VES) at node ``site`` that docks now with
    probability one, no emission and no decay, and random release maps."""
    net = _net(jnp.float64)
    ov = nv.overlay.Overlay.from_network(net, content_dim=2, release=release, capacity=8, emission_link="log",
                                         rule_placement=placement, act_tau=0.0, memory_retain=0.5)
    p = ov.model.default_params()
    u = np.zeros_like(p.u)
    u[:, 0] = -1e3  # no emission
    w = np.zeros_like(p.w)
    w[:, 0] = 1e3  # docks surely
    T = np.zeros_like(p.T)
    T[0, :, 0] = 1.0  # the first candidate: itself (stay)
    p = p.replace(u=u, w=w, delta=np.zeros(1), T=T)
    phi = ov.init_release(1, scale=0.5)
    rng = np.random.default_rng(5)
    phi = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape) * 0.3, a.dtype), phi)
    state, static = ovstep.init_state(ov, net, opt, phi, optax.set_to_zero(), jax.tree.map(jnp.asarray, p),
                                      None, ())
    pop = state.pop._replace(
        alive=state.pop.alive.at[0, 0].set(True), node=state.pop.node.at[0, 0].set(site),
        content=state.pop.content.at[0, 0].set(jnp.asarray(C_VES)), left=state.pop.left.at[0, 0].set(jnp.inf),
        vid=state.pop.vid.at[0, 0].set(0), next_id=state.pop.next_id + 1)
    state = state._replace(pop=pop)
    step = ovstep.make_step(ov, static, _loss, opt, optax.set_to_zero())
    return ov, net, state, static, jax.jit(step), phi


def test_a_dock_changes_the_next_activation_by_film():
    """eq. 21-23: after one dock at layer 1, its pre-activation is h + γ ⊙ h + β with
    (γ, β) = W_act c + b_act, on the next forward pass."""
    ov, net, state, static, step, phi = _one_vesicle_setup(("act",), optax.sgd(0.0))
    x, y = _batches(2, B=4)[0]
    x, y = x.astype(jnp.float64), y.astype(jnp.float64)
    state, out = step(state, (x, y), jax.random.key(0))
    assert float(out.docks[1]) == 1.0 and float(out.docks[0]) == 0.0
    state, out2 = step(state, (x, y), jax.random.key(1))
    gb = np.asarray(phi.W_act[1][0]) @ C_VES + np.asarray(phi.b_act[1][0])
    gamma, beta = gb[:2], gb[2:]

    def by_hand(xi):
        h0 = jax.nn.relu(net.layers[0](xi))
        h1 = net.layers[1](h0)
        return h1 + gamma * h1 + beta

    expect = jnp.mean((jax.vmap(by_hand)(x) - y) ** 2)
    np.testing.assert_allclose(float(out2.loss), float(expect), rtol=1e-12)
    assert float(out.loss) == pytest.approx(float(_loss(net, x, y)), rel=1e-12)  # before the dock: unmodulated


def test_a_dock_adds_a_rank_one_weight_change():
    """eq. 25-28: θ ← θ + η (U c)(V c)ᵀ at the docking site (optimiser step zero)."""
    ov, net, state, static, step, phi = _one_vesicle_setup(("param",), optax.sgd(0.0), site=0)
    x, y = (a.astype(jnp.float64) for a in _batches(1, B=4)[0])
    new, _ = step(state, (x, y), jax.random.key(0))
    W0 = np.asarray(net.layers[0].weight)
    W1 = np.asarray(get_at(new.theta, ("layers", 0)).weight)
    U, V, eta = np.asarray(phi.U[0][0]), np.asarray(phi.V[0][0]), float(phi.eta[0][0])
    np.testing.assert_allclose(W1 - W0, eta * np.outer(U @ C_VES, V @ C_VES), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(np.asarray(get_at(new.theta, ("layers", 1)).weight), np.asarray(net.layers[1].weight))


@pytest.mark.parametrize("placement", ["after", "before"])
def test_a_dock_modulates_the_update(placement):
    """eq. 31-32 with α = 1 + W_α c + b_α and β = W_β c + b_β row by row at the docking site.
    After the optimiser: the update is α ⊙ u + β. Before: the gradient is α ⊙ g + β, then the optimiser."""
    lr = 0.1
    ov, net, state, static, step, phi = _one_vesicle_setup(("rule",), optax.sgd(lr), site=1, placement=placement)
    x, y = (a.astype(jnp.float64) for a in _batches(1, B=4)[0])
    new, _ = step(state, (x, y), jax.random.key(0))
    g = eqx.filter_grad(lambda n: _loss(n, x, y))(net)
    a = np.asarray(phi.W_alpha[1][0]) @ C_VES + np.asarray(phi.b_alpha[1][0])
    b = np.asarray(phi.W_beta[1][0]) @ C_VES + np.asarray(phi.b_beta[1][0])
    gw, gb_ = np.asarray(g.layers[1].weight), np.asarray(g.layers[1].bias)
    if placement == "after":
        dW = (1 + a)[:, None] * (-lr * gw) + b[:, None]
        db = (1 + a) * (-lr * gb_) + b
    else:
        dW = -lr * ((1 + a)[:, None] * gw + b[:, None])
        db = -lr * ((1 + a) * gb_ + b)
    np.testing.assert_allclose(np.asarray(new.theta.layers[1].weight) - np.asarray(net.layers[1].weight), dW,
                               rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(np.asarray(new.theta.layers[1].bias) - np.asarray(net.layers[1].bias), db,
                               rtol=1e-10, atol=1e-14)
    # the other site takes the plain step
    np.testing.assert_allclose(np.asarray(new.theta.layers[0].weight) - np.asarray(net.layers[0].weight),
                               -lr * np.asarray(g.layers[0].weight), rtol=1e-10, atol=1e-14)


def test_a_dock_writes_memory_that_later_passes_read():
    """eq. 33-35: M ← ρ_M M + W_write c on the dock; the next passes add R M to the
    site's pre-activation, the memory fading by ρ_M per step."""
    ov, net, state, static, step, phi = _one_vesicle_setup(("memory",), optax.sgd(0.0), site=1)
    x, y = (a.astype(jnp.float64) for a in _batches(1, B=4)[0])
    # the vesicle docks at every step; move it away after the first dock by killing it
    state, _ = step(state, (x, y), jax.random.key(0))
    state = state._replace(pop=state.pop._replace(alive=jnp.zeros_like(state.pop.alive)))
    M = np.asarray(phi.W_write[1][0]) @ C_VES
    R = np.asarray(phi.R[1])
    for k in range(2):
        state, out = step(state, (x, y), jax.random.key(1 + k))
        read = (0.5 ** k) * (R @ M)

        def by_hand(xi):
            h1 = net.layers[1](jax.nn.relu(net.layers[0](xi)))
            return h1 + read

        np.testing.assert_allclose(float(out.loss), float(jnp.mean((jax.vmap(by_hand)(x) - y) ** 2)), rtol=1e-12)


def test_capacity_overflow_names_step_and_site():
    net = _net()
    ov = nv.overlay.Overlay.from_network(net, content_dim=1, capacity=16, emission_link="log")
    p = ov.model.default_params()
    u = np.zeros_like(p.u)
    u[:, 0] = np.log(5.0)
    with pytest.raises(nv.CapacityError, match=r"step \d+, site 'L\d:layers\[\d\]'.*capacity=32"):
        nv.overlay.train(ov, net, optax.sgd(0.1), _loss, _batches(10), n_steps=10, params=p.replace(u=u),
                         progress=False)


def test_bad_training_arguments_are_refused():
    net = _net()
    ov = nv.overlay.Overlay.from_network(net, content_dim=1, capacity=64)
    with pytest.raises(ValueError, match="record=True needs mode='explicit'"):
        ovd = nv.overlay.Overlay.from_network(net, content_dim=1, mode="density")
        nv.overlay.train(ovd, net, optax.sgd(0.1), _loss, _batches(2), n_steps=2, record=True, progress=False)
    with pytest.raises(ValueError, match="data ran out after 2 batches"):
        nv.overlay.train(ov, net, optax.sgd(0.1), _loss, _batches(2), n_steps=3, progress=False)
    with pytest.raises(ValueError, match="train_vesicles needs mode='density'"):
        nv.overlay.train(ov, net, optax.sgd(0.1), _loss, _batches(2), n_steps=2, train_vesicles=("u",),
                         progress=False)
    with pytest.raises(ValueError, match="'delta' is not a real-valued"):
        nv.overlay.train(ov, net, optax.sgd(0.1), _loss, _batches(2), n_steps=2, train_vesicles=("delta",),
                         progress=False)
    with pytest.raises(ValueError, match="same positive number of rows"):
        nv.overlay.train(ov, net, optax.sgd(0.1), _loss, (jnp.ones((4, 3)), jnp.ones((3, 2))), n_steps=2,
                         progress=False)


def test_same_key_same_run_and_resume_goes_on():
    net, opt = _net(), optax.adam(1e-2)
    ov = nv.overlay.Overlay.from_network(net, content_dim=2, release=("act", "memory"), capacity=256)
    X = jnp.asarray(np.random.default_rng(0).normal(size=(40, 3)), jnp.float32)
    Y = jnp.asarray(np.random.default_rng(1).normal(size=(40, 2)), jnp.float32)
    a = nv.overlay.train(ov, net, opt, _loss, (X, Y), n_steps=20, batch_size=8, key=4, progress=False)
    b = nv.overlay.train(ov, net, opt, _loss, (X, Y), n_steps=20, batch_size=8, key=4, progress=False)
    c = nv.overlay.train(ov, net, opt, _loss, (X, Y), n_steps=20, batch_size=8, key=5, progress=False)
    np.testing.assert_array_equal(a.metrics["loss"], b.metrics["loss"])
    np.testing.assert_array_equal(a.metrics["docks"], b.metrics["docks"])
    assert not np.array_equal(a.metrics["docks"], c.metrics["docks"])
    r = nv.overlay.train(ov, net, opt, _loss, (X, Y), n_steps=5, batch_size=8, key=6, progress=False, resume=a)
    assert int(r.state.t) == 25
    assert float(r.metrics["alive"][0]) > 0  # the vesicles of the first run are still there


def test_loss_with_aux_returns_it_per_step():
    net = _net()
    ov = nv.overlay.Overlay.from_network(net, content_dim=1, capacity=128)

    def loss_aux(net, x, y):
        err = jax.vmap(net)(x) - y
        return jnp.mean(err ** 2), {"max_err": jnp.max(jnp.abs(err))}

    r = nv.overlay.train(ov, net, optax.sgd(0.01), loss_aux, _batches(6), n_steps=6, has_aux=True, progress=False)
    assert r.metrics["aux"]["max_err"].shape == (6,)
    assert np.all(r.metrics["aux"]["max_err"] ** 2 >= r.metrics["loss"])  # the max error bounds the mean


def test_a_run_split_by_resume_equals_one_long_run():
    """Array data: the minibatches of a step depend on the step, not on how the run was
    split into calls, and the vesicles' random streams go on: 12 steps = 7 + 5."""
    net, opt = _net(), optax.adam(1e-2)
    ov = nv.overlay.Overlay.from_network(net, content_dim=2, release=("act",), capacity=256)
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(20, 3)), jnp.float32)
    Y = jnp.asarray(rng.normal(size=(20, 2)), jnp.float32)
    kw = dict(batch_size=6, key=2, progress=False)
    whole = nv.overlay.train(ov, net, opt, _loss, (X, Y), n_steps=12, **kw)
    a = nv.overlay.train(ov, net, opt, _loss, (X, Y), n_steps=7, **kw)
    b = nv.overlay.train(ov, net, opt, _loss, (X, Y), n_steps=5, resume=a, **kw)
    np.testing.assert_array_equal(np.concatenate([a.metrics["loss"], b.metrics["loss"]]), whole.metrics["loss"])
    np.testing.assert_array_equal(np.concatenate([a.metrics["docks"], b.metrics["docks"]]), whole.metrics["docks"])
    with pytest.raises(ValueError, match="do not pass params"):
        nv.overlay.train(ov, net, opt, _loss, (X, Y), n_steps=2, resume=a, params=ov.model.default_params(), **kw)
