"""The HMN rule (hmn eq. 1–11, appendix 10.4) against a plain-loop NumPy transcription of the appendix.

The reference :class:`Ref` below walks over synapses one at a time in float64,
written from the paper's equations and the definitions of the module docstring
(h_i, c_j, h(E_k, C)), without any segment sum, softmax or vectorised code.
"""

import dataclasses
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nvppl as nv
from nvppl.snn import hmn

# A tiny network: 3 presynaptic units, 4 postsynaptic; post 0 has three inputs (one of them doubled),
# post 2 a single input, post 3 none.
PRE = np.array([0, 1, 2, 2, 0, 1, 2])
POST = np.array([0, 0, 0, 0, 1, 1, 2])
N_PRE, N_POST = 3, 4


def _syn(plastic=None):
    return hmn.Synapses(PRE, POST, N_PRE, N_POST, plastic=plastic)


class Ref:
    """Appendix 10.4 for one network, synapse by synapse, in float64."""

    def __init__(self, cfg, phase):
        E = len(PRE)
        self.cfg = cfg
        self.psi_f, self.psi_s = np.zeros(E), np.zeros(E)
        self.h, self.c = np.zeros((N_PRE, 2)), np.zeros((N_POST, 2))
        self.phase = np.asarray(phase, float)
        self.n = 0

    def activate(self, w, x, b, eps):
        z = np.zeros(N_POST)
        for j in range(N_POST):
            total = 0.0
            for e in range(len(PRE)):
                if POST[e] == j:
                    total += w[e] * x[PRE[e]]
            u = total + b[j] + self.cfg.sigma * eps[j]
            z[j] = max(0.0, u) if self.cfg.activation == "relu" else 1.0 / (1.0 + math.exp(-u))
        return z

    def record(self, x, z):
        cfg = self.cfg
        df, ds = math.exp(-1 / cfg.tau_fast), math.exp(-1 / cfg.tau_slow)
        for e in range(len(PRE)):
            coincidence = x[PRE[e]] * z[POST[e]]
            self.psi_f[e] = df * self.psi_f[e] + coincidence
            if cfg.slow:
                self.psi_s[e] = ds * self.psi_s[e] + coincidence
        for i in range(N_PRE):
            self.h[i] = [df * self.h[i, 0] + (1 - df) * x[i], ds * self.h[i, 1] + (1 - ds) * x[i]]
        for j in range(N_POST):
            self.c[j] = [df * self.c[j, 0] + (1 - df) * z[j], ds * self.c[j, 1] + (1 - ds) * z[j]]
        self.n += 1

    @staticmethod
    def similarity(a, b):
        na, nb = math.sqrt(a @ a), math.sqrt(b @ b)
        return 0.0 if na == 0 or nb == 0 else float(a @ b) / (na * nb)

    def alpha(self, e):
        cfg = self.cfg
        if not cfg.local_attention:
            return 1.0
        j = POST[e]
        num = math.exp(cfg.beta_a * self.similarity(self.h[PRE[e]], self.c[j]))
        den = sum(math.exp(cfg.beta_a * self.similarity(self.h[PRE[l]], self.c[j]))
                  for l in range(len(PRE)) if POST[l] == j)
        fan_in = sum(1 for l in range(len(PRE)) if POST[l] == j)
        return num / den * (fan_in if cfg.attention_scale else 1)

    def modulator(self, wk, E, C):
        cfg = self.cfg
        G = sum(w * e for w, e in zip(wk, E))
        if not cfg.global_attention:
            return G, G, [1.0] * len(E)
        scores = [math.exp(cfg.beta_g * abs(E[k]) / math.sqrt(C[k] + 1e-8)) for k in range(len(E))]
        gamma = [s / sum(scores) * (len(E) if cfg.attention_scale else 1) for s in scores]
        return G, sum(g * w * e for g, w, e in zip(gamma, wk, E)), gamma

    def update(self, M, eta, U, plastic):
        cfg = self.cfg
        out = {k: np.zeros(len(PRE)) for k in ("e_tilde", "star", "dagger", "p", "dw")}
        big_phi = 2 * math.pi * cfg.freq * self.n + cfg.phase0
        for e in range(len(PRE)):
            elig = self.psi_f[e] + (self.psi_s[e] if cfg.slow else 0.0)
            e_tilde = self.alpha(e) * elig
            m = M if np.ndim(M) == 0 else M[e]
            star = eta[0] * e_tilde + eta[1] * m * e_tilde
            dagger = star * (max(0.0, math.cos(big_phi - self.phase[e])) if cfg.phase_gate else 1.0)
            p = 1 / (1 + math.exp(-cfg.beta_p * (abs(dagger) - cfg.theta_p))) if cfg.prob_gate else 1.0
            apply = (U[e] < p) if cfg.prob_gate else True
            out["e_tilde"][e], out["star"][e], out["dagger"][e], out["p"][e] = e_tilde, star, dagger, p
            out["dw"][e] = dagger if (apply and plastic[e]) else 0.0
        return out


