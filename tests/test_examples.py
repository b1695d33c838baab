"""The commands a user runs first: ``python bench/tour.py`` and the curvature-spectrum example, on
the backend under test (the autoencoder example takes 90 s and is run by hand: README)."""

from __future__ import annotations

import importlib.util
import pathlib
import re

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
