"""Emission kernel (paper eq. 9–13).

At step ``t`` every node ``i`` emits ``N[t, i, κ] ~ Poisson(λ[t, i, κ])`` new
vesicles of type ``κ`` with

.. math::

    λ[t,i,κ] = r_{max,κ}\\,σ(X[t,i]·u_κ) \\quad (\\text{link "sigmoid", eq. 9–10})
    \\qquad\\text{or}\\qquad λ[t,i,κ] = \\exp(X[t,i]·u_κ) \\quad (\\text{link "log"}),

where ``X[t, i] = (1, F[t, i])``. A new vesicle's content (eq. 11) is
``c ~ Normal(m_κ + F[t, i]·B_κ, diag(σ_{c,κ}²))``.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.nn import log_sigmoid, sigmoid
from jax.scipy.special import gammaln

__all__ = ["design_matrix", "emission_rate", "log_emission_rate", "emission_log_prob",
           "content_loc", "content_log_prob"]


def design_matrix(F):
    """Prepend the intercept: ``X[..., :] = (1, F[..., :])`` (:ref:`design-model`).

    Examples
    --------
    >>> design_matrix(jnp.zeros((2, 1))).tolist()
    [[1.0, 0.0], [1.0, 0.0]]
    """
    F = jnp.asarray(F)
    return jnp.concatenate([jnp.ones(F.shape[:-1] + (1,), F.dtype), F], axis=-1)


def _linear(X, u):
    # X (..., d_x), u (K, d_x) -> (..., K)
    return jnp.einsum("...d,kd->...k", X, u)


def log_emission_rate(X, u, r_max, link: str):
    """``log λ`` for design rows ``X (..., d_x)`` and weights ``u (K, d_x)``; shape ``(..., K)``.

    Examples
    --------
    >>> float(jnp.exp(log_emission_rate(jnp.ones((1, 1)), jnp.zeros((1, 1)), jnp.ones(1), "sigmoid"))[0, 0])
    0.5
    """
    z = _linear(X, u)
    if link == "sigmoid":
        return jnp.log(r_max) + log_sigmoid(z)
    if link == "log":
        return z
    raise ValueError(f"unknown emission link {link!r}")


def emission_rate(X, u, r_max, link: str):
    """Emission rate ``λ`` (eq. 9), shape ``(..., K)``."""
    z = _linear(X, u)
    if link == "sigmoid":
        return r_max * sigmoid(z)
    if link == "log":
        return jnp.exp(z)
    raise ValueError(f"unknown emission link {link!r}")


def emission_log_prob(counts, X, u, r_max, link: str):
    """Poisson log-probability of birth counts (eq. 10), elementwise ``(..., K)``."""
    log_lam = log_emission_rate(X, u, r_max, link)
    return counts * log_lam - jnp.exp(log_lam) - gammaln(counts + 1.0)


def content_loc(F, content_mean, content_B):
    """Mean content at birth ``m_κ + F·B_κ`` for features ``F (..., p)``; shape ``(..., K, d_c)``."""
    return content_mean + jnp.einsum("...p,kpd->...kd", F, content_B)


def content_log_prob(c, loc, scale):
    """Normal log-density of content ``c`` (eq. 11), summed over content dimensions."""
    z = (c - loc) / scale
    return jnp.sum(-0.5 * z * z - jnp.log(scale) - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)
