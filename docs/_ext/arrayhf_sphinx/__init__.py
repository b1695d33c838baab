"""arrayhf's Sphinx extension: every equation beside the code that implements it.

At the start of a build (``builder-inited``) it reads the tags of ``derivations/*.md`` and
``arrayhf/**/*.py`` (``concordance.py``), stops the build on a mismatch, copies the repository's
pages into ``docs/`` and writes the generated ones: the API reference (``api.py``) and one
side-by-side page per model (``beside.py``). Once each page is resolved it adds the equation <->
code links (``links.py``); at the end it adds a highlighted page, with line anchors, for every
source file (``sources.py``).
"""

from __future__ import annotations

import pathlib
import shutil

from sphinx.errors import ExtensionError

from arrayhf_sphinx import api, beside, links, sources
from arrayhf_sphinx.concordance import Concordance, ConcordanceError

# The repository's own pages, copied into docs/ at the same relative places (not in git), so
# that their relative links (rnn.md -> notation.md, README.md -> derivations/README.md) work as
# on GitHub.
MIRRORED = ("README.md", "ARCHITECTURE.md", "bench/README.md", "derivations/*.md")
# the folders of docs/ that hold nothing but copies, emptied first so a deleted page goes too
MIRRORED_FOLDERS = ("bench", "derivations")


def mirror(root: pathlib.Path, docs: pathlib.Path) -> None:
    """Copy the ``MIRRORED`` files of ``root`` into ``docs``."""
    for folder in MIRRORED_FOLDERS:
        shutil.rmtree(docs / folder, ignore_errors=True)
    for pattern in MIRRORED:
        for path in sorted(root.glob(pattern)):
            copy = docs / path.relative_to(root)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)


def _builder_inited(app) -> None:
    root = pathlib.Path(app.config.arrayhf_root)
    concordance = Concordance(root)
    try:
        concordance.check()
    except ConcordanceError as error:
        raise ExtensionError(str(error)) from None
    app.arrayhf_concordance = concordance
    docs = pathlib.Path(app.srcdir)
    mirror(root, docs)
    api.write_pages(docs)
    beside.write_pages(concordance, docs, app.builder.get_relative_uri)


def _collect_pages(app):
    concordance = app.arrayhf_concordance

    def linker_of(page: str):
        return links.Linker(concordance, app.builder.get_relative_uri, page).equation

    yield from sources.source_pages(concordance.root, concordance.sources, linker_of)


def setup(app):
    app.setup_extension("sphinx.ext.autodoc")   # the API pages are autodoc's
    app.add_config_value("arrayhf_root", "", "env")
    app.connect("builder-inited", _builder_inited)
    app.connect("doctree-resolved", links.on_doctree_resolved)
    app.connect("html-collect-pages", _collect_pages)
    app.connect("autodoc-process-signature", api.protocol_without_signature)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": False}
