"""ArviZ plots of a fit's posterior: trace and rank plots."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .._files import save_figure
from ..infer._arviz import arviz

__all__ = ["plot_trace", "plot_rank"]


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
        save_figure(fig, path, dpi=100, bbox_inches="tight")
    return fig
