"""Two modes, one model: the overlay's explicit vesicles against nv.simulate (frozen network),
the density mode against the explicit mode's Monte Carlo mean, and the density mode's
gradients against finite differences."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nvppl as nv
from nvppl.overlay import expectation, release
from nvppl.overlay import step as ovstep


def _loss(net, x, y):
    return jnp.mean((jax.vmap(net)(x) - y) ** 2)


def _batches(n, key=0, B=6, dtype=jnp.float32):
    rng = np.random.default_rng(key)
    return [(jnp.asarray(rng.normal(size=(B, 3)), dtype), jnp.asarray(rng.normal(size=(B, 2)), dtype))
            for _ in range(n)]


def _z(a, b):
    """Welch z of two samples' means."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return (a.mean() - b.mean()) / se


def test_frozen_network_explicit_traces_match_simulate():
    """With the network frozen (SGD at rate 0, no release) the covariates of every run are the
    same, and the overlay's recorded traces must be draws of nv.simulate with those covariates:
    per-run vesicles, vesicle-steps, docks per node and censored vesicles agree (Welch |z| < 4,
    160 overlay runs against 400 simulated ones)."""
    net = eqx.nn.MLP(3, 2, 4, depth=2, key=jax.random.key(0), dtype=jnp.float32)
    ov = nv.overlay.Overlay.from_network(net, content_dim=1, release=(), capacity=256, n_types=2)
    p = ov.model.default_params()
    u = np.array([[-0.5, 0.8, -0.6, 0.4], [0.3, -0.5, 0.2, 0.0]])  # emission follows the covariates
    p = p.replace(u=u, w=np.array([[-1.0, 0.0, 0.7, 0.0], [-2.0, 0.5, 0.0, 0.0]]), delta=np.array([0.1, 0.2]))
    batches, opt = _batches(25), optax.sgd(0.0)
    runs = [nv.overlay.train(ov, net, opt, _loss, batches, n_steps=25, key=k, params=p, record=True,
                             progress=False).traces for k in range(160)]
    F = runs[0].features[0]
    for tr in runs[1:3]:
        np.testing.assert_array_equal(tr.features[0], F)  # frozen: the same covariates in every run
    assert np.std(F[:, :, 0]) > 0.1  # and they do vary over steps and sites
    sim = nv.simulate(ov.model, p, n_steps=25, n_runs=400, key=1, covariates=F)

    def stats(traces_list):
        rows = []
        for tr in traces_list:
            v, s = tr.vesicles, tr.steps
            for r in range(tr.n_runs):
                vr, sr = v[v.run == r], s[s.run == r]
                docks = np.bincount(sr[sr.docked].node_to.map(ov.substrate.labels.index), minlength=3)
                rows.append([len(vr), len(sr), *docks, int((vr.death_cause == "censored").sum())])
        return np.array(rows)

    a, b = stats(runs), stats([sim])
    z = [_z(a[:, j], b[:, j]) for j in range(a.shape[1])]
    assert np.max(np.abs(z)) < 4, z


def _density_vs_explicit_setup(mode):
    net = eqx.nn.MLP(3, 2, 4, depth=1, key=jax.random.key(1), dtype=jnp.float32)
    ov = nv.overlay.Overlay.from_network(net, content_dim=2, release=("act",), capacity=256, mode=mode,
                                         act_tau=2.0)
    p = ov.model.default_params()
    # emission and docking do not follow the covariates, so every run sees the same process
    p = p.replace(u=np.array([[0.3, 0, 0, 0]]), w=np.array([[-0.5, 0, 0, 0]]), delta=np.array([0.15]),
                  content_mean=np.array([[0.8, -0.4]]), content_scale=np.array([[0.5, 1.0]]))
    return net, ov, p


def test_density_mode_expected_release_is_the_explicit_mean():
    """The density mode's FiLM release (γ, β per unit after 15 steps) and docks per site
    and step equal the mean over 300 explicit runs within 4 standard errors."""
    batches, opt = _batches(15), optax.sgd(0.0)
    net, ovd, p = _density_vs_explicit_setup("density")
    phi = ovd.init_release(0, scale=1.0)
    kw = dict(n_steps=15, params=p, release_params=phi, train_release=False, progress=False)
    dens = nv.overlay.train(ovd, net, opt, _loss, batches, **kw)
    _, ove, _ = _density_vs_explicit_setup("explicit")
    coefs, docks = [], []
    for k in range(300):
        r = nv.overlay.train(ove, net, opt, _loss, batches, key=k, **kw)
        coefs.append(np.concatenate([np.asarray(m.gamma) for m in r.modulated_net.layers]
                                    + [np.asarray(m.beta) for m in r.modulated_net.layers]))
        docks.append(r.metrics["docks"])
    coefs, docks = np.array(coefs), np.array(docks)
    expect = np.concatenate([np.asarray(m.gamma) for m in dens.modulated_net.layers]
                            + [np.asarray(m.beta) for m in dens.modulated_net.layers])
    z = (coefs.mean(0) - expect) / (coefs.std(0, ddof=1) / np.sqrt(len(coefs)))
    assert np.max(np.abs(z)) < 4, z
    zd = (docks.mean(0) - dens.metrics["docks"]) / (docks.std(0, ddof=1) / np.sqrt(len(docks)) + 1e-12)
    assert np.max(np.abs(zd)) < 4.5, zd  # 30 cells: 4.5 SE keeps the family-wise false alarm below 1e-3


