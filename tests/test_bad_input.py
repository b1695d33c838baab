"""Bad input, generated and hand-picked. Hypothesis builds malformed arguments for the public entry
points (model methods, the HF optimizer's settings, checkpoints, data sets, backends) and each
must be refused with a documented exception type, before any work and without changing any state:

    ValueError       a wrong value or shape (NaN/Inf data, empty batch, mask counting nothing,
                     T too small, unknown problem, out-of-range setting), arrays on two devices
    TypeError        a wrong dtype, arrays from two backends, something that is not an array
    KeyError         an unknown batch id
    BackendError     an unknown, missing or unusable backend or device
    CheckpointError  a damaged, foreign or newer-format checkpoint
    FloatingPointError   the objective itself is not finite at the current θ (HF.step)

Every message says what was expected; these tests check that the refusal is ours (its message
contains "expected" or names the two backends/devices), not an error from deep inside a backend.
"""

from __future__ import annotations

import json
import math
import pathlib
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import arrayhf
from arrayhf import backend, checkpoint
from arrayhf.data.pathological import PROBLEMS, Pathological
from arrayhf.hf.optimizer import HF

import problems
from datasets import FreshBlobs, blobs
from helpers import host

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
OUR_WORDS = ("expected", "needs", "more than one backend", "more than one device")


def assert_ours(error):
    assert any(word in str(error) for word in OUR_WORDS), f"not an arrayhf message: {error!r}"


# -- model entry points ---------------------------------------------------------------------------
# every registered model's cases (problems.CASES, from arrayhf/models/registry.py)
MODEL_CASES = list(problems.CASES)
METHODS = {
    "forward": ("params", "inputs"),
    "predict": ("params", "inputs"),
    "r_forward": ("params", "v", "inputs"),
    "backprop": ("params", "inputs", "delta"),
    "loss": ("params", "inputs", "targets", "mask"),
    "gradient": ("params", "inputs", "targets", "mask"),
    "gauss_newton_product": ("params", "inputs", "targets", "mask", "v"),
}
KINDS = ("shape", "ndim", "dtype", "backend", "not an array")


@pytest.fixture(scope="module")
def cases(xp, device):
    made = {}
    for case in MODEL_CASES:
        problem = problems.make(case, xp, device)
        cache = problem.model.forward(problem.params, problem.batch.inputs)
        baseline = host(problem.model.gradient(problem.params, problem.batch))
        made[case] = (problem, cache, baseline)
    return made


def valid_arguments(problem, cache):
    batch = problem.batch
    return {"params": problem.params, "v": problem.v, "inputs": batch.inputs,
            "targets": batch.targets, "mask": batch.mask, "delta": cache.net_output}


def call(model, method, arguments, cache):
    a = arguments
    if method in ("forward", "predict"):
        return getattr(model, method)(a["params"], a["inputs"])
    if method == "r_forward":
        return model.r_forward(a["params"], a["v"], a["inputs"], cache)
    if method == "backprop":
        return model.backprop(a["params"], a["inputs"], cache, a["delta"])
    batch = arrayhf.Batch(a["inputs"], a["targets"], a["mask"])
    if method == "gauss_newton_product":
        return model.gauss_newton_product(a["params"], batch, a["v"])
    return getattr(model, method)(a["params"], batch)


def other_backend_array(xp, shape):
    if backend.name_of(xp) == "numpy":
        import torch

        return torch.ones(shape, dtype=torch.float64)
    return np.ones(shape)


def malformed(data, xp, device, name, valid, kind):
    """An array (or object) that no method may accept in place of ``valid`` as ``name``."""
    shape = tuple(valid.shape)
    ids = name == "inputs" and xp.isdtype(valid.dtype, "integral")
    if kind == "shape" and ids:
        kind = "ndim"   # character ids [T, B] of any T, B are valid inputs to forward
    if kind == "ndim":
        ndim = data.draw(st.integers(0, 4).filter(lambda n: n != len(shape)), label="ndim")
        shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim),
                                label="shape"))
        return xp.ones(shape, dtype=valid.dtype, device=device)
    if kind == "shape":   # inputs: the feature axis (any batch size is valid for forward)
        axis = len(shape) - 1 if name == "inputs" else data.draw(
            st.integers(0, len(shape) - 1), label="axis")
        size = data.draw(st.integers(0, 9).filter(lambda n: n != shape[axis]), label="size")
        shape = shape[:axis] + (size,) + shape[axis + 1:]
        return xp.ones(shape, dtype=valid.dtype, device=device)
    if kind == "dtype":
        other_float = xp.float32 if valid.dtype == xp.float64 else xp.float64
        choices = {"inputs": [xp.float64, xp.float32, xp.bool] if ids
                   else [xp.int32, xp.bool, other_float],
                   "mask": [xp.int32, other_float]}.get(name, [xp.int32, xp.bool, other_float])
        dtype = data.draw(st.sampled_from(choices), label="dtype")
        return xp.ones(shape, dtype=dtype, device=device)
    if kind == "backend":
        return other_backend_array(xp, shape)
    return backend.to_numpy(valid).tolist()   # a nested Python list


