"""The grammar of equation tags, shared by ``tests/test_concordance.py`` and the documentation
build (``docs/_ext/arrayhf_sphinx``), so that the two can never disagree on what a tag is.

A derivation *defines* a tag with ``\\tag{R4}`` inside a ``$$ … $$`` block of ``derivations/*.md``;
code *cites* it as ``(R4)`` in a comment or docstring of ``arrayhf/**/*.py``, alone or as an end of
a range, ``(R1)-(R3)`` or ``(R7)–(R12)``. This module only reads text: it imports no Sphinx and no
arrayhf.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

# A tag is one capital letter and a number, like (R4), or one of the two-letter prefixes of the
# gated models, like (LS4) (LSTM) or (GR4) (GRU); other parenthesized capitals, like (MS11), are
# citations of papers.
PREFIX = r"(?:LS|GR|[A-Z])"
DEFINED_TAG = re.compile(r"\\tag\{(" + PREFIX + r"[0-9]+[a-z]?)\}")
# "(R4)", and the ranges "(R1)-(R3)", "(R7)–(R12)"
CITED = re.compile(r"\((" + PREFIX + r")([0-9]+)([a-z]?)\)(?:\s*[-–]\s*\((" + PREFIX
                   + r")([0-9]+)\))?")
# one "(R4)" on its own, for turning each citation into a link (a range is two of them)
SINGLE = re.compile(r"\((" + PREFIX + r"[0-9]+[a-z]?)\)")
# a display equation: "$$" alone on a line (indented in a list item), the LaTeX, "$$"
_DISPLAY_MATH = re.compile(r"^[ \t]*\$\$[ \t]*\n(.*?)\n[ \t]*\$\$[ \t]*$", re.S | re.M)
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*$", re.M)


def cited_tags(text: str, *, ranges: bool) -> set[str]:
    """The tags that ``text`` cites; with ``ranges``, "(R1)-(R3)" cites R1, R2 and R3 too."""
    tags = set()
    for letter, first, suffix, range_letter, last in CITED.findall(text):
        tags.add(f"{letter}{first}{suffix}")
        if last and range_letter == letter:
            tags.add(f"{letter}{last}")
            if ranges:
                tags |= {f"{letter}{n}" for n in range(int(first), int(last) + 1)}
    return tags


def defined_tags(paths: Iterable[pathlib.Path]) -> set[str]:
    """The tags that the derivations at ``paths`` define with ``\\tag{…}``."""
    return {tag for path in paths for tag in DEFINED_TAG.findall(path.read_text())}


class Definition(NamedTuple):
    """One ``\\tag{…}`` of a derivation: the tag, its file, the line of its ``$$``, the LaTeX
    between the two ``$$`` and the title of the section that holds it."""

    tag: str
    path: pathlib.Path
    line: int
    latex: str
    section: str


def definitions(path: pathlib.Path) -> Iterator[Definition]:
    """The tagged display equations of one derivation, in the order of the text."""
    text = path.read_text()
    headings = [(match.start(), match.group(2)) for match in _HEADING.finditer(text)]
    for block in _DISPLAY_MATH.finditer(text):
        section = next((title for start, title in reversed(headings) if start < block.start()),
                       "")
        line = text.count("\n", 0, block.start()) + 1
        for tag in DEFINED_TAG.findall(block.group(1)):
            yield Definition(tag, path, line, block.group(1), section)


def cited_on_line(line: str) -> list[str]:
    """The tags one line cites, each end of a range included, in the order they appear."""
    return SINGLE.findall(line)


def single_citations(line: str) -> list[str]:
    """The tags one line cites on their own, not as an end of a range such as ``(R1)-(R3)``."""
    return [f"{letter}{number}{suffix}"
            for letter, number, suffix, range_letter, _ in CITED.findall(line)
            if not range_letter]
