r"""Emission driven by spiking covariates computed on the chip: rate windows and per-count tables.

A vesicle model deployed with a spiking network may emit from the covariate
``"rate"`` of :mod:`nvppl.snn.field` (eq. 9–12, 14): the spikes of node ℓ's
units over the last W ticks divided by W · size_ℓ,

.. math::

    \mathrm{rate}_\ell(t) = \frac{c_\ell(t)}{W\,\mathrm{size}_\ell}, \qquad
    c_\ell(t) = \sum_{t'=t-W}^{t-1} \sum_{u:\,\ell(u)=\ell} s_u(t'),

so that λ_κ(t, ℓ) = r_max,κ σ(u_κ0 + u_κ1 rate_ℓ(t)) (link ``"sigmoid"``) or
exp(u_κ0 + u_κ1 rate_ℓ(t)) (link ``"log"``). The count c is an integer in
0 … W · size_ℓ, so the chip needs no arithmetic on rates: the node core keeps
c_ℓ in a ring of W per-tick counts (the counted neurons send it a spike
packet each time they fire) and reads the cumulative Poisson table of
*bucket* b = c >> s (:func:`rate_tables`). With s = 0 every count has its own
table and the deployed law is the model's up to the 2⁻¹⁶ thresholds; with
s > 0 the counts ``b·2ˢ … (b+1)·2ˢ − 1`` share the table of their middle
count, and the report gives the error of that (``"emission bucketing"``).

Only emission reads the rate: docking with covariates, global signals, the
migration tilt, content and countdown lifetimes are refused by
:func:`check_rate_model`, naming the feature.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import special, stats

from .vesicles import ONE, DeploymentError, _emission_table, _pmf

__all__ = ["MAX_RATE_SHIFT", "MAX_WINDOW", "RateTables", "bucket_counts", "check_rate_model", "check_window",
           "rate_lambda", "rate_table_words", "rate_tables"]

MAX_WINDOW = 1 << 12       # ticks of a rate window (a config register of 12 bits)
MAX_RATE_SHIFT = 20        # counts of a window fit 20 bits


class RateTables(NamedTuple):
    """Per-count emission tables of a rate-driven vesicle model (see the module docstring).

    Attributes
    ----------
    window : int
        W, ticks of the rate window.
    shift : int
        s: the table of a count c is that of bucket c >> s.
    size : (n,) int64
        Units counted at every node.
    base : (n,) int64
        First bucket row of every node in ``emission``.
    emission : (R, K, L) int64
        Cumulative emission-count thresholds per bucket row and type (padded
        with 2¹⁶), R = Σ_ℓ buckets_ℓ.
    """

    window: int
    shift: int
    size: np.ndarray
    base: np.ndarray
    emission: np.ndarray

    @property
    def buckets(self) -> np.ndarray:
        """Buckets of every node: ``(W · size_ℓ >> s) + 1``."""
        return bucket_counts(self.size, self.window, self.shift)


def bucket_counts(size, window: int, shift: int) -> np.ndarray:
    """Buckets ``(W · size_ℓ >> s) + 1`` of nodes with ``size`` counted units.

    Examples
    --------
    >>> bucket_counts([0, 3, 4], window=10, shift=2).tolist()
    [1, 8, 11]
    """
    return (np.asarray(size, dtype=np.int64) * int(window) >> int(shift)) + 1


def check_rate_model(model, covariates) -> None:
    """Raise :class:`~nvppl.backend.DeploymentError` when the model's covariates are not the on-chip rate.

    The chip computes one covariate, ``"rate"``; emission may read it, docking
    may not (``w[:, 1:]`` must be 0, checked by
    :func:`~nvppl.backend.vesicles.quantize`).
    """
    covs = tuple(covariates)
    others = [c for c in covs if c != "rate"]
    if others:
        raise DeploymentError(f"covariate {others[0]!r}: the chip computes only the spiking covariate 'rate' of a "
                              "node; global signals have no mapping yet")
    if model.covariate_dim != len(covs) or len(covs) != 1:
        raise DeploymentError(f"covariate_dim = {model.covariate_dim} with covariates {covs!r}: a model deployed "
                              "with on-chip covariates has exactly one, 'rate'")


def rate_lambda(model, params, rate) -> np.ndarray:
    """λ (…, K) of the emission law at ``rate`` (…,): r_max σ(u₀ + u₁ rate) or exp(u₀ + u₁ rate)."""
    u = np.asarray(params.u, dtype=float)
    z = u[:, 0] + np.asarray(rate, dtype=float)[..., None] * u[:, 1]
    if model.emission_link == "sigmoid":
        return np.asarray(params.r_max, dtype=float) * special.expit(z)
    return np.exp(z)


def _representatives(size: int, window: int, shift: int):
    """Per bucket of a node with ``size`` units: its middle count's rate; per count: its bucket."""
    top = size * window
    counts = np.arange(top + 1)
    bucket = counts >> shift
    nb = int(bucket[-1]) + 1
    lo = np.arange(nb) << shift
    hi = np.minimum(lo + (1 << shift) - 1, top)
    denom = window * max(size, 1)
    return (lo + hi) / 2.0 / denom, counts / denom, bucket


