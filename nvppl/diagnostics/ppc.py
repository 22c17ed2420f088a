"""Posterior predictive checks of a fit on its summary statistics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._files import save_figure
from ..programs import PPC_STATISTICS

__all__ = ["ppc", "PPCResult"]


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
        save_figure(figure, path, dpi=110, bbox_inches="tight")
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
