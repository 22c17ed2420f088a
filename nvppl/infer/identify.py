r"""Which parameter combinations the data inform: posterior contraction and weak directions.

A posterior can look well behaved (R-hat 1, large ESS) and still say little:
along some combinations of parameters it is the prior, or it is a long ridge
because the data only fix a function of several parameters. This module
compares every fit's posterior with the model's prior.

**Contraction.** For a scalar :math:`θ_j`, :math:`c_j = 1 - \mathrm{Var}_{post}
(θ_j) / \mathrm{Var}_{prior}(θ_j)`: near 1 the data determine it, near 0 the
posterior is the prior (Betancourt 2018's posterior contraction; it can be
negative when a wide posterior sits where the prior is narrow).

**Weak directions.** In the unconstrained view :math:`z` (probabilities by
logit, positive fields by log, each row of ``T`` by log-ratios to its last
candidate slot) the posterior covariance :math:`Σ` and prior covariance
:math:`Π` define the generalised eigenproblem :math:`Σ v = λ Π v`; along
:math:`v^\top z` the posterior keeps the fraction :math:`λ` of the prior's
variance, so its contraction is :math:`1 - λ`. Directions with contraction
below ``threshold`` are *weak*. A pair with posterior correlation
:math:`|ρ| >` ``corr`` in the unconstrained view whose ridge keeps more than
a tenth of the prior's variance is *confounded*: the data fix a function of
the two, not each. With fewer than four draws per unconstrained coordinate the
joint analysis is unreliable and each coordinate is examined alone.

**Flat directions.** For a density (SVI) fit, or an importance-sampling fit
started from one, the covariance :math:`J` of the composite score
(:mod:`nvppl.infer._adjust`) is singular along the directions the composite
likelihood does not depend on; they are reported as *unidentified*, named by
the parameters that carry them. The posterior there is the prior's. Where the
support bounds such a ridge (probabilities in [0, 1]) the posterior can look
contracted and still sit far from the truth, which contraction alone misses:
with an absorption per node and a decay per type, counts fix only the
per-node survivals, and how removal is split between ``a`` and ``δ`` is
decided by the priors and the boundary ``a ≥ 0``.

What the observations identify (geometric lifetimes, no content; each
statement is about the distribution of the data, so no amount of data of that
kind separates the parameters):

- **Counts alone, infinite budget**: a vesicle at node :math:`i` survives a
  step with probability :math:`(1 - a_i)(1 - δ_κ)`, whatever removes it, so
  counts identify these survivals, not absorption and decay separately
  (``n·K`` numbers for ``n + K`` parameters: with one type, one direction is
  left to the prior). Docking does not change counts, so ``w`` is not
  identified at all.
- **Counts alone, budget 1**: a dock removes the vesicle, so counts identify
  :math:`(1 - p_{dock})(1 - a_i)(1 - δ_κ)`: ``w`` joins the confounded group.
- **Docks alone, infinite budget**: the expected docks are :math:`p_{dock}`
  times the expected arrivals, which scale with the emission rate :math:`λ`;
  the composite (one-time) likelihood identifies only the product
  :math:`λ\,p_{dock}` (``u`` and ``w`` confounded) besides the survivals; the
  exact likelihood separates them weakly through repeated docks of one
  vesicle.
- **Counts and docks**: the ratio of docks to counts identifies
  :math:`p_{dock}`, the counts the emission; absorption and decay stay
  confounded as with counts alone.
- **Binomial detection** with an unknown ``p_det``: the counts identify
  :math:`p_{det}\,λ`, not the two (refused by the density methods).
- **Migration** ``T`` is seen by counts only through the mean occupancies: where
  these stay uniform (a symmetric graph, uniform emission and survival),
  changes of ``T`` that keep its column sums leave them unchanged, and most of
  ``T`` is left to the prior.
- **Full traces** identify every parameter that acts: the death cause tells
  absorption from decay, the moves give ``T``.

:func:`check_identifiability` runs :func:`identifiability` on a fit, stores the
weak directions in ``fit.idata.posterior.attrs["nvppl_weak_directions"]`` (a
JSON list) and warns with :class:`~nvppl.errors.WeakIdentificationWarning`.
"""

