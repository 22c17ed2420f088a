"""Sequential Monte Carlo on explicit vesicle populations (compiled engine).

- :func:`particle_filter` — bootstrap particle filter: the likelihood of
  partial observations (counts, dock counts), filtered means and a smoothed
  trajectory.

The filter runs in the compiled engine ``nvppl._engine.filter``.
"""

from .filter import DETECTION_CODES, ParticleFilterResult, particle_filter

__all__ = ["particle_filter", "ParticleFilterResult", "DETECTION_CODES"]
