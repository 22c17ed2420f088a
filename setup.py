"""Build script: declares nvppl's compiled extensions.

Metadata lives in ``pyproject.toml``; this file only lists the C extensions
(built with ``-O3`` and OpenMP) so that ``pip install -e ".[dev]"`` compiles them.
"""

from setuptools import setup

#: Cython modules of nvppl, as (module name, source); built with -O3 and OpenMP.
EXTENSIONS: list[tuple[str, str]] = [
    ("nvppl._engine.model", "nvppl/_engine/model.pyx"),
    ("nvppl._engine.simulate", "nvppl/_engine/simulate.pyx"),
    ("nvppl._engine.filter", "nvppl/_engine/filter.pyx"),
    ("nvppl._engine.guided", "nvppl/_engine/guided.pyx"),
    ("nvppl._engine.relax", "nvppl/_engine/relax.pyx"),
    ("nvppl.backend._emulator", "nvppl/backend/_emulator.pyx"),
    ("nvppl._engine.mailbox", "nvppl/_engine/mailbox.pyx"),
]


def _write_isa_constants():
    """Write ``nvppl/backend/_isa_constants.pxi`` from the one opcode table, ``nvppl/backend/isa/opcodes.py``.

    The table uses the standard library only, so it is loaded by its path (the
    build environment need not hold nvppl's dependencies). The file is rewritten
    only when its text changes, so that an unchanged table rebuilds nothing.
    """
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parent
    table = root / "nvppl" / "backend" / "isa" / "opcodes.py"
    spec = importlib.util.spec_from_file_location("_nvppl_isa_opcodes", table)
    opcodes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(opcodes)
    target = root / "nvppl" / "backend" / "_isa_constants.pxi"
    text = opcodes.cython_include()
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


def _extensions():
    if not EXTENSIONS:
        return []
    import numpy
    from Cython.Build import cythonize
    from setuptools import Extension

    modules = [
        Extension(
            name,
            [source],
            include_dirs=[numpy.get_include()],
            extra_compile_args=["-O3", "-fopenmp"],
            extra_link_args=["-fopenmp"],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for name, source in EXTENSIONS
    ]
    _write_isa_constants()
    return cythonize(modules, compiler_directives={"language_level": "3"})


setup(ext_modules=_extensions())
