"""The API reference, written at the start of every build into ``docs/api/`` (not in git).

One page for every public name of ``arrayhf`` (``arrayhf.__all__``, so a new export gets its
page), by autodoc from the numpydoc docstrings, grouped on the index by the package that defines
it; one page per public submodule, and one for ``arrayhf.protocols``, the contracts of the model
and the data set. ``HFConfig``'s page adds the table of its settings: type, default, the values
its own checks accept, and the comment beside the field.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import io
import math
import pathlib
import shutil
import tokenize

FOLDER = "api"
# modules documented whole besides those in arrayhf.__all__: the protocols HF relies on
EXTRA_MODULES = ("arrayhf.protocols",)


def write_pages(docs: pathlib.Path) -> list[str]:
    """Write ``docs/api/index.rst`` and a page per public name; return the names."""
    import arrayhf

    folder = docs / FOLDER
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    exported = {name: getattr(arrayhf, name) for name in arrayhf.__all__}
    objects = {name: obj for name, obj in exported.items() if not inspect.ismodule(obj)}
    modules = [obj.__name__ for obj in exported.values() if inspect.ismodule(obj)]
    modules += [name for name in EXTRA_MODULES if name not in modules]
    for name, obj in objects.items():
        (folder / f"{name}.rst").write_text(_object_page(name, obj))
    for module in modules:
        (folder / f"{module.removeprefix('arrayhf.')}.rst").write_text(
            _module_page(module, objects))
    (folder / "index.rst").write_text(_index(objects, modules))
    return sorted(objects) + modules


def _title(text: str) -> str:
    return f"{text}\n{'=' * len(text)}\n"


def _summary(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ").strip()


def _index(objects: dict, modules: list[str]) -> str:
    groups: dict[str, list[str]] = {}
    for name, obj in sorted(objects.items(), key=lambda item: item[0].lower()):
        groups.setdefault(_package_of(obj), []).append(name)
    lines = [_title("API reference"),
             "Every public name of ``arrayhf`` (its ``__all__``), from its numpydoc docstring. "
             "An equation tag such as (R4) links to the equation; ``[source]`` beside a "
             "signature links to the line that defines it.\n"]
    for package in sorted(groups):
        heading = f"``{package}``"
        lines.append(f"{heading}\n{'-' * len(heading)}\n")
        lines.append(f"{_summary(importlib.import_module(package))}\n")
        for name in groups[package]:
            lines.append(f"- :py:obj:`arrayhf.{name}` — {_summary(objects[name])}")
        lines.append("")
    lines.append(f"Modules\n{'-' * 7}\n")
    for module in modules:
        lines.append(f"- :doc:`{module.removeprefix('arrayhf.')}` — "
                     f"{_summary(importlib.import_module(module))}")
    entries = "\n".join(f"   {name}" for name in
                        [*sorted(objects, key=str.lower),
                         *(m.removeprefix("arrayhf.") for m in modules)])
    lines.append(f"\n.. toctree::\n   :hidden:\n\n{entries}\n")
    return "\n".join(lines)


def _package_of(obj) -> str:
    """``arrayhf.models`` for FNN, ``arrayhf.losses`` for SquaredError: the subpackage (or the
    top-level module) that defines ``obj``."""
    parts = obj.__module__.split(".")
    return ".".join(parts[:2])


def _object_page(name: str, obj) -> str:
    if inspect.isclass(obj):
        options = ["   :members:", "   :show-inheritance:"]
        if _is_protocol(obj):
            options.append("   :undoc-members:")       # a protocol's methods are its contract
        elif any(base.__module__.startswith("arrayhf") for base in obj.__mro__[1:]):
            options.append("   :inherited-members:")   # FNN shows the methods of Model
        page = f"{_title(f'arrayhf.{name}')}\n.. autoclass:: arrayhf.{name}\n" + "\n".join(
            options) + "\n"
        if dataclasses.is_dataclass(obj) and name == "HFConfig":
            page += "\n" + settings_table(obj)
        return page
    return f"{_title(f'arrayhf.{name}')}\n.. autofunction:: arrayhf.{name}\n"


def _module_page(module: str, objects: dict) -> str:
    imported = importlib.import_module(module)
    elsewhere = sorted(name for name, obj in objects.items()
                       if getattr(obj, "__module__", None) == module
                       and getattr(imported, name, None) is obj)
    page = f"{_title(module)}\n.. automodule:: {module}\n   :members:\n"
    classes = [obj for obj in vars(imported).values()
               if inspect.isclass(obj) and obj.__module__ == module]
    if classes and all(_is_protocol(obj) for obj in classes):
        page += "   :undoc-members:\n"             # a protocol's methods are its contract
    if elsewhere:
        page += f"   :exclude-members: {', '.join(elsewhere)}\n\n"
        page += "Also defined here, each on its own page: " + ", ".join(
            f":py:obj:`arrayhf.{name}`" for name in elsewhere) + ".\n"
    return page


def _is_protocol(obj) -> bool:
    return inspect.isclass(obj) and bool(getattr(obj, "_is_protocol", False))


def protocol_without_signature(app, what, name, obj, options, signature, return_annotation):
    """``autodoc-process-signature``: a Protocol class is never instantiated, so its inherited
    ``(*args, **kwargs)`` says nothing; show none."""
    if what == "class" and _is_protocol(obj):
        return "", None
    return None


def settings_table(config_class) -> str:
    """An rST table of the dataclass's fields: type, default, accepted values, comment."""
    module = inspect.getmodule(config_class)
    comments = _field_comments(pathlib.Path(inspect.getsourcefile(config_class) or ""),
                               config_class.__name__)
    ranges = {name: (low, high, closed) for name, low, high, closed in
              getattr(module, "_RANGES", ())}
    rows = []
    for field in dataclasses.fields(config_class):
        accepted = (_interval(*ranges[field.name], integral=field.type.startswith("int"))
                    if field.name in ranges else _probe(config_class, field))
        if field.name in ranges and "None" in str(field.type):
            accepted = f"None, or {accepted}"
        rows.append([f"``{field.name}``", f"``{field.type}``", f"``{field.default!r}``",
                     accepted, comments.get(field.name, "")])
    body = "\n".join(
        "   * - " + "\n     - ".join(cell or "\\" for cell in row) for row in rows)
    return (f"Settings\n--------\n\nEvery field of ``{config_class.__name__}`` (a keyword "
            "argument of ``HF``), with the values its checks accept; a value outside them "
            "raises ``ValueError`` or ``TypeError`` before any work.\n\n"
            ".. list-table::\n   :header-rows: 1\n   :widths: 20 16 10 26 28\n\n"
            "   * - setting\n     - type\n     - default\n     - accepted\n     - meaning\n"
            f"{body}\n")


