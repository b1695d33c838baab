"""Sphinx configuration of arrayhf's documentation site (``nox -s docs``).

The sources are the repository's own files: the README (the user guide, ``index.md``), the
derivations, ARCHITECTURE.md and bench/README.md, copied beside this file at every build, and the
docstrings of ``arrayhf``. ``_ext/arrayhf_sphinx`` generates the rest (the API reference, the
side-by-side pages, the source pages) and links each equation to the code that cites it. MathJax
comes from the ``sphinx-mathjax-offline`` package: the site loads nothing from the network.
"""

from __future__ import annotations

import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]   # the checkout's arrayhf, and the extension

project = "arrayhf"
author = "the arrayhf developers"
copyright = "the arrayhf developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "numpydoc",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
    "arrayhf_sphinx",
]
arrayhf_root = str(ROOT)

root_doc = "index"
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_ext", "README.md"]   # README.md: included by index.md

myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# a docstring numpydoc would misread fails the build: an unknown section (its text would be
# dropped), sections out of order, or a paragraph read as a parameter the signature lacks
numpydoc_validation_checks = {"GL06", "GL07", "PR02"}

html_theme = "furo"
html_title = "arrayhf"
html_static_path = ["_static"]
html_css_files = ["arrayhf.css"]
html_js_files = ["arrayhf.js"]
html_show_sourcelink = False
html_copy_source = False
