"""Diagnostics: ArviZ conversion, posterior predictive checks, simulation-based
calibration and plots.

This module (with :mod:`nvppl.infer.fit`) is the only place that touches ArviZ,
so a later move to another container stays behind :func:`to_inference_data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._density_plots import plot_counts, plot_density_graph, plot_density_heatmap
from ._keys import as_jax_key
from .traces import lifetime_bin_edges

__all__ = ["to_inference_data", "ppc", "PPCResult", "sbc", "SBCResult", "plot_trace", "plot_rank",
           "PPC_STATISTICS", "plot_density_heatmap", "plot_density_graph", "plot_counts", "psis_log_weights",
           "observations_to_inference_data"]

PPC_STATISTICS = ("occupancy", "dock_rate", "lifetime_hist", "path_length")


# ----------------------------------------------------------------- ArviZ
def arviz():
    """Import ArviZ, silencing the FutureWarning it prints about its 1.x refactor
    (nvppl targets the 0.23 line and keeps the migration behind this module)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz as az
    return az


def _coords_dims(model, n_vesicles=None):
    sub = model.substrate
    p = model.covariate_dim
    names = list(sub.covariate_names) if len(sub.covariate_names) == p else [f"f_{j}" for j in range(p)]
    coords = {
        "type": np.arange(model.n_types), "node": [str(x) for x in sub.labels],
        "slot": np.arange(sub.max_candidates), "x_feature": ["intercept"] + names, "feature": names,
        "content": np.arange(model.content_dim),
    }
    dims = {
        "u": ["type", "x_feature"], "r_max": ["type"], "T": ["type", "node", "slot"], "v": ["type", "feature"],
        "Q": ["type", "node", "content"], "w": ["type", "x_feature"], "w_c": ["type", "content"], "a": ["node"],
        "delta": ["type"], "shape": ["type"], "rate": ["type"], "content_mean": ["type", "content"],
        "content_B": ["type", "feature", "content"], "content_scale": ["type", "content"],
        "occupancy": ["type", "node"], "dock_rate": ["type", "node"], "lifetime_hist": ["type", "lifetime_bin"],
        "path_length": ["type"], "vesicle": ["vesicle_id"],
    }
    return coords, dims


def lifetime_bin_labels(n_steps: int) -> list[str]:
    """Text labels of the lifetime histogram bins (``"3-4"`` holds 3 and 4 moves)."""
    e = lifetime_bin_edges(n_steps)
    return [f"{a}" if b - a == 1 else f"{a}-{b - 1}" for a, b in zip(e[:-1], e[1:])]


def to_inference_data(model, posterior: dict, sample_stats: dict | None = None, log_likelihood=None,
                      posterior_predictive: dict | None = None, observed: dict | None = None,
                      attrs: dict | None = None, n_steps: int | None = None):
    """Build an ``arviz.InferenceData`` with nvppl's coordinates and dimensions.

    Parameters
    ----------
    model : VesicleModel
    posterior : dict
        Field name → array ``(chain, draw, *field_shape)``.
    sample_stats : dict, optional
    log_likelihood : array ``(chain, draw, vesicle)``, optional
    posterior_predictive, observed : dict, optional
        Summary statistics (see :meth:`nvppl.Traces.summary_statistics`).
    attrs : dict, optional
        Attributes stored on the posterior group.
    """
    az = arviz()

    coords, dims = _coords_dims(model)
    for stats in (observed, posterior_predictive):
        if stats is not None and "lifetime_hist" in stats:
            coords["lifetime_bin"] = np.arange(np.shape(stats["lifetime_hist"])[-1])
    if log_likelihood is not None:
        coords["vesicle_id"] = np.arange(np.shape(log_likelihood)[-1])
    groups = {
        "posterior": posterior, "sample_stats": sample_stats,
        "log_likelihood": None if log_likelihood is None else {"vesicle": log_likelihood},
        "posterior_predictive": posterior_predictive, "observed_data": observed,
    }
    groups = {k: v for k, v in groups.items() if v is not None}
    used = {d for name in set().union(*[set(g) for g in groups.values()]) for d in dims.get(name, [])}
    idata = az.from_dict(**groups, coords={k: v for k, v in coords.items() if k in used},
                         dims={k: v for k, v in dims.items()
                               if any(k in g for g in groups.values())})
    for key, value in (attrs or {}).items():
        idata.posterior.attrs[key] = value
    return idata


