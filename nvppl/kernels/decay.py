"""Decay and absorption kernels (paper eq. 37–38).

Each step a surviving vesicle is absorbed at its node ``ℓ'`` with probability
``a[ℓ']`` and then decays:

- geometric lifetimes: removed with probability ``δ_κ``;
- countdown lifetimes: ``τ₀ ~ Gamma(shape_κ, rate_κ)`` at birth and
  ``τ ← τ − 1 + ε`` (eq. 37); with ``σ_τ = 0`` the vesicle is removed at its
  ``L``-th step, ``L = ⌈τ₀⌉``, so ``P(L > k) = Q(shape_κ, rate_κ k)`` (the
  regularised upper incomplete gamma function): a discretised Gamma lifetime.

Both families are described by a per-age hazard ``h_k = P(L = k | L ≥ k)``, the
probability of expiring at the vesicle's ``k``-th step (``k = 1, 2, …``).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import gammainc, gammaincc, xlog1py, xlogy

__all__ = ["geometric_log_hazard", "countdown_log_survival", "countdown_log_hazard",
           "log_hazard", "absorption_log_prob", "binomial_log_kernel"]


def geometric_log_hazard(delta):
    """``(log h, log(1 − h))`` with ``h = δ`` at every age."""
    return jnp.log(delta), jnp.log1p(-delta)


def countdown_log_survival(k, shape, rate):
    """``log P(L > k) = log Q(shape, rate·k)`` for the discretised Gamma lifetime,
    computed from the lower function ``P = 1 − Q`` where ``P`` is small so that no
    digit is lost."""
    x = rate * jnp.asarray(k, dtype=jnp.result_type(float))
    P, Q = gammainc(shape, x), gammaincc(shape, x)
    lower = P < 0.5
    return jnp.where(lower, jnp.log1p(-jnp.where(lower, P, 0.0)), jnp.log(jnp.where(lower, 1.0, Q)))


def countdown_log_hazard(age, shape, rate):
    """``(log h_k, log(1 − h_k))`` at age ``k ≥ 1`` for countdown lifetimes.

    ``h_k = (F(k) − F(k − 1)) / (1 − F(k − 1))`` with ``F`` the Gamma CDF at
    ``rate·k``. The probability mass ``F(k) − F(k − 1)`` is taken as a difference
    of the lower regularised incomplete gamma function where it is below one
    half and of the upper one elsewhere, so hazards of order ``1e-12`` keep
    their digits.

    Examples
    --------
    >>> lh, ls = countdown_log_hazard(1, 2.0, 0.5)
    >>> round(float(jnp.exp(lh) + jnp.exp(ls)), 12)
    1.0
    """
    k = jnp.asarray(age, dtype=jnp.result_type(float))
    x0, x1 = rate * (k - 1.0), rate * k
    P0, P1 = gammainc(shape, x0), gammainc(shape, x1)
    Q0, Q1 = gammaincc(shape, x0), gammaincc(shape, x1)
    lower = P1 < 0.5
    P0l, P1l = jnp.where(lower, P0, 0.0), jnp.where(lower, P1, 0.0)
    Q0u, Q1u = jnp.where(lower, 1.0, Q0), jnp.where(lower, 1.0, Q1)
    log_before = jnp.where(lower, jnp.log1p(-P0l), jnp.log(Q0u))
    mass = jnp.where(lower, P1l - P0l, Q0u - Q1u)
    log_keep = jnp.where(lower, jnp.log1p(-P1l), jnp.log(Q1u)) - log_before
    return jnp.log(mass) - log_before, jnp.minimum(log_keep, 0.0)


def log_hazard(lifetime: str, age, delta=None, shape=None, rate=None):
    """Per-age log hazard pair for either lifetime family (arguments broadcast)."""
    if lifetime == "geometric":
        lh, ls = geometric_log_hazard(delta)
        shape_ = jnp.broadcast_shapes(jnp.shape(age), jnp.shape(lh))
        return jnp.broadcast_to(lh, shape_), jnp.broadcast_to(ls, shape_)
    return countdown_log_hazard(age, shape, rate)


def absorption_log_prob(absorbed, a):
    """Bernoulli log-probability of absorption at a node with probability ``a`` (eq. 38).

    ``absorbed`` may be a count of absorptions out of ``trials`` (the default of one
    trial gives the per-vesicle form); written with ``xlogy`` so that ``a = 0`` or
    ``a = 1`` give finite values and gradients where the data allow them.
    """
    absorbed = jnp.asarray(absorbed, dtype=jnp.result_type(float))
    return xlogy(absorbed, a) + xlog1py(1.0 - absorbed, -a)


def binomial_log_kernel(successes, trials, p):
    """``s log p + (n − s) log(1 − p)``: the Bernoulli part of a count likelihood."""
    return xlogy(successes, p) + xlog1py(trials - successes, -p)