@FUZZ
@given(data=st.data())
def test_model_methods_refuse_malformed_arguments(cases, xp, device, data):
    case = data.draw(st.sampled_from(MODEL_CASES), label="case")
    problem, cache, baseline = cases[case]
    method = data.draw(st.sampled_from(sorted(METHODS)), label="method")
    arguments = valid_arguments(problem, cache)
    names = [n for n in METHODS[method] if arguments[n] is not None]
    name = data.draw(st.sampled_from(names), label="argument")
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    ids = xp.isdtype(problem.batch.inputs.dtype, "integral")
    # With character ids, forward/predict take no other float array: a float32 θ is valid there.
    assume(not (ids and method in ("forward", "predict") and name == "params" and kind == "dtype"))
    arguments[name] = malformed(data, xp, device, name, arguments[name], kind)
    with pytest.raises((ValueError, TypeError)) as refused:
        call(problem.model, method, arguments, cache)
    assert_ours(refused.value)
    # nothing changed: the model computes what it computed before the bad call
    after = host(problem.model.gradient(problem.params, problem.batch))
    np.testing.assert_array_equal(after, baseline)


def test_an_empty_batch_is_refused(xp, device):
    problem = problems.make("rnn/tanh-linear-last-step", xp, device)
    batch = problem.batch
    empty = arrayhf.Batch(batch.inputs[:, :0, :], batch.targets[:, :0, :], batch.mask[:, :0])
    with pytest.raises(ValueError, match=r"at least one case and time step, got inputs of shape "
                                         r"\[7, 0, 2\]"):
        problem.model.loss(problem.params, empty)


# -- data sets ------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["train_inputs", "train_targets", "test_inputs", "test_targets"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_array_dataset_refuses_non_finite_values(xp, device, which, bad):
    rng = np.random.default_rng(0)
    arrays = {"train_inputs": rng.standard_normal((8, 3)), "train_targets": np.eye(2)[[0, 1] * 4],
              "test_inputs": rng.standard_normal((4, 3)), "test_targets": np.eye(2)[[1, 0] * 2]}
    arrays[which][1, 0] = bad
    moved = {k: backend.from_host(a, xp, device=device) for k, a in arrays.items()}
    with pytest.raises(ValueError, match=f"expected finite values in {which}, got 1 NaN or Inf "
                                         "entries of"):
        arrayhf.ArrayDataset(**moved, batch_size=4)


@FUZZ
@given(name=st.one_of(st.sampled_from(PROBLEMS), st.text(max_size=6)),
       T=st.one_of(st.integers(-3, 80), st.floats(allow_nan=True), st.text(max_size=2)),
       batch_size=st.one_of(st.integers(-2, 4), st.floats(0, 3)))
def test_pathological_refuses_bad_settings_or_makes_finite_batches(xp, device, name, T,
                                                                   batch_size):
    try:
        data = Pathological(name, T, batch_size=batch_size, n_train_batches=1, n_test_batches=1,
                            xp=xp, device=device)
    except (ValueError, TypeError) as error:
        assert_ours(error)
        return
    batch = data.batch(data.train_batches[0])
    assert batch.inputs.shape[:2] == (T, batch_size) and batch.targets.shape[:2] == (T, batch_size)
    assert np.isfinite(host(batch.inputs)).all() and np.isfinite(host(batch.targets)).all()


@FUZZ
@given(name=st.text(max_size=12))
def test_backend_names_give_a_namespace_or_backend_error(name):
    """Any string: a namespace for the five names (and their aliases), else BackendError."""
    try:
        xp = backend.namespace(name or None)
    except backend.BackendError as error:
        assert "backend" in str(error) and ("expected" in str(error) or "needs" in str(error))
        return
    assert backend.name_of(xp) in backend.BACKENDS


