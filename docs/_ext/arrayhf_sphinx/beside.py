"""The side-by-side page of each model: every equation of its derivation, then the lines of its
code that cite it, written at the start of every build into ``docs/side-by-side/`` (not in git).

A model is a derivation ``derivations/<name>.md`` with a module ``arrayhf/models/<name>.py``
(``Concordance.models``), so a new model gets its page without any list to update. The equations
come in the order of the derivation, under its section titles; the lines under each equation are
those whose comment cites it on its own, ordered forward, R-forward, backprop (the function they
sit in), then the rest in file order.
"""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from arrayhf_sphinx import sources
from arrayhf_sphinx.concordance import Citation, Concordance, code_span
from arrayhf_sphinx.links import SIDE_BY_SIDE, Linker

FOLDER = SIDE_BY_SIDE.rstrip("/")


@dataclass(frozen=True)
class Excerpt:
    """Consecutive lines of one function shown under one equation."""

    function: str
    rank: int
    first: int
    last: int


def write_pages(concordance: Concordance, docs: pathlib.Path,
                relative_uri: Callable[[str, str], str]) -> list[str]:
    """Write ``docs/side-by-side/index.md`` and one page per model; return the models."""
    folder = docs / FOLDER
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    models = concordance.models()
    for model in models:
        page = f"{FOLDER}/{model}"
        text = model_page(concordance, model, Linker(concordance, relative_uri, page))
        (folder / f"{model}.md").write_text(text)
    (folder / "index.md").write_text(_index(models))
    return models


def _index(models: list[str]) -> str:
    entries = "\n".join(models)
    return f"""# Equations beside the code

One page per model: each equation of the model's derivation, then the lines of code that cite
it, in the order of the forward, R-forward and backprop passes. The pages are generated at every
build from the tags themselves (`\\tag{{R4}}` in a derivation, `(R4)` in a comment of the code),
so they cannot drift from either; a tag cited in the code and defined nowhere, or the reverse,
stops the build. Every line number links to that line of the source, every equation number to
the equation in its derivation.

```{{toctree}}
:maxdepth: 1

{entries}
```
"""


def model_page(concordance: Concordance, model: str, linker: Linker) -> str:
    derivation = concordance.root / "derivations" / f"{model}.md"
    module = f"arrayhf/models/{model}.py"
    title = derivation.read_text().splitlines()[0].lstrip("# ").strip()
    parts = [f"# {model}: equations beside the code\n",
             f"*{title}*: each equation of [derivations/{model}.md](../derivations/{model}.md) "
             f"and the lines of `{module}` that cite it.\n"]
    section = None
    for definition in concordance.all_definitions:
        if definition.path != derivation:
            continue
        if definition.section != section:
            section = definition.section
            parts.append(f"## {section}\n")
        parts.append(_entry(concordance, definition.tag, definition.latex, module, linker))
    return "\n".join(parts)


def _entry(concordance: Concordance, tag: str, latex: str, module: str, linker: Linker) -> str:
    cited = concordance.cited_by(tag)
    own = [c for c in cited if c.path == module]
    shown = [c for c in own if c.in_comment and tag in c.alone] or own
    path = concordance.root / module
    blocks = []
    for excerpt in _excerpts(path, shown):
        where = excerpt.function or "module level"
        lines = (f"line {excerpt.first}" if excerpt.first == excerpt.last
                 else f"lines {excerpt.first}–{excerpt.last}")
        header = (f'<p class="excerpt-title"><a class="code-link" '
                  f'href="{linker.source_line(module, excerpt.first)}">{module}, {lines}</a> '
                  f'· <code>{where}</code></p>')
        code = sources.render_lines(path, range(excerpt.first, excerpt.last + 1),
                                    linker.equation,
                                    lambda line: linker.source_line(module, line), anchors=False,
                                    dedent=True)
        blocks.append(header + code)
    elsewhere = [c for c in cited if c.path != module]
    if elsewhere:
        links = ", ".join(f'<a class="code-link" href="{linker.source_line(c.path, c.line)}">'
                          f'{c.path.removeprefix("arrayhf/")} line {c.line}</a>'
                          for c in elsewhere)
        blocks.append(f'<p class="excerpt-elsewhere">Also cited in {links}.</p>')
    if not blocks:
        blocks.append(f'<p class="excerpt-elsewhere">No line of <code>{module}</code> cites '
                      f'({tag}).</p>')
    html = "\n".join(blocks)
    return f"""**({tag})**

$$
{latex}
$$

```{{raw}} html
<div class="equation-code">
{html}
</div>
```
"""


def _excerpts(path: pathlib.Path, citations: list[Citation]) -> list[Excerpt]:
    """The citing lines as excerpts in pass order; lines of one function at most one line apart
    are one excerpt."""
    spans = sorted((c.pass_rank, *code_span(path, c.line), c.function) for c in citations)
    excerpts: list[Excerpt] = []
    for rank, first, last, function in spans:
        previous = excerpts[-1] if excerpts else None
        if (previous and previous.function == function and previous.rank == rank
                and first <= previous.last + 2):
            excerpts[-1] = Excerpt(function, rank, previous.first, max(previous.last, last))
        else:
            excerpts.append(Excerpt(function, rank, first, last))
    return excerpts
