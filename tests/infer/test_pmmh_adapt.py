"""The warm-up adaptation of PMMH's proposal, piece by piece (``nvppl.infer._pmmh_adapt``).

Each piece is checked against an independent computation: the window covariance
against ``np.cov``, the noise-adjusted target against its closed form in the
noise standard deviation σ, the Polyak average against the mean of the recorded
log-scales, the volume of the proposal against ``log det``. Everything is
deterministic (fixed seeds, float64); the tolerances are rounding tolerances,
``rtol = 1e-10`` unless stated (the recursions run a few hundred steps).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

import nvppl  # noqa: F401  (float64 for JAX, as in inference)
from nvppl.infer import _pmmh_adapt as A

RTOL = 1e-10


def log_volume(log_scale, chol):
    """log det(s L) of a proposal (L a matrix, or a vector of standard deviations)."""
    chol = np.asarray(chol)
    diag = np.diag(chol) if chol.ndim == 2 else chol
    return len(diag) * float(log_scale) + float(np.sum(np.log(diag)))


def draws(n, d=3, seed=0):
    """Correlated Gaussian draws with unequal scales."""
    rng = np.random.default_rng(seed)
    mix = np.array([[1.0, 0.0, 0.0], [0.8, 0.5, 0.0], [-0.3, 0.2, 2.0]])[:d, :d]
    return rng.normal(size=(n, d)) @ mix.T + np.arange(d)


def run_warmup(num_warmup, xs, accept_probs, accepted, target=0.234, chol=None, log_scale=0.0):
    """Drive ``update`` over a warm-up; the states after each iteration."""
    windows = A.schedule(num_warmup)
    state = A.init(jnp.asarray(log_scale), 0.1 * jnp.eye(xs.shape[1]) if chol is None else chol)
    states = []
    for t in range(num_warmup):
        state = A.update(state, t, jnp.asarray(xs[t]), accept_probs[t], bool(accepted[t]),
                         A.is_null(t, num_warmup), target=target, windows=windows)
        states.append(state)
    return windows, states


# ------------------------------------------------------------------------------ covariance
@pytest.mark.parametrize("dense", [True, False])
def test_welford_window_covariance_equals_np_cov(dense):
    x = draws(37)
    w = A.welford_init(3, dense)
    for row in x:
        w = A.welford_update(w, jnp.asarray(row))
    assert int(w.n) == 37
    np.testing.assert_allclose(w.mean, x.mean(axis=0), rtol=RTOL)
    S = np.cov(x, rowvar=False)
    np.testing.assert_allclose(np.asarray(w.m2) / (37 - 1), S if dense else np.diag(S), rtol=RTOL, atol=1e-12)
    # shrunk toward 1e-3 I with the weight of 5 draws
    shrunk = 37 / 42 * S + 1e-3 * 5 / 42 * np.eye(3)
    np.testing.assert_allclose(A.shrunk_covariance(w), shrunk if dense else np.diag(shrunk), rtol=RTOL)


@pytest.mark.parametrize("dense", [True, False])
def test_reshape_keeps_the_volume_and_takes_the_shape(dense):
    rng = np.random.default_rng(1)
    B = rng.normal(size=(4, 4))
    cov = B @ B.T + 0.5 * np.eye(4)
    chol = np.linalg.cholesky(np.diag([0.1, 0.2, 0.3, 0.4]) + 0.01)
    if not dense:
        cov, chol = np.diag(cov), np.array([0.1, 0.2, 0.3, 0.4])
    log_scale, new_chol = A.reshape(jnp.asarray(0.7), jnp.asarray(chol), jnp.asarray(cov))
    new_chol = np.asarray(new_chol)
    np.testing.assert_allclose(new_chol @ new_chol.T if dense else new_chol**2, cov, rtol=RTOL)
    assert abs(log_volume(log_scale, new_chol) - log_volume(0.7, chol)) < 1e-12
    assert abs(float(log_scale) - 0.7) > 0.1  # the scale did change (the shapes differ in volume)


def test_window_end_sets_the_covariance_and_keeps_the_volume():
    """At the end of the first window the proposal covariance becomes the shrunk covariance of the
    window's draws and det(sL) is that of the scale after the Robbins–Monro step with the old L."""
    nw = 200
    x = draws(nw, seed=2)
    rng = np.random.default_rng(3)
    acc_prob, accepted = rng.uniform(0.05, 0.6, nw), np.ones(nw, bool)
    windows, states = run_warmup(nw, x, acc_prob, accepted)
    first, end = windows.first, windows.ends[0]
    assert (first, end) == (75, 99)
    before, after = states[end - 1], states[end]
    S = np.cov(x[first:end + 1], rowvar=False)  # every iteration of the window, null moves included
    n = end + 1 - first
    L = np.asarray(after.chol)
    np.testing.assert_allclose(L @ L.T, n / (n + 5) * S + 1e-3 * 5 / (n + 5) * np.eye(3), rtol=RTOL)
    # the same step without the window's end: the Robbins–Monro log-scale with the old L
    plain = A.update(before, end, jnp.asarray(x[end]), acc_prob[end], True, A.is_null(end, nw), target=0.234,
                     windows=windows._replace(ends=()))
    np.testing.assert_array_equal(plain.chol, before.chol)
    assert abs(log_volume(after.log_scale, after.chol) - log_volume(plain.log_scale, before.chol)) < 1e-10
    assert int(after.window.n) == 0 and int(after.window_accepts) == 0  # a new window starts