# -- the HF optimizer -----------------------------------------------------------------------------
def classifier():
    return arrayhf.FNN([5, 16, 3], hidden="tanh", output="softmax")


SETTINGS = ("damping", "structural_damping_mu", "max_cg_iter", "min_cg_iter", "cg_epsilon",
            "cg_decay", "weight_cost", "rho_model", "line_search", "armijo_c", "line_search_rate",
            "max_line_search", "damping_boost", "damping_drop", "test_every", "grad_batches",
            "curvature_batches")
ANY_VALUE = st.one_of(st.integers(-3, 60), st.floats(allow_nan=True, allow_infinity=True),
                      st.booleans(), st.none(), st.text(max_size=3),
                      st.lists(st.integers(-1, 3), max_size=2))


def snapshot(optimizer):
    return (host(optimizer.params).tobytes(), optimizer.iteration, optimizer.damping,
            optimizer.cg_total, None if optimizer.cg_warm_start is None
            else host(optimizer.cg_warm_start).tobytes(), len(optimizer.history))


@settings(FUZZ, max_examples=25)
@given(chosen=st.dictionaries(st.sampled_from(SETTINGS), ANY_VALUE, min_size=1, max_size=3))
def test_hf_settings_are_refused_or_give_a_working_optimizer(xp, device, chosen):
    dataset = blobs(xp, device)
    try:
        optimizer = HF(classifier(), dataset, progress=False, **chosen)
    except (ValueError, TypeError, KeyError) as error:
        if not isinstance(error, KeyError):
            assert_ours(error)
        return
    before = snapshot(optimizer)
    try:
        optimizer.step()
    except FloatingPointError:   # e.g. weight_cost 1e308: the objective overflows at θ itself
        assert snapshot(optimizer) == before
        return
    assert np.isfinite(host(optimizer.params)).all()


def test_hf_refuses_bad_parameters_and_models(xp, device):
    dataset = blobs(xp, device)
    model = classifier()
    params = host(model.init(0, xp=backend.namespace("numpy")))
    params[3] = math.nan
    with pytest.raises(ValueError, match="expected finite values in params, got 1 NaN"):
        HF(model, dataset, params=backend.from_host(params, xp, device=device))
    with pytest.raises(TypeError, match="expected params of dtype"):
        HF(model, dataset, params=backend.from_host(np.zeros(model.n_params), xp,
                                                    dtype="float32", device=device))
    with pytest.raises(ValueError, match=r"expected params of shape \[147\], got \[3\]"):
        HF(model, dataset, params=backend.from_host(np.zeros(3), xp, device=device))
    with pytest.raises(ValueError, match="FNN has no structural damping term"):
        HF(model, dataset, structural_damping_mu=0.1)
    with pytest.raises(KeyError, match="no batch 'nine'"):
        HF(model, dataset, curvature_batches=["nine"])


class CountingFNN(arrayhf.FNN):
    """An FNN that counts its forward passes: 'before any work' made measurable."""

    forwards = 0

    def _forward(self, *args, **kwargs):
        CountingFNN.forwards += 1
        return super()._forward(*args, **kwargs)


class PoisonedFreshBlobs(FreshBlobs):
    """Fresh training data every iteration; the third draw has a NaN input or a negative mask."""

    def __init__(self, *args, poison, **kwargs):
        self.poison, self.draws = poison, 0
        super().__init__(*args, **kwargs)

    def forget(self):
        super().forget()
        self.draws += 1
        if self.draws == 2:
            batch = self._train[1]
            inputs, mask = host(batch.inputs).copy(), np.ones(batch.n_cases)
            if self.poison == "nan":
                inputs[5, 2] = math.nan
            else:
                mask[7] = -1.0
            self._train[1] = arrayhf.Batch(backend.from_host(inputs, self.xp, device=self.device),
                                           batch.targets,
                                           backend.from_host(mask, self.xp, device=self.device))


@pytest.mark.parametrize("poison, message", [("nan", r"expected finite values in batch 1\.inputs"),
                                             ("negative", r"expected batch 1\.mask >= 0")])