def _drive(cfg, n_ticks=4, seed=0, M_kind="global", plastic=None):
    """Run HMN and Ref side by side for a few ticks; return both updates of the last tick."""
    rng = np.random.default_rng(seed)
    syn = _syn(plastic)
    E = len(PRE)
    phase = rng.uniform(0, 2 * math.pi, E)
    st = hmn.init(cfg, syn, phase=phase)
    ref = Ref(cfg, phase)
    w = rng.normal(0.3, 0.5, E)
    b = rng.normal(0, 0.2, N_POST)
    for _ in range(n_ticks):
        x = rng.uniform(0, 1, N_PRE) * (rng.random(N_PRE) < 0.7)
        eps = rng.normal(size=N_POST)
        z = hmn.activate(cfg, syn, w, x, b=b, eps=eps if cfg.sigma > 0 else None)
        z_ref = ref.activate(w, x, b, eps)
        np.testing.assert_allclose(np.asarray(z), z_ref, rtol=1e-5, atol=1e-6)
        st = hmn.eligibility_step(cfg, syn, st, x, z_ref)
        ref.record(x, z_ref)
    M = float(rng.normal()) if M_kind == "global" else rng.normal(size=E)
    eta = np.array([0.05, 0.7])
    U = rng.random(E)
    dw, st2, info = hmn.update(cfg, syn, st, M, eta=eta, uniforms=U if cfg.prob_gate else None)
    out = ref.update(M, eta, U, np.ones(E, bool) if plastic is None else plastic)
    return dw, info, out, st, st2, ref


COMBOS = list(itertools.product([False, True], repeat=4))


@pytest.mark.parametrize("slow,phase_gate,prob_gate,local_attention", COMBOS)
@pytest.mark.parametrize("delivery", ["global", "vesicle"])
def test_update_matches_appendix_loop(slow, phase_gate, prob_gate, local_attention, delivery):
    """Every switch combination of eq. 2–5, 8–9 against the synapse-by-synapse loop of appendix 10.4.
    Catches a trace added when the slow part is off, a softmax over the wrong synapses (post instead of
    pre grouping), a phase read at the wrong tick, a gate applied to Δw* instead of Δw†, a broadcast
    error in the per-synapse field m, and an update applied where the Bernoulli draw said no."""
    cfg = hmn.HMNConfig(slow=slow, phase_gate=phase_gate, prob_gate=prob_gate, local_attention=local_attention,
                        delivery=delivery, sigma=0.3, tau_fast=1.5, tau_slow=6.0, freq=0.13, phase0=0.4,
                        beta_p=8.0, theta_p=0.1, beta_a=2.5)
    dw, info, out, *_ = _drive(cfg, M_kind=delivery)
    for name, got in (("e_tilde", info.e_tilde), ("star", info.dw_star), ("dagger", info.dw_dagger),
                      ("p", info.p_apply), ("dw", dw)):
        np.testing.assert_allclose(np.asarray(got), out[name], rtol=2e-5, atol=1e-6, err_msg=name)
    if prob_gate:  # the case must exercise both outcomes of the gate somewhere in the suite
        assert 0.0 < float(np.mean(out["p"])) < 1.0


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_activation_matches_eq1(activation, sigma):
    """Eq. 1 with both f and with/without noise (checked at every tick inside ``_drive``); a key gives
    ε = jax.random.normal(key, (n_post,)). Catches a segment sum over the wrong index, a missing bias,
    noise added outside f, or a noise draw that does not follow the documented key."""
    cfg = hmn.HMNConfig(activation=activation, sigma=sigma)
    _drive(cfg, n_ticks=2)
    syn = _syn()
    w, x, key = jnp.linspace(-1, 1, len(PRE)), jnp.array([0.2, 1.0, 0.5]), jax.random.PRNGKey(3)
    if sigma > 0:
        eps = jax.random.normal(key, (N_POST,), jnp.float32)
        np.testing.assert_array_equal(hmn.activate(cfg, syn, w, x, key=key), hmn.activate(cfg, syn, w, x, eps=eps))
        assert not np.array_equal(hmn.activate(cfg, syn, w, x, key=key),
                                  hmn.activate(cfg, syn, w, x, key=jax.random.PRNGKey(4)))
    else:
        assert float(hmn.activate(cfg, syn, w, x)[3]) == (0.0 if activation == "relu" else 0.5)  # no inputs