def observations_to_inference_data(model, obs, posterior: dict, sample_stats: dict, loglik_steps=None,
                                   attrs: dict | None = None):
    """``arviz.InferenceData`` of a fit to :class:`~nvppl.Observations`.

    Like :func:`to_inference_data`, with the per-run, per-step log-likelihood
    ``loglik_steps (chain, draw, run, step)`` as variable ``obs`` of the
    ``log_likelihood`` group and the observed ``counts``/``docks`` (dims run,
    step, node, type) as ``observed_data``.
    """
    az = arviz()
    coords, dims = _coords_dims(model)
    coords = {**coords, "run": np.arange(obs.n_runs), "step": np.arange(obs.n_steps)}
    dims = {**dims, "obs": ["run", "step"], "counts": ["run", "step", "node", "type"],
            "docks": ["run", "step", "node", "type"]}
    observed = {k: np.asarray(getattr(obs, k)) for k in ("counts", "docks") if getattr(obs, k) is not None}
    groups = {"posterior": posterior, "sample_stats": sample_stats, "observed_data": observed}
    if loglik_steps is not None:
        groups["log_likelihood"] = {"obs": loglik_steps}
    used = {d for g in groups.values() for name in g for d in dims.get(name, [])}
    idata = az.from_dict(**groups, coords={k: v for k, v in coords.items() if k in used},
                         dims={k: v for k, v in dims.items() if any(k in g for g in groups.values())})
    for k, v in (attrs or {}).items():
        idata.posterior.attrs[k] = v
    if obs.p_det is not None:
        idata.observed_data.attrs["p_det"] = obs.p_det
    idata.observed_data.attrs["detection"] = obs.detection
    return idata


def psis_log_weights(log_weights):
    """Pareto-smoothed importance weights (ArviZ's PSIS).

    Parameters
    ----------
    log_weights : array (S,)
        Raw log weights (``-inf`` for zero weight).

    Returns
    -------
    (smoothed, khat) : ndarray (S,), float
        Smoothed log weights, normalised to sum to one on the linear scale, and
        the Pareto shape estimate ``k̂`` (reliable below 0.7).

    Examples
    --------
    >>> import numpy as np
    >>> lw, k = psis_log_weights(np.random.default_rng(0).normal(size=1000))
    >>> bool(k < 0.7), round(float(np.exp(lw).sum()), 6)
    (True, 1.0)
    """
    az = arviz()
    lw = np.asarray(log_weights, dtype=np.float64)
    smoothed, khat = az.psislw(lw.copy(), reff=1.0)
    return np.asarray(smoothed), float(khat)


# ---------------------------------------------------------------- PPC
@dataclass
class PPCResult:
    """Observed versus posterior predictive summary statistics.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per statistic entry: ``statistic, type, index, observed,
        predicted_mean, q05, q95, p_value`` where ``p_value`` is the posterior
        predictive probability ``P(simulated >= observed)``.
    figure : matplotlib.figure.Figure
    """

    table: pd.DataFrame
    figure: object = field(repr=False, default=None)

    def outside(self, level: float = 0.9) -> pd.DataFrame:
        """Rows whose observed value falls outside the central ``level`` predictive interval."""
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        return self.table[(self.table.p_value < lo) | (self.table.p_value > hi)]


def ppc(fit, traces=None, path=None) -> PPCResult:
    """Posterior predictive check of a fit on its summary statistics.

    Compares the observed statistics (of ``traces``, or the fit's
    ``observed_data``) with those of the posterior predictive simulations:
    occupancy and dock rate per node, lifetime histogram and mean path length,
    per type.

    Parameters
    ----------
    fit : Fit
        A fit with a ``posterior_predictive`` group.
    traces : Traces, optional
        Observed traces (default: the statistics stored in the fit).
    path : str or Path, optional
        Where to save the figure (PNG, PDF, ...).

    Returns
    -------
    PPCResult
    """
    idata = fit.idata
    if "posterior_predictive" not in idata.groups():
        raise ValueError("the fit has no posterior_predictive group; fit with posterior_predictive=True")
    observed = traces.summary_statistics(fit.model.n_types) if traces is not None else {
        k: idata.observed_data[k].values for k in PPC_STATISTICS}
    rows = []
    for name in PPC_STATISTICS:
        sims = idata.posterior_predictive[name].values
        sims = sims.reshape((-1,) + sims.shape[2:])
        obs = np.asarray(observed[name])
        if obs.shape != sims.shape[1:]:
            raise ValueError(f"observed {name} has shape {obs.shape}, predictions {sims.shape[1:]}")
        mean = sims.mean(0)
        q05, q95 = np.quantile(sims, [0.05, 0.95], axis=0)
        pval = (sims >= obs).mean(0)
        for idx in np.ndindex(obs.shape):
            rows.append({"statistic": name, "type": idx[0], "index": idx[1] if len(idx) > 1 else 0,
                         "observed": obs[idx], "predicted_mean": mean[idx], "q05": q05[idx], "q95": q95[idx],
                         "p_value": pval[idx]})
    table = pd.DataFrame(rows)
    figure = _ppc_figure(table, fit.model)
    if path is not None:
        figure.savefig(path, dpi=110, bbox_inches="tight")
    return PPCResult(table, figure)


