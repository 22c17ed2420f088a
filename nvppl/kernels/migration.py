"""Migration kernel (paper eq. 15–17).

A vesicle of type ``κ`` with content ``c`` at node ``ℓ`` moves to a candidate
``ℓ' ∈ C(ℓ)`` with probability

.. math::

    P(ℓ' \\mid ℓ, c) \\propto T_κ[ℓ, ℓ'] \\exp\\big(γ_κ\\, q_t(ℓ', c)\\big),
    \\qquad q_t(ℓ', c) = F[t, ℓ']·v_κ + c·Q_κ[ℓ'],

where each row of ``T_κ`` is a probability vector on ``C(ℓ)`` (eq. 15). Candidates
are addressed by *slot*: the position of ``ℓ'`` in the sorted candidate row of ``ℓ``.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.nn import log_softmax

__all__ = ["safe_log", "tilt_score", "move_logits", "move_log_probs"]


def safe_log(x):
    """``log x`` with ``-inf`` where ``x == 0`` and a gradient that is finite there."""
    pos = x > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, x, 1.0)), -jnp.inf)


def tilt_score(F_cand, v, c=None, Q_cand=None):
    """Score ``q`` of eq. 17 over candidate slots.

    Parameters
    ----------
    F_cand : (..., M, p)
        Covariates of the candidate nodes.
    v : (..., p)
        Covariate weights of the vesicle's type.
    c : (..., d_c), optional
        Vesicle content.
    Q_cand : (..., M, d_c), optional
        Content weights ``Q_κ`` at the candidate nodes.

    Returns
    -------
    (..., M)
    """
    q = jnp.einsum("...mp,...p->...m", F_cand, v)
    if c is not None and Q_cand is not None:
        q = q + jnp.einsum("...md,...d->...m", Q_cand, c)
    return q


def move_logits(T_row, mask, gamma=None, score=None):
    """Unnormalised log-probabilities ``log T + γ q`` over slots; ``-inf`` on padded
    slots and where ``T`` is zero."""
    logits = jnp.where(mask, safe_log(T_row), -jnp.inf)
    if score is not None:
        logits = logits + jnp.where(mask, gamma[..., None] * score, 0.0)
    return logits


def move_log_probs(T_row, mask, gamma=None, score=None):
    """Normalised log-probabilities of eq. 17 over slots (``(..., M)``).

    Without a score this is ``log T_row`` (rows already sum to one).

    Examples
    --------
    >>> lp = move_log_probs(jnp.array([0.25, 0.75]), jnp.array([True, True]))
    >>> [round(float(x), 4) for x in jnp.exp(lp)]
    [0.25, 0.75]
    """
    logits = move_logits(T_row, mask, gamma, score)
    if score is None:
        return logits
    return jnp.where(mask, log_softmax(jnp.where(mask, logits, -jnp.inf), axis=-1), -jnp.inf)
