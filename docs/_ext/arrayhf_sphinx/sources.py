"""Highlighted source pages, one per module of ``arrayhf/``, with an anchor on every line.

``source/arrayhf/models/rnn.html#L-187`` is line 187 of ``arrayhf/models/rnn.py``; the line a link
lands on is highlighted (``:target`` in ``_static/arrayhf.css``). Every ``(R4)`` in a comment or
docstring of the page links to its equation. The side-by-side pages show excerpts of the same
highlighted lines, so the two can never differ.
"""

from __future__ import annotations

import functools
import html
import pathlib
from collections.abc import Callable, Iterator

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

import equation_tags

PAGE_PREFIX = "source/"

# uri_of(tag) -> the link to the equation from the page being written, or None if undefined
TagLinker = Callable[[str], "str | None"]


def pagename(path: str) -> str:
    """The page of a source file: ``arrayhf/models/rnn.py`` -> ``source/arrayhf/models/rnn``."""
    return PAGE_PREFIX + path.removesuffix(".py")


def line_anchor(line: int) -> str:
    return f"L-{line}"


@functools.cache
def highlighted_lines(path: pathlib.Path) -> tuple[str, ...]:
    """The file's lines as highlighted HTML, one string per source line (Pygments closes its spans
    at every line end, so each line stands alone)."""
    text = path.read_text()
    lexer = PythonLexer(stripnl=False, stripall=False, ensurenl=True)
    rendered = highlight(text, lexer, HtmlFormatter(nowrap=True)).split("\n")
    return tuple(rendered[:len(text.splitlines())])


def link_tags(fragment: str, uri_of: TagLinker) -> str:
    """``fragment`` (HTML) with every citation of a defined tag made a link to its equation."""
    def replace(match):
        uri = uri_of(match.group(1))
        if uri is None:
            return match.group(0)
        return (f'<a class="equation-link" href="{html.escape(uri)}" '
                f'title="equation {match.group(1)}">{match.group(0)}</a>')
    return equation_tags.SINGLE.sub(replace, fragment)


def render_lines(path: pathlib.Path, lines: range, uri_of: TagLinker,
                 line_uri: Callable[[int], str], *, anchors: bool, dedent: bool = False) -> str:
    """The lines ``lines`` of ``path`` as a highlighted block: each line a span (with its anchor,
    if ``anchors``), its number a link (``line_uri``), its citations links to their equations;
    with ``dedent``, less the indentation the lines share."""
    source = highlighted_lines(path)
    raw = path.read_text().splitlines()
    indent = min((len(raw[n - 1]) - len(raw[n - 1].lstrip(" ")) for n in lines
                  if raw[n - 1].strip()), default=0) if dedent else 0
    rows = []
    for number in lines:
        code = link_tags(_strip_indent(source[number - 1], indent), uri_of)
        anchor = f' id="{line_anchor(number)}"' if anchors else ""
        rows.append(f'<span class="source-line"{anchor}>'
                    f'<a class="source-lineno" href="{html.escape(line_uri(number))}">'
                    f'{number:>4}</a>  {code}</span>')
    return ('<div class="highlight-python notranslate source-lines"><div class="highlight">'
            '<pre>' + "\n".join(rows) + "</pre></div></div>")


def _strip_indent(line: str, indent: int) -> str:
    """A highlighted line less ``indent`` leading spaces (bare, or in Pygments' whitespace span)."""
    if not indent:
        return line
    opening = '<span class="w">'
    if line.startswith(opening):
        return opening + line[len(opening):].removeprefix(" " * indent)
    return line.removeprefix(" " * indent)


def source_pages(root: pathlib.Path, paths: list[pathlib.Path],
                 uri_for: Callable[[str], TagLinker]) -> Iterator[tuple[str, dict, str]]:
    """What Sphinx's ``html-collect-pages`` wants: ``(pagename, context, template)`` for every
    source file; ``uri_for(pagename)`` gives the tag linker of that page."""
    for path in paths:
        name = path.relative_to(root).as_posix()
        page = pagename(name)
        count = len(highlighted_lines(path))
        body = (f"<h1>{html.escape(name)}</h1>\n"
                + render_lines(path, range(1, count + 1), uri_for(page),
                               lambda number: f"#{line_anchor(number)}", anchors=True))
        yield page, {"title": name, "body": body}, "page.html"
