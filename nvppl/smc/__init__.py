"""Sequential Monte Carlo on explicit vesicle populations (compiled core).

- :func:`particle_filter` — bootstrap particle filter: the likelihood of
  partial observations (counts, dock counts), filtered means and a smoothed
  trajectory.

The compiled extension ``nvppl.smc._core`` also runs ``nvppl.simulate(...,
backend="compiled")``.
"""

from .filter import DETECTION_CODES, ParticleFilterResult, particle_filter

__all__ = ["particle_filter", "ParticleFilterResult", "DETECTION_CODES"]
