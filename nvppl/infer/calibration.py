"""Simulation-based calibration (Talts et al. 2018) of NUTS on fully observed traces.

If the sampler and the likelihood are right, the rank of a parameter drawn
from the prior among posterior draws fitted to data simulated from it is
uniform; :func:`sbc` records those ranks and :class:`SBCResult` tests and
plots their uniformity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._files import save_figure
from .._validate import as_jax_key

__all__ = ["sbc", "SBCResult"]


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
            save_figure(fig, path, dpi=110)
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

    from ..simulate import simulate
    from ..traces.suffstats import trace_data
    from ._hmc import NUTSSettings, compiled_nuts
    from .nuts import likelihood_data

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