def test_density_mode_gradients_match_finite_differences():
    """The gradient of the training loss with respect to the release maps and to the
    vesicle parameters (through the expected release of the last step) equals central
    finite differences (float64, relative 1e-6): of the objective itself for the FiLM
    and memory maps and the vesicle parameters; for the parameter and rule maps, whose
    change acts through the weights of the next step, of the loss at the weights
    ``θ + d(φ) − d(φ₀)`` (the one-step lookahead of nvppl.overlay.step)."""
    net = eqx.nn.MLP(3, 2, 4, depth=1, key=jax.random.key(2), dtype=jnp.float64)
    ov = nv.overlay.Overlay.from_network(net, content_dim=2, release=nv.overlay.OPERATORS, mode="density",
                                         act_tau=1.0)
    p = ov.model.default_params().replace(content_mean=np.array([[0.5, -1.0]]))
    phi = jax.tree.map(lambda a: a + 0.1, ov.init_release(3, scale=0.5))
    opt = optax.sgd(0.05)
    train_v = ("u", "w", "content_mean")
    state, static = ovstep.init_state(ov, net, opt, phi, optax.sgd(0.0), jax.tree.map(jnp.asarray, p),
                                      optax.sgd(0.0), train_v)
    step = ovstep.make_step(ov, static, _loss, opt, optax.sgd(0.0), optax.sgd(0.0), train_v)
    jstep = jax.jit(step)
    batches = _batches(4, dtype=jnp.float64)
    for k, b in enumerate(batches[:3]):
        state, _ = jstep(state, b, jax.random.key(k))
    x, y = batches[3]
    probes = [jnp.zeros((3, s.width)) for s in ov.sites]
    vtrain = {k: getattr(state.vparams, k) for k in train_v}

    def f(phi, vtrain):
        return step.objective(state.theta, phi, vtrain, probes, state, x, y)[0]

    _, (_, g_phi, g_v, _) = jax.jit(step.gradients)(state.theta, phi, vtrain, probes, state, x, y)
    rel = state.rel
    lookahead = ("U", "V", "eta", "W_alpha", "b_beta")

    def sums(vt):
        return expectation.step(ov.model, state.vparams.replace(**vt), rel.dens_prev, rel.F_prev)[1]

    def weight_change(q, vt):
        D, S, S2 = sums(vt)
        d = {(i, "weight"): w for i, w in enumerate(release.rank_one(ov, q, S2))}
        for k, v in ovstep._rule_deltas(ov, release.rule_maps(ov, q, S, D), rel.update).items():
            d[k] = d[k] + v if k in d else v
        return d

    d0 = weight_change(phi, vtrain)

    def f_look_v(vt):
        d = weight_change(phi, vt)
        theta = ovstep._add_at_sites(ov, state.theta, {k: d[k] - d0[k] for k in d})
        return step.objective(theta, phi, vt, probes, state, x, y)[0]

    def f_look(q):
        d = weight_change(q, vtrain)
        theta = ovstep._add_at_sites(ov, state.theta, {k: d[k] - d0[k] for k in d})
        return step.objective(theta, phi, vtrain, probes, state, x, y)[0]

    rng = np.random.default_rng(0)
    checked = 0
    for name in ("W_act", "b_act", "U", "V", "eta", "W_alpha", "b_beta", "W_write", "R"):
        for site in range(ov.n_sites):
            leaf = getattr(phi, name)[site]
            idx = tuple(rng.integers(0, s) for s in leaf.shape)
            eps = 1e-5

            def at(d, name=name, site=site, idx=idx):
                arr = getattr(phi, name)[site].at[idx].add(d)
                tup = tuple(arr if i == site else a for i, a in enumerate(getattr(phi, name)))
                q = phi._replace(**{name: tup})
                return float(f_look(q) if name in lookahead else f(q, vtrain))

            fd = (at(eps) - at(-eps)) / (2 * eps)
            an = float(getattr(g_phi, name)[site][idx])
            assert an == pytest.approx(fd, rel=1e-6, abs=1e-9), (name, site, an, fd)
            checked += abs(an) > 1e-8
    for name in train_v:
        leaf = vtrain[name]
        for idx in [tuple(rng.integers(0, s) for s in leaf.shape) for _ in range(2)]:
            eps = 1e-5
            fd = (float(f_look_v({**vtrain, name: leaf.at[idx].add(eps)}))
                  - float(f_look_v({**vtrain, name: leaf.at[idx].add(-eps)}))) / (2 * eps)
            an = float(g_v[name][idx])
            assert an == pytest.approx(fd, rel=1e-6, abs=1e-9), (name, idx, an, fd)
            checked += abs(an) > 1e-8
    assert checked >= 15  # most of the derivatives checked are not zero
