"""The derivations and the code they prove, kept in step (ARCHITECTURE.md, "Derivations").

Three checks, on the source text only (no backend), so they run in every session:

1. every code name that a derivation quotes in backticks exists in the modules it proves or in a
   shared module (a renamed or deleted variable leaves the text describing code that is gone);
2. every equation tag that the code cites, like ``(R4)``, is defined by a ``\\tag{R4}`` somewhere
   in ``derivations/``;
3. every tag that a derivation defines is cited, on its own (not only inside a range such as
   ``(R1)-(R3)``), by the code it proves: the line that implements an equation names it.

What counts as a code name: the identifiers inside a backtick span or a fenced code block (less its
``#`` comments) that are not a shape (``[T, B, n_h]``), a path, an equation tag, a Python keyword
or a one-letter symbol; a name starting with ``test_`` must be a test of ``tests/``. Identifiers of
other code that the text quotes on purpose (the 2011 release, Martens' code, torch) are listed in
``QUOTED_ELSEWHERE`` with their source; placeholders that stand for a family of names (``W_l`` for
``W_1``, ``W_2``, …) in ``PLACEHOLDERS``.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import keyword
import pathlib
import re
import sys

import pytest

from arrayhf.models import registry

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "arrayhf"
DERIVATIONS = ROOT / "derivations"


def _load_equation_tags():
    """docs/_ext/equation_tags.py: what a tag is, shared with the documentation build, which turns
    each citation into a link and fails on the same mismatches as the tests below."""
    spec = importlib.util.spec_from_file_location(
        "equation_tags", ROOT / "docs" / "_ext" / "equation_tags.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


equation_tags = _load_equation_tags()
cited_tags = equation_tags.cited_tags
defined_tags = equation_tags.defined_tags

# The modules every model shares: a model's derivation may quote their names too.
SHARED = ["models/base.py", "curvature.py", "layout.py", "losses.py", "nonlinearities.py",
          "initialization.py", "backend.py", "_validate.py", "__init__.py", "hf/optimizer.py",
          "hf/step.py", "hf/phases.py", "hf/settings.py", "hf/state.py", "hf/objective.py",
          "hf/cg.py", "hf/damping.py",
          "models/recurrent.py", "models/inputs.py"]

# Each derivation and the modules whose code it proves (and whose tags it must define): every
# registered model's (arrayhf/models/registry.py), and the derivations of the shared parts.
PROVES = {
    **{model.derivation: list(model.modules) for model in registry.REGISTRY},
    "losses.md": ["losses.py", "nonlinearities.py"],
    "gauss-newton.md": ["curvature.py", "models/base.py"],
    "structural-damping.md": ["models/rnn.py", "models/mrnn.py", "models/recurrent.py",
                              "curvature.py"],
    "cg-and-damping.md": ["hf/cg.py", "hf/damping.py", "hf/optimizer.py", "hf/step.py",
                          "hf/phases.py", "hf/settings.py", "hf/state.py", "hf/objective.py",
                          "data/sharded.py", "distributed.py"],
}

# Names of other code that the derivations quote on purpose, to compare arrayhf with it.
QUOTED_ELSEWHERE = {
    # the 2011 release (opt/m/rnn/rnn.py, opt/m/rnn/mrnn.py, opt/hf.py)
    "h_init", "randn", "R_AB", "R_A_t", "B_t_f", "R_B_t", "dAB", "dB", "dBB", "grad", "dot",
    "R_HX", "H_prod", "forward_pass", "initialize_self", "sparsify_strict", "conjgrad_1",
    "W_ho", "opt", "rnn", "mrnn", "hf", "W_vf",
    # arrayhf's own names before version 0.2 (the MRNN's output blocks)
    "W_oh", "b_o", "progress_heuristic", "damping_heuristic",
    "get_new_direction", "cg_eval_freq", "BT_batches", "RHO_batches", "damp", "optimize",
    # Martens' MATLAB code (nnet_train_2.m, conjgrad_1.m)
    "nnet_train_2", "precon", "chs",
    # torch, the autodiff oracle of the tests; torch's index_add and numpy's add.at
    "torch", "func", "index_add", "add", "at",
    # torch.nn.GRU's initialization (derivations/gru.md)
    "reset_parameters",
}

# Placeholders for a family of code names, and symbols of the text written in code font.
PLACEHOLDERS = {"W_l", "b_l", "W_L", "b_L", "f_l", "n_0", "n_l", "n_f", "n_h", "n_in", "n_out",
                "W_", "r_", "delta_", "direct_", "dL", "dz", "W_1"}

_SPAN = re.compile(r"`([^`]+?)`")
_PATH = re.compile(r"[\w.-]+(/[\w.-]+)+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def code_names(paths) -> set[str]:
    """The identifiers the code of ``paths`` uses (see ``_names_in``)."""
    return set().union(*(_names_in(path) for path in paths))


@functools.cache
def _names_in(path: pathlib.Path) -> frozenset[str]:
    """Every identifier the code of ``path`` uses: names, attributes, functions, classes,
    arguments, keywords, imports, and strings that are identifiers (block names like "W_xh").
    Docstrings and comments are not code: a name that survives only there does not count."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[-1])
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and node.value.isidentifier()):
            names.add(node.value)
    return frozenset(names)


