"""The pure JAX kernels against their equations, computed independently here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from nvppl.kernels import decay, docking, emission, migration, release

RNG = np.random.default_rng(0)


def test_emission_rate_and_log_rate_for_both_links():
    X = np.concatenate([np.ones((5, 1)), RNG.normal(size=(5, 2))], 1)
    u = RNG.normal(size=(3, 3))
    r_max = np.array([0.5, 1.0, 2.0])
    expect = r_max * expit(X @ u.T)
    np.testing.assert_allclose(emission.emission_rate(X, u, r_max, "sigmoid"), expect, rtol=1e-12)
    np.testing.assert_allclose(np.exp(emission.log_emission_rate(X, u, r_max, "sigmoid")), expect, rtol=1e-12)
    np.testing.assert_allclose(emission.emission_rate(X, u, r_max, "log"), np.exp(X @ u.T), rtol=1e-12)
    counts = RNG.poisson(2.0, size=(5, 3)).astype(float)
    np.testing.assert_allclose(emission.emission_log_prob(counts, X, u, r_max, "sigmoid"),
                               stats.poisson.logpmf(counts, expect), rtol=1e-10)
    with pytest.raises(ValueError, match="link"):
        emission.emission_rate(X, u, r_max, "probit")


def test_design_matrix_and_content():
    F = RNG.normal(size=(4, 2))
    X = emission.design_matrix(F)
    np.testing.assert_array_equal(X[:, 0], 1.0)
    np.testing.assert_array_equal(X[:, 1:], F)
    mean, B = RNG.normal(size=(2, 3)), RNG.normal(size=(2, 2, 3))
    loc = emission.content_loc(F, mean, B)  # (4, K, d_c)
    np.testing.assert_allclose(loc[1, 0], mean[0] + F[1] @ B[0], rtol=1e-12)
    c, scale = RNG.normal(size=3), np.array([0.5, 1.0, 2.0])
    np.testing.assert_allclose(emission.content_log_prob(c, loc[1, 0], scale),
                               stats.norm.logpdf(c, loc[1, 0], scale).sum(), rtol=1e-12)


def test_migration_probabilities_with_and_without_tilt():
    T_row = np.array([0.2, 0.5, 0.3, 0.0])
    mask = np.array([True, True, True, False])
    lp = migration.move_log_probs(T_row, mask)
    np.testing.assert_allclose(np.exp(lp[:3]), T_row[:3], rtol=1e-12)
    assert lp[3] == -np.inf
    F_cand, v = RNG.normal(size=(4, 2)), RNG.normal(size=2)
    c, Q_cand = RNG.normal(size=1), RNG.normal(size=(4, 1))
    score = migration.tilt_score(F_cand, v, c, Q_cand)
    np.testing.assert_allclose(score, F_cand @ v + Q_cand @ c, rtol=1e-12)
    gamma = np.array(0.7)
    lp = migration.move_log_probs(T_row, mask, gamma, score)
    w = T_row[:3] * np.exp(0.7 * np.asarray(score)[:3])
    np.testing.assert_allclose(np.exp(lp[:3]), w / w.sum(), rtol=1e-12)
    assert lp[3] == -np.inf
    # a zero entry of T keeps probability zero under any tilt, with a finite gradient elsewhere
    T0 = np.array([0.0, 0.6, 0.4, 0.0])
    assert migration.move_log_probs(T0, mask, gamma, score)[0] == -np.inf
    g = jax.grad(lambda t: migration.move_log_probs(t, mask, gamma, score)[1])(jnp.asarray(T0))
    assert np.all(np.isfinite(g))


def test_docking_probability():
    X, w = RNG.normal(size=(6, 3)), RNG.normal(size=3)
    c, w_c = RNG.normal(size=(6, 2)), RNG.normal(size=2)
    p = expit(X @ w + c @ w_c)
    np.testing.assert_allclose(docking.dock_prob(X, w, c, w_c), p, rtol=1e-12)
    d = RNG.integers(0, 2, size=6).astype(float)
    z = docking.dock_logit(X, w, c, w_c)
    np.testing.assert_allclose(docking.dock_log_prob(d, z), stats.bernoulli.logpmf(d, p), rtol=1e-10)


@pytest.mark.parametrize("shape, rate", [(2.0, 0.5), (0.7, 1.3), (9.0, 0.2)])
def test_countdown_hazard_is_the_discretised_gamma(shape, rate):
    """P(L = k) = h_k Π_{j<k} (1 - h_j) equals P(k-1 < τ₀ <= k) for τ₀ ~ Gamma(shape, rate)."""
    ages = np.arange(1, 60)
    lh, ls = decay.countdown_log_hazard(ages, shape, rate)
    survival_before = np.concatenate([[0.0], np.cumsum(np.asarray(ls))[:-1]])
    pmf = np.exp(np.asarray(lh) + survival_before)
    g = stats.gamma(a=shape, scale=1 / rate)
    # the reference mass, from the CDF below the median and from the survival function above it
    exact = np.where(g.cdf(ages) < 0.5, g.cdf(ages) - g.cdf(ages - 1), g.sf(ages - 1) - g.sf(ages))
    np.testing.assert_allclose(pmf, exact, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(np.exp(lh) + np.exp(ls), 1.0, rtol=1e-12)
    grads = jax.grad(lambda a, b: decay.countdown_log_hazard(3, a, b)[0], argnums=(0, 1))(shape, rate)
    assert all(np.isfinite(x) for x in grads)


def test_geometric_hazard_and_absorption():
    lh, ls = decay.log_hazard("geometric", np.arange(1, 4), delta=np.array(0.1))
    np.testing.assert_allclose(np.exp(lh), 0.1)
    np.testing.assert_allclose(np.exp(ls), 0.9)
    np.testing.assert_allclose(decay.absorption_log_prob(1.0, 0.2), np.log(0.2))
    np.testing.assert_allclose(decay.absorption_log_prob(0.0, 0.2), np.log(0.8))
    assert decay.absorption_log_prob(0.0, 0.0) == 0.0  # a = 0 and nothing absorbed: certain
    np.testing.assert_allclose(decay.binomial_log_kernel(3.0, 10.0, 0.25), 3 * np.log(0.25) + 7 * np.log(0.75))


def test_release_operators():
    """FiLM (eq. 21-23), summed over docked vesicles (eq. 36); rank-one, rule and memory operators."""
    K, H, dc = 2, 3, 2
    W, b = RNG.normal(size=(K, 2 * H, dc)), RNG.normal(size=(K, 2 * H))
    h = RNG.normal(size=H)
    contents, types = RNG.normal(size=(4, dc)), np.array([0, 1, 1, 0])
    docked = np.array([True, False, True, True])
    expect = np.zeros(H)
    for c, k, d in zip(contents, types, docked):
        if d:
            gb = W[k] @ c + b[k]
            expect += gb[:H] * h + gb[H:]
    np.testing.assert_allclose(release.total_activation_release(h, contents, types, docked, W, b), expect,
                               rtol=1e-12)
    U, V, c = RNG.normal(size=(3, dc)), RNG.normal(size=(4, dc)), RNG.normal(size=dc)
    np.testing.assert_allclose(release.rank_one_release(c, U, V, 0.1), 0.1 * np.outer(U @ c, V @ c), rtol=1e-12)
    g = RNG.normal(size=3)
    Wa, ba, Wb, bb = RNG.normal(size=(3, dc)), RNG.normal(size=3), RNG.normal(size=(3, dc)), RNG.normal(size=3)
    np.testing.assert_allclose(release.rule_release(g, c, Wa, ba, Wb, bb), (Wa @ c + ba) * g + Wb @ c + bb)
    M, Ww, R = RNG.normal(size=3), RNG.normal(size=(3, dc)), RNG.normal(size=(2, 3))
    np.testing.assert_allclose(release.memory_write(M, c, Ww, 0.5), 0.5 * M + Ww @ c)
    np.testing.assert_allclose(release.memory_read(M, R), R @ M)
