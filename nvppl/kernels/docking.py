"""Docking kernel (paper eq. 18–19).

After migrating to ``ℓ'`` a vesicle docks with probability

.. math::

    p_{dock} = σ\\big(X[t, ℓ']·w_κ + c·w^c_κ\\big), \\qquad d \\sim \\text{Bernoulli}(p_{dock}).

A dock is a release event; it spends one unit of the release budget and a
vesicle whose budget reaches zero is removed (cause ``depleted``).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.nn import log_sigmoid, sigmoid

__all__ = ["dock_logit", "dock_prob", "dock_log_prob"]


def dock_logit(X_node, w, c=None, w_c=None):
    """Docking logit ``X·w_κ (+ c·w^c_κ)``; ``X_node (..., d_x)`` and ``w (..., d_x)``
    broadcast together, or ``w (K, d_x)`` gives ``(..., K)`` when ``X_node`` has no
    type axis (pass ``per_type`` shapes explicitly)."""
    z = jnp.sum(X_node * w, axis=-1)
    if c is not None and w_c is not None:
        z = z + jnp.sum(c * w_c, axis=-1)
    return z


def dock_prob(X_node, w, c=None, w_c=None):
    """Docking probability of eq. 18."""
    return sigmoid(dock_logit(X_node, w, c, w_c))


def dock_log_prob(docked, logit):
    """Bernoulli log-probability of eq. 19 for ``docked ∈ {0, 1}``.

    Examples
    --------
    >>> round(float(jnp.exp(dock_log_prob(1.0, 0.0))), 3)
    0.5
    """
    return docked * log_sigmoid(logit) + (1.0 - docked) * log_sigmoid(-logit)
