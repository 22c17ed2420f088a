"""Import of nvppl's compiled extensions, with an error that says how to build them."""

from __future__ import annotations

import importlib


def load(module: str):
    """Import the compiled extension ``module`` (e.g. ``"nvppl.smc._core"``).

    Raises
    ------
    ImportError
        Saying how to build it, when it is not built.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"the compiled extension {module} is not built. Build it from the source tree with "
                          "`pip install -e \".[dev]\"` (or `python setup.py build_ext --inplace`); it needs "
                          "Cython, NumPy, a C compiler and OpenMP (-fopenmp)") from exc
