"""nvppl: probabilistic programming for Neuro-Vesicles.

Vesicle life-cycle models on networkx graphs: NumPyro programs, fast sampling,
inference with ``nvppl.infer``, diagnostics with ArviZ.

Importing nvppl enables 64-bit floats in JAX (likelihoods are checked to the
last digit) and, unless ``XLA_FLAGS`` already sets it, exposes one host device
per CPU core so that MCMC chains can run in parallel.

Examples
--------
>>> import networkx as nx, nvppl as nv
>>> sub = nv.Substrate.from_networkx(nx.cycle_graph(6))
>>> model = nv.VesicleModel(sub, n_types=1)
>>> traces = nv.simulate(model, model.default_params(), n_steps=40, n_runs=2, key=0)
>>> traces.n_runs
2
"""

import os as _os

if "xla_force_host_platform_device_count" not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (
        _os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={_os.cpu_count() or 1}"
    ).strip()

import jax as _jax  # noqa: E402

_jax.config.update("jax_enable_x64", True)

from . import backend, density, diagnostics, infer, kernels, smc  # noqa: E402
from .infer import load_fit  # noqa: E402
from .errors import CapacityError, ImportanceSamplingError, ObservationError, TraceError  # noqa: E402
from .model import VesicleModel  # noqa: E402
from .observations import Observations  # noqa: E402
from .params import Params  # noqa: E402
from .simulate import simulate  # noqa: E402
from .substrate import Substrate  # noqa: E402
from .traces import Traces  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Substrate", "VesicleModel", "Params", "Traces", "Observations", "simulate",
    "TraceError", "ObservationError", "CapacityError", "ImportanceSamplingError", "infer", "diagnostics", "kernels",
    "smc", "density", "backend", "load_fit",
    "__version__",
]