def _ppc_figure(table, model):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    K = model.n_types
    fig, axes = plt.subplots(K, 4, figsize=(15, 3.2 * K), squeeze=False)
    titles = {"occupancy": "occupancy per node", "dock_rate": "dock rate per node",
              "lifetime_hist": "lifetime (moves) histogram", "path_length": "mean path length"}
    for k in range(K):
        for j, name in enumerate(PPC_STATISTICS):
            ax = axes[k, j]
            sel = table[(table.statistic == name) & (table.type == k)]
            x = np.arange(len(sel))
            ax.vlines(x, sel.q05, sel.q95, color="C0", alpha=0.6, lw=3, label="90% predictive")
            ax.plot(x, sel.predicted_mean, "o", ms=3, color="C0", label="predictive mean")
            ax.plot(x, sel.observed, "kx", label="observed")
            ax.set_title(f"type {k}: {titles[name]}", fontsize=9)
            ax.set_xticks(x if len(x) <= 12 else x[:: max(len(x) // 12, 1)])
            if k == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- SBC
@dataclass
class SBCResult:
    """Ranks of simulation-based calibration.

    Attributes
    ----------
    ranks : pandas.DataFrame
        One column per scalar parameter component (``"delta[0]"``, ``"T[0,1,2]"``,
        ...), one row per simulation; ranks in ``0..n_draws``.
    n_draws : int
        Posterior draws each prior draw was ranked among.
    n_bins : int
        Bins of the chi-square uniformity test.
    """

    ranks: pd.DataFrame
    n_draws: int
    n_bins: int

    def uniformity(self) -> pd.DataFrame:
        """Chi-square test of uniform ranks per parameter component.

        Ranks ``0..L`` are grouped into ``n_bins`` bins of equal width (``L + 1``
        is a multiple of ``n_bins``); the statistic has ``n_bins − 1`` degrees of
        freedom. Returns columns ``chi2, p_value`` indexed by component.
        """
        from scipy.stats import chi2

        width = (self.n_draws + 1) // self.n_bins
        out = {}
        for col in self.ranks:
            counts = np.bincount(self.ranks[col].to_numpy() // width, minlength=self.n_bins)
            expect = len(self.ranks) / self.n_bins
            stat = float(((counts - expect) ** 2 / expect).sum())
            out[col] = (stat, float(chi2.sf(stat, self.n_bins - 1)))
        return pd.DataFrame.from_dict(out, orient="index", columns=["chi2", "p_value"])

    def plot(self, path=None):
        """ECDF of the normalised ranks minus the uniform CDF, one line per
        component, with the pointwise 99 % band of a uniform sample."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from scipy.stats import binom

        n = len(self.ranks)
        grid = np.linspace(0, 1, 101)
        lo = binom.ppf(0.005, n, grid) / n - grid
        hi = binom.ppf(0.995, n, grid) / n - grid
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.fill_between(grid, lo, hi, color="grey", alpha=0.3, label="99% band (uniform)")
        for col in self.ranks:
            u = np.sort(self.ranks[col].to_numpy() / (self.n_draws + 1))
            ax.plot(grid, np.searchsorted(u, grid, side="right") / n - grid, lw=0.8, label=col)
        ax.set_xlabel("normalised rank")
        ax.set_ylabel("ECDF − uniform")
        if len(self.ranks.columns) <= 12:
            ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


def sbc(model, n_sims: int = 200, n_steps: int = 50, n_runs: int = 1, num_samples: int = 400,
        num_warmup: int = 300, n_draws: int = 99, n_bins: int = 10, key=0, covariates=None,
        progress: bool = True, batch_size: int = 20) -> SBCResult:
    """Simulation-based calibration of NUTS on fully observed traces.

    For each of ``n_sims`` simulations: draw parameters from the prior, simulate
    traces, fit one NUTS chain and record the rank of each prior-drawn scalar
    among ``n_draws`` posterior draws thinned evenly from ``num_samples``. If the
    sampler and the likelihood are right, every rank is uniform on
    ``0..n_draws``.

    Parameters
    ----------
    model : VesicleModel
    n_sims : int
    n_steps, n_runs : int
        Size of each simulated data set.
    num_samples, num_warmup : int
        NUTS settings per simulation.
    n_draws : int
        Thinned draws to rank among (``n_draws + 1`` must be a multiple of ``n_bins``).
    n_bins : int
        Bins of the uniformity test.
    key : int or jax key
    covariates : array, optional
        Covariates for the simulations (see :func:`nvppl.simulate`).
    progress : bool
        Print a progress line after each batch.
    batch_size : int
        Simulations fitted together (vectorised over data sets).

    Returns
    -------
    SBCResult
    """
    import jax
    import jax.numpy as jnp

    from .infer._hmc import NUTSSettings, compiled_nuts
    from .infer.nuts import likelihood_data
    from .simulate import simulate
    from .suffstats import trace_data

    if (n_draws + 1) % n_bins:
        raise ValueError(f"n_draws + 1 ({n_draws + 1}) must be a multiple of n_bins ({n_bins})")
    if n_draws > num_samples:
        raise ValueError(f"n_draws ({n_draws}) cannot exceed num_samples ({num_samples})")
    keys = jax.random.split(as_jax_key(key), n_sims)
    settings = NUTSSettings(num_warmup, num_samples)
    pick = np.linspace(0, num_samples - 1, n_draws).round().astype(int)
    components = _free_components(model)
    ranks = {name: [] for name in components}
    for start in range(0, n_sims, batch_size):
        batch = range(start, min(start + batch_size, n_sims))
        truths, datas, fit_keys = [], [], []
        for i in batch:
            k_prior, k_sim, k_fit = jax.random.split(keys[i], 3)
            truth = model.sample_params(k_prior)
            traces = simulate(model, truth, n_steps=n_steps, n_runs=n_runs, key=k_sim, covariates=covariates)
            truths.append(truth)
            datas.append(likelihood_data(trace_data(model, traces), model))
            fit_keys.append(k_fit)
        stacked = jax.tree.map(lambda *x: np.stack(x), *datas)
        run = compiled_nuts(model, settings, stacked, mode="datasets")
        draws, _, valid = run(jnp.stack(fit_keys), stacked)
        if not np.all(valid):
            raise RuntimeError(f"simulation(s) {[batch[j] for j in np.flatnonzero(~np.asarray(valid))]} found no "
                               "valid initial point")
        for j, truth in enumerate(truths):
            for label, (fname, idx) in components.items():
                sample = np.asarray(draws[fname])[j][pick][(slice(None),) + idx]
                ranks[label].append(int((sample < getattr(truth, fname)[idx]).sum()))
        if progress:
            print(f"sbc: {batch[-1] + 1}/{n_sims} simulations", flush=True)
    return SBCResult(pd.DataFrame(ranks), n_draws, n_bins)


def _free_components(model) -> dict:
    """Scalar components that vary under the prior: label -> (field, index)."""
    out = {}
    sub = model.substrate
    for name in model.inferred:
        shape = model.field_shape(name)
        for idx in np.ndindex(shape):
            if name == "T" and (sub.n_candidates[idx[1]] < 2 or idx[2] >= sub.n_candidates[idx[1]]):
                continue
            out[f"{name}[{','.join(map(str, idx))}]"] = (name, idx)
    return out


# ---------------------------------------------------------------- plots
def plot_trace(fit, path=None, var_names=None):
    """ArviZ trace plot of the inferred parameters; saved to ``path`` if given."""
    return _az_plot("plot_trace", fit, path, var_names)


def plot_rank(fit, path=None, var_names=None):
    """ArviZ rank plot of the inferred parameters; saved to ``path`` if given."""
    return _az_plot("plot_rank", fit, path, var_names)


def _az_plot(kind, fit, path, var_names):
    import matplotlib

    matplotlib.use("Agg", force=False)
    az = arviz()

    import warnings

    names = list(var_names or [n for n in fit.model.inferred if n in fit.idata.posterior])
    with warnings.catch_warnings():
        # ArviZ 0.23 calls a matplotlib helper deprecated in matplotlib 3.11; entries of T fixed
        # by the graph are constant and make its density estimates warn
        warnings.filterwarnings("ignore", category=matplotlib.MatplotlibDeprecationWarning)
        warnings.filterwarnings("ignore", message="Your data appears to have a single value")
        axes = getattr(az, kind)(fit.idata, var_names=names, compact=True) if kind == "plot_trace" \
            else getattr(az, kind)(fit.idata, var_names=names)
    fig = np.asarray(axes).ravel()[0].figure
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig
