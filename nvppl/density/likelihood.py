"""Observation models on the density: predicted means and the composite likelihood."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .result import Density


def predicted_mean(density: Density, kind: str, detection: str, p_det=None, floor: float = 0.1):
    """Mean of an observed count under the detection model: ``ρ`` (exact),
    ``p_det·ρ`` (binomial thinning) or ``ρ + floor`` (Poisson noise); ``kind`` is
    ``"counts"`` or ``"docks"`` (``expected_docks`` in place of ``ρ``)."""
    base = density.rho if kind == "counts" else density.expected_docks
    return detected_mean(base, detection, p_det, floor)


def detected_mean(base, detection: str, p_det=None, floor: float = 0.1):
    """The detection model applied to expected true counts ``base`` (see :func:`predicted_mean`)."""
    if detection == "binomial":
        return p_det * base
    if detection == "poisson":
        return base + floor
    return base


def composite_log_likelihood(density: Density, obs, p_det=None, n_mix: int | None = None):
    r"""Composite log-likelihood of observations under the density's one-time marginals.

    Every observed count is taken as independent with its one-time marginal.
    Births are Poisson and vesicles move independently, so the true count at
    ``(t, i, κ)`` is exactly Poisson, with mean ``E[N]``; the density supplies
    that mean as ``ρ`` (docks: ``Poisson(expected_docks)``). An observation seen
    through

    * ``"exact"`` detection is ``Poisson(ρ)``;
    * ``"binomial"`` detection (each vesicle seen with probability ``p_det``) is
      ``Poisson(p_det ρ)`` (thinning);
    * ``"poisson"`` detection (``y | N ~ Poisson(N + floor)``) is the mixture
      :math:`\sum_N \mathrm{Poisson}(N; ρ)\,\mathrm{Poisson}(y; N + f)`, computed
      exactly for any ``ρ`` by Panjer's recursion up to the largest observation
      (``n_mix`` terms, default that value plus one).

    These marginals are exact where ``ρ = E[N]`` exactly, i.e. where
    :func:`~nvppl.density.accuracy` says "exact in the mean"; with content
    classes they carry the quadrature error of ``ρ``, and with a mean-field
    density they are approximate.

    The product over steps ignores the correlation of counts over time, so it
    is a *composite* likelihood (Lindsay 1988): its maximiser is consistent, but
    a posterior built from it is too narrow (see :mod:`nvppl.infer.svi`).

    Parameters
    ----------
    density : Density
        With a run axis matching ``obs`` or without one (shared by all runs).
    obs : Observations
    p_det : float, optional
        Overrides ``obs.p_det``; required for binomial detection with unknown ``p_det``.
    n_mix : int, optional
        Terms of the Poisson-detection mixture.

    Returns
    -------
    array (R, T)
        Log-likelihood terms per run and step (summed over nodes, types and kinds).
    """
    from jax.scipy.special import gammaln, xlogy

    detection = obs.detection
    pd = obs.p_det if p_det is None else float(p_det)
    if detection == "binomial" and pd is None:
        raise ValueError("binomial detection with an unknown p_det: pass p_det=... (the composite likelihood "
                         "confounds p_det with the emission rate)")
    total = 0.0
    for kind in ("counts", "docks"):
        y = getattr(obs, kind)
        if y is None:
            continue
        y = jnp.asarray(y, dtype=float)
        if detection == "poisson":
            base = density.rho if kind == "counts" else density.expected_docks
            total = total + poisson_mix(y, base, obs.floor, n_mix).sum((-1, -2))
        else:
            mu = predicted_mean(density, kind, detection, pd, obs.floor)
            total = total + (xlogy(y, mu) - mu - gammaln(y + 1.0)).sum((-1, -2))
    return jnp.broadcast_to(total, (obs.n_runs, obs.n_steps))


def poisson_mix(y, rho, floor, n_mix=None):
    r"""``log P(y)`` for ``y = Z + X``, ``Z ~ Poisson(floor)`` independent of
    ``X | N ~ Poisson(N)``, ``N ~ Poisson(ρ)`` (Poisson detection of a Poisson count).

    ``X`` is compound Poisson (Neyman type A) with Poisson(1) summands; its pmf
    follows Panjer's recursion

    .. math::

        P_X(0) = e^{-ρ(1 - e^{-1})},\qquad
        P_X(k) = \frac{ρ}{k}\sum_{j=1}^{k} j\,\frac{e^{-1}}{j!}\,P_X(k - j),

    run in log space up to the largest observation (``n_mix`` terms, default
    its value plus one), so it is exact for any ``ρ``; then
    :math:`P(y) = \sum_{k \le y} \mathrm{Poisson}(y - k; f)\,P_X(k)`.
    """
    from jax.scipy.special import gammaln, logsumexp, xlogy

    if n_mix is None:
        n_mix = int(np.max(np.asarray(y))) + 1 if np.size(y) else 1
    n_mix = max(int(n_mix), 1)
    rho = jnp.asarray(rho, dtype=float)
    lr = jnp.log(jnp.where(rho > 0, rho, 1.0))
    j = jnp.arange(1, n_mix, dtype=float)
    lsev = jnp.log(j) - 1.0 - gammaln(j + 1.0)  # log(j e^{-1} / j!)
    first = -rho * (1.0 - np.exp(-1.0))
    logp = jnp.full((n_mix,) + rho.shape, -jnp.inf).at[0].set(first)

    def body(k, logp):
        # terms j = 1..k of P(k) = ρ/k Σ_j j g(j) P(k - j)
        prev = logp[jnp.clip(k - jnp.arange(1, n_mix), 0, n_mix - 1)]  # (n_mix-1, ...)
        valid = (jnp.arange(1, n_mix) <= k).reshape((-1,) + (1,) * rho.ndim)
        terms = jnp.where(valid, lsev.reshape((-1,) + (1,) * rho.ndim) + prev, -jnp.inf)
        val = lr - jnp.log(k) + logsumexp(terms, axis=0)
        return logp.at[k].set(jnp.where(rho > 0, val, -jnp.inf))

    logp = jax.lax.fori_loop(1, n_mix, body, logp)  # (n_mix, ...): log P_X(k)
    y = jnp.asarray(y, dtype=float)
    k = jnp.arange(n_mix, dtype=float).reshape((-1,) + (1,) * y.ndim)
    d = y[None] - k
    lz = jnp.where(d >= 0, xlogy(d, floor) - floor - gammaln(jnp.maximum(d, 0.0) + 1.0), -jnp.inf)
    shape = jnp.broadcast_shapes(rho.shape, y.shape)
    logp = logp.reshape((n_mix,) + (1,) * (len(shape) - rho.ndim) + rho.shape)
    return logsumexp(lz + logp, axis=0)