from __future__ import annotations

import json
import warnings
from typing import NamedTuple

import numpy as np

from ..errors import WeakIdentificationWarning
from ..params import POSITIVE_FIELDS, PROBABILITY_FIELDS

__all__ = ["identifiability", "check_identifiability", "IdentifiabilityReport", "WeakDirection", "THRESHOLD",
           "CORR", "RIDGE_CONTRACTION", "MAX_PAIRS", "FULL_DRAWS"]

#: Contraction below which a direction counts as weak.
THRESHOLD = 0.5
#: Posterior correlation (unconstrained view) above which a pair may be confounded.
CORR = 0.9
#: A correlated pair is reported as confounded when the contraction along its ridge is below this.
RIDGE_CONTRACTION = 0.9
#: Correlated pairs examined (the most correlated first).
MAX_PAIRS = 50
#: Draws per unconstrained coordinate needed for the joint (eigen) analysis; with fewer, the
#: sample covariance's largest eigenvalues are inflated (Marchenko–Pastur) and the coordinates
#: are examined one at a time instead.
FULL_DRAWS = 4
_MC_DRAWS = 4000
_EPS = 1e-12


class WeakDirection(NamedTuple):
    """A combination of parameters the data barely inform.

    Attributes
    ----------
    kind : {"unidentified", "weak", "confounded"}
        Directions along which a density fit's composite likelihood is flat
        (null space of its score covariance :math:`J`), a generalised
        eigendirection with small contraction, or a strongly correlated pair.
    parameters : list of str
        The scalar parameters involved (as in the report's table).
    loadings : list of float
        Coefficients in prior-standardised unconstrained coordinates (unit
        norm); for ``"unidentified"``, each parameter's weight in the null space.
    contraction : float
        Contraction of the combination (of the pair's ridge; 0 for ``"unidentified"``).
    corr : float or None
        Posterior correlation of the pair (unconstrained view), for ``"confounded"``.
    message : str
    """

    kind: str
    parameters: list
    loadings: list
    contraction: float
    corr: float | None
    message: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "parameters": list(self.parameters),
                "loadings": [round(float(x), 4) for x in self.loadings],
                "contraction": round(float(self.contraction), 4),
                "corr": None if self.corr is None else round(float(self.corr), 4), "message": self.message}


class IdentifiabilityReport(NamedTuple):
    """Result of :func:`identifiability`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per free scalar parameter (index as in ``fit.summary()``, e.g.
        ``delta[0]``, ``T[0, 1, 2]``): ``field``, ``post_mean``, ``post_sd``,
        ``prior_sd``, ``contraction`` (natural scale) and ``z_post_sd``,
        ``z_prior_sd``, ``z_contraction`` (unconstrained view; NaN for ``T``,
        whose view is a log-ratio per row).
    directions : list of WeakDirection
        Weak directions and confounded pairs, weakest first.
    corr : pandas.DataFrame
        Posterior correlation matrix in the unconstrained view.
    n_draws : int
        Finite posterior draws used.
    """

    table: object
    directions: list
    corr: object
    n_draws: int

    @property
    def weak(self) -> bool:
        """Whether any weak direction or confounded pair was found."""
        return bool(self.directions)

    def to_json(self) -> str:
        """The directions as a JSON list (what :func:`check_identifiability` stores)."""
        return json.dumps([d.to_dict() for d in self.directions])


# ----------------------------------------------------------------------------- priors
def _base(d):
    import numpyro.distributions as dist

    while isinstance(d, (dist.Independent, dist.ExpandedDistribution)):
        d = d.base_dist
    return d


def _param(d, name, shape):
    return np.broadcast_to(np.asarray(getattr(d, name), dtype=np.float64), shape)


