"""Pure JAX kernels of the vesicle life cycle, one module per kernel.

Each function is shared by the generative program, the trace likelihood and the
density relaxation, so that the three implement one model:

- :mod:`~nvppl.kernels.emission` — emission rates and content at birth (eq. 9–13)
- :mod:`~nvppl.kernels.migration` — migration probabilities with optional tilt (eq. 15–17)
- :mod:`~nvppl.kernels.docking` — docking probabilities (eq. 18–19)
- :mod:`~nvppl.kernels.decay` — lifetimes and absorption (eq. 37–38)
- :mod:`~nvppl.kernels.release` — release operators on a base network (eq. 20–36)
"""

from . import decay, docking, emission, migration, release

__all__ = ["emission", "migration", "docking", "decay", "release"]
