"""FiLM, hypernetwork and attention as limits of many vesicles (nvppl.overlay.limits):
unbiased, and converging at the rate the density predicts."""

import numpy as np
import pytest

from nvppl.overlay import limits


@pytest.mark.parametrize("fn", [limits.film_limit, limits.hypernetwork_limit, limits.attention_limit])
def test_release_of_many_vesicles_converges_to_its_limit(fn):
    """400 replicates at N̄ = 4, 16, 64, 256 docking vesicles:

    - at every density the mean release is the limit within 4.5 standard errors per
      coordinate (unbiased; the attention's ratio estimator only for N̄ ≥ 16, where an
      empty draw is rarer than 1e-6);
    - the RMS error follows the density's prediction sqrt(E‖X − μ‖²/d/N̄) within 15 %
      for N̄ ≥ 16 (the RMS of 400 replicates has a relative standard error of about
      3.5 %, so 15 % is 4 of them);
    - log error against log N̄ has slope −0.5 ± 0.08.
    """
    r = fn(n_reps=400, key=11)
    start = 1 if fn is limits.attention_limit else 0
    z = np.abs(r.mean - r.limit) / r.se
    assert np.all(z[start:] < 4.5), z
    ratio = r.error[1:] / r.predicted[1:]
    assert np.all(np.abs(ratio - 1) < 0.15), ratio
    slope = np.polyfit(np.log(r.density), np.log(r.error), 1)[0]
    assert abs(slope + 0.5) < 0.08, slope


def test_hypernetwork_limit_is_the_rank_one_of_the_mean_content_as_spread_vanishes():
    """η U E[ccᵀ] Vᵀ = η (Um)(Vm)ᵀ + η U Σ Vᵀ: with spread 0.3 the limit is off the
    hypernetwork output by the spread term; with spread 1e-3 it equals it within 1e-5."""
    wide = limits.hypernetwork_limit(densities=(4,), n_reps=4, spread=0.3)
    narrow = limits.hypernetwork_limit(densities=(4,), n_reps=4, spread=1e-3)
    m = np.array([1.0, -0.5])
    rng = np.random.default_rng(2)
    U, V = rng.normal(size=(1, 2, 2)), rng.normal(size=(1, 3, 2))
    hyper = 0.7 * np.outer(U[0] @ m, V[0] @ m).ravel()
    np.testing.assert_allclose(narrow.limit, hyper, atol=1e-5)
    assert np.max(np.abs(wide.limit - hyper)) > 0.01
