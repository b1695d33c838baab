"""The array-API discipline of ARCHITECTURE.md ("Conventions"), checked on the source: modules
that compute on model arrays import no backend, and never assign into an array; the sizes it
sets (a module at most 400 lines, a function at most 80); and type hints on the public API."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "arrayhf"
COMPUTE_MODULES = sorted(
    [PACKAGE / "losses.py", PACKAGE / "nonlinearities.py", PACKAGE / "curvature.py",
     PACKAGE / "_validate.py", PACKAGE / "layout.py"]
    + list((PACKAGE / "models").glob("*.py"))
    + list((PACKAGE / "hf").glob("*.py"))
)
# scipy is allowed: curvature.linear_operator hands host vectors to scipy, and imports it lazily
BACKENDS = {"numpy", "torch", "cupy", "jax", "jaxlib", "array_api_strict"}


@pytest.mark.parametrize("path", COMPUTE_MODULES, ids=lambda p: p.name)
def test_compute_modules_import_no_backend(path):
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & BACKENDS, f"{path.name} imports {imported & BACKENDS}"


@pytest.mark.parametrize("path", COMPUTE_MODULES, ids=lambda p: p.name)
def test_compute_modules_never_assign_into_arrays(path):
    """``x[i] = …`` and ``x[i] += …`` break JAX (immutable arrays): build and stack instead.
    Assignments into dicts are allowed: string keys, or dicts named ``*blocks`` / ``*_by_layer``."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AugAssign) else [])
        for target in targets:
            if isinstance(target, ast.Subscript):
                name = ast.unparse(target.value)
                string_key = isinstance(target.slice, ast.JoinedStr) or (
                    isinstance(target.slice, ast.Constant) and isinstance(target.slice.value, str))
                assert string_key or name.endswith(("blocks", "_by_layer")), \
                    f"{path.name}:{node.lineno} assigns into {name}"


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_keep_their_size(path):
    """A module is one concept of at most 400 lines, a function one step of at most 80
    (ARCHITECTURE.md, "Where each concept lives")."""
    source = path.read_text()
    assert len(source.splitlines()) <= 400, f"{path.name}: {len(source.splitlines())} lines"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= 80, f"{path.name}:{node.lineno} {node.name}: {length} lines"


def _public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def _unannotated(function: ast.FunctionDef | ast.AsyncFunctionDef, *, method: bool) -> list[str]:
    arguments = function.args
    parameters = arguments.posonlyargs + arguments.args + arguments.kwonlyargs
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod"
                 for d in function.decorator_list)
    if method and not static:
        parameters = parameters[1:]            # self or cls
    missing = [p.arg for p in parameters if p.annotation is None]
    missing += ["*" + p.arg for p in (arguments.vararg, arguments.kwarg)
                if p is not None and p.annotation is None]
    return missing + (["return"] if function.returns is None else [])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_public_functions_and_methods_are_annotated(path):
    """Every public function, and every public method of a public class, annotates its parameters
    and its return (arrays as Any: the array API has no static array type); mypy checks them."""
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    missing = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, functions) and _public(node.name):
            missing += [f"{node.name}: {m}" for m in _unannotated(node, method=False)]
        elif isinstance(node, ast.ClassDef) and _public(node.name):
            members = [m for item in node.body
                       for m in (item.body if isinstance(item, ast.If) else [item])]
            missing += [f"{node.name}.{m.name}: {name}" for m in members
                        if isinstance(m, functions) and _public(m.name)
                        for name in _unannotated(m, method=True)]
    assert not missing, f"{path.name}: not annotated: {missing}"
