"""The built site holds what it promises, read from its HTML (``nox -s docs``, after the build).

Every public name of ``arrayhf`` has its entry in the API reference; every tag of every derivation
has its anchor, with links to the lines that cite it; every model has its side-by-side page; every
source page has one anchor a line; nothing is loaded from the network. And a mismatch between the
tags of the derivations and those of the code stops a build.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SITE = ROOT / "docs" / "_build" / "html"
sys.path[:0] = [str(ROOT), str(ROOT / "docs" / "_ext")]

import equation_tags  # noqa: E402  (docs/_ext: the grammar the build uses)
from arrayhf_sphinx.concordance import Concordance, ConcordanceError  # noqa: E402


@pytest.fixture(scope="module")
def concordance() -> Concordance:
    if not (SITE / "index.html").exists():
        pytest.fail(f"no built site in {SITE}: run `nox -s docs` (it builds, then tests)")
    return Concordance(ROOT)


def page(name: str) -> str:
    return (SITE / name).read_text()


def test_every_public_name_has_its_entry_in_the_api_reference(concordance):
    import arrayhf

    index = page("api/index.html")
    for name in arrayhf.__all__:
        obj = getattr(arrayhf, name)
        module = getattr(obj, "__spec__", None) is not None and not callable(obj)
        anchor = f"module-{obj.__name__}" if module else f"arrayhf.{name}"
        assert f'id="{anchor}"' in page(f"api/{name}.html"), f"api/{name}.html lacks {anchor}"
        assert f'href="{name}.html' in index, f"the API index does not list {name}"


def _text(html: str) -> str:
    import html as escapes

    return " ".join(escapes.unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_the_settings_of_hfconfig_are_listed_with_their_defaults_and_ranges(concordance):
    import dataclasses

    from arrayhf import HFConfig

    html = page("api/HFConfig.html")
    rows = [_text(row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>",
                                              html[html.index('id="settings"'):], re.S)]
    by_setting = {row.split()[0]: row for row in rows[1:]}
    assert list(by_setting) == [field.name for field in dataclasses.fields(HFConfig)]
    for field in dataclasses.fields(HFConfig):
        assert repr(field.default) in by_setting[field.name], field.name
    assert "an integer in [1, ∞)" in by_setting["max_cg_iter"]     # the checks' own range
    assert "'damped' or 'undamped'" in by_setting["rho_model"]     # the check's own message
    assert "ε of the relative-progress stop" in by_setting["cg_epsilon"]   # the field's comment


def test_every_equation_has_its_anchor_and_links_to_the_lines_that_cite_it(concordance):
    for derivation in concordance.derivations:
        html = page(f"derivations/{derivation.stem}.html")
        for definition in equation_tags.definitions(derivation):
            anchor = f'id="eq-{definition.tag}"'
            assert anchor in html, f"{derivation.name}: no anchor for ({definition.tag})"
            after = html[html.index(anchor):].split('class="equation-citations"', 1)[1]
            links = re.findall(r'href="([^"]*source/[^"#]*\.html#L-(\d+))"',
                               after.split("</p>", 1)[0])
            cited = {(c.path, c.line) for c in concordance.cited_by(definition.tag)}
            linked = {(re.sub(r"^.*source/", "", uri).rsplit("#", 1)[0].removesuffix(".html")
                       + ".py", int(line)) for uri, line in links}
            assert linked == cited, f"({definition.tag}): links {linked}, citations {cited}"


def test_every_model_has_its_side_by_side_page_with_every_equation_and_its_code(concordance):
    models = concordance.models()
    assert {"fnn", "rnn", "mrnn"} <= set(models)
    index = page("side-by-side/index.html")
    for model in models:
        assert f'href="{model}.html"' in index, f"the side-by-side index does not list {model}"
        html = page(f"side-by-side/{model}.html")
        tags = [d.tag for d in equation_tags.definitions(ROOT / "derivations" / f"{model}.md")]
        positions = [html.index(f'id="eq-{tag}"') for tag in tags]
        assert positions == sorted(positions), f"{model}: equations out of the derivation's order"
        for tag, start, end in zip(tags, positions, positions[1:] + [len(html)]):
            entry = html[start:end]
            # the model's module, or its host-side conversions (interop/torch_gru.py)
            assert re.search(rf"source/arrayhf/(models/{model}|interop/torch_{model})\.html#L-",
                             entry), (
                f"({tag}): no code line")


def test_the_lines_under_an_equation_come_in_the_order_of_the_passes(concordance):
    """(R5) is cited in the forward pass (the slope kept for it) and in the R-forward pass; (R9)
    in the forward and the backprop passes: each excerpt in pass order (an excerpt from a function
    nested in a pass, like ``RNN._r_forward.cell_steps``, belongs to that pass)."""
    html = page("side-by-side/rnn.html")
    for tag, passes in (("R5", ["RNN._forward", "RNN._r_forward"]),
                        ("R9", ["RNN._forward", "RNN._backprop"])):
        start = html.index(f'id="eq-{tag}"')
        entry = html[start:html.index('id="eq-', start + 10)]
        shown = [".".join(name.split(".")[:2])
                 for name in re.findall(r"<code>(RNN\.[\w.]+)</code>", entry)]
        assert shown == passes, f"({tag}): excerpts of {shown}, expected {passes}"


def test_every_source_page_has_an_anchor_on_every_line(concordance):
    for path in concordance.sources:
        name = path.relative_to(ROOT).with_suffix(".html").as_posix()
        html = page(f"source/{name}")
        anchors = re.findall(r'<span class="source-line" id="L-(\d+)">', html)
        assert anchors == [str(n) for n in range(1, len(path.read_text().splitlines()) + 1)], name


def test_the_site_loads_nothing_from_the_network(concordance):
    remote = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"(?:https?:)?//",
                        re.I)
    for html in SITE.rglob("*.html"):
        assert not remote.search(html.read_text()), f"{html.relative_to(SITE)} loads a remote file"
    assert (SITE / "_static" / "mathjax" / "tex-chtml.js").exists()


def test_a_tag_mismatch_is_reported_with_every_place(tmp_path):
    (tmp_path / "derivations").mkdir()
    (tmp_path / "arrayhf").mkdir()
    (tmp_path / "derivations" / "toy.md").write_text(
        "# Toy\n\n$$\nx = 1 \\tag{T1}\n$$\n\n$$\ny = 2 \\tag{T2}\n$$\n\n$$\nz \\tag{T1}\n$$\n")
    (tmp_path / "derivations" / "inline.md").write_text("# Inline\n\n$$ w \\tag{T4} $$\n")
    (tmp_path / "arrayhf" / "toy.py").write_text("x = 1  # (T1)\ny = 2  # (T3), (T4)\n")
    with pytest.raises(ConcordanceError) as error:
        Concordance(tmp_path).check()
    message = str(error.value)
    assert "arrayhf/toy.py:2 cites (T3), which no derivation defines" in message
    assert "derivations/toy.md:7 defines (T2), which no line of arrayhf/ cites" in message
    assert "derivations/toy.md:11 defines (T1) again (first defined at derivations/toy.md:3)" \
        in message
    assert "derivations/inline.md defines (T4) outside a display equation" in message


def test_a_build_with_a_tag_cited_and_defined_nowhere_fails(tmp_path):
    """The whole build stops, not only a test: sphinx-build exits non-zero and says why."""
    repo = tmp_path / "repo"
    (repo / "derivations").mkdir(parents=True)
    (repo / "arrayhf").mkdir()
    (repo / "derivations" / "toy.md").write_text("# Toy\n\n$$\nx = 1 \\tag{T1}\n$$\n")
    (repo / "arrayhf" / "toy.py").write_text("x = 1  # (T1), (T9)\n")
    source = tmp_path / "docs"
    source.mkdir()
    (source / "conf.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "docs" / "_ext")!r}]
        extensions = ["myst_parser", "arrayhf_sphinx"]
        arrayhf_root = {str(repo)!r}
        """))
    (source / "index.md").write_text("# Toy\n")
    build = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html",
                            str(source), str(tmp_path / "html")],
                           capture_output=True, text=True, timeout=120)
    assert build.returncode != 0
    assert "arrayhf/toy.py:1 cites (T9), which no derivation defines" in build.stderr
