"""Two-point SPSA for the HMN rates (hmn eq. 7, appendix 10.2–10.3) against the pseudocode by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nvppl.snn import spsa


def test_step_follows_the_pseudocode():
    """One step by hand: (k_Δ, k_L) = split(key), s = 2·Bernoulli(k_Δ, ½) − 1, Δ = ε₀ s (t = 1),
    L± = loss(η ± Δ, k_L) with the same key, ĝ = (L₊ − L₋)/(2Δ), η ← clip(η − α ĝ). Catches a sign
    flip of ĝ, a gradient divided by ε instead of Δ, a decay applied at the first step, and losses
    evaluated with different keys (no common random numbers)."""
    cfg = spsa.SPSAConfig(alpha_meta=[0.1, 0.02], eta_min=0.0, eta_max=5.0)
    eta0 = np.array([0.4, 2.0])
    st = spsa.init(cfg, eta0)
    np.testing.assert_allclose(np.asarray(st.eps0), 0.05 * eta0, rtol=1e-6)
    key = jax.random.PRNGKey(42)
    target = np.array([1.0, 1.5])
    seen = []

    def loss(eta, k):
        seen.append(np.asarray(jax.random.key_data(k) if jnp.issubdtype(k.dtype, jax.dtypes.prng_key) else k))
        return jnp.sum((eta - target) ** 2 * jnp.array([1.0, 3.0]))

    new, info = spsa.step(cfg, st, loss, key)
    k_delta, k_loss = jax.random.split(key)
    s = 2.0 * np.asarray(jax.random.bernoulli(k_delta, 0.5, (2,)), float) - 1.0
    delta = 0.05 * eta0 * s
    lp = np.sum((eta0 + delta - target) ** 2 * [1, 3])
    lm = np.sum((eta0 - delta - target) ** 2 * [1, 3])
    g = (lp - lm) / (2 * delta)
    np.testing.assert_allclose(np.asarray(info.delta), delta, rtol=1e-6)
    np.testing.assert_allclose([float(info.loss_plus), float(info.loss_minus)], [lp, lm], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(info.g_hat), g, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(new.eta), np.clip(eta0 - np.array([0.1, 0.02]) * g, 0, 5), rtol=1e-5)
    assert int(new.t) == 1
    assert len(seen) == 2 and np.array_equal(seen[0], seen[1]) and np.array_equal(seen[0], np.asarray(k_loss))


def test_perturbation_decays_as_one_over_sqrt_t():
    """|Δ| = ε₀/√t at steps t = 1…6, per coordinate, with both signs drawn over the steps. Catches a decay
    by 1/t, a counter that does not advance, or one ε for all coordinates."""
    cfg = spsa.SPSAConfig(alpha_meta=0.1)
    st = spsa.init(cfg, [0.2, 3.0])
    signs = []
    for t in range(1, 7):
        delta, st = spsa.perturbation(cfg, st, jax.random.PRNGKey(t))
        np.testing.assert_allclose(np.abs(np.asarray(delta)), np.array([0.01, 0.15]) / math.sqrt(t), rtol=1e-6)
        signs.append(np.sign(np.asarray(delta)))
        st, _ = spsa.apply(cfg, st, delta, 1.0, 1.0)   # equal losses: η unchanged
    np.testing.assert_allclose(np.asarray(st.eta), [0.2, 3.0], rtol=1e-7)
    assert {1.0, -1.0} <= set(np.concatenate(signs).tolist())


def test_update_is_clipped_to_the_bounds():
    """A steep loss pushes η past η_max (one coordinate) and below η_min (the other): η lands exactly
    on the bounds; the evaluated points η ± Δ are not clipped. Catches a missing or swapped clip."""
    cfg = spsa.SPSAConfig(alpha_meta=10.0, eta_min=[0.1, 0.0], eta_max=[1.0, 2.0])
    st = spsa.init(cfg, [0.5, 1.0])
    evaluated = []

    def loss(eta, k):
        evaluated.append(np.asarray(eta))
        return -100.0 * eta[0] + 100.0 * eta[1]

    new, _ = spsa.step(cfg, st, loss, 7)
    np.testing.assert_allclose(np.asarray(new.eta), [1.0, 0.0])
    np.testing.assert_allclose(np.abs(evaluated[0] - np.array([0.5, 1.0])), [0.025, 0.05], rtol=1e-5)


def test_common_random_numbers_cancel_additive_noise():
    """With the same key at η ± Δ, a loss with key-dependent additive noise gives the noiseless ĝ exactly
    (to float32). Catches different keys for L₊ and L₋."""
    cfg = spsa.SPSAConfig(alpha_meta=0.05)
    st = spsa.init(cfg, [1.0, 1.0])
    quad = lambda eta: jnp.sum((eta - 2.0) ** 2)  # noqa: E731
    noisy = lambda eta, k: quad(eta) + 50.0 * jax.random.normal(k)  # noqa: E731
    _, a = spsa.step(cfg, st, noisy, 3)
    _, b = spsa.step(cfg, st, lambda eta, k: quad(eta), 3)
    np.testing.assert_allclose(np.asarray(a.g_hat), np.asarray(b.g_hat), rtol=1e-3, atol=1e-3)


def test_converges_on_a_quadratic_and_runs_under_jit():
    """300 jitted steps on a noisy quadratic (noise sd 0.05, common random numbers) reach the minimum
    (3, 0.5) within 0.05; perturbation + apply equals step. Catches an ascent instead of a descent, and
    state that cannot be carried through jit."""
    cfg = spsa.SPSAConfig(alpha_meta=[0.1, 0.1], eta_min=0.0, eta_max=10.0)
    opt = jnp.array([3.0, 0.5])
    loss = lambda eta, k: jnp.sum((eta - opt) ** 2) + 0.05 * jax.random.normal(k)  # noqa: E731
    step = jax.jit(lambda st, k: spsa.step(cfg, st, loss, k))
    st = spsa.init(cfg, [1.0, 2.0])
    for t in range(300):
        st, info = step(st, jax.random.PRNGKey(t))
    np.testing.assert_allclose(np.asarray(st.eta), [3.0, 0.5], atol=0.05)
    st0 = spsa.init(cfg, [1.0, 2.0])
    k_delta, k_loss = jax.random.split(jax.random.PRNGKey(9))
    delta, st1 = spsa.perturbation(cfg, st0, k_delta)
    st1, g = spsa.apply(cfg, st1, delta, loss(st1.eta + delta, k_loss), loss(st1.eta - delta, k_loss))
    st2, info2 = spsa.step(cfg, st0, loss, 9)
    np.testing.assert_allclose(np.asarray(st1.eta), np.asarray(st2.eta), rtol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(alpha_meta=-0.1), r"SPSAConfig\.alpha_meta\[0\]"),
    (dict(alpha_meta=[0.1, float("nan")]), r"SPSAConfig\.alpha_meta\[1\]"),
    (dict(eta_min=[0.0, 2.0], eta_max=[1.0, 1.0]), r"SPSAConfig\.eta_min\[1\] = 2.0 exceeds eta_max\[1\]"),
    (dict(eta_min=[0.0, 0.0, 0.0], eta_max=[1.0, 1.0]), r"SPSAConfig\.eta_min \(3 values\)"),
    (dict(eps_frac=0.0), r"SPSAConfig\.eps_frac"),
    (dict(eta_max="big"), r"SPSAConfig\.eta_max"),
])
def test_bad_config_names_the_field(kwargs, match):
    """Each bad value raises a ValueError naming the field (and the coordinate)."""
    with pytest.raises(ValueError, match=match):
        spsa.SPSAConfig(**kwargs)


def test_bad_start_is_refused():
    """η₀ = 0 without ε₀ (no perturbation), η₀ outside the bounds, and a config with the wrong number of
    coordinates are refused, naming the coordinate."""
    cfg = spsa.SPSAConfig(alpha_meta=0.1, eta_min=0.0, eta_max=1.0)
    with pytest.raises(ValueError, match=r"eta0\[1\] = 0"):
        spsa.init(cfg, [0.5, 0.0])
    assert float(spsa.init(cfg, [0.5, 0.0], eps0=[0.01, 0.01]).eps0[1]) == pytest.approx(0.01)
    with pytest.raises(ValueError, match=r"eps0\[0\] must be a positive"):
        spsa.init(cfg, [0.5, 0.5], eps0=[0.0, 0.1])
    with pytest.raises(ValueError, match=r"eta0\[0\] = 2.0 lies outside"):
        spsa.init(cfg, [2.0, 0.5])
    with pytest.raises(ValueError, match="alpha_meta has 3 values; η has 2"):
        spsa.init(spsa.SPSAConfig(alpha_meta=[0.1, 0.1, 0.1]), [0.5, 0.5])
