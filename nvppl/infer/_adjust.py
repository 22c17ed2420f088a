r"""Curvature adjustment of a composite-likelihood posterior (Godambe information).

The density's composite log-likelihood :math:`\ell_c` (:mod:`nvppl.infer.svi`)
multiplies one-time Poisson marginals as if the counts were independent. Its
maximiser is consistent, but its curvature

.. math::

    H = -\nabla^2 \ell_c(\hat z)

is not the information it carries: counts of the same vesicles at successive
steps are positively correlated, so :math:`H` counts the same information
several times. The information of the composite estimator is the *Godambe*
(sandwich) information

.. math::

    G = H\,J^{-1}H,\qquad J = \mathrm{Var}\big(\nabla \ell_c(z)\big),

the inverse of the sandwich covariance :math:`H^{-1} J H^{-1}` (Godambe 1960;
Varin, Reid & Firth 2011). The *curvature adjustment* (Chandler & Bate 2007;
Ribatet, Cooley & Davison 2012) replaces :math:`H` by :math:`G` in the
posterior: with the prior's curvature :math:`P = -\nabla^2 \log p(\hat z)`
(unconstrained coordinates, Jacobian included), the adjusted posterior is

.. math::

    z \sim \mathcal N\big(c,\; (G + P)^{-1}\big).

Its centre :math:`c` is the mode of :math:`\log p(z) - \tfrac12 (z - \tilde
z)^\top G (z - \tilde z)`, the prior combined with the adjusted likelihood
around the composite maximum-likelihood point :math:`\tilde z`; one Newton
step from the composite MAP :math:`\hat z` (where :math:`\nabla\ell_c = -\nabla
\log p`) gives

.. math::

    c = \hat z + (G + P)^{-1}\,\big(I - H J^{-1}\big)\,\nabla \log p(\hat z),

which needs neither :math:`H^{-1}` nor :math:`\tilde z` (which need not exist
when a direction is not identified). Where the composite likelihood is honest
(:math:`J = H`) it is :math:`\hat z` itself; where it overstates the
information the prior gets back the weight it should have.

:math:`J` is estimated by a parametric bootstrap: ``n_boot`` data sets of the
observed size are simulated at :math:`\hat z` with the observations' detection
model (:func:`simulate_observed`, one call of the compiled simulator for all
of them) and the composite score of each is evaluated at :math:`\hat z` (one
compiled, batched gradient). The sample covariance :math:`\hat J` is
Wishart-distributed, so :math:`E[\hat J^{-1}] = J^{-1} (B - 1)/(B - d - 2)` for
``B`` data sets and ``d`` dimensions; :func:`godambe_information` removes that
bias.

This module holds the arithmetic and the simulation; :mod:`nvppl.infer.svi`
evaluates the scores and builds the fit.
"""

from __future__ import annotations

import time
import warnings
from typing import NamedTuple

import numpy as np

from .._validate import as_numpy_rng
from ..errors import ApproximationWarning

__all__ = ["Adjustment", "fd_hessian", "simulate_observed", "godambe_information", "adjust", "adjust_fit",
           "godambe_covariance", "MIN_EXTRA_BOOT"]

#: Fewest data sets beyond the dimension for which ``J`` counts as estimated:
#: with ``B = d + 2 + MIN_EXTRA_BOOT`` the bias-corrected inverse still has a
#: relative standard error of about ``sqrt(2 / MIN_EXTRA_BOOT)`` (Wishart).
MIN_EXTRA_BOOT = 20