def _to_z(name: str, x):
    """The unconstrained view of a (non-``T``) field's values."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if name in PROBABILITY_FIELDS:
            x = np.clip(x, _EPS, 1 - _EPS)
            return np.log(x) - np.log1p(-x)
        if name in POSITIVE_FIELDS:
            return np.log(np.maximum(x, 1e-300))
    return x


def _prior_variances(model, name: str, shape: tuple):
    """Prior variance of a (non-``T``) field, natural scale and unconstrained view.

    Exact for Normal, Beta (logit: ``ψ'(α) + ψ'(β)``), Gamma (log: ``ψ'(k)``),
    LogNormal, HalfNormal (log: ``π²/8``) and Exponential priors; Monte Carlo
    (4000 draws, fixed seed) otherwise."""
    import numpyro.distributions as dist
    from scipy.special import polygamma

    d = _base(model.priors[name])
    try:
        nat = np.array(_param(d, "variance", shape), dtype=np.float64)
    except (NotImplementedError, AttributeError):
        nat = None
    z = None
    if name not in PROBABILITY_FIELDS and name not in POSITIVE_FIELDS:
        z = nat
    elif isinstance(d, dist.Beta):
        z = polygamma(1, _param(d, "concentration1", shape)) + polygamma(1, _param(d, "concentration0", shape))
    elif isinstance(d, dist.Gamma):
        z = polygamma(1, _param(d, "concentration", shape))
    elif isinstance(d, dist.LogNormal):
        z = _param(d, "scale", shape) ** 2
    elif isinstance(d, dist.HalfNormal):
        z = np.full(shape, np.pi ** 2 / 8)
    elif isinstance(d, dist.Exponential):
        z = np.full(shape, np.pi ** 2 / 6)
    if nat is None or z is None:
        import jax

        draws = np.asarray(d.expand(shape).sample(jax.random.PRNGKey(0), (_MC_DRAWS,)), dtype=np.float64)
        nat = draws.var(0) if nat is None else nat
        z = _to_z(name, draws).var(0) if z is None else z
    return np.where(np.isfinite(nat), nat, np.inf), np.where(np.isfinite(z), z, np.inf)


# ----------------------------------------------------------------------------- views
class _View(NamedTuple):
    names: list        # natural-scale scalar names (table rows)
    fields: list
    nat: np.ndarray    # (S, p) natural-scale draws
    nat_prior_var: np.ndarray
    z_names: list      # unconstrained coordinates
    z_fields: list
    z_of_row: list     # table row -> z column (or -1)
    z: np.ndarray      # (S, q)
    z_prior_cov: np.ndarray


def _label(field: str, da, index: tuple) -> str:
    dims = [dm for dm in da.dims if dm not in ("chain", "draw")]
    parts = [str(da.coords[dm].values[i]) if dm in da.coords else str(i) for dm, i in zip(dims, index)]
    return f"{field}[{', '.join(parts)}]"


def _view(fit) -> _View:
    from scipy.special import polygamma

    model, post = fit.model, fit.idata.posterior
    names, fields, nat, nat_var, z_names, z_fields, z_of_row, zs, z_blocks = [], [], [], [], [], [], [], [], []
    for field in model.inferred:
        if field not in post:
            continue
        da = post[field]
        shape = tuple(da.shape[2:])
        x = np.asarray(da.values, dtype=np.float64).reshape((-1,) + shape)
        if field == "T":
            conc = model.priors["T"].concentration
            sub = model.substrate
            for k in range(shape[0]):
                for i in range(shape[1]):
                    m = int(sub.n_candidates[i])
                    if m < 2:
                        continue
                    a = conc[k, i, :m]
                    a0 = a.sum()
                    for j in range(m):
                        names.append(_label("T", da, (k, i, j)))
                        fields.append("T")
                        nat.append(x[:, k, i, j])
                        nat_var.append(a[j] * (a0 - a[j]) / (a0 ** 2 * (a0 + 1)))
                        z_of_row.append(-1)
                    rows = np.clip(x[:, k, i, :m], _EPS, None)
                    last = _label("T", da, (k, i, m - 1))
                    for j in range(m - 1):
                        z_names.append(f"log({_label('T', da, (k, i, j))}/{last})")
                        z_fields.append("T")
                        zs.append(np.log(rows[:, j]) - np.log(rows[:, m - 1]))
                    z_blocks.append(np.diag(polygamma(1, a[:-1])) + polygamma(1, a[-1]))
            continue
        v_nat, v_z = _prior_variances(model, field, shape)
        zx = _to_z(field, x)
        for index in np.ndindex(*shape):
            names.append(_label(field, da, index))
            fields.append(field)
            nat.append(x[(slice(None),) + index])
            nat_var.append(float(v_nat[index]))
            z_of_row.append(len(z_names))
            z_names.append(names[-1])
            z_fields.append(field)
            zs.append(zx[(slice(None),) + index])
            z_blocks.append(np.array([[float(v_z[index])]]))
    S = len(nat[0]) if nat else 0
    q = len(z_names)
    Pi = np.zeros((q, q))
    at = 0
    for b in z_blocks:
        Pi[at:at + len(b), at:at + len(b)] = b
        at += len(b)
    return _View(names, fields, np.stack(nat, 1) if nat else np.zeros((S, 0)), np.asarray(nat_var, dtype=float),
                 z_names, z_fields, z_of_row, np.stack(zs, 1) if zs else np.zeros((S, 0)), Pi)


# ----------------------------------------------------------------------------- messages
def _observed(fit) -> tuple:
    groups = fit.idata.groups() if hasattr(fit.idata, "groups") else []
    if "observed_data" not in groups:
        return False, False, False
    od = fit.idata.observed_data
    traces = "counts" not in od and "docks" not in od
    return traces, "counts" in od, "docks" in od


def _hint(fit, fields: set, names: list) -> str:
    """What the observations identify, for a direction over ``fields`` (see the module notes)."""
    traces, counts, docks = _observed(fit)
    if traces:
        return ""
    model = fit.model
    inferred = set(model.inferred)
    removal = {"a", "delta"} | ({"w"} if np.any(model.budget == 1) and not docks else set())
    acting = removal & inferred
    if counts and fields and fields <= removal and len(acting) >= 2:
        if len(names) >= 2:
            terms = "".join(f"(1−{n})" if not n.startswith("w[") else f"(1−p_dock({n}))" for n in names)
            return f"; counts identify their product {terms}, the survival per step, not each of them"
        per = "(1−a_i)(1−δ_κ)" + ("(1−p_dock)" if "w" in acting else "")
        return (f"; counts identify the survival per step {per} at each node, not "
                f"{', '.join(sorted(acting))} separately")
    if fields == {"u", "w"} and docks and not counts:
        return "; docks without counts identify the emission rate times the docking probability"
    if fields in ({"u", "delta"}, {"u", "a"}) and counts:
        return "; counts near the steady state identify the emission rate relative to the removal rate"
    return ""


def _describe(load, names: list, fields: list, cover: float = 0.9, most: int = 6):
    """Name a direction by the coordinates carrying ``cover`` of its squared
    loadings: ``(parameters, coefficients, phrase)``; by field when that takes
    more than ``most`` coordinates (e.g. one absorption per node)."""
    order = np.argsort(-np.abs(load), kind="stable")
    n = int(np.searchsorted(np.cumsum(load[order] ** 2), cover) + 1)
    keep = order[:min(n, 20)]
    pars, coef = [names[j] for j in keep], [float(load[j]) for j in keep]
    if n == 1:
        return pars, coef, f"{pars[0]} is barely informed by the data"
    if n <= most:
        terms = " ".join(f"{'+' if load[j] >= 0 else '−'}{abs(load[j]):.2f}·z({names[j]})" for j in keep)
        return pars, coef, "the data barely inform the combination " + terms.lstrip("+")
    share, count = {}, {}
    for j in order[:n]:
        share[fields[j]] = share.get(fields[j], 0.0) + float(load[j] ** 2)
        count[fields[j]] = count.get(fields[j], 0) + 1
    parts = [f"{f} ({count[f]} entries, {100 * share[f]:.0f} %)" for f in sorted(share, key=lambda f: -share[f])]
    return pars, coef, "the data barely inform a combination spread over " + ", ".join(parts)


def _weak(fit, pars, coef, c, what, fields) -> WeakDirection:
    msg = (f"{what} (contraction {c:.2f}: the posterior keeps {100 * (1 - c):.0f} % of the prior variance; "
           "z is the unconstrained view)" + _hint(fit, fields, pars if len(pars) > 1 else []))
    return WeakDirection("weak", pars, coef, float(c), None, msg)


def _flat_directions(fit) -> list:
    """The null space of the score covariance ``J`` of a density (SVI) fit, or
    of the SVI fit an importance-sampling fit started from, named by parameter."""
    extra = getattr(fit, "extra", None) or {}
    if "adjustment" not in extra and "svi_fit" in extra:
        extra = getattr(extra["svi_fit"], "extra", None) or {}
    adj, guide = extra.get("adjustment"), extra.get("guide")
    if adj is None or guide is None or not np.all(np.isfinite(adj.J)):
        return []
    s, U = np.linalg.eigh(0.5 * (adj.J + adj.J.T))
    if s.max() <= 0:
        return []
    null = U[:, s <= 1e-8 * s.max()]
    if null.shape[1] == 0:
        return []
    d = len(s)
    names, fields = [f"z[{j}]" for j in range(d)], ["?"] * d
    post = fit.idata.posterior
    for site, idx in guide._unpack_latent(np.arange(d, dtype=np.float64)).items():
        idx = np.asarray(idx).round().astype(int)
        for index in np.ndindex(*idx.shape):
            j = int(idx[index])
            if site.startswith("T_rows_"):
                names[j], fields[j] = f"T (stick-breaking coordinate {j} of the rows of degree {site[7:]})", "T"
            else:
                names[j] = _label(site, post[site], index) if site in post else f"{site}{list(index)}"
                fields[j] = site
    weight = np.sum(null ** 2, axis=1)  # the diagonal of the projector on the null space
    share = {}
    for j in range(d):
        share[fields[j]] = share.get(fields[j], 0.0) + weight[j]
    group = [f for f in sorted(share, key=lambda f: -share[f]) if share[f] >= 0.01]
    order = [j for j in np.argsort(-weight, kind="stable") if fields[j] in group and weight[j] >= 1e-6 * share[
        fields[j]]]
    pars = [names[j] for j in order][:50]
    parts = []
    for f in group:
        entries = [names[j] for j in order if fields[j] == f]
        parts.append(", ".join(entries) if len(entries) <= 3 else f"{f} ({len(entries)} entries)")
    k = null.shape[1]
    over = " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)
    msg = (f"the composite likelihood is flat along {k} direction{'s' if k > 1 else ''} over {over}: the data do "
           f"not inform {'them' if k > 1 else 'it'}, and the posterior there is the prior's"
           + _hint(fit, set(group), pars if len(pars) == 2 else []))
    return [WeakDirection("unidentified", pars, [float(weight[j]) for j in order][:50], 0.0, None, msg)]


# ----------------------------------------------------------------------------- report
def identifiability(fit, *, threshold: float = THRESHOLD, corr: float = CORR):
    r"""Posterior contraction per parameter and the weakly identified directions of a fit.

    Parameters
    ----------
    fit : Fit
        Any fit (NUTS, SVI, IS, PMMH, or one read by :func:`nvppl.load_fit`):
        its posterior variables carry the ``Params`` field names.
    threshold : float, default 0.5
        A direction whose contraction :math:`1 - λ` is below ``threshold`` is weak.
    corr : float, default 0.9
        A pair with posterior correlation :math:`|ρ| >` ``corr`` (unconstrained
        view) whose ridge contraction is below 0.9 is confounded.

    Returns
    -------
    IdentifiabilityReport

    Notes
    -----
    Prior variances are exact where the distribution gives them (Dirichlet
    rows: their Beta marginals). In the unconstrained view :math:`Π` is block
    diagonal; the log-ratios of one ``T`` row have :math:`\mathrm{Cov} =
    \mathrm{diag}\,ψ'(α_{1..m-1}) + ψ'(α_m)`. :math:`Σ v = λ Π v` is solved as
    the eigenproblem of :math:`L^{-1} Σ L^{-\top}`, :math:`Π = L L^\top`, so
    loadings are in prior-standardised coordinates. With fewer than four
    draws per coordinate the largest sample eigenvalues are inflated
    (Marchenko–Pastur) and each coordinate is examined alone.

    Examples
    --------
    Counts alone cannot tell absorption from decay (one node, emission and
    docking fixed):

    >>> import networkx as nx, nvppl as nv
    >>> g = nx.Graph()
    >>> g.add_node(0)
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(g), n_types=1,
    ...                         priors={"u": 0.0, "w": -1.4})
    >>> truth = model.default_params().replace(a=[0.05])
    >>> obs = nv.simulate(model, truth, n_steps=40, n_runs=10, key=0).observe(counts=True)
    >>> fit = nv.infer.fit(model, obs, method="svi", num_steps=500, num_samples=4000,
    ...                    progress_bar=False, log_likelihood=False)
    >>> report = identifiability(fit)
    >>> report.table[["post_sd", "prior_sd", "z_contraction"]].round(2)  # doctest: +NORMALIZE_WHITESPACE
               post_sd  prior_sd  z_contraction
    parameter
    a[0]          0.04      0.29           0.83
    delta[0]      0.04      0.29           0.83
    >>> d = report.directions[0]
    >>> d.kind, d.parameters, round(d.corr, 2)
    ('confounded', ['a[0]', 'delta[0]'], -0.93)
    """
    import pandas as pd

    if not 0 < float(threshold) < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
    if not 0 < float(corr) < 1:
        raise ValueError(f"corr must lie in (0, 1), got {corr!r}")
    v = _view(fit)
    ok = np.all(np.isfinite(v.z), axis=1) & np.all(np.isfinite(v.nat), axis=1)
    nat, z = v.nat[ok], v.z[ok]
    S = len(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        post_var = nat.var(0, ddof=1) if S > 1 else np.full(nat.shape[1], np.nan)
        z_var = z.var(0, ddof=1) if S > 1 else np.full(z.shape[1], np.nan)
        z_prior = np.diag(v.z_prior_cov)
        rows = np.asarray(v.z_of_row)
        has_z = rows >= 0
        zc = np.full(len(v.names), np.nan)
        zs = np.full(len(v.names), np.nan)
        zp = np.full(len(v.names), np.nan)
        zs[has_z], zp[has_z] = np.sqrt(z_var[rows[has_z]]), np.sqrt(z_prior[rows[has_z]])
        zc[has_z] = 1 - z_var[rows[has_z]] / z_prior[rows[has_z]]
        table = pd.DataFrame({"field": v.fields, "post_mean": nat.mean(0) if S else np.nan,
                              "post_sd": np.sqrt(post_var), "prior_sd": np.sqrt(v.nat_prior_var),
                              "contraction": 1 - post_var / v.nat_prior_var, "z_post_sd": zs, "z_prior_sd": zp,
                              "z_contraction": zc}, index=pd.Index(v.names, name="parameter"))
        q = z.shape[1]
        Sigma = np.atleast_2d(np.cov(z, rowvar=False)) if S > 1 else np.full((q, q), np.nan)
        sd = np.sqrt(np.diag(Sigma))
        R = Sigma / np.outer(sd, sd)
    R = np.where(np.isfinite(R), R, 0.0)
    np.fill_diagonal(R, 1.0)
    directions = []
    usable = np.isfinite(z_prior) & (z_prior > 0) & (sd > 0) if q else np.zeros(0, bool)
    idx = np.flatnonzero(usable)
    names_i, fields_i = [v.z_names[i] for i in idx], [v.z_fields[i] for i in idx]
    if S >= FULL_DRAWS * len(idx) and len(idx):
        Pi = v.z_prior_cov[np.ix_(idx, idx)]
        L = np.linalg.cholesky(Pi)
        M = np.linalg.solve(L, np.linalg.solve(L, Sigma[np.ix_(idx, idx)]).T)
        lam, V = np.linalg.eigh(0.5 * (M + M.T))
        for k in np.argsort(-lam):
            c = 1 - lam[k]
            if c >= threshold:
                break
            load = V[:, k] / np.linalg.norm(V[:, k])
            pars, coef, what = _describe(load, names_i, fields_i)
            directions.append(_weak(fit, pars, coef, c, what, {fields_i[j] for j in np.flatnonzero(
                np.isin(names_i, pars))}))
    else:  # too few draws for the joint analysis: one coordinate at a time
        ratio = np.diag(Sigma)[idx] / z_prior[idx]
        for k in np.argsort(-ratio):
            if 1 - ratio[k] >= threshold:
                break
            directions.append(_weak(fit, [names_i[k]], [1.0], 1 - ratio[k],
                                    f"{names_i[k]} is barely informed by the data", {fields_i[k]}))
    Ri = R[np.ix_(idx, idx)] if len(idx) else np.zeros((0, 0))
    hits = np.argwhere(np.triu(np.abs(Ri) > corr, 1))
    hits = hits[np.argsort(-np.abs(Ri[hits[:, 0], hits[:, 1]]), kind="stable")][:MAX_PAIRS]
    for a, b in idx[hits]:
        r = R[a, b]
        blk = [a, b]
        L = np.linalg.cholesky(v.z_prior_cov[np.ix_(blk, blk)])
        M = np.linalg.solve(L, np.linalg.solve(L, Sigma[np.ix_(blk, blk)]).T)
        ridge = 1 - float(np.linalg.eigvalsh(0.5 * (M + M.T)).max())
        if ridge >= RIDGE_CONTRACTION:
            continue
        pars = [v.z_names[a], v.z_names[b]]
        msg = (f"{pars[0]} and {pars[1]} are confounded (corr {r:+.2f}, ridge contraction {ridge:.2f})"
               + _hint(fit, {v.z_fields[a], v.z_fields[b]}, pars))
        directions.append(WeakDirection("confounded", pars, [], ridge, float(r), msg))
    directions += _flat_directions(fit)
    pairs = [set(d.parameters) for d in directions if d.kind == "confounded"]
    directions = [d for d in directions if d.kind == "confounded" or set(d.parameters) not in pairs]
    directions.sort(key=lambda d: d.contraction)
    corr_df = pd.DataFrame(R, index=v.z_names, columns=v.z_names)
    return IdentifiabilityReport(table, directions, corr_df, int(S))


def check_identifiability(fit, warn: bool = True, **kwargs):
    """Run :func:`identifiability`, record its directions in the fit and warn.

    Stores ``fit.idata.posterior.attrs["nvppl_weak_directions"]`` (a JSON list
    of the directions, ``"[]"`` when there is none) and, with ``warn``, issues
    one :class:`~nvppl.errors.WeakIdentificationWarning` naming the
    parameters. Never raises on an unusual fit: if the analysis fails, the
    attribute records the error and a ``UserWarning`` says so.

    Parameters
    ----------
    fit : Fit
    warn : bool, default True
    **kwargs
        ``threshold`` and ``corr`` of :func:`identifiability`.

    Returns
    -------
    IdentifiabilityReport or None
        None when the analysis failed.

    Examples
    --------
    Full traces of the one-node model of :func:`identifiability` (the death
    cause is recorded) tell absorption from decay:

    >>> import json, networkx as nx, nvppl as nv
    >>> g = nx.Graph()
    >>> g.add_node(0)
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(g), n_types=1,
    ...                         priors={"u": 0.0, "w": -1.4})
    >>> traces = nv.simulate(model, model.default_params().replace(a=[0.05]), n_steps=40,
    ...                      n_runs=10, key=0)
    >>> fit = nv.infer.fit(model, traces, num_samples=500, num_warmup=300, num_chains=1,
    ...                    progress_bar=False, posterior_predictive=False)
    >>> report = check_identifiability(fit)
    >>> fit.idata.posterior.attrs["nvppl_weak_directions"], report.weak
    ('[]', False)
    """
    try:
        report = identifiability(fit, **kwargs)
    except Exception as err:  # the check must never break a fit
        fit.idata.posterior.attrs["nvppl_weak_directions"] = json.dumps(
            {"error": f"{type(err).__name__}: {err}"})
        warnings.warn(f"the identifiability check failed ({type(err).__name__}: {err})", UserWarning, stacklevel=2)
        return None
    fit.idata.posterior.attrs["nvppl_weak_directions"] = report.to_json()
    if warn and report.directions:
        lines = [d.message for d in report.directions[:5]]
        more = len(report.directions) - len(lines)
        warnings.warn("weakly identified: " + "; ".join(lines) + (f"; and {more} more" if more > 0 else "")
                      + " (see nvppl.infer.identify.identifiability(fit))", WeakIdentificationWarning,
                      stacklevel=2)
    return report