def _interval(low: float, high: float, closed: bool, *, integral: bool) -> str:
    def bound(value: float) -> str:
        return "∞" if math.isinf(value) else f"{value:g}"
    left = "[" if closed else "("
    right = "]" if closed and not math.isinf(high) else ")"
    kind = "an integer" if integral else "a number"
    return f"{kind} in {left}{bound(low)}, {bound(high)}{right}"


def _probe(config_class, field) -> str:
    """What the class's own check says about a setting without a range (its message, without
    the value it got): the accepted values in the code's words, never a copy of them."""
    if field.type == "bool":
        return "``True`` or ``False``"
    try:
        config_class(**{field.name: -1.0})
    except (ValueError, TypeError) as error:
        message = str(error).split(", got ")[0].removeprefix("expected ")
        for prefix in (f"{field.name} to be ", f"{field.name} "):
            message = message.removeprefix(prefix)
        return _quote(message)
    return ""


def _quote(message: str) -> str:
    """``rho_model 'damped' or 'undamped'`` -> rST literals for the quoted values."""
    parts = message.split("'")
    return "".join(f"``'{part}'``" if index % 2 else part for index, part in enumerate(parts))


def _field_comments(path: pathlib.Path, class_name: str) -> dict[str, str]:
    """``{field: the comment on its line}`` of a class's annotated fields in ``path``."""
    text = path.read_text()
    comments = {token.start[0]: token.string.lstrip("# ").strip()
                for token in tokenize.generate_tokens(io.StringIO(text).readline)
                if token.type == tokenize.COMMENT}
    found = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    if item.lineno in comments:
                        found[item.target.id] = comments[item.lineno]
    return found