def _trimmed(cdf):
    """A cumulative table up to its first entry 2¹⁶ (the rest would repeat it)."""
    return cdf[:int(np.flatnonzero(cdf >= ONE)[0]) + 1]


def rate_tables(model, params, size, window: int, shift: int):
    """The :class:`RateTables` of ``model`` with ``params`` and the rows of their error report.

    Parameters
    ----------
    model : VesicleModel
        With one covariate, the rate (see :func:`check_rate_model`).
    params : Params
    size : (n,) int
        Units counted at each node.
    window, shift : int

    Returns
    -------
    tables : RateTables
    rows : list of tuple
        ``(kernel, index, worst, typical, what)`` rows for the quantisation report:
        the emission law's total variation from Poisson at each bucket's
        representative rate, the bucketing error of λ and the error of the
        deployed mean at every count.

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.path_graph(2)), n_types=1, covariate_dim=1)
    >>> params = model.default_params().replace(u=[[-2.0, 4.0]])
    >>> tables, rows = rate_tables(model, params, size=[2, 1], window=4, shift=0)
    >>> tables.buckets.tolist(), tables.emission.shape[:2]
    ([9, 5], (14, 1))
    """
    size = np.asarray(size, dtype=np.int64)
    window, shift = int(window), int(shift)
    K, n = model.n_types, model.n_nodes
    if size.shape != (n,) or (size < 0).any():
        raise ValueError(f"size must hold {n} non-negative unit counts, got {size!r}")
    buckets = bucket_counts(size, window, shift)
    base = np.concatenate([[0], np.cumsum(buckets)[:-1]]).astype(np.int64)
    by_size, rows_tv, rows_bucket, rows_mean = {}, [], [], []
    for s in np.unique(size).tolist():
        rep, rate, bucket = _representatives(int(s), window, shift)
        lam_rep = rate_lambda(model, params, rep)                     # (B, K)
        tabs = [[_trimmed(_emission_table(float(lam_rep[b, k]), f"nodes of {s} units, count bucket {b}, type {k}"))
                 for k in range(K)] for b in range(len(rep))]
        by_size[s] = tabs
        lam = rate_lambda(model, params, rate)                        # (C + 1, K)
        rows_bucket.append(np.abs(lam - lam_rep[bucket]).reshape(-1))
        means = np.zeros((len(rep), K))
        for b in range(len(rep)):
            for k in range(K):
                pmf = _pmf(tabs[b][k])
                x = np.arange(len(pmf))
                means[b, k] = float((x * pmf).sum())
                tv = 0.5 * np.abs(pmf - stats.poisson.pmf(x, lam_rep[b, k])).sum() \
                    + 0.5 * stats.poisson.sf(len(pmf) - 1, lam_rep[b, k])
                rows_tv.append(tv)
        rows_mean.append(np.abs(means[bucket] - lam).reshape(-1))
    L = max(len(t) for tabs in by_size.values() for row in tabs for t in row)
    emission = np.full((int(buckets.sum()), K, L), ONE, dtype=np.int64)
    for node in range(n):
        tabs = by_size[int(size[node])]
        for b, row in enumerate(tabs):
            for k, t in enumerate(row):
                emission[base[node] + b, k, :len(t)] = t
    tv, bk, mn = np.asarray(rows_tv), np.concatenate(rows_bucket), np.concatenate(rows_mean)
    rows = [("emission", "node × count bucket × type", tv.max(), float(np.median(tv)),
             "total variation of the count law from Poisson at the bucket's middle count"),
            ("emission bucketing", "node × count × type", bk.max(), float(np.median(bk)),
             f"|λ at the count − λ at its bucket's middle count| (counts >> {shift})"),
            ("emission mean", "node × count × type", mn.max(), float(np.median(mn)),
             "|deployed mean − λ at the count|")]
    return RateTables(window, shift, size, base, emission), rows


def rate_table_words(size, window: int, shift: int, n_types: int, table_len: int) -> np.ndarray:
    """Table words of every node's rate tables: buckets × types × table length (per node)."""
    return bucket_counts(size, window, shift) * int(n_types) * int(table_len)


def check_window(window) -> int:
    """The rate window W as an int in 1 … :data:`MAX_WINDOW`."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 1 <= window <= MAX_WINDOW:
        raise DeploymentError(f"rate window {window!r}: the node core's window register holds 1..{MAX_WINDOW} "
                              "ticks")
    return int(window)