def test_window_with_too_few_accepts_keeps_the_covariance():
    nw = 200
    accepted = np.zeros(nw, bool)
    accepted[80:83] = True  # 3 accepted proposals in the first window: fewer than d + 1 = 4
    windows, states = run_warmup(nw, draws(nw), np.full(nw, 0.1), accepted)
    end = windows.ends[0]
    np.testing.assert_array_equal(states[end].chol, states[end - 1].chol)
    assert int(states[end - 1].window_accepts) == 3


# ----------------------------------------------------------------------------------- scale
@pytest.mark.parametrize("accept_prob, sign", [(0.6, 1), (0.1, -1), (0.234, 0)])
def test_robbins_monro_moves_the_log_scale_toward_the_target(accept_prob, sign):
    t = 9
    new = float(A.rm_step(jnp.asarray(-0.3), t, accept_prob, 0.234))
    assert np.sign(new + 0.3) == sign
    np.testing.assert_allclose(new + 0.3, (t + 1) ** -0.6 * (accept_prob - 0.234), rtol=RTOL, atol=1e-15)


def test_update_steps_toward_the_noise_adjusted_target_and_not_on_null_moves():
    """With null moves accepted at a0 = 0.3 the target drops below 0.234: an acceptance
    probability of 0.2 (below 0.234, above the adjusted target) raises the scale."""
    windows = A.schedule(1000)
    state = A.init(jnp.asarray(0.0), 0.1 * jnp.eye(2))._replace(null_accept=jnp.asarray(0.3),
                                                                 null_count=jnp.asarray(60))
    x = jnp.zeros(2)
    moved = A.update(state, 10, x, 0.2, True, False, target=0.234, windows=windows)
    expected = A.rm_step(0.0, 10, 0.2, A.noisy_target(0.234, 0.3))
    np.testing.assert_allclose(moved.log_scale, expected, rtol=RTOL)
    assert float(moved.log_scale) > 0
    null = A.update(state, 11, x, 0.2, True, True, target=0.234, windows=windows)
    assert float(null.log_scale) == 0.0
    np.testing.assert_allclose(null.null_accept, 0.3 + (0.2 - 0.3) / 50, rtol=RTOL)


def test_polyak_average_is_the_mean_of_the_log_scales_over_the_averaging_window():
    nw = 300
    rng = np.random.default_rng(4)
    windows, states = run_warmup(nw, draws(nw, seed=5), rng.uniform(0, 1, nw), rng.uniform(size=nw) < 0.3)
    log_scales = np.array([float(s.log_scale) for s in states])
    assert windows.avg_start == 275 and windows.ends[-1] < windows.avg_start
    assert np.ptp(log_scales[windows.avg_start:]) > 1e-3  # the scale still moves while it is averaged
    frozen, chol = A.finalize(states[-1])
    np.testing.assert_allclose(frozen, log_scales[windows.avg_start:].mean(), rtol=RTOL)
    np.testing.assert_array_equal(chol, states[-1].chol)
    # before the averaging window the average follows the scale
    np.testing.assert_array_equal([float(s.log_scale_avg) for s in states[:windows.avg_start]],
                                  log_scales[:windows.avg_start])


