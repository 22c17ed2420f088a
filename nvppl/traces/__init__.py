"""Vesicle data: fully observed traces and partial observations.

- :class:`Traces` — runs of the vesicle process with every vesicle's identity:
  a vesicle table, a steps table and the covariates (:mod:`~nvppl.traces.core`),
  validated on construction (:mod:`~nvppl.traces.checks`,
  :mod:`~nvppl.traces.frames`), saved as NetCDF or CSV (:mod:`~nvppl.traces.io`);
- :class:`Observations` — counts and dock counts without identities, seen
  through a detection model (:mod:`~nvppl.traces.observations`);
- :func:`~nvppl.traces.suffstats.trace_data` — the sufficient statistics of
  traces that the trace likelihood reads.

Data imported from tracking tools lives in :mod:`nvppl.data`.
"""

from .checks import CAUSES
from .core import Traces, lifetime_bin_edges
from .observations import DETECTIONS, Observations, check_fit_data

__all__ = ["Traces", "Observations", "CAUSES", "DETECTIONS", "lifetime_bin_edges", "check_fit_data"]