def test_bad_fresh_data_stops_hf_before_any_work(xp, device, poison, message):
    model = CountingFNN([5, 16, 3], hidden="tanh", output="softmax")
    optimizer = HF(model, PoisonedFreshBlobs(xp, device, poison=poison), damping=1.0,
                   max_cg_iter=20, progress=False)
    optimizer.run(max_iterations=2)
    before, forwards = snapshot(optimizer), CountingFNN.forwards
    with pytest.raises(ValueError, match=message):
        optimizer.step()
    assert CountingFNN.forwards == forwards, "a forward pass ran on bad data"
    assert snapshot(optimizer) == before


# -- checkpoints ----------------------------------------------------------------------------------
@FUZZ
@given(contents=st.one_of(st.binary(max_size=600),
                          st.binary(max_size=600).map(lambda b: b"PK\x03\x04" + b),
                          st.binary(max_size=600).map(lambda b: b"\x93NUMPY" + b)))
def test_random_bytes_are_refused_as_damaged(contents):
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "checkpoint.npz"
        path.write_bytes(contents)
        with pytest.raises(checkpoint.CheckpointError, match="damaged|no __meta__"):
            checkpoint.read_arrays(path)


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / "checkpoint.npz"
    checkpoint.save(path, {"params": np.linspace(-1, 1, 50)}, {"iteration": 3})
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_a_flipped_byte_is_refused_or_harmless(saved_checkpoint, data):
    """One byte of a real checkpoint changed: the zip CRC (or the npy header or the JSON check)
    refuses the file, or the byte was one that holds no data (a timestamp) and the file loads
    to exactly what was saved. Never another exception, never different numbers."""
    position = data.draw(st.integers(0, len(saved_checkpoint) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    damaged = bytearray(saved_checkpoint)
    damaged[position] ^= flip
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "checkpoint.npz"
        path.write_bytes(bytes(damaged))
        try:
            arrays, meta = checkpoint.read_arrays(path)
        except checkpoint.CheckpointError:
            return
    np.testing.assert_array_equal(arrays["params"], np.linspace(-1, 1, 50))
    assert meta["iteration"] == 3


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10) | st.floats(allow_nan=True)
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=6)
META_KEYS = ("iteration", "damping", "cg_total", "config", "model", "run_info", "dataset_state",
             "dtype", "format_version")


@settings(FUZZ, max_examples=30)
@given(meta=st.dictionaries(st.sampled_from(META_KEYS), JSON_VALUES, max_size=5),
       params=st.sampled_from(["valid", "short", "nan", "missing", "integers"]))
def test_a_forged_checkpoint_is_refused_without_touching_the_optimizer(xp, device, meta, params):
    model = classifier()
    optimizer = HF(model, blobs(xp, device), damping=1.0, max_cg_iter=10, progress=False)
    optimizer.step()
    before = snapshot(optimizer)
    arrays = {"valid": {"params": np.zeros(model.n_params)},
              "short": {"params": np.zeros(5)},
              "nan": {"params": np.full(model.n_params, math.nan)},
              "missing": {},
              "integers": {"params": np.arange(model.n_params)}}[params]
    with tempfile.TemporaryDirectory() as folder:
        checkpoint.save(pathlib.Path(folder) / "checkpoint.npz", arrays, meta)
        try:
            optimizer.resume(folder, force=True)
        except (checkpoint.CheckpointError, ValueError, TypeError) as error:
            assert isinstance(error, checkpoint.CheckpointError) or "expected" in str(error)
            assert snapshot(optimizer) == before
            return
        # accepted: then everything it took was well formed
        assert params in ("valid", "integers")
        assert optimizer.iteration == int(meta["iteration"]) and optimizer.damping > 0
        assert np.isfinite(host(optimizer.params)).all()


def test_resume_refuses_a_run_made_with_other_command_line_settings(tmp_path, capsys):
    from arrayhf import cli

    run_dir = tmp_path / "run"
    tiny = ["--problem", "addition", "--T", "10", "--hidden", "6", "--batch-size", "16",
            "--train-batches", "1", "--test-batches", "1", "--max-cg", "5", "--iterations", "1"]
    assert cli.main(["train", *tiny, "--run-dir", str(run_dir)]) == 0
    settings_file = run_dir / "run.json"
    saved = json.loads(settings_file.read_text())
    settings_file.write_text(json.dumps({**saved, "T": 12, "iterations": 2}))
    assert cli.main(["resume", str(run_dir)]) == 2
    error = capsys.readouterr().err
    assert "run.T: checkpoint 10, now 12" in error and "force" in error
    assert cli.main(["resume", str(run_dir), "--force"]) == 0
    assert "resumed from the checkpoint of iteration 1" in capsys.readouterr().out