def test_eligibility_is_the_sum_of_decayed_coincidences():
    """Appendix 10.1: a single coincidence x z at tick 1 gives ψ_f = x z e^{−k/τ_f} and ψ_s = x z e^{−k/τ_s}
    k ticks later. Catches a decay by the wrong time constant or a normalised (1 − d) increment."""
    cfg = hmn.HMNConfig(tau_fast=2.0, tau_slow=9.0)
    syn = hmn.Synapses([0], [0], 1, 1)
    st = hmn.eligibility_step(cfg, syn, hmn.init(cfg, syn), jnp.array([0.8]), jnp.array([0.5]))
    for _ in range(3):
        st = hmn.eligibility_step(cfg, syn, st, jnp.array([0.0]), jnp.array([0.7]))
    np.testing.assert_allclose(float(st.psi_fast[0]), 0.4 * math.exp(-3 / 2.0), rtol=1e-6)
    np.testing.assert_allclose(float(st.psi_slow[0]), 0.4 * math.exp(-3 / 9.0), rtol=1e-6)
    np.testing.assert_allclose(float(hmn.eligibility(cfg, st)[0]), 0.4 * (math.exp(-1.5) + math.exp(-1 / 3)),
                               rtol=1e-6)
    assert int(st.t) == 4


@pytest.mark.parametrize("global_attention", [False, True])
@pytest.mark.parametrize("attention_scale", [False, True])
def test_modulator_matches_eq_6_10_11(global_attention, attention_scale):
    """G = Σ w_k E_k; G′ = Σ γ_k w_k E_k with γ = softmax(β_g |E_k|/√C_k) (× K when scaled); off: G′ = G.
    Catches a softmax over the weighted signals, a missing |·|, or a C used before its update."""
    cfg = hmn.HMNConfig(global_attention=global_attention, attention_scale=attention_scale, beta_g=1.7)
    wk, E, C = [1.0, 0.4, -0.6], [0.3, -1.2, 0.5], [0.5, 2.0, 0.1]
    G, Gp, gamma = hmn.modulator(cfg, jnp.array(wk), jnp.array(E), jnp.array(C))
    rG, rGp, rgamma = Ref(cfg, np.zeros(len(PRE))).modulator(wk, E, C)
    np.testing.assert_allclose([float(G), float(Gp)], [rG, rGp], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gamma), rgamma, rtol=1e-5)
    if global_attention:
        assert abs(float(Gp) - float(G)) > 1e-3   # attention changes something on this case
    C2 = hmn.context_step(dataclasses.replace(cfg, tau_context=4.0), jnp.array(C), jnp.array(E))
    rho = math.exp(-1 / 4.0)
    np.testing.assert_allclose(np.asarray(C2), rho * np.array(C) + (1 - rho) * np.square(E), rtol=1e-6)


