"""Diagnostics of fits: posterior predictive checks, calibration and plots.

This package reads :class:`~nvppl.infer.Fit` objects and draws; it is never
imported by :mod:`nvppl.infer`.

- :func:`ppc` — posterior predictive check on summary statistics;
- :func:`sbc` — simulation-based calibration of NUTS (:mod:`nvppl.infer.calibration`);
- :func:`plot_trace`, :func:`plot_rank` — ArviZ plots of the posterior;
- :func:`plot_density_heatmap`, :func:`plot_density_graph`, :func:`plot_counts` —
  density relaxation results and partial observations;
- :func:`to_inference_data`, :func:`observations_to_inference_data`,
  :func:`psis_log_weights` — the ArviZ adapter (:mod:`nvppl.infer._arviz`).
"""

from ..infer._arviz import observations_to_inference_data, psis_log_weights, to_inference_data
from ..infer.calibration import SBCResult, sbc
from ..programs import PPC_STATISTICS
from .density_plots import plot_counts, plot_density_graph, plot_density_heatmap
from .plots import plot_rank, plot_trace
from .ppc import PPCResult, ppc

__all__ = ["to_inference_data", "ppc", "PPCResult", "sbc", "SBCResult", "plot_trace", "plot_rank",
           "PPC_STATISTICS", "plot_density_heatmap", "plot_density_graph", "plot_counts", "psis_log_weights",
           "observations_to_inference_data"]
