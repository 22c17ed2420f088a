"""Vesicle models on the chip: what can be deployed, quantised tables, the deployed Params.

Every probability of a vesicle model becomes a 16-bit threshold compared with
a draw u ∈ {0, …, 2¹⁶ − 1} of the on-chip generator: an event with threshold
q happens when u < q, so its deployed probability is q / 2¹⁶ exactly.

- **Emission** (eq. 9–12): the Poisson count of a (node, type) per tick is drawn
  by inversion from the cumulative table ``round(F_k · 2¹⁶)``, k = 0, 1, …, up
  to the first entry that reaches 2¹⁶.
- **Migration** (eq. 15): a cumulative table ``round(cumsum(T_κ[ℓ, ·]) · 2¹⁶)``
  per node and type, its last entry 2¹⁶; the move is the first slot whose
  entry exceeds u. Rounding the cumulative sums keeps every deployed row a
  probability vector.
- **Docking** (eq. 18), **absorption** and **decay** (eq. 38): one threshold
  each.

:func:`quantize` returns the tables, the :class:`~nvppl.Params` actually
deployed (``quantized_params``: rows of T, δ, a, and the emission and docking
weights whose rate and probability equal the deployed ones) and a report of
the worst-case and typical error per kernel. The deployed emission count is a
discretised Poisson law; its mean defines the deployed emission weight, and
the report gives its total-variation distance from the Poisson law of that
mean.

A **vesicle word** (48-bit WRITE payload to a core's vesicle mailbox, see
:func:`vesicle_word`): bits 2–0 type, 6–3 releases left (15 = unlimited),
22–7 lifetime counter (countdown lifetimes; 0 for geometric ones), 46–23 the
vesicle's id (low 24 bits), bit 47 zero.

Models the chip cannot express are refused by :func:`check_deployable`,
naming the feature; nothing is approximated silently. Emission from the spike
rate of a node, computed on the chip, is deployed with a spiking network
(:mod:`nvppl.backend.vesicle_rates`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import special, stats

ONE = 1 << 16            # thresholds are compared with 16-bit draws
MAX_TYPES = 8            # 3-bit type field
MAX_BUDGET = 14          # 4-bit budget field; 15 means unlimited
MAX_EMISSION_TABLE = 64  # entries of an emission table


class DeploymentError(ValueError):
    """A vesicle model or its parameters cannot be put on the chip; names the feature."""


class VesicleTables(NamedTuple):
    """Quantised kernels of a vesicle model (thresholds out of 2¹⁶).

    Attributes
    ----------
    emission : (K, L) int64
        Cumulative thresholds of the emission count per type (L = longest table;
        shorter tables are padded with 2¹⁶).
    migration : (K, n, M) int64
        Cumulative thresholds per type, node and candidate slot (2¹⁶ from the
        last candidate on; all 0 on a sink).
    dock : (K,) int64
        Docking thresholds.
    absorb : (n,) int64
        Absorption thresholds.
    decay : (K,) int64
        Per-step decay thresholds (geometric lifetimes).
    budget : (K,) int64
        Releases per vesicle, 15 for unlimited.
    rate : RateTables or None
        Emission driven by the on-chip spike rate
        (:class:`nvppl.backend.vesicle_rates.RateTables`); ``emission`` is then
        empty (K × 0).
    """

    emission: np.ndarray
    migration: np.ndarray
    dock: np.ndarray
    absorb: np.ndarray
    decay: np.ndarray
    budget: np.ndarray
    rate: object = None


def check_deployable(model, rate: bool = False) -> None:
    """Raise :class:`DeploymentError` naming the first feature of ``model`` without a chip mapping.

    The chip runs geometric lifetimes, emission and docking without covariates,
    no content and no migration tilt, up to 8 types and budgets up to 14 (or
    unlimited), absorption and sinks. With ``rate=True`` (a model deployed with
    a spiking network, :mod:`nvppl.backend.vesicle_rates`) emission may read
    the one covariate computed on the chip, the spike rate of a node.
    """
    K = model.n_types
    if K > MAX_TYPES:
        raise DeploymentError(f"the model has {K} vesicle types; a vesicle word holds {MAX_TYPES}")
    if model.lifetime != "geometric":
        raise DeploymentError(f"lifetime {model.lifetime!r}: the chip runs geometric lifetimes (a survival "
                              "threshold); countdown lifetimes have no mapping yet")
    if model.covariate_dim and not rate:
        raise DeploymentError(f"covariate_dim = {model.covariate_dim}: emission and docking with covariates "
                              "have no mapping for a model alone; emission from the spike rate of a node is "
                              "deployed with its spiking network (nvppl.backend.compile(lif_network, field=...))")
    if rate and model.covariate_dim != 1:
        raise DeploymentError(f"covariate_dim = {model.covariate_dim}: a model deployed with on-chip covariates "
                              "reads exactly one, the rate")
    if model.content_dim:
        raise DeploymentError(f"content_dim = {model.content_dim}: vesicle content has no mapping yet")
    if model.tilted:
        raise DeploymentError("the migration tilt (v, Q) has no mapping yet")
    for k, b in enumerate(np.asarray(model.budget, dtype=float)):
        if np.isfinite(b) and not (b == int(b) and 1 <= b <= MAX_BUDGET):
            raise DeploymentError(f"type {k}: budget {b} does not fit the 4-bit budget field (1..{MAX_BUDGET} "
                                  "or unlimited)")


def threshold(p) -> np.ndarray:
    """Thresholds ``round(p · 2¹⁶)`` of probabilities ``p``.

    Examples
    --------
    >>> threshold([0.0, 0.2, 1.0]).tolist()
    [0, 13107, 65536]
    """
    return np.rint(np.asarray(p, dtype=np.float64) * ONE).astype(np.int64)


def emission_rates(model, params) -> np.ndarray:
    """Emission rate λ_κ per type without covariates: r_max · σ(u₀) (sigmoid link) or exp(u₀) (eq. 9–12)."""
    u0 = np.asarray(params.u, dtype=float)[:, 0]
    if model.emission_link == "sigmoid":
        return np.asarray(params.r_max, dtype=float) * special.expit(u0)
    return np.exp(u0)


def _emission_table(lam, where):
    k = np.arange(MAX_EMISSION_TABLE)
    cdf = threshold(stats.poisson.cdf(k, lam))
    full = np.flatnonzero(cdf >= ONE)
    if not full.size:
        raise DeploymentError(f"{where}: emission rate {lam:.4g} needs more than {MAX_EMISSION_TABLE} table entries")
    cdf[full[0]:] = ONE
    return cdf


def _pmf(cdf):
    return np.diff(np.concatenate([[0], cdf])) / ONE


def _logit(p, what):
    if not 0 < p < 1:
        raise DeploymentError(f"{what}: the deployed probability {p} is 0 or 1; the model cannot express it")
    return float(special.logit(p))


def quantize(model, params, rate: bool = False):
    """Quantised tables, deployed Params and the error report of ``params``.

    With ``rate=True`` emission reads the on-chip rate and its tables are made
    by :func:`nvppl.backend.vesicle_rates.rate_tables`: the emission table here
    is then empty (K × 0), ``u`` is deployed as given and the report has no
    emission rows; docking must not read the covariate.

    Returns
    -------
    tables : VesicleTables
    quantized : Params
        The parameters actually deployed.
    report : pandas.DataFrame
        Per kernel: ``kernel``, ``index`` (type/node), ``worst`` and ``typical``
        (median) absolute error of a probability (total variation per row for
        T and for the emission law), and ``what`` the error measures.

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(4)), n_types=1)
    >>> tables, q, report = quantize(model, model.default_params())
    >>> float(q.T.sum(axis=-1).max()), list(report["kernel"])
    (1.0, ['emission', 'emission mean', 'migration', 'docking', 'absorption', 'decay'])
    """
    check_deployable(model, rate=rate)
    params = model.check_params(params).to_numpy()
    K, n = model.n_types, model.n_nodes
    sub = model.substrate
    ncand = np.asarray((sub.candidates >= 0).sum(axis=1))
    M = sub.candidates.shape[1]
    rows = []
    if rate:
        w = np.asarray(params.w, dtype=float)
        bad = np.flatnonzero(np.any(w[:, 1:] != 0, axis=1))
        if bad.size:
            k = int(bad[0])
            raise DeploymentError(f"type {k}: docking with covariates (w[{k}, 1:] = {w[k, 1:].tolist()}) has no "
                                  "mapping yet; only emission reads the rate")
        emission, u_q = np.zeros((K, 0), dtype=np.int64), np.asarray(params.u, dtype=float)[:, 0]
        tv_model = np.zeros(0)
    else:
        emission, u_q, tv_model, em_rows = _emission(model, params)
        rows += em_rows

    # migration: cumulative thresholds, exact probability rows
    T = np.asarray(params.T, dtype=float)
    mig = np.zeros((K, n, M), dtype=np.int64)
    T_q = np.zeros_like(T)
    for k in range(K):
        for i in range(n):
            c = ncand[i]
            if c == 0:
                continue
            cum = threshold(np.cumsum(T[k, i, :c]))
            cum[-1] = ONE
            cum = np.maximum.accumulate(cum)
            mig[k, i, :c] = cum
            mig[k, i, c:] = ONE
            T_q[k, i, :c] = _pmf(cum)
    tv_rows = 0.5 * np.abs(T_q - T).sum(axis=-1)[:, ncand > 0]
    rows.append(("migration", "type × node", tv_rows.max(initial=0.0),
                 float(np.median(tv_rows)) if tv_rows.size else 0.0, "total variation per row of T"))

    # docking, absorption, decay
    p_dock = special.expit(np.asarray(params.w, dtype=float)[:, 0])
    dock = threshold(p_dock)
    w_q = np.array([_logit(dock[k] / ONE, f"type {k} docking") for k in range(K)])
    a = np.asarray(params.a, dtype=float)
    absorb = threshold(a)
    delta = np.asarray(params.delta, dtype=float)
    decay = threshold(delta)
    for name, p, q in (("docking", p_dock, dock), ("absorption", a, absorb), ("decay", delta, decay)):
        err = np.abs(q / ONE - p)
        rows.append((name, "node" if name == "absorption" else "type", err.max(), float(np.median(err)),
                     "|deployed − fitted| probability"))
    for k in range(K):
        if decay[k] == 0:
            raise DeploymentError(f"type {k}: decay δ = {delta[k]:.3g} rounds to 0 on the chip: vesicles would "
                                  "never expire")
    b = np.asarray(model.budget, dtype=float)
    budget = np.where(np.isfinite(b), np.nan_to_num(b, posinf=15), 15).astype(np.int64)

    w = np.asarray(params.w, dtype=float).copy()
    w[:, 0] = w_q
    u = np.asarray(params.u, dtype=float).copy()
    u[:, 0] = u_q
    quantized = params.replace(u=u, T=T_q, w=w, a=absorb / ONE, delta=decay / ONE)
    report = pd.DataFrame(rows, columns=["kernel", "index", "worst", "typical", "what"])
    report.attrs["emission_tv_from_poisson_of_deployed_mean"] = tv_model.tolist()
    return VesicleTables(emission, mig, dock, absorb, decay, budget), quantized, report


def _emission(model, params):
    """Emission tables without covariates: (K, L) cumulative thresholds, the deployed u₀, TV and report rows."""
    K = model.n_types
    r_max = np.asarray(params.r_max, dtype=float)
    lam = emission_rates(model, params)
    tables = [_emission_table(float(lam[k]), f"type {k}") for k in range(K)]
    L = max(len(t) for t in tables)
    emission = np.full((K, L), ONE, dtype=np.int64)
    lam_q, tv_em, tv_model = np.zeros(K), np.zeros(K), np.zeros(K)
    for k, t in enumerate(tables):
        emission[k, :len(t)] = t
        pmf = _pmf(emission[k])
        x = np.arange(L)
        lam_q[k] = float((x * pmf).sum())
        tv_em[k] = 0.5 * np.abs(pmf - stats.poisson.pmf(x, lam[k])).sum() + 0.5 * stats.poisson.sf(L - 1, lam[k])
        tv_model[k] = 0.5 * np.abs(pmf - stats.poisson.pmf(x, lam_q[k])).sum() + 0.5 * stats.poisson.sf(L - 1, lam_q[k])
    if model.emission_link == "sigmoid":
        u_q = np.array([_logit(lam_q[k] / r_max[k], f"type {k} emission") for k in range(K)])
    else:
        u_q = np.log(lam_q)
    rows = [("emission", "type", tv_em.max(), np.median(tv_em), "total variation of the count law"),
            ("emission mean", "type", np.abs(lam_q - lam).max(), np.median(np.abs(lam_q - lam)),
             "|deployed mean − λ|")]
    return emission, u_q, tv_model, rows


def vesicle_word(vtype, left, lifetime, vid) -> int:
    """The 48-bit mailbox word of a vesicle (layout in the module docstring).

    Examples
    --------
    >>> w = vesicle_word(2, 15, 0, 123456)
    >>> decode_vesicle_word(w)
    (2, 15, 0, 123456)
    """
    for name, value, bits in (("type", vtype, 3), ("releases left", left, 4), ("lifetime", lifetime, 16),
                              ("id", vid, 24)):
        if not 0 <= int(value) < (1 << bits):
            raise ValueError(f"vesicle {name} {value} does not fit its {bits}-bit field")
    return int(vtype) | (int(left) << 3) | (int(lifetime) << 7) | (int(vid) << 23)


def decode_vesicle_word(word) -> tuple:
    """(type, releases left, lifetime, id) of a mailbox word."""
    word = int(word)
    if not 0 <= word < (1 << 47):
        raise ValueError(f"0x{word:x} is not a vesicle word (48 bits, bit 47 zero)")
    return word & 7, (word >> 3) & 15, (word >> 7) & 0xFFFF, word >> 23
