"""Where each equation is defined and which source lines cite it, read from the repository's text.

The documentation is generated from this, at every build: the links from a citation to its
equation and back, and the side-by-side page of every model. A tag cited in ``arrayhf/`` and
defined in no derivation, a tag defined and cited nowhere, or a tag defined twice is a
``ConcordanceError``, which stops the build.
"""

from __future__ import annotations

import ast
import functools
import io
import pathlib
import tokenize
from dataclasses import dataclass

import equation_tags
from equation_tags import Definition

# the passes of a model, in the order a side-by-side page shows the lines that cite a tag
PASS_ORDER = ("_forward", "_r_forward", "_backprop")


class ConcordanceError(Exception):
    """The derivations and the code disagree about a tag."""


@dataclass(frozen=True)
class Citation:
    """One source line that cites equation tags.

    path: relative to the repository root (``arrayhf/models/rnn.py``); line: 1-based; tags: the
    tags it cites, the ends and the inside of a range included; alone: those it cites on their
    own; function: the qualified name of the function or class it sits in (``RNN._forward``), ""
    at module level; in_comment: the citation is in a ``#`` comment, i.e. it tags a line of code.
    """

    path: str
    line: int
    tags: tuple[str, ...]
    alone: tuple[str, ...]
    function: str
    in_comment: bool

    @property
    def pass_rank(self) -> int:
        """0, 1, 2 for the forward, R-forward and backprop passes; 3 for anything else."""
        name = self.function.rsplit(".", 1)[-1]
        return PASS_ORDER.index(name) if name in PASS_ORDER else len(PASS_ORDER)


class Concordance:
    """Every tag's definition and every citation, for the repository at ``root``."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.derivations = sorted((root / "derivations").glob("*.md"))
        self.sources = sorted((root / "arrayhf").rglob("*.py"))
        self.all_definitions = [definition for path in self.derivations
                                for definition in equation_tags.definitions(path)]
        self.definitions = {d.tag: d for d in self.all_definitions}
        self.citations = [citation for path in self.sources
                          for citation in _citations(path, path.relative_to(root).as_posix())]

    def check(self) -> None:
        """Raise ``ConcordanceError`` naming every mismatch between derivations and code."""
        problems = []
        for path in self.derivations:
            found = {d.tag for d in self.all_definitions if d.path == path}
            for tag in sorted(equation_tags.defined_tags([path]) - found):
                problems.append(f"{path.relative_to(self.root).as_posix()} defines ({tag}) "
                                "outside a display equation ($$ alone on the lines before and "
                                "after it), where it can have no anchor")
        seen: dict[str, Definition] = {}
        for definition in self.all_definitions:
            if definition.tag in seen:
                first = seen[definition.tag]
                problems.append(f"{self._where(definition)} defines ({definition.tag}) again "
                                f"(first defined at {self._where(first)})")
            seen.setdefault(definition.tag, definition)
        cited = set()
        for citation in self.citations:
            cited |= set(citation.tags)
            for tag in citation.tags:
                if tag not in self.definitions:
                    problems.append(f"{citation.path}:{citation.line} cites ({tag}), which no "
                                    "derivation defines")
        for tag, definition in self.definitions.items():
            if tag not in cited:
                problems.append(f"{self._where(definition)} defines ({tag}), which no line "
                                "of arrayhf/ cites")
        if problems:
            raise ConcordanceError("the derivations and the code disagree:\n  "
                                   + "\n  ".join(problems))

    def _where(self, definition: Definition) -> str:
        return f"{definition.path.relative_to(self.root).as_posix()}:{definition.line}"

    def cited_by(self, tag: str) -> list[Citation]:
        """The lines that cite ``tag``, in file order."""
        return [citation for citation in self.citations if tag in citation.tags]

    def models(self) -> list[str]:
        """The models with a derivation of their own: each ``derivations/<name>.md`` whose code
        is ``arrayhf/models/<name>.py``."""
        return [path.stem for path in self.derivations
                if (self.root / "arrayhf" / "models" / f"{path.stem}.py").exists()]

    def docname(self, tag: str) -> str:
        """The document that defines ``tag``, e.g. ``derivations/rnn``."""
        path = self.definitions[tag].path
        return path.relative_to(self.root).with_suffix("").as_posix()


def _citations(path: pathlib.Path, name: str) -> list[Citation]:
    text = path.read_text()
    commented = _lines_with_cited_comments(text)
    functions = _enclosing_functions(text)
    citations = []
    for number, line in enumerate(text.splitlines(), start=1):
        tags = equation_tags.cited_tags(line, ranges=True)
        if tags:
            ordered = sorted(tags, key=_tag_order)
            citations.append(Citation(name, number, tuple(ordered),
                                      tuple(equation_tags.single_citations(line)),
                                      functions.get(number, ""), number in commented))
    return citations


def _tag_order(tag: str) -> tuple[str, int, str]:
    """(prefix, number, suffix) of a tag, for sorting: R4 → ("R", 4, ""), LS12a → ("LS", 12,
    "a")."""
    prefix = tag.rstrip("0123456789abcdefghijklmnopqrstuvwxyz")
    rest = tag[len(prefix):]
    digits = rest.rstrip("abcdefghijklmnopqrstuvwxyz")
    return prefix, int(digits), rest[len(digits):]


def _lines_with_cited_comments(text: str) -> set[int]:
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return {token.start[0] for token in tokens
            if token.type == tokenize.COMMENT and equation_tags.cited_on_line(token.string)}


def _enclosing_functions(text: str) -> dict[int, str]:
    """``{line: qualified name of the innermost def or class holding it}``."""
    owner: dict[int, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                for line in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                    owner[line] = name
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(text), "")
    return owner


@functools.cache
def _tree(path: pathlib.Path) -> ast.Module:
    return ast.parse(path.read_text())


def code_span(path: pathlib.Path, line: int) -> tuple[int, int]:
    """The lines a tagged line stands for: the whole statement it is part of, when that is short
    (a product written over two or three lines); the header alone of a ``for`` or ``if``; in a
    long statement, such as a tuple of one gradient a line, the part that starts on the line."""
    statement = None
    for node in ast.walk(_tree(path)):
        if (isinstance(node, ast.stmt) and node.lineno <= line <= (node.end_lineno or line)
                and (statement is None or node.lineno >= statement.lineno)):
            statement = node
    if statement is None:
        return line, line
    body = getattr(statement, "body", None)
    if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
        if line < body[0].lineno:       # the header of a compound statement
            return statement.lineno, body[0].lineno - 1
        return line, line
    end = statement.end_lineno or statement.lineno
    if end - statement.lineno < 4:
        return statement.lineno, end
    parts = [node for node in ast.walk(statement) if getattr(node, "lineno", None) == line]
    return line, max([getattr(node, "end_lineno", line) or line for node in parts] + [line])
