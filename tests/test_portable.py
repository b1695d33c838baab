"""Portable checkpoints: a model trained on torch predicts the same on every other stack, loading
never runs code, and damaged or future files are refused with a message that says which."""

from __future__ import annotations

import json

import numpy as np
import pytest

import arrayhf
from arrayhf import backend, checkpoint, cli

from datasets import blobs
from helpers import host, relative_error


def train_on_torch(run_dir, dtype):
    torch_xp = backend.namespace("torch")
    dataset = blobs(torch_xp, None, dtype=dtype)
    model = arrayhf.FNN([5, 16, 3], hidden="tanh", output="softmax")
    optimizer = arrayhf.HF(model, dataset, damping=1.0, max_cg_iter=30, run_dir=run_dir,
                           progress=False)
    optimizer.run(max_iterations=2)
    inputs = dataset.batch(dataset.test_batches[0]).inputs
    return host(inputs), host(model.predict(optimizer.params, inputs))


@pytest.mark.parametrize(("dtype", "tolerance"), [("float32", 1e-6), ("float64", 1e-12)])
def test_a_model_trained_on_torch_predicts_the_same_here(xp, device, tmp_path, dtype, tolerance):
    inputs, expected = train_on_torch(tmp_path, dtype)
    options = {"device": device} if backend.name_of(xp) != "jax" else {}
    model, params = arrayhf.load(tmp_path, backend=backend.name_of(xp), **options)
    assert params.dtype == getattr(xp, dtype)
    predictions = model.predict(params, backend.from_host(inputs, xp, dtype=dtype, **options))
    assert relative_error(predictions, expected) <= tolerance


@pytest.mark.parametrize("model", [
    arrayhf.RNN(3, 6, 2, output="logistic"),
    arrayhf.MRNN(7, 5, 4, 7, variant="release"),
    arrayhf.LSTM(7, 5, 7, output="softmax", structural_curvature=0.5),
    arrayhf.GRU(7, 5, 7, output="softmax", structural_curvature=1.0),
], ids=["rnn", "mrnn", "lstm", "gru"])
def test_recurrent_checkpoints_rebuild_the_same_model(tmp_path, model):
    params = model.init(0)
    arrays = {"params": backend.to_numpy(params)}
    checkpoint.save(tmp_path / "checkpoint.npz", arrays, {"model": model.config(),
                                                         "dtype": "float64"})
    loaded, loaded_params = arrayhf.load(tmp_path / "checkpoint.npz")
    assert loaded.config() == model.config()
    np.testing.assert_array_equal(host(loaded_params), host(params))


def test_predict_command_writes_predictions(tmp_path, capsys):
    inputs, expected = train_on_torch(tmp_path / "run", "float64")
    np.save(tmp_path / "inputs.npy", inputs)
    assert cli.main(["predict", str(tmp_path / "run"), "--inputs", str(tmp_path / "inputs.npy"),
                     "--backend", "numpy"]) == 0
    assert "predictions of shape [200, 3]" in capsys.readouterr().out  # one test batch
    written = np.load(tmp_path / "inputs.predictions.npy")
    assert relative_error(written, expected) <= 1e-12


def test_damaged_and_future_checkpoints_are_refused(tmp_path):
    (tmp_path / "damaged.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(checkpoint.CheckpointError, match="damaged"):
        arrayhf.load(tmp_path / "damaged.npz")
    np.savez(tmp_path / "future.npz", params=np.zeros(2),
             __meta__=np.array(json.dumps({"format_version": 2, "model": {}})))
    with pytest.raises(checkpoint.CheckpointError, match="format version 2"):
        checkpoint.read_arrays(tmp_path / "future.npz")
    np.savez(tmp_path / "no_model.npz", params=np.zeros(2),
             __meta__=np.array(json.dumps({"format_version": 1})))
    with pytest.raises(checkpoint.CheckpointError, match="no model description"):
        checkpoint.load_model(tmp_path / "no_model.npz")


def test_pickled_arrays_are_never_loaded(tmp_path):
    np.savez(tmp_path / "pickled.npz", params=np.array([object()], dtype=object),
             __meta__=np.array(json.dumps({"format_version": 1})))
    with pytest.raises(checkpoint.CheckpointError, match="damaged"):
        checkpoint.read_arrays(tmp_path / "pickled.npz")


def test_unknown_model_descriptions_are_refused():
    with pytest.raises(ValueError, match="expected a model description"):
        arrayhf.models.from_config({"class": "Transformer"})
    with pytest.raises(ValueError, match="does not fit FNN"):
        arrayhf.models.from_config({"class": "FNN", "layers": [2, 3]})
