r"""Warm-up adaptation of the PMMH random-walk proposal, as pure functions.

The proposal of :class:`~nvppl.infer.pmmh.PMMH` is :math:`z' = z + s L \varepsilon`,
:math:`\varepsilon \sim N(0, I_d)`, with a global scale :math:`s` and a Cholesky
factor :math:`L` of a covariance :math:`C` (a vector of standard deviations for a
diagonal proposal). During warm-up both adapt; afterwards they are frozen, so the
kept draws come from one fixed Metropolis–Hastings kernel.

The adaptation is a state, :class:`AdaptState` (a JAX pytree), and functions of it
without hidden state, traceable by JAX (``jit``, ``vmap``, ``lax`` loops):

* :func:`init` starts the state from :math:`(\log s_0, L_0)`;
* :func:`update` moves it after warm-up iteration :math:`t`;
* :func:`finalize` gives the frozen proposal :math:`(\log s, L)` of the sampling phase.

:func:`update` combines the pieces below, each usable and testable alone.

* **Noise level** (:func:`null_update`): every ``NULL_EVERY``-th warm-up proposal
  is a null move (:func:`is_null`: :math:`z' = z`, a fresh likelihood estimate at
  the same point). Their running mean acceptance probability :math:`a_0` measures
  the standard deviation :math:`\sigma` of the log-likelihood estimator,
  :math:`a_0 = 2\Phi(-\sigma/\sqrt 2)` (:func:`noise_sd`).
* **Target** (:func:`noisy_target`): the noise caps the acceptance rate, so the
  scale aims at :math:`\alpha^* = 2\Phi(-\sqrt{\ell_0^2 + 2\sigma^2}/2)` with
  :math:`\ell_0 = -2\Phi^{-1}(\alpha^*_0/2)`, where :math:`\alpha^*_0` is the
  noise-free target (Sherlock, Thiery, Roberts & Rosenthal 2015).
* **Scale** (:func:`rm_step`, Robbins–Monro, Andrieu & Thoms 2008):
  :math:`\log s \mathrel{+}= (t+1)^{-0.6}(\alpha_t - \alpha^*)` after each
  proposal that is not a null move.
* **Covariance** (:class:`Welford`, :func:`shrunk_covariance`, :func:`reshape`,
  Haario, Saksman & Tamminen 2001): the warm-up is cut into Stan's windows
  (:func:`schedule`); the draws of a middle window are accumulated by Welford's
  recursion and, at its end, :math:`C` becomes their shrunk covariance
  :math:`\frac{n}{n+5} S + 10^{-3}\frac{5}{n+5} I` if at least :math:`d + 1`
  proposals of the window were accepted; :math:`s` then changes so that the
  proposal keeps its volume, :math:`\det(sL)`.
* **Polyak average** (:func:`polyak`): the frozen :math:`\log s` is the mean of
  the adapted :math:`\log s` over the second half of the terminal buffer.

Examples
--------
A warm-up of 100 iterations in two dimensions, every proposal accepted with
probability 0.5 (above the target 0.234, so the scale grows):

>>> import jax.numpy as jnp
>>> windows = schedule(100)
>>> state = init(jnp.log(1.0), 0.1 * jnp.eye(2))
>>> x = jnp.zeros(2)
>>> for t in range(100):
...     state = update(state, t, x + 0.01 * t, 0.5, True, is_null(t, 100), target=0.234, windows=windows)
>>> log_scale, chol = finalize(state)
>>> bool(log_scale > 0), chol.shape
(True, (2, 2))
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "AdaptState", "Welford", "Windows", "init", "update", "finalize", "schedule", "is_null", "null_update",
    "noisy_target", "noise_sd", "rm_step", "welford_init", "welford_update", "shrunk_covariance", "reshape",
    "polyak",
]

#: During warm-up every NULL_EVERY-th proposal is a null move (z' = z) that measures the estimator noise.
NULL_EVERY = 4
#: Memory (in null moves) of the running estimate of the null acceptance rate.
NULL_MEMORY = 50
#: Robbins–Monro gains of the log-scale: (t + 1) ** -RM_EXPONENT.
RM_EXPONENT = 0.6
#: A window's covariance is shrunk toward SHRINK_TARGET · I with the weight of SHRINK_PRIOR draws.
SHRINK_PRIOR, SHRINK_TARGET = 5, 1e-3


class Welford(NamedTuple):
    r"""Welford accumulators of the draws :math:`x_1, \dots, x_n` of a window.

    Attributes
    ----------
    mean : array (d,)
        :math:`\bar x_n`.
    m2 : array (d, d) or (d,)
        :math:`\sum_i (x_i - \bar x_n)(x_i - \bar x_n)^\top` (its diagonal for a
        diagonal proposal), so that :math:`S = m_2/(n-1)`.
    n : int
    """

    mean: Any
    m2: Any
    n: Any


class AdaptState(NamedTuple):
    r"""State of the proposal and of its adaptation (a JAX pytree).

    Attributes
    ----------
    log_scale : float
        :math:`\log s`, the current global scale.
    chol : array (d, d) or (d,)
        :math:`L`, the Cholesky factor of the proposal covariance (a vector of
        standard deviations for a diagonal proposal).
    log_scale_avg : float
        Running (Polyak) average of ``log_scale`` over the end of warm-up.
    window : Welford
        The draws of the current covariance window.
    window_accepts : int
        Accepted proposals (null moves aside) in the current window.
    null_accept : float
        Running mean acceptance probability :math:`a_0` of the null moves.
    null_count : int
        Null moves made so far.
    """

    log_scale: Any
    chol: Any
    log_scale_avg: Any
    window: Any
    window_accepts: Any
    null_accept: Any
    null_count: Any


class Windows(NamedTuple):
    """The warm-up schedule (hashable: a static argument of :func:`update`).

    Attributes
    ----------
    ends : tuple of int
        Last iteration of each covariance window (empty: the covariance is not adapted).
    first, last : int
        First iteration of the first window and last of the last one (``-1`` without windows).
    avg_start : int
        First iteration of the Polyak average of the log-scale.
    """

    ends: tuple
    first: int
    last: int
    avg_start: int


def schedule(num_warmup: int) -> Windows:
    """Covariance windows and the start of the scale average for ``num_warmup`` iterations.

    The windows are the middle windows of Stan's schedule
    (:func:`numpyro.infer.hmc_util.build_adaptation_schedule`: an initial buffer,
    doubling windows, a terminal buffer), used from 20 warm-up iterations on; the
    scale is averaged over the second half of the terminal buffer (over the
    second half of the warm-up without windows).

    Examples
    --------
    >>> schedule(1000)
    Windows(ends=(99, 149, 249, 449, 949), first=75, last=949, avg_start=975)
    >>> schedule(10)
    Windows(ends=(), first=-1, last=-1, avg_start=5)
    """
    from numpyro.infer.hmc_util import build_adaptation_schedule

    sched = build_adaptation_schedule(num_warmup)[1:-1] if num_warmup >= 20 else []
    if not sched:
        return Windows((), -1, -1, num_warmup // 2)
    last = int(sched[-1].end)
    return Windows(tuple(int(w.end) for w in sched), int(sched[0].start), last,
                   last + 1 + (num_warmup - last) // 2)


def is_null(t, num_warmup: int):
    """Whether warm-up iteration ``t`` is a null move (every ``NULL_EVERY``-th, warm-up only)."""
    return (t < num_warmup) & (t % NULL_EVERY == NULL_EVERY - 1)


# ----------------------------------------------------------------------------------- noise
def noise_sd(null_accept):
    """Standard deviation σ of a Gaussian log-likelihood estimator whose null moves are accepted
    at rate ``null_accept`` (``a₀ = 2Φ(−σ/√2)``); NumPy, on the host.

    Examples
    --------
    >>> float(noise_sd(1.0)), round(float(noise_sd(0.2)), 2)
    (0.0, 1.81)
    """
    from scipy.stats import norm

    a0 = np.clip(np.asarray(null_accept, dtype=np.float64), 1e-12, 1.0)
    return np.maximum(-np.sqrt(2.0) * norm.ppf(a0 / 2), 0.0)


def noisy_target(target, null_accept):
    r"""Acceptance rate to aim at when the estimator's noise alone caps it at ``null_accept``.

    In the high-dimensional limit of Sherlock et al. (2015) a random walk of scale
    :math:`\ell` with Gaussian log-likelihood noise :math:`\sigma` accepts at rate
    :math:`2\Phi(-\sqrt{\ell^2 + 2\sigma^2}/2)`, and its optimal :math:`\ell`
    hardly depends on :math:`\sigma`. So the noise-free ``target`` fixes
    :math:`\ell_0 = -2\Phi^{-1}(\text{target}/2)` and the target under noise is

    .. math::

        \alpha^* = 2\Phi\Big(-\tfrac12\sqrt{\ell_0^2 + 2\sigma^2}\Big),
        \qquad 2\sigma^2 = 4\,\Phi^{-1}(a_0/2)^2,

    with :math:`a_0` = ``null_accept`` clipped to :math:`[0.01, 1]`; without
    noise (:math:`a_0 = 1`) it is ``target``.

    Examples
    --------
    >>> round(float(noisy_target(0.234, 1.0)), 6), round(float(noisy_target(0.234, 0.48)), 3)
    (0.234, 0.166)
    """
    from jax.scipy.stats import norm

    a0 = jnp.clip(null_accept, 0.01, 1.0)
    l0 = -2.0 * norm.ppf(target / 2)
    two_sigma2 = 4.0 * norm.ppf(a0 / 2) ** 2
    return 2.0 * norm.cdf(-jnp.sqrt(l0**2 + two_sigma2) / 2)


def null_update(null_accept, null_count, accept_prob, null):
    r"""Running mean of the null moves' acceptance probability.

    After a null move, :math:`a_0 \mathrel{+}= w\,(\alpha_t - a_0)` with
    :math:`w = \max(1/(k+1), 1/\text{NULL\_MEMORY})` for the :math:`k`-th null
    move: the plain mean of the first ``NULL_MEMORY`` ones, then an exponential
    average over about as many. Other iterations leave it unchanged.

    Returns
    -------
    null_accept, null_count
    """
    weight = jnp.maximum(1.0 / (null_count + 1), 1.0 / NULL_MEMORY)
    return (jnp.where(null, null_accept + weight * (accept_prob - null_accept), null_accept),
            null_count + null)


# ----------------------------------------------------------------------------------- scale
def rm_step(log_scale, t, accept_prob, target):
    r"""Robbins–Monro step :math:`\log s + (t+1)^{-0.6}\,(\alpha_t - \alpha^*)` of the log-scale."""
    return log_scale + (t + 1.0) ** -RM_EXPONENT * (accept_prob - target)


def polyak(avg, log_scale, t, start):
    r"""Running mean of ``log_scale`` over iterations ``start, …, t``; before ``start``
    it follows ``log_scale``.

    :math:`\bar\ell_t = \bar\ell_{t-1} + (\ell_t - \bar\ell_{t-1})/(t - \text{start} + 1)`.
    """
    k = jnp.maximum(t - start + 1, 1)
    return jnp.where(t >= start, avg + (log_scale - avg) / k, log_scale)


# ------------------------------------------------------------------------------ covariance
def welford_init(d: int, dense: bool) -> Welford:
    """Empty accumulators in ``d`` dimensions (``m2`` a matrix when ``dense``)."""
    return Welford(jnp.zeros(d), jnp.zeros((d, d) if dense else d), jnp.array(0))


def welford_update(w: Welford, x) -> Welford:
    r"""Add draw ``x``: :math:`\bar x_{n+1} = \bar x_n + (x - \bar x_n)/(n+1)`,
    :math:`m_2 \mathrel{+}= (x - \bar x_{n+1})(x - \bar x_n)^\top` (its diagonal
    when ``m2`` is a vector)."""
    n1 = w.n + 1
    delta = x - w.mean
    mean1 = w.mean + delta / n1
    m21 = w.m2 + (jnp.outer(x - mean1, delta) if w.m2.ndim == 2 else (x - mean1) * delta)
    return Welford(mean1, m21, n1)


def shrunk_covariance(w: Welford):
    r"""The window's covariance shrunk toward :math:`10^{-3} I`:
    :math:`\frac{n}{n+5} S + 10^{-3}\frac{5}{n+5} I` with :math:`S = m_2/(n-1)`
    (``n`` taken as at least 2); a vector of variances when ``m2`` is one."""
    nf = jnp.maximum(w.n, 2).astype(w.mean.dtype)
    cov = (nf / (nf + SHRINK_PRIOR)) * w.m2 / (nf - 1)
    shrink = SHRINK_TARGET * SHRINK_PRIOR / (nf + SHRINK_PRIOR)
    return cov + shrink * jnp.eye(w.mean.shape[0]) if w.m2.ndim == 2 else cov + shrink


def reshape(log_scale, chol, cov):
    r"""A proposal of covariance shape ``cov`` with the volume of :math:`(s, L)`.

    The new factor is :math:`L' = \operatorname{chol}(C)` (:math:`\sqrt{C}` for a
    vector of variances) and :math:`\log s' = \log s + \overline{\log
    \operatorname{diag} L} - \overline{\log \operatorname{diag} L'}` (means over
    the :math:`d` coordinates), so that :math:`\det(s'L') = \det(sL)`.

    Returns
    -------
    log_scale, chol
    """
    if chol.ndim == 2:
        new_chol = jnp.linalg.cholesky(cov)
        log_diag_old, log_diag_new = jnp.log(jnp.diag(chol)), jnp.log(jnp.diag(new_chol))
    else:
        new_chol = jnp.sqrt(cov)
        log_diag_old, log_diag_new = jnp.log(chol), jnp.log(new_chol)
    return log_scale + (jnp.mean(log_diag_old) - jnp.mean(log_diag_new)), new_chol


# ---------------------------------------------------------------------------- the state
def init(log_scale, chol) -> AdaptState:
    """Adaptation state of a proposal :math:`(\\log s_0, L_0)`; ``chol`` a matrix for a
    dense proposal, a vector of standard deviations for a diagonal one."""
    dtype = jnp.result_type(float)
    return AdaptState(log_scale, chol, log_scale, welford_init(chol.shape[0], chol.ndim == 2), jnp.array(0),
                      jnp.ones((), dtype), jnp.array(0))


def update(state: AdaptState, t, x, accept_prob, accepted, null, *, target: float, windows: Windows) -> AdaptState:
    r"""The adaptation after warm-up iteration ``t``.

    Parameters
    ----------
    state : AdaptState
    t : int
        The iteration (0-based).
    x : array (d,)
        The chain's point after the iteration (the proposal if accepted).
    accept_prob : float
        The iteration's acceptance probability :math:`\alpha_t`.
    accepted : bool
        Whether its proposal was accepted.
    null : bool
        Whether it was a null move (:func:`is_null`).
    target : float
        Noise-free target acceptance rate :math:`\alpha^*_0`.
    windows : Windows
        The schedule (:func:`schedule`).

    Returns
    -------
    AdaptState
        Updated noise level, scale (a Robbins–Monro step unless ``null``),
        window accumulators (when ``t`` lies in a window; the covariance and
        the volume-keeping scale change at a window's end) and Polyak average.
    """
    null_accept, null_count = null_update(state.null_accept, state.null_count, accept_prob, null)
    log_scale = jnp.where(null, state.log_scale,
                          rm_step(state.log_scale, t, accept_prob, noisy_target(target, null_accept)))
    in_window = (t >= windows.first) & (t <= windows.last)
    window = jax.tree.map(lambda a, b: jnp.where(in_window, a, b), welford_update(state.window, x), state.window)
    window_accepts = state.window_accepts + (in_window & accepted & ~null)
    chol = state.chol
    if windows.ends:
        at_end = jnp.any(t == jnp.asarray(windows.ends))
        new_log_scale, new_chol = reshape(log_scale, chol, shrunk_covariance(window))
        ok = at_end & (window_accepts >= chol.shape[0] + 1) & jnp.all(jnp.isfinite(new_chol))
        chol = jnp.where(ok, new_chol, chol)
        log_scale = jnp.where(ok, new_log_scale, log_scale)
        window = Welford(jnp.where(at_end, 0.0, window.mean), jnp.where(at_end, 0.0, window.m2),
                         jnp.where(at_end, 0, window.n))
        window_accepts = jnp.where(at_end, 0, window_accepts)
    avg = polyak(state.log_scale_avg, log_scale, t, windows.avg_start)
    return AdaptState(log_scale, chol, avg, window, window_accepts, null_accept, null_count)


def finalize(state: AdaptState):
    """The frozen proposal of the sampling phase: ``(log_scale, chol)``, the log-scale being
    its Polyak average."""
    return state.log_scale_avg, state.chol
