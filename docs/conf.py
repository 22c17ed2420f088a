"""Sphinx configuration of the nvppl documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html``. The
build is offline: no intersphinx inventories and no remote images are used.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nvppl  # noqa: E402

# -- project ----------------------------------------------------------------
project = "nvppl"
author = "the nvppl developers"
copyright = "the nvppl developers"
version = nvppl.__version__
release = nvppl.__version__

# -- general ----------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
default_role = "literal"
pygments_style = "sphinx"

# -- autodoc / autosummary ---------------------------------------------------
autosummary_generate = True
autosummary_generate_overwrite = True
autosummary_imported_members = False
autosummary_ignore_module_all = False
# Keep stub names distinct on case-insensitive file systems (fit vs Fit).
autosummary_filename_map = {"nvppl.infer.fit": "nvppl.infer.fit-function"}

autodoc_default_options = {
    "member-order": "bysource",
}
autodoc_typehints = "none"
autoclass_content = "class"
autodoc_preserve_defaults = True

# -- napoleon (numpydoc-style docstrings) ----------------------------------
napoleon_google_docstring = False
napoleon_numpy_docstring = True
# Render "Attributes" sections as field lists, like "Parameters": entries that
# name several attributes stay together and no attribute target is duplicated.
napoleon_custom_sections = [("Attributes", "params_style")]
napoleon_use_rtype = False
napoleon_include_init_with_doc = False

# -- HTML ---------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"nvppl {release}"
html_static_path = []
html_theme_options = {
    "description": "Probabilistic programming for Neuro-Vesicles",
    "fixed_sidebar": True,
    "show_relbars": True,
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
