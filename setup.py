"""Build script: declares nvppl's compiled extensions.

Metadata lives in ``pyproject.toml``; this file only lists the C extensions
(built with ``-O3`` and OpenMP) so that ``pip install -e ".[dev]"`` compiles them.
"""

from setuptools import setup

#: Cython modules of nvppl, as (module name, source); built with -O3 and OpenMP.
EXTENSIONS: list[tuple[str, str]] = [
    ("nvppl.smc._core", "nvppl/smc/_core.pyx"),
    ("nvppl._relax", "nvppl/_relax.pyx"),
    ("nvppl.backend._emulator", "nvppl/backend/_emulator.pyx"),
    ("nvppl.backend._vesicles", "nvppl/backend/_vesicles.pyx"),
]


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
    return cythonize(modules, compiler_directives={"language_level": "3"})


setup(ext_modules=_extensions())
