"""Two-point SPSA for the HMN learning rates (hmn eq. 7, appendix 10.2–10.3).

The rates ``η = (η_local, η_global)`` (any number of coordinates) follow the
appendix's pseudocode. At step ``t = 1, 2, …``

.. math::

    \\varepsilon_t = \\varepsilon_0/\\sqrt t, \\quad \\Delta = \\varepsilon_t \\odot s,\\ s_k \\in \\{-1, +1\\}
    \\text{ equiprobable}, \\\\
    L_\\pm = L_{meta}(\\eta \\pm \\Delta), \\quad
    \\hat g = \\frac{L_+ - L_-}{2\\Delta}, \\quad
    \\eta \\leftarrow \\mathrm{clip}(\\eta - \\alpha_{meta} \\odot \\hat g,\\ \\eta_{min}, \\eta_{max}),

with ``ε₀ = 0.05 η₀`` per coordinate (appendix 10.2; ``eps_frac``) unless
given. ``α_meta``, ``η_min`` and ``η_max`` may differ per coordinate (eq. 7 has
``α_meta,1`` and ``α_meta,2``). The perturbed rates ``η ± Δ`` are evaluated as
they are, even where they leave ``[η_min, η_max]``; only the update is clipped.

**Common random numbers**: :func:`step` calls ``meta_loss(η + Δ, k)`` and
``meta_loss(η − Δ, k)`` with the *same* key ``k``, so a random meta-loss (an
episode of a task) sees the same draws at both points and ``L₊ − L₋``
measures the effect of ``Δ`` rather than of the noise. When the two
evaluations cannot be made from one state (online learning, where the two
windows follow each other), use :func:`perturbation` and :func:`apply`, which
:func:`step` is made of.

Keys: ``(k_Δ, k_L) = jax.random.split(key)``; the signs are
``s = 2·jax.random.bernoulli(k_Δ, ½, (n,)) − 1``.

Examples
--------
>>> import jax.numpy as jnp
>>> from nvppl.snn import spsa
>>> cfg = spsa.SPSAConfig(alpha_meta=0.1, eta_min=0.0, eta_max=10.0)
>>> st = spsa.init(cfg, [1.0, 2.0])
>>> loss = lambda eta, key: jnp.sum((eta - jnp.array([3.0, 1.0])) ** 2)
>>> for t in range(200):
...     st, info = spsa.step(cfg, st, loss, key=t)
>>> [round(float(v), 2) for v in st.eta]
[3.0, 1.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["SPSAConfig", "SPSAState", "SPSAInfo", "init", "perturbation", "apply", "step"]

_F = jnp.float32


def _floats(value, name, *, allow_inf=False, positive=False):
    arr = np.atleast_1d(np.asarray(value))
    if arr.ndim != 1 or arr.size == 0 or arr.dtype == bool or not (
            np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"SPSAConfig.{name} must be a number or a 1-d sequence of numbers, got {value!r}")
    arr = arr.astype(np.float64)
    for k, v in enumerate(arr.tolist()):
        if math.isnan(v) or (not allow_inf and not math.isfinite(v)) or (positive and not v > 0):
            what = "a positive finite number" if positive else ("a number" if allow_inf else "a finite number")
            raise ValueError(f"SPSAConfig.{name}[{k}] must be {what}, got {v!r}")
    return tuple(float(v) for v in arr)


@dataclass(frozen=True)
class SPSAConfig:
    """Step sizes and bounds of the SPSA update (see the module docstring).

    Parameters
    ----------
    alpha_meta : float or sequence of float
        Meta step size α_meta (> 0), one or one per coordinate.
    eta_min, eta_max : float or sequence of float
        Clipping bounds (``±inf`` allowed), one or one per coordinate.
    eps_frac : float
        ``ε₀ = eps_frac · |η₀|`` when :func:`init` is not given ``eps0`` (0.05, appendix 10.2).

    Examples
    --------
    >>> from nvppl.snn.spsa import SPSAConfig
    >>> SPSAConfig(alpha_meta=[0.1, -1.0])
    Traceback (most recent call last):
    ...
    ValueError: SPSAConfig.alpha_meta[1] must be a positive finite number, got -1.0
    """

    alpha_meta: object = 0.01
    eta_min: object = 0.0
    eta_max: object = math.inf
    eps_frac: float = 0.05

    def __post_init__(self):
        object.__setattr__(self, "alpha_meta", _floats(self.alpha_meta, "alpha_meta", positive=True))
        object.__setattr__(self, "eta_min", _floats(self.eta_min, "eta_min", allow_inf=True))
        object.__setattr__(self, "eta_max", _floats(self.eta_max, "eta_max", allow_inf=True))
        object.__setattr__(self, "eps_frac", _floats(self.eps_frac, "eps_frac", positive=True))
        if len(self.eps_frac) != 1:
            raise ValueError(f"SPSAConfig.eps_frac must be one number, got {self.eps_frac!r}")
        nlo, nhi = len(self.eta_min), len(self.eta_max)
        if nlo != nhi and 1 not in (nlo, nhi):
            raise ValueError(f"SPSAConfig.eta_min ({nlo} values) and eta_max ({nhi} values) must have the same "
                             "length or one value")
        lo, hi = np.broadcast_arrays(np.asarray(self.eta_min), np.asarray(self.eta_max))
        bad = np.flatnonzero(lo > hi)
        if bad.size:
            k = int(bad[0])
            raise ValueError(f"SPSAConfig.eta_min[{k}] = {lo[k]} exceeds eta_max[{k}] = {hi[k]}")

    def arrays(self, n: int):
        """``(α_meta, η_min, η_max)`` as NumPy arrays of ``n`` coordinates."""
        out = []
        for name in ("alpha_meta", "eta_min", "eta_max"):
            v = getattr(self, name)
            if len(v) not in (1, n):
                raise ValueError(f"SPSAConfig.{name} has {len(v)} values; η has {n} coordinates")
            out.append(np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)))
        return tuple(out)


class SPSAState(NamedTuple):
    """The rates, the initial perturbation sizes and the number of steps taken."""

    eta: jax.Array    # (n,) current η
    eps0: jax.Array   # (n,) ε₀
    t: jax.Array      # steps taken (the next perturbation uses t + 1)


class SPSAInfo(NamedTuple):
    """One step: the perturbation Δ, the two losses and the gradient estimate ĝ."""

    delta: jax.Array
    loss_plus: jax.Array
    loss_minus: jax.Array
    g_hat: jax.Array


def _key(key):
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.PRNGKey(int(key))
    return key


def init(cfg: SPSAConfig, eta0, eps0=None) -> SPSAState:
    """Start at ``η₀`` (a vector) with ``ε₀ = eps_frac·|η₀|`` or the given ``eps0`` (> 0 per coordinate).

    Raises
    ------
    ValueError
        ``η₀`` outside ``[η_min, η_max]``, or a zero ``ε₀`` (naming the coordinate).
    """
    eta0 = np.atleast_1d(np.asarray(eta0, dtype=np.float64))
    if eta0.ndim != 1 or not np.all(np.isfinite(eta0)):
        raise ValueError(f"eta0 must be a vector of finite numbers, got {eta0!r}")
    n = eta0.shape[0]
    _, lo, hi = cfg.arrays(n)
    for k in range(n):
        if not lo[k] <= eta0[k] <= hi[k]:
            raise ValueError(f"eta0[{k}] = {eta0[k]} lies outside [eta_min, eta_max] = [{lo[k]}, {hi[k]}]")
    if eps0 is None:
        e0 = cfg.eps_frac[0] * np.abs(eta0)
        zero = np.flatnonzero(e0 == 0)
        if zero.size:
            raise ValueError(f"eta0[{int(zero[0])}] = 0 gives ε₀ = {cfg.eps_frac[0]}·η₀ = 0 (no perturbation); "
                             "pass eps0")
    else:
        e0 = np.broadcast_to(np.asarray(eps0, dtype=np.float64), (n,))
        bad = np.flatnonzero(~(np.isfinite(e0) & (e0 > 0)))
        if bad.size:
            raise ValueError(f"eps0[{int(bad[0])}] must be a positive finite number, got {e0[bad[0]]}")
    return SPSAState(jnp.asarray(eta0, _F), jnp.asarray(e0, _F), jnp.asarray(0, jnp.int32))


def perturbation(cfg: SPSAConfig, state: SPSAState, key):
    """Draw ``Δ = ε_t s`` for the next step ``t = state.t + 1`` (``ε_t = ε₀/√t``); returns ``(Δ, state)``
    with the step counted."""
    t = state.t + 1
    s = 2.0 * jax.random.bernoulli(_key(key), 0.5, state.eta.shape).astype(_F) - 1.0
    return state.eps0 / jnp.sqrt(t.astype(_F)) * s, state._replace(t=t)


def apply(cfg: SPSAConfig, state: SPSAState, delta, loss_plus, loss_minus):
    """``ĝ = (L₊ − L₋)/(2Δ)``, ``η ← clip(η − α_meta ĝ, η_min, η_max)``; returns ``(state, ĝ)``."""
    alpha, lo, hi = (jnp.asarray(a, _F) for a in cfg.arrays(state.eta.shape[0]))
    g = (jnp.asarray(loss_plus, _F) - jnp.asarray(loss_minus, _F)) / (2.0 * delta)
    return state._replace(eta=jnp.clip(state.eta - alpha * g, lo, hi)), g


def step(cfg: SPSAConfig, state: SPSAState, meta_loss: Callable, key):
    """One two-point SPSA step (appendix 10.3) with common random numbers.

    Parameters
    ----------
    meta_loss : callable
        ``meta_loss(eta, key) -> scalar``; called twice with the same key.
    key : int or JAX key

    Returns
    -------
    (SPSAState, SPSAInfo)
    """
    k_delta, k_loss = jax.random.split(_key(key))
    delta, state = perturbation(cfg, state, k_delta)
    lp = meta_loss(state.eta + delta, k_loss)
    lm = meta_loss(state.eta - delta, k_loss)
    state, g = apply(cfg, state, delta, lp, lm)
    return state, SPSAInfo(delta, jnp.asarray(lp, _F), jnp.asarray(lm, _F), g)