def quoted_names(text: str) -> dict[str, str]:
    """``{identifier: the span it came from}`` for the code names quoted in backticks, and in
    fenced code blocks (without their ``#`` comments)."""
    spans = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        spans += [line.split("#")[0] for line in block.splitlines()]
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    spans += [span for span in _SPAN.findall(text) if "\n\n" not in span]
    quoted = {}
    for span in spans:
        if (span.lstrip().startswith("[") or _PATH.fullmatch(span.strip())
                or equation_tags.CITED.fullmatch(span.strip())):
            continue
        for name in _IDENTIFIER.findall(span):
            if (len(name) > 1 and name not in QUOTED_ELSEWHERE | PLACEHOLDERS
                    and not keyword.iskeyword(name)):
                quoted.setdefault(name, " ".join(span.split()))
    return quoted


def module_paths(names) -> list[pathlib.Path]:
    return [PACKAGE / name for name in names if (PACKAGE / name).exists()]


@functools.cache
def names_of_tests() -> set[str]:
    """The tests a derivation may point to, by name, as the check of one of its claims."""
    return {name for name in code_names(sorted((ROOT / "tests").glob("test_*.py")))
            if name.startswith("test_")}


@pytest.mark.parametrize("derivation", sorted(PROVES))
def test_every_quoted_code_name_exists(derivation):
    known = code_names(module_paths(PROVES[derivation] + SHARED)) | names_of_tests()
    quoted = quoted_names((DERIVATIONS / derivation).read_text())
    missing = {name: span for name, span in quoted.items() if name not in known}
    assert not missing, (f"{derivation} quotes names its code does not have: "
                         + "; ".join(f"{name!r} in `{span}`" for name, span in missing.items()))


# notation.md's sections on one model name that model's code (the registry's notation_section);
# the others name any module's
NOTATION_SECTIONS = {model.notation_section: list(model.modules) for model in registry.REGISTRY
                     if model.notation_section is not None}


def notation_sections() -> dict[str, str]:
    text = (DERIVATIONS / "notation.md").read_text()
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.mark.parametrize("section", sorted(notation_sections()))
def test_notation_quotes_only_existing_code_names(section):
    if section in NOTATION_SECTIONS:
        known = code_names(module_paths(NOTATION_SECTIONS[section] + SHARED))
    else:
        known = code_names(sorted(PACKAGE.rglob("*.py")))
    quoted = quoted_names(notation_sections()[section])
    missing = sorted(name for name in quoted if name not in known | names_of_tests())
    assert not missing, f"notation.md, section {section!r}, quotes names its code lacks: {missing}"


def test_the_index_of_derivations_names_existing_code():
    """derivations/README.md, the table of routines and their proofs, names only code that is
    there (dotted paths like ``models.rnn.RNN._forward`` are checked name by name)."""
    known = code_names(sorted(PACKAGE.rglob("*.py"))) | names_of_tests()
    known |= {path.stem for path in PACKAGE.rglob("*.py")} | {"arrayhf", "models", "hf", "data"}
    quoted = quoted_names((DERIVATIONS / "README.md").read_text())
    missing = sorted(name for name in quoted if name not in known)
    assert not missing, f"derivations/README.md names code that does not exist: {missing}"


def test_every_tag_the_code_cites_is_defined():
    defined = defined_tags(DERIVATIONS.glob("*.md"))
    for path in sorted(PACKAGE.rglob("*.py")):
        undefined = cited_tags(path.read_text(), ranges=True) - defined
        assert not undefined, f"{path.relative_to(ROOT)} cites undefined tags {sorted(undefined)}"


@pytest.mark.parametrize("derivation", sorted(PROVES))
def test_every_tag_a_derivation_defines_is_cited_by_its_code(derivation):
    defined = defined_tags([DERIVATIONS / derivation])
    code = "\n".join(path.read_text() for path in module_paths(PROVES[derivation]))
    uncited = defined - cited_tags(code, ranges=False)
    assert not uncited, (f"{derivation} defines {sorted(uncited)}, which no line of "
                         f"{PROVES[derivation]} cites on its own")


def test_the_checks_see_a_stale_name_and_an_uncited_tag():
    """The checks themselves can fail: a name the code lacks is reported, and so is a tag that
    only a range cites."""
    assert "direct_part" in quoted_names("so `r_pre = direct_part[step] + r_hidden @ W_hh`")
    assert "delta_pres" in quoted_names("```\nx = delta_pres[0]  # not_this\n```\n")
    assert "not_this" not in quoted_names("```\nx = delta_pres[0]  # not_this\n```\n")
    assert "direct_part" not in code_names(module_paths(["models/rnn.py"]))
    assert cited_tags("(R1)-(R3)", ranges=False) == {"R1", "R3"}
    assert cited_tags("(R1)–(R3)", ranges=True) == {"R1", "R2", "R3"}
    assert cited_tags("(LS7)-(LS9), (MS11)", ranges=True) == {"LS7", "LS8", "LS9"}
    assert cited_tags("(GR7)-(GR9)", ranges=True) == {"GR7", "GR8", "GR9"}
    assert equation_tags.DEFINED_TAG.findall(r"\tag{GR12} \tag{S3}") == ["GR12", "S3"]
    assert cited_tags("as in (MS11), (GR3)", ranges=False) == {"GR3"}


@pytest.mark.parametrize("model", registry.names())
def test_every_registered_model_has_its_derivation_and_notation_section(model):
    """The registry's derivation page exists and is checked above; its notation.md section, if
    it names one, exists."""
    entry = registry.entry(model)
    assert (DERIVATIONS / entry.derivation).exists(), entry.derivation
    assert all((PACKAGE / module).exists() for module in entry.modules), entry.modules
    if entry.notation_section is not None:
        assert entry.notation_section in notation_sections()