class Adjustment(NamedTuple):
    r"""The curvature adjustment of one fit (unconstrained coordinates of the guide).

    Attributes
    ----------
    applied : bool
        Whether the posterior draws come from the adjusted Gaussian.
    center : ndarray (d,)
        :math:`c`, the adjusted centre.
    cov : ndarray (d, d)
        :math:`(G + P)^{-1}`, the adjusted posterior covariance.
    map_latent : ndarray (d,)
        The composite MAP :math:`\hat z`.
    H, J, P, G : ndarray (d, d)
        Composite curvature, score covariance (bootstrap, uncorrected), prior
        curvature and Godambe information (bias-corrected).
    n_boot : int
        Simulated data sets; ``n_used`` of them had a finite score.
    n_used : int
    seconds : dict
        Wall time of the simulation, of the scores and of the whole adjustment.
    notes : list of str
        Why the adjustment was not applied, or what it did not cover.
    """

    applied: bool
    center: np.ndarray
    cov: np.ndarray
    map_latent: np.ndarray
    H: np.ndarray
    J: np.ndarray
    P: np.ndarray
    G: np.ndarray
    n_boot: int
    n_used: int
    seconds: dict
    notes: list

    def record(self, center_rule: str) -> dict:
        """A JSON-compatible summary (stored as ``nvppl_adjustment``)."""
        sd_adj = np.sqrt(np.clip(np.diag(self.cov), 0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            sd_raw = np.sqrt(np.diag(np.linalg.pinv(self.H + self.P)))
            ratio = sd_adj / sd_raw
        ratio = ratio[np.isfinite(ratio)]
        out = {"method": "sandwich", "applied": bool(self.applied), "center": center_rule,
               "n_boot": int(self.n_boot), "n_used": int(self.n_used),
               "seconds": {k: round(float(v), 4) for k, v in self.seconds.items()}, "notes": list(self.notes)}
        if ratio.size:
            out["sd_ratio_range"] = [round(float(ratio.min()), 4), round(float(ratio.max()), 4)]
        return out


def fd_hessian(grad, z: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """Symmetrised central-difference Hessian from a gradient function."""
    z = np.asarray(z, dtype=np.float64)
    d = z.size
    H = np.empty((d, d))
    for i in range(d):
        e = np.zeros(d)
        e[i] = step
        H[i] = (np.asarray(grad(z + e), dtype=np.float64) - np.asarray(grad(z - e), dtype=np.float64)) / (2 * step)
    return 0.5 * (H + H.T)


def simulate_observed(model, params, obs, n_boot: int, key, covariates=None):
    """``n_boot`` data sets like ``obs`` simulated at ``params``.

    All ``n_boot × R`` runs are simulated in one call of :func:`nvppl.simulate`
    (runs are independent, so consecutive blocks of ``R`` runs are independent
    data sets of the observed size) and seen through the observations'
    detection model.

    Returns
    -------
    (counts, docks, seconds) : ndarray or None, ndarray or None, float
        Arrays ``(n_boot, R, T, n, K)`` of what ``obs`` observes, and the wall time.
    """
    from ..covariates import model_features
    from ..simulate import simulate

    start = time.perf_counter()
    R, T = obs.n_runs, obs.n_steps
    F = model_features(model, covariates, R, T)
    F = np.tile(F, (n_boot, 1, 1, 1))
    seeds = as_numpy_rng(key).integers(0, np.iinfo(np.int32).max, size=2)
    traces = simulate(model, params, n_steps=T, n_runs=n_boot * R, key=int(seeds[0]),
                      covariates=F if model.covariate_dim else None)
    seen = traces.observe(counts=obs.counts is not None, docks=obs.docks is not None, detection=obs.detection,
                          p_det=obs.p_det, key=int(seeds[1]), floor=obs.floor)

    def split(x):
        return None if x is None else np.asarray(x).reshape((n_boot, R) + np.shape(x)[1:])

    return split(seen.counts), split(seen.docks), time.perf_counter() - start


def godambe_information(H: np.ndarray, scores: np.ndarray, rtol: float = 1e-8):
    r"""Godambe information :math:`G = H \hat J^{-1} H` from bootstrap scores.

    Parameters
    ----------
    H : ndarray (d, d)
        Curvature :math:`-\nabla^2 \ell_c` of the composite log-likelihood.
    scores : ndarray (B, d)
        Composite scores of ``B`` simulated data sets at the same point.
    rtol : float
        Eigenvalues of :math:`\hat J` below ``rtol`` times the largest count as
        zero: directions along which the score does not vary from data set to
        data set.

    Returns
    -------
    (G, J, rank, notes) : ndarray (d, d), ndarray (d, d), int, list of str
        ``J`` is the sample covariance of the scores and ``rank`` its rank.
        ``notes`` is empty when ``G`` is usable, else it says why not (too
        few data sets for the rank, no score variance at all, no positive
        composite curvature along the scores' directions).

    Notes
    -----
    :math:`(B-1)\hat J` is Wishart with ``B − 1`` degrees of freedom, so
    :math:`E[\hat J^{-1}] = J^{-1}(B-1)/(B-r-2)` on the ``r`` directions of
    the scores; ``G`` carries the factor :math:`(B-r-2)/(B-1)` that removes
    this bias.

    When the scores span only ``r < d`` directions (the composite likelihood
    depends on a function of fewer parameters, e.g. the survival
    :math:`(1-a)(1-δ)`), :math:`G` is the curvature of the likelihood after
    the linear change of coordinates :math:`z ↦ C z` of Chandler & Bate
    (2007), :math:`G = C^\top H C`, with :math:`C` the symmetric map that
    sends the curvature :math:`H_r` on the scores' span :math:`U_r` to its
    Godambe value :math:`H_r J_r^{-1} H_r` and leaves the other directions
    alone: :math:`C = U_r C_r U_r^\top + N N^\top`,
    :math:`C_r = H_r^{-1/2}(H_r^{1/2} G_r H_r^{1/2})^{1/2} H_r^{-1/2}`
    (eigenvalues of :math:`H_r` floored at :math:`10^{-9}` of the largest:
    where only the prior curves the posterior, :math:`G_r` is near zero anyway),
    and negative eigenvalues of :math:`C^\top H C` (where :math:`H` itself is
    indefinite) set to zero: no information rather than negative information.
    Along the other directions the composite curvature carries no
    information from the data's variability (it comes from the curvature of
    the identified function), so it is kept. With ``r = d`` this is
    :math:`H J^{-1} H`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> H = np.diag([4.0, 1.0])
    >>> scores = rng.normal(size=(4000, 2)) * np.sqrt([8.0, 1.0])   # J = diag(8, 1)
    >>> G, J, rank, notes = godambe_information(H, scores)
    >>> np.round(np.diag(G), 1), rank, notes                        # H² / J = (2, 1)
    (array([2., 1.]), 2, [])
    """
    scores = np.asarray(scores, dtype=np.float64)
    B, d = scores.shape
    J = np.atleast_2d(np.cov(scores, rowvar=False)) if B > 1 else np.zeros((d, d))
    J = 0.5 * (J + J.T)
    s, U = np.linalg.eigh(J)
    top = max(float(s.max()), 0.0)
    keep = s > rtol * top if top > 0 else np.zeros(d, bool)
    r = int(keep.sum())
    Hs = 0.5 * (H + H.T)
    notes = []
    if r == 0:
        notes.append("the composite score does not vary over the simulated data sets (J = 0)")
    elif B - r - 2 < MIN_EXTRA_BOOT:
        notes.append(f"{B} simulated data sets are too few to estimate J in {r} dimensions "
                     f"(at least {r + 2 + MIN_EXTRA_BOOT} needed)")
    if notes:
        return np.zeros((d, d)), J, r, notes
    Ur = U[:, keep]
    Hr = Ur.T @ Hs @ Ur
    Jr_inv = np.diag(1.0 / s[keep]) * ((B - r - 2) / (B - 1))
    Gr = Hr @ Jr_inv @ Hr
    if r == d:
        G = Ur @ Gr @ Ur.T
        return 0.5 * (G + G.T), J, r, notes
    w, V = np.linalg.eigh(0.5 * (Hr + Hr.T))
    if w.max() <= 0:
        notes.append("the composite curvature is not positive along any direction of the score")
        return np.zeros((d, d)), J, r, notes
    w = np.maximum(w, 1e-9 * w.max())  # directions the prior alone curves: G_r is ≈ 0 there anyway
    root, inv_root = (V * np.sqrt(w)) @ V.T, (V / np.sqrt(w)) @ V.T
    m, Vm = np.linalg.eigh(0.5 * (root @ Gr @ root + (root @ Gr @ root).T))
    Cr = inv_root @ ((Vm * np.sqrt(np.maximum(m, 0.0))) @ Vm.T) @ inv_root
    N = U[:, ~keep]
    cross = Ur @ (Cr @ (Ur.T @ Hs @ N)) @ N.T  # C^T H C with C = U_r C_r U_r^T + N N^T, G_r exact
    G = Ur @ Gr @ Ur.T + cross + cross.T + N @ (N.T @ Hs @ N) @ N.T
    g, Vg = np.linalg.eigh(0.5 * (G + G.T))  # C^T H C is indefinite where H is (prior-dominated directions):
    return (Vg * np.maximum(g, 0.0)) @ Vg.T, J, r, notes  # no information there rather than negative


def _psd_inverse(A: np.ndarray, floor: float = 1e-10):
    """Inverse of a symmetric matrix with its eigenvalues floored (relative to the largest)."""
    w, V = np.linalg.eigh(0.5 * (A + A.T))
    w = np.maximum(w, floor * max(float(w.max()), 1e-300))
    return (V / w) @ V.T, (V * w) @ V.T


def adjust(z_map, H_total, P, scores, grad_log_prior, center: str = "adjusted", guide_mean=None,
           seconds: dict | None = None) -> Adjustment:
    r"""The adjusted Gaussian from the composite MAP, curvatures and bootstrap scores.

    Parameters
    ----------
    z_map : ndarray (d,)
        Composite MAP :math:`\hat z`.
    H_total : ndarray (d, d)
        Curvature of the composite potential (prior included) at :math:`\hat z`.
    P : ndarray (d, d)
        Curvature of the prior potential at :math:`\hat z`; ``H = H_total − P``.
    scores : ndarray (B, d)
        Composite scores of simulated data sets at :math:`\hat z` (rows with a
        non-finite entry are dropped).
    grad_log_prior : ndarray (d,)
        :math:`\nabla \log p(\hat z)`.
    center : {"adjusted", "map", "guide"}
        The mode of the adjusted posterior (one Newton step, see the module
        notes), the composite MAP, or ``guide_mean``.
    guide_mean : ndarray (d,), optional
        The guide's mean, for ``center="guide"``.

    Returns
    -------
    Adjustment

    Examples
    --------
    A composite likelihood that counts each of ``n`` observations twice has
    :math:`H = 2n`, :math:`J = 4n`, so :math:`G = n` and the adjusted variance
    under a flat prior is :math:`1/n`:

    >>> import numpy as np
    >>> n = 50.0
    >>> scores = np.random.default_rng(1).normal(0, np.sqrt(4 * n), size=(20000, 1))
    >>> a = adjust(np.zeros(1), np.array([[2 * n]]), np.zeros((1, 1)), scores, np.zeros(1))
    >>> a.applied, round(float(a.cov[0, 0] * n), 1)
    (True, 1.0)
    """
    z_map = np.asarray(z_map, dtype=np.float64)
    d = z_map.size
    P = 0.5 * (np.asarray(P, dtype=np.float64) + np.asarray(P, dtype=np.float64).T)
    H = np.asarray(H_total, dtype=np.float64) - P
    scores = np.asarray(scores, dtype=np.float64).reshape(-1, d)
    finite = np.all(np.isfinite(scores), axis=1)
    n_boot, n_used = len(scores), int(finite.sum())
    notes = []
    if n_used < n_boot:
        notes.append(f"{n_boot - n_used} of {n_boot} simulated data sets gave a non-finite composite score")
    G, J, rank, why = godambe_information(H, scores[finite])
    notes += why
    applied = not why and n_used >= 0.95 * n_boot
    if applied and rank < d:
        notes.append(f"the composite score varies along {rank} of {d} directions only (J singular): the "
                     "adjustment applies to those, the others keep the composite curvature (a likelihood that "
                     "depends on fewer combinations of the parameters; see nvppl.infer.identify)")
    if applied:
        cov, prec = _psd_inverse(G + P)
        g = np.asarray(grad_log_prior, dtype=np.float64)
        if center == "adjusted":  # G H⁻¹ g = G (ẑ − z̃): the adjusted likelihood keeps its maximum z̃
            c = z_map + cov @ (g - G @ (np.linalg.pinv(H, rcond=1e-10) @ g))
        elif center == "map":
            c = z_map
        elif center == "guide":
            c = np.asarray(guide_mean, dtype=np.float64)
        else:
            raise ValueError(f"center must be 'adjusted', 'map' or 'guide', got {center!r}")
        if not np.all(np.isfinite(c)):
            applied, notes = False, notes + ["the adjusted centre is not finite"]
    if not applied:
        cov, c = _psd_inverse(H_total)[0], z_map
    return Adjustment(bool(applied), c, 0.5 * (cov + cov.T), z_map, H, J, P, G, n_boot, n_used,
                      dict(seconds or {}), notes)


def adjust_fit(model, comp, params, z_map, H, map_iter: int, n_boot, key, center: str, guide_mean,
               dense_max: int):
    """The curvature adjustment of an SVI fit, or why it does not apply: ``(Adjustment or None, record)``.

    ``comp`` is the fit's composite-likelihood record (:mod:`nvppl.infer.svi`):
    its ``programs`` give the constraining map and the prior's gradient, its
    ``boot(z, sites, n_boot, key)`` the bootstrap scores. Warns with
    :class:`~nvppl.errors.ApproximationWarning` when the adjustment cannot be
    applied or does not cover everything (a mean-field density)."""
    import jax.numpy as jnp

    from ..density import exact_in_mean

    d = z_map.size
    record = {"method": "sandwich", "applied": False}
    why = None
    if map_iter == 0:
        why = "no composite MAP search (map_iter=0)"
    elif H is None:
        why = (f"{d} unconstrained dimensions: the curvature is only formed up to {dense_max}" if d > dense_max
               else "the composite curvature at the MAP is not finite")
    if why is not None:
        record["notes"] = [why]
        warnings.warn(f"the SVI posterior is not adjusted ({why}): its intervals use the composite curvature "
                      "and are too narrow; correct them with method='is' or method='pmmh'",
                      ApproximationWarning, stacklevel=4)
        return None, record
    start = time.perf_counter()
    n_boot = int(max(200, 2 * d + 50) if n_boot is None else n_boot)
    progs = comp.programs
    zj = jnp.asarray(z_map)
    scores, seconds = comp.boot(z_map, progs.constrain(zj, params), n_boot, key)
    t = time.perf_counter()
    P = fd_hessian(lambda x: np.asarray(progs.prior_grad(jnp.asarray(x))), z_map)
    grad_log_prior = -np.asarray(progs.prior_grad(zj), dtype=np.float64)
    seconds["prior_curvature"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - start
    adj = adjust(z_map, H, P, scores, grad_log_prior, center=center, guide_mean=guide_mean, seconds=seconds)
    if not exact_in_mean(model):
        adj.notes.append("the density is a mean-field approximation for this model (content-dependent migration "
                         "or docking): the composite likelihood is not built from exact marginals, so the "
                         "adjusted intervals do not account for its bias")
    record = adj.record(center)
    if adj.notes:
        state = "adjusted" if adj.applied else "not adjusted"
        warnings.warn(f"the SVI posterior is {state}: {'; '.join(adj.notes)}. Check it with method='is' or "
                      "method='pmmh'", ApproximationWarning, stacklevel=4)
    return adj, record


def godambe_covariance(fit, n_boot: int | None = None, key=0, step: float = 1e-5):
    r"""Sandwich (Godambe) covariance of the composite estimate, by parametric bootstrap.

    The composite likelihood counts correlated observations as independent, so
    its curvature :math:`H` (the guide's precision) overstates the information.
    The sandwich :math:`V = H^{-1} J H^{-1}` with :math:`J = \mathrm{Var}(\nabla
    \ell_c)` the variance of the composite score corrects it (Godambe 1960;
    Varin, Reid & Firth 2011). :math:`J` is estimated from ``n_boot`` data sets
    simulated at the composite MAP with the observation model of the data (the
    runs of one data set are too few to estimate it), :math:`H` (prior
    included) by finite differences of the gradient at the composite MAP.

    Parameters
    ----------
    fit : Fit
        A ``method="svi"`` fit.
    n_boot : int, optional
        Simulated data sets. ``None`` reuses the bootstrap of the fit's
        curvature adjustment when it has one, else ``max(50, 4 d)`` for ``d``
        unconstrained dimensions.
    key : int or jax key

    Returns
    -------
    (mean, V) : ndarray (d,), ndarray (d, d)
        The composite MAP and the sandwich covariance, in the guide's latent coordinates.
    """
    import jax.numpy as jnp

    comp = fit.extra["composite"]
    z = np.asarray(fit.extra["map_latent"], dtype=np.float64)
    d = z.size
    adj = fit.extra.get("adjustment")
    if n_boot is None and adj is not None and adj.n_used > 1:
        H, J = adj.H + adj.P, adj.J
    else:
        n_boot = int(max(50, 4 * d) if n_boot is None else n_boot)
        H = fd_hessian(lambda x: np.asarray(comp.potential(jnp.asarray(x), comp.data)[1]), z, step)
        sites = comp.programs.constrain(jnp.asarray(z), fit.extra["guide_params"])
        scores, _ = comp.boot(z, sites, n_boot, key)
        scores = scores[np.all(np.isfinite(scores), axis=1)]
        J = np.cov(scores, rowvar=False).reshape(d, d)
    Hinv = np.linalg.pinv(H)
    V = Hinv @ J @ Hinv
    return z, 0.5 * (V + V.T)