# ----------------------------------------------------------------------------------- noise
@pytest.mark.parametrize("target", [0.234, 0.44])
@pytest.mark.parametrize("sigma", [0.0, 0.5, 1.0, 1.5, 2.5])
def test_noisy_target_matches_its_closed_form(target, sigma):
    """Null moves accepted at a0 = 2Φ(−σ/√2) ⇒ target 2Φ(−√(ℓ0² + 2σ²)/2), ℓ0 = −2Φ⁻¹(target/2)."""
    a0 = 2 * norm.cdf(-sigma / np.sqrt(2))
    l0 = -2 * norm.ppf(target / 2)
    expected = 2 * norm.cdf(-np.sqrt(l0**2 + 2 * sigma**2) / 2)
    np.testing.assert_allclose(A.noisy_target(target, a0), expected, rtol=1e-9)
    np.testing.assert_allclose(A.noise_sd(a0), sigma, rtol=1e-9, atol=1e-7)


def test_noisy_target_known_values_and_clipping():
    # σ = 1 with target 0.234: ℓ0 = 2.3807, √(ℓ0² + 2) = 2.7690, 2Φ(−1.3845) = 0.16621
    np.testing.assert_allclose(A.noisy_target(0.234, 2 * norm.cdf(-1 / np.sqrt(2))), 0.16621, atol=5e-5)
    assert float(A.noisy_target(0.234, 1.0)) == pytest.approx(0.234, rel=1e-12)
    assert float(A.noisy_target(0.234, 1e-6)) == float(A.noisy_target(0.234, 0.01))  # a0 clipped at 0.01
    targets = [float(A.noisy_target(0.234, a)) for a in (1.0, 0.7, 0.4, 0.1)]
    assert all(np.diff(targets) < 0)


def test_null_acceptance_is_a_mean_then_an_exponential_average():
    rng = np.random.default_rng(6)
    probs = rng.uniform(size=80)
    a0, count = jnp.asarray(1.0), jnp.asarray(0)
    for p in probs:
        a0, count = A.null_update(a0, count, p, True)
        a0, count = A.null_update(a0, count, 0.0, False)  # other iterations change nothing
    ref = probs[:50].mean()
    for p in probs[50:]:
        ref += (p - ref) / 50
    assert int(count) == 80
    np.testing.assert_allclose(a0, ref, rtol=RTOL)
    a1, _ = A.null_update(jnp.asarray(1.0), jnp.asarray(0), probs[0], True)
    np.testing.assert_allclose(a1, probs[0], rtol=RTOL)


# -------------------------------------------------------------------------------- schedule
def test_null_moves_every_fourth_warmup_iteration_only():
    flags = np.array([bool(A.is_null(t, 20)) for t in range(30)])
    np.testing.assert_array_equal(np.flatnonzero(flags), [3, 7, 11, 15, 19])


def test_schedule_has_no_windows_for_short_warmups():
    assert A.schedule(19) == A.Windows((), -1, -1, 9)
    w = A.schedule(500)
    assert w.first == 75 and w.ends[-1] == w.last == 449 and w.avg_start == 475
    assert all(b - a > 0 for a, b in zip(w.ends, w.ends[1:]))


def test_update_is_traceable_under_jit_scan_and_vmap():
    """A compiled warm-up (``lax.scan`` of ``update``, two chains by ``vmap``) gives the
    eager loop's state (rtol 1e-10: XLA may fuse the arithmetic differently)."""
    nw = 120
    windows = A.schedule(nw)
    xs = np.stack([draws(nw, seed=7), draws(nw, seed=8)])
    rng = np.random.default_rng(9)
    probs, acc = rng.uniform(size=(2, nw)), rng.uniform(size=(2, nw)) < 0.4

    def warmup(x, p, a):
        def body(state, inputs):
            t, xt, pt, at = inputs
            return A.update(state, t, xt, pt, at, A.is_null(t, nw), target=0.234, windows=windows), None

        start = A.init(jnp.asarray(0.0), 0.1 * jnp.eye(3))
        return jax.lax.scan(body, start, (jnp.arange(nw), x, p, a))[0]

    compiled = jax.jit(jax.vmap(warmup))(jnp.asarray(xs), jnp.asarray(probs), jnp.asarray(acc))
    for c in range(2):
        _, states = run_warmup(nw, xs[c], probs[c], acc[c])
        eager = states[-1]
        for got, want in zip(jax.tree.leaves(compiled), jax.tree.leaves(eager)):
            np.testing.assert_allclose(np.asarray(got)[c], want, rtol=RTOL, atol=1e-12)