def test_segment_softmax_sums_to_one_per_post_neuron():
    """Σ α over the inputs of each postsynaptic unit is 1 (K_j with fan-in scaling), also with large
    scores. Catches a softmax over all synapses, or an overflow without the max shift."""
    rng = np.random.default_rng(1)
    seg = jnp.asarray(rng.integers(0, 5, 60))
    s = jnp.asarray(rng.normal(0, 30, 60), jnp.float32)
    a = hmn.segment_softmax(s, seg, 6)
    sums = np.asarray(jax.ops.segment_sum(a, seg, num_segments=6))
    present = np.bincount(np.asarray(seg), minlength=6) > 0
    np.testing.assert_allclose(sums[present], 1.0, rtol=1e-5)
    assert np.all(np.isfinite(np.asarray(a)))
    for scale in (False, True):
        cfg = hmn.HMNConfig(attention_scale=scale, beta_a=3.0)
        *_, st, _, _ = _drive(cfg)
        alpha = hmn.local_attention(cfg, _syn(), st)
        per_post = np.asarray(jax.ops.segment_sum(alpha, jnp.asarray(POST), num_segments=N_POST))[:3]
        np.testing.assert_allclose(per_post, np.bincount(POST)[:3] if scale else 1.0, rtol=1e-5)


@pytest.mark.slow
def test_probabilistic_gate_frequency_matches_sigmoid():
    """Eq. 5: over 4000 keys each synapse is updated with frequency σ(β_p(|Δw†| − θ_p)), within 5 binomial
    standard errors √(p(1−p)/n). Catches a gate on Δw* or a comparison the wrong way round (1 − p)."""
    cfg = hmn.HMNConfig(sigma=0.0, slow=False, phase_gate=False, local_attention=False, prob_gate=True,
                        beta_p=20.0, theta_p=0.1)
    syn = hmn.Synapses([0, 0, 0, 0], [0, 1, 2, 3], 1, 4)
    st = hmn.init(cfg, syn)
    st = hmn.eligibility_step(cfg, syn, st, jnp.array([1.0]), jnp.array([0.02, 0.08, 0.1, 0.15]))
    n = 4000
    keys = jax.random.split(jax.random.PRNGKey(11), n)
    applied = jax.vmap(lambda k: hmn.update(cfg, syn, st, -1.0, key=k, eta=jnp.array([0.0, 1.0]))[2].applied)(keys)
    freq = np.asarray(applied).mean(0)
    dagger = np.array([0.02, 0.08, 0.1, 0.15])
    p = 1 / (1 + np.exp(-20.0 * (dagger - 0.1)))
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) < 5 * se), (freq, p, se)


SWITCHED = {"noise": dict(sigma=0.0), "slow": dict(slow=False), "phase_gate": dict(phase_gate=False),
            "prob_gate": dict(prob_gate=False), "local_attention": dict(local_attention=False),
            "global_attention": dict(global_attention=False)}


@pytest.mark.parametrize("name", list(SWITCHED))
def test_run_time_switch_equals_config_switch(name):
    """A component off through :class:`Switches` (traced, under jit) gives exactly the result of the config
    with it off, and an all-on Switches changes nothing. Catches a run-time switch that only scales a
    component instead of removing it, or one that leaks into another component."""
    on = hmn.HMNConfig(sigma=0.4, beta_a=2.0, beta_g=1.5, beta_p=5.0, theta_p=0.05, freq=0.2)
    off = dataclasses.replace(on, **SWITCHED[name])
    syn = _syn()
    rng = np.random.default_rng(5)
    E = len(PRE)
    xs, eps = rng.random((3, N_PRE)), rng.normal(size=(3, N_POST))
    w, U = jnp.asarray(rng.normal(size=E)), jnp.asarray(rng.random(E), jnp.float32)
    sig, C = jnp.array([0.4, -0.9]), jnp.array([0.3, 1.0])

    def run(cfg, switches):
        st = hmn.init(cfg, syn, key=jax.random.PRNGKey(0))
        for x, ep in zip(xs, eps):
            z = hmn.activate(cfg, syn, w, x, eps=ep if cfg.sigma > 0 else None, switches=switches)
            st = hmn.eligibility_step(cfg, syn, st, x, z)
        _, Gp, _ = hmn.modulator(cfg, jnp.array([1.0, 0.5]), sig, C, switches)
        return hmn.update(cfg, syn, st, Gp, eta=jnp.array([0.1, 0.8]), uniforms=U if cfg.prob_gate else None,
                          switches=switches)[0]

    flag = jnp.asarray(False)
    via_switch = jax.jit(lambda f: run(on, hmn.Switches(**{name: f})))(flag)
    np.testing.assert_allclose(np.asarray(via_switch), np.asarray(run(off, None)), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(run(on, hmn.Switches())), np.asarray(run(on, None)))
    assert not np.allclose(np.asarray(run(on, None)), np.asarray(run(off, None)))


