"""The shared argument checks: nothing is coerced silently."""

import numpy as np
import pytest

from nvppl import _validate as V


@pytest.mark.parametrize("bad", [True, 1.0, "3", 2 + 0j, None, np.float64(2.0), -1])
def test_integers_refuse_what_is_not_a_non_negative_integer(bad):
    with pytest.raises(ValueError, match=r"n must be a non-negative integer, got"):
        V.nonneg_int(bad, "n")


def test_integers_accept_numpy_integers_and_none_when_allowed():
    assert V.positive_int(np.int32(4), "n") == 4 and type(V.positive_int(np.int32(4), "n")) is int
    assert V.positive_int(None, "n", none_ok=True) is None
    with pytest.raises(ValueError, match="positive integer or None, got 0"):
        V.positive_int(0, "n", none_ok=True)
    with pytest.raises(TypeError, match="k must be an integer >= 3"):
        V.integer(2, "k", 3, error=TypeError)


@pytest.mark.parametrize("bad, message", [
    (True, "must be a real number"), ("0.5", "must be a real number"), (0.5 + 1j, "must be a real number"),
    (float("nan"), "finite"), (float("inf"), "finite"), (1.5, r"lie in \[0, 1\]"), (-0.1, r"lie in \[0, 1\]"),
])
def test_probabilities(bad, message):
    with pytest.raises(ValueError, match=message):
        V.probability(bad, "p")


def test_open_ends_and_one_sided_bounds():
    assert V.probability(1, "p") == 1.0
    with pytest.raises(ValueError, match=r"p must lie in \(0, 1\], got 0"):
        V.probability(0, "p", low_open=True)
    with pytest.raises(ValueError, match="scale must be > 0, got 0"):
        V.positive(0, "scale")
    with pytest.raises(ValueError, match="x must be <= 2, got 3"):
        V.real(3, "x", high=2)


def test_choice_and_threads():
    assert V.choice("log", ("sigmoid", "log"), "link") == "log"
    with pytest.raises(ValueError, match=r"link must be one of \('sigmoid', 'log'\), got \['log'\]"):
        V.choice(["log"], ("sigmoid", "log"), "link")
    assert V.thread_count(None) >= 1 and V.thread_count(2) == 2
    with pytest.raises(ValueError, match="n_threads must be a positive integer or None"):
        V.thread_count(0)


def test_keys_agree_and_refuse_negative_or_malformed_seeds():
    import jax

    assert V.seed64(7) == V.seed64(jax.random.PRNGKey(7))
    assert V.seed64(jax.random.PRNGKey(7)) == V.seed64(jax.random.key(7))
    assert np.array_equal(V.as_jax_key(3), jax.random.PRNGKey(3))
    assert V.as_numpy_rng(5).integers(1 << 30) == np.random.default_rng(5).integers(1 << 30)
    for f in (V.seed64, V.as_jax_key, V.as_numpy_rng):
        with pytest.raises(ValueError, match="non-negative"):
            f(-2)
    with pytest.raises(TypeError, match="int seed or a JAX PRNG key"):
        V.as_jax_key(np.zeros(3, np.uint32))
    with pytest.raises(TypeError):
        V.seed64(True)
