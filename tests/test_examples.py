"""The commands a user runs first: ``python bench/tour.py`` and the curvature-spectrum example, on
the backend under test (the autoencoder example takes 90 s and is run by hand: README)."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys
import tempfile

import pytest

from arrayhf import backend

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES, BENCH = ROOT / "examples", ROOT / "bench"


def load_example(name, folder=EXAMPLES):
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tour_prints_agreeing_rows(xp, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))   # bench/tour.py imports bench/common.py
    name = backend.name_of(xp)
    tour = load_example("tour", BENCH)
    assert tour.main(["--small", "--backends", f"numpy,{name}", "--repeats", "1",
                      "--dtypes", "float64"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith(("numpy ", f"{name} "))]
    assert len(rows) == (1 if name == "numpy" else 2)
    for row in rows:
        agreement, check = row.split()[5:7]
        assert float(agreement) <= 1e-12 and float(check) <= 1e-7


def test_curvature_spectrum_example_agrees_with_the_dense_matrix(xp, capsys):
    load_example("curvature_spectrum").main(["--backend", backend.name_of(xp)])
    output = capsys.readouterr().out
    differences = [float(x) for x in re.findall(r"^\s+\d+\s+\S+\s+\S+\s+(\S+)$", output, re.M)]
    assert len(differences) == 5 and max(differences) <= 1e-10


def test_examples_that_need_an_extra_say_which(monkeypatch, capsys):
    for name in ("scipy", "scipy.sparse", "scipy.sparse.linalg"):
        monkeypatch.setitem(sys.modules, name, None)     # as if scipy were not installed
    assert load_example("curvature_spectrum").main([]) == 2
    err = capsys.readouterr().err
    assert 'pip install ".[analysis]"' in err and "Traceback" not in err


@pytest.mark.only_backend("numpy")
def test_port_predictions_cleans_up_after_itself(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert load_example("port_predictions").main([]) == 0
    assert "shares memory with the torch tensor: True" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    kept = tmp_path / "kept"
    assert load_example("port_predictions").main(["--keep", str(kept)]) == 0
    assert (kept / "checkpoint.npz").exists()


def test_tour_checks_its_dtypes_before_printing_anything(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    tour = load_example("tour", BENCH)
    with pytest.raises(SystemExit) as stopped:
        tour.main(["--small", "--dtypes", "float16"])
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "expected float64 and/or float32, got ['float16']" in captured.err
