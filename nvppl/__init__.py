"""nvppl: probabilistic programming for Neuro-Vesicles.

Vesicle life-cycle models on networkx graphs: NumPyro programs, fast sampling,
inference with ``nvppl.infer``, diagnostics with ArviZ, deployment to a
Darwin3-like neuromorphic chip with ``nvppl.backend``.

Importing nvppl enables 64-bit floats in JAX (likelihoods are checked to the
last digit); it sets no environment variable and no device setting. Parallel
MCMC chains need several host devices: call :func:`set_host_device_count`
at the start of a program. The subpackages ``backend`` and ``diagnostics``
are imported when first used.

Examples
--------
>>> import networkx as nx, nvppl as nv
>>> sub = nv.Substrate.from_networkx(nx.cycle_graph(6))
>>> model = nv.VesicleModel(sub, n_types=1)
>>> traces = nv.simulate(model, model.default_params(), n_steps=40, n_runs=2, key=0)
>>> traces.n_runs
2
"""

import importlib as _importlib

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from . import density, exact, infer, kernels, smc  # noqa: E402
from ._devices import set_host_device_count  # noqa: E402
from .errors import CapacityError, ImportanceSamplingError, ObservationError, SpecError, TraceError  # noqa: E402
from .infer import load_fit  # noqa: E402
from .model import VesicleModel  # noqa: E402
from .params import Params  # noqa: E402
from .simulate import simulate  # noqa: E402
from .substrate import Substrate  # noqa: E402
from .traces import Observations, Traces  # noqa: E402

from ._version import __version__  # noqa: E402

#: Subpackages imported on first use (``nv.backend``, ...).
_LAZY = ("backend", "diagnostics", "overlay", "snn")

__all__ = [
    "Substrate", "VesicleModel", "Params", "Traces", "Observations", "simulate", "load_fit",
    "set_host_device_count", "TraceError", "ObservationError", "CapacityError", "ImportanceSamplingError",
    "SpecError", "infer", "diagnostics", "kernels", "smc", "density", "exact", "backend", "overlay", "snn", "__version__",
]


def __getattr__(name):
    if name in _LAZY:
        module = _importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