def test_non_plastic_synapses_do_not_learn_and_update_jits():
    """``plastic=False`` synapses get dw = 0 (also under jit, with Synapses passed as a pytree argument);
    the same key gives the same result. Catches a plastic mask lost when the edge list is flattened."""
    plastic = np.array([True, False, True, True, False, True, True])
    cfg = hmn.HMNConfig(phase_gate=False, sigma=0.0)
    dw, info, out, st, _, _ = _drive(cfg, plastic=plastic)
    assert np.all(np.asarray(dw)[~plastic] == 0.0) and np.any(np.asarray(info.dw_dagger)[~plastic] != 0)
    f = jax.jit(lambda syn, st, key: hmn.update(cfg, syn, st, 0.5, key=key)[0])
    a = f(_syn(plastic), st, jax.random.PRNGKey(2))
    np.testing.assert_array_equal(a, f(_syn(plastic), st, jax.random.PRNGKey(2)))
    assert np.all(np.asarray(a)[~plastic] == 0.0)


def test_synapses_from_network_and_dense():
    """The edge list of a LIFNetwork (inputs then neurons as presynaptic units) and the dense layout."""
    net = nv.snn.LIFNetwork(2, 3, pre=[0, 1, 3, 4], post=[0, 1, 2, 0], weights=[1, 1, 1, 1])
    syn = hmn.Synapses.from_network(net)
    assert (syn.n_pre, syn.n_post, syn.n_synapses) == (5, 3, 4)
    np.testing.assert_array_equal(syn.plastic, np.asarray(net.plastic))
    d = hmn.Synapses.dense(2, 3)
    np.testing.assert_array_equal(d.pre, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(d.post, [0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("kwargs,field", [
    (dict(activation="tanh"), "HMNConfig.activation"), (dict(sigma=-0.1), "HMNConfig.sigma"),
    (dict(tau_slow=0.0), "HMNConfig.tau_slow"), (dict(tau_fast=float("nan")), "HMNConfig.tau_fast"),
    (dict(beta_p=-1.0), "HMNConfig.beta_p"), (dict(theta_p=-0.5), "HMNConfig.theta_p"),
    (dict(freq=-0.1), "HMNConfig.freq"), (dict(delivery="radio"), "HMNConfig.delivery"),
    (dict(slow=1), "HMNConfig.slow"), (dict(beta_a=True), "HMNConfig.beta_a"),
    (dict(eta_global=float("inf")), "HMNConfig.eta_global"),
])
def test_bad_config_names_the_field(kwargs, field):
    """Each bad value raises a ValueError that names the field."""
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        hmn.HMNConfig(**kwargs)


def test_bad_inputs_are_refused():
    """Out-of-range synapse ends name the synapse; a modulator of the wrong shape for the delivery, a
    missing key for the gate or the noise, and a phase of the wrong length are refused."""
    with pytest.raises(ValueError, match=r"Synapses.post\[1\] = 7: synapse 1"):
        hmn.Synapses([0, 1], [0, 7], 2, 2)
    with pytest.raises(ValueError, match="one entry per synapse"):
        hmn.Synapses([0, 1], [0], 2, 2)
    syn = _syn()
    cfg = hmn.HMNConfig()
    st = hmn.init(cfg, syn)
    with pytest.raises(ValueError, match="scalar modulator"):
        hmn.update(cfg, syn, st, jnp.ones(len(PRE)), key=0)
    with pytest.raises(ValueError, match="one value per synapse"):
        hmn.update(dataclasses.replace(cfg, delivery="vesicle"), syn, st, 1.0, key=0)
    with pytest.raises(ValueError, match="key or uniforms"):
        hmn.update(cfg, syn, st, 1.0)
    with pytest.raises(ValueError, match="key or eps"):
        hmn.activate(cfg, syn, jnp.zeros(len(PRE)), jnp.zeros(N_PRE))
    with pytest.raises(ValueError, match="phase must have one entry per synapse"):
        hmn.init(cfg, syn, phase=np.zeros(3))
    with pytest.raises(ValueError, match="unknown switch 'gates'"):
        hmn.Switches.without("gates")
