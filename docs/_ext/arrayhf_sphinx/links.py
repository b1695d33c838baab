"""Equation <-> code links, added to every page once Sphinx has resolved it.

- Each citation ``(R4)`` in the text of a page (a docstring of the API reference, a derivation, the
  README) becomes a link to that equation; code, maths and titles are left as they are.
- Each display equation with a ``\\tag{R4}`` gets the anchor ``eq-R4``; on a derivation's page it is
  followed by links to every source line that cites it (and to the model's side-by-side page).
- Each function, class and method of the API reference links to its first source line.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
from collections.abc import Callable

from docutils import nodes
from sphinx import addnodes

import equation_tags
from arrayhf_sphinx import sources
from arrayhf_sphinx.concordance import Citation, Concordance

SIDE_BY_SIDE = "side-by-side/"
_NOT_LINKED = (nodes.FixedTextElement, nodes.literal, nodes.math, nodes.raw, nodes.reference,
               nodes.title, nodes.comment, nodes.target, addnodes.desc_signature,
               addnodes.toctree)


def equation_anchor(tag: str) -> str:
    return f"eq-{tag}"


class Linker:
    """The URIs of equations and source lines as seen from one page."""

    def __init__(self, concordance: Concordance, relative_uri: Callable[[str, str], str],
                 page: str) -> None:
        self.concordance = concordance
        self.relative_uri = relative_uri
        self.page = page

    def equation(self, tag: str) -> str | None:
        if tag not in self.concordance.definitions:
            return None
        return self._to(self.concordance.docname(tag)) + "#" + equation_anchor(tag)

    def source_line(self, path: str, line: int) -> str:
        return self._to(sources.pagename(path)) + "#" + sources.line_anchor(line)

    def side_by_side(self, model: str, tag: str) -> str:
        return self._to(SIDE_BY_SIDE + model) + "#" + equation_anchor(tag)

    def _to(self, page: str) -> str:
        return self.relative_uri(self.page, page)


def on_doctree_resolved(app, doctree: nodes.document, docname: str) -> None:
    linker = Linker(app.arrayhf_concordance, app.builder.get_relative_uri, docname)
    link_citations(doctree, linker)
    anchor_equations(doctree, linker, derivation=docname.startswith("derivations/"))
    link_api_sources(doctree, linker)


def anchor_equations(doctree: nodes.document, linker: Linker, *, derivation: bool) -> None:
    """An anchor on every tagged equation; on a derivation, the lines of code that cite it."""
    models = set(linker.concordance.models())
    for block in list(doctree.findall(nodes.math_block)):
        latex = block.astext()
        tags = equation_tags.DEFINED_TAG.findall(latex)
        if not tags:
            continue
        block["ids"] = [equation_anchor(tag) for tag in tags] + block["ids"]
        # as written: Sphinx would put an equation with a line break in a split environment,
        # where \tag is not allowed
        block["nowrap"] = True
        block[:] = [nodes.Text("\\[" + latex + "\\]")]
        if derivation:
            for tag in tags:
                block.parent.insert(block.parent.index(block) + 1,
                                    _cited_by(tag, linker, models))


def _cited_by(tag: str, linker: Linker, models: set[str]) -> nodes.paragraph:
    """The links under equation ``tag``: first the lines of code it tags (a ``#`` comment citing
    it on its own), then the other lines that cite it (docstrings, ranges), then the model's
    side-by-side page."""
    citations = linker.concordance.cited_by(tag)
    tagged = [c for c in citations if c.in_comment and tag in c.alone]
    others = [c for c in citations if c not in tagged]
    paragraph = nodes.paragraph(classes=["equation-citations"])
    if tagged:
        paragraph += nodes.strong(text=f"({tag}) in the code: ")
        _add_lines(paragraph, tagged, linker)
    if others:
        paragraph += nodes.Text(" · " if tagged else "")
        paragraph += nodes.strong(text="cited by: " if tagged else f"({tag}) cited by: ")
        _add_lines(paragraph, others, linker)
    model = pathlib.PurePosixPath(linker.concordance.docname(tag)).name
    if model in models:
        paragraph += nodes.Text(" · ")
        paragraph += nodes.reference(text="side by side with its code", internal=True,
                                     refuri=linker.side_by_side(model, tag))
    return paragraph


def _add_lines(paragraph: nodes.paragraph, citations: list[Citation], linker: Linker) -> None:
    """``models/rnn.py`` line 173 (RNN._r_forward), line 178 (…); ``curvature.py`` line 40 …"""
    by_file: dict[str, list[Citation]] = {}
    for citation in citations:
        by_file.setdefault(citation.path, []).append(citation)
    for number, (path, cited) in enumerate(by_file.items()):
        if number:
            paragraph += nodes.Text("; ")
        paragraph += nodes.literal(text=path.removeprefix("arrayhf/"))
        paragraph += nodes.Text(" ")
        for index, citation in enumerate(cited):
            if index:
                paragraph += nodes.Text(", ")
            where = f"line {citation.line}" + (f" ({citation.function})"
                                               if citation.function else "")
            paragraph += nodes.reference(text=where, internal=True, classes=["code-link"],
                                         refuri=linker.source_line(path, citation.line))


def link_citations(doctree: nodes.document, linker: Linker) -> None:
    """Every ``(R4)`` of running text a link to equation R4 (if a derivation defines it)."""
    for text in list(doctree.findall(nodes.Text)):
        if _inside(text, _NOT_LINKED) or not equation_tags.SINGLE.search(text):
            continue
        pieces: list[nodes.Node] = []
        position = 0
        for match in equation_tags.SINGLE.finditer(text):
            uri = linker.equation(match.group(1))
            if uri is None:
                continue
            pieces.append(nodes.Text(text[position:match.start()]))
            pieces.append(nodes.reference(text=match.group(0), refuri=uri, internal=True,
                                          classes=["equation-link"]))
            position = match.end()
        if pieces:
            pieces.append(nodes.Text(text[position:]))
            text.parent.replace(text, [piece for piece in pieces if piece.astext()])


def _inside(node: nodes.Node, kinds: tuple[type, ...]) -> bool:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, kinds):
            return True
        parent = parent.parent
    return False


def link_api_sources(doctree: nodes.document, linker: Linker) -> None:
    """A ``[source]`` link after every documented function, class and method."""
    for signature in doctree.findall(addnodes.desc_signature):
        found = _source_of(signature.get("module"), signature.get("fullname"))
        if found is None:
            continue
        path, line = found
        link = nodes.reference(internal=True, refuri=linker.source_line(path, line))
        link += nodes.inline(text="[source]", classes=["viewcode-link"])
        signature += link


def _source_of(module: str | None, fullname: str | None) -> tuple[str, int] | None:
    """``(repository path, first line)`` of a documented object of arrayhf, or None."""
    if not module or not fullname or not module.startswith("arrayhf"):
        return None
    try:
        target = importlib.import_module(module)
        for name in fullname.split("."):
            target = getattr(target, name)
        target = inspect.unwrap(getattr(target, "fget", target))
        defined_in = inspect.getmodule(target)
        _, line = inspect.getsourcelines(target)
    except (AttributeError, ImportError, OSError, TypeError):
        return None
    if defined_in is None or not defined_in.__name__.startswith("arrayhf"):
        return None
    path = defined_in.__name__.replace(".", "/")
    is_package = pathlib.Path(defined_in.__file__ or "").name == "__init__.py"
    return (f"{path}/__init__.py" if is_package else f"{path}.py"), line
