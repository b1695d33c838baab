"""The HF driver: exact on a quadratic, learns a small classification problem on every backend with
the same trajectory, logs, checkpoints and resumes exactly, and never takes a non-finite step."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

import arrayhf
from arrayhf import backend, checkpoint
from arrayhf.data.arrays import ArrayDataset
from arrayhf.hf import phases as hf_phases
from arrayhf.hf.optimizer import HF

from datasets import FreshBlobs, blobs
from helpers import assert_matches, host, other_backend, relative_error


def classifier():
    return arrayhf.FNN([5, 16, 3], hidden="tanh", output="softmax")


def run_blobs(xp, device, iterations=8, **settings):
    settings = {"damping": 1.0, "max_cg_iter": 50, "progress": False, **settings}
    optimizer = HF(classifier(), blobs(xp, device), seed=0, **settings)
    optimizer.run(max_iterations=iterations)
    return optimizer


def test_one_iteration_solves_a_convex_quadratic(xp, device):
    """Linear output, no hidden layer, squared error: G is the exact Hessian, so one HF iteration
    with tiny damping and enough CG steps lands on the least-squares solution."""
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((60, 4))
    targets = inputs @ rng.standard_normal((4, 2)) + 0.3 * rng.standard_normal((60, 2))
    to_xp = lambda a: backend.from_host(a, xp, device=device)  # noqa: E731
    dataset = ArrayDataset(to_xp(inputs), to_xp(targets), to_xp(inputs[:10]),
                           to_xp(targets[:10]), batch_size=60, error=None)
    model = arrayhf.FNN([4, 2], output="linear")
    optimizer = HF(model, dataset, damping=1e-12, max_cg_iter=50, cg_epsilon=0.0,
                   progress=False)
    optimizer.run(max_iterations=1)
    design = np.hstack([inputs, np.ones((60, 1))])
    solution, *_ = np.linalg.lstsq(design, targets, rcond=None)
    blocks = model.unflatten(optimizer.params)
    assert relative_error(blocks["W_1"], solution[:4]) <= 1e-8
    assert relative_error(blocks["b_1"], solution[4]) <= 1e-8
    assert optimizer.history[0]["line_search_step"] == 1.0


def test_learns_a_small_classification_problem(xp, device):
    optimizer = run_blobs(xp, device)
    first, last = optimizer.history[0], optimizer.history[-1]
    assert last["test_loss"] < 0.1 < first["test_loss"]      # measured: 0.37 -> 0.068
    assert last["test_error"] < 0.05
    assert all(r["train_loss"] <= p["train_loss"]
               for p, r in zip(optimizer.history, optimizer.history[1:]))


def test_trajectory_is_the_same_on_another_backend(xp, device):
    """The same seed on the backend under test and on another (numpy; torch in the numpy
    session): float64 losses agree to 1e-8."""
    other = other_backend(xp)
    assert backend.name_of(other) != backend.name_of(xp)
    reference = run_blobs(other, None, iterations=6)
    tested = run_blobs(xp, device, iterations=6)
    for expected, actual in zip(reference.history, tested.history):
        for key in ("train_loss", "test_loss", "damping", "rho"):
            assert math.isclose(actual[key], expected[key], rel_tol=1e-8), key
        assert actual["cg_steps"] == expected["cg_steps"]
    assert relative_error(tested.params, reference.params) <= 1e-8


def badly_scaled_least_squares(xp, device):
    """Linear regression on 20 features scaled from 0.1 to 10: the diagonal of G spans four
    orders of magnitude, the ill-conditioning a diagonal preconditioner removes."""
    rng = np.random.default_rng(0)
    scales = np.geomspace(0.1, 10.0, 20)
    inputs = rng.standard_normal((300, 20)) * scales
    targets = (inputs @ (rng.standard_normal((20, 2)) / scales[:, None])
               + 0.1 * rng.standard_normal((300, 2)))
    to_xp = lambda a: backend.from_host(a, xp, device=device)  # noqa: E731
    return ArrayDataset(to_xp(inputs[:200]), to_xp(targets[:200]), to_xp(inputs[200:]),
                        to_xp(targets[200:]), batch_size=200, error=None)


def test_preconditioned_run_also_learns(xp, device, monkeypatch):
    """Learns blobs with preconditioner=True; and the preconditioner (H3) is used: on a badly
    scaled least-squares problem, the first iteration's CG (same θ, g and A, x_0 = 0) gets
    within 0.1% of the quadratic's minimum in far fewer steps with M than without (measured:
    9 against 19). With M ignored, the two runs would be the same step for step."""
    optimizer = run_blobs(xp, device, preconditioner=True)
    assert optimizer.history[-1]["test_loss"] < 0.1

    model_values = {}
    real = hf_phases.conjugate_gradient
    for preconditioner in (False, True):
        def watched(*args, _key=preconditioner, **keywords):
            result = real(*args, **keywords)
            model_values[_key] = result.model_values
            return result

        monkeypatch.setattr(hf_phases, "conjugate_gradient", watched)
        HF(arrayhf.FNN([20, 2], output="linear"), badly_scaled_least_squares(xp, device),
           damping=1e-2, max_cg_iter=60, cg_epsilon=0.0, preconditioner=preconditioner,
           progress=False, test_every=0).step()
    target = 0.999 * min(min(values) for values in model_values.values())
    steps = {key: next(i for i, value in enumerate(values) if value <= target)
             for key, values in model_values.items()}
    assert steps[True] <= 0.6 * steps[False], steps


def test_weight_cost_is_added_to_the_objective(xp, device):
    optimizer = run_blobs(xp, device, iterations=2, weight_cost=1e-3)
    record = optimizer.history[-1]
    penalty = 0.5e-3 * float(np.sum(host(optimizer.params) ** 2))
    assert math.isclose(record["objective"], record["train_loss"] + penalty, rel_tol=1e-12)


def test_the_record_splits_the_iteration_into_its_phases(xp, device, monkeypatch):
    """phase_seconds: the wall time of each phase, in order, together the iteration's seconds
    up to the bookkeeping between them; a phase made slow shows in its own entry alone."""
    optimizer = run_blobs(xp, device, iterations=1)
    record = optimizer.history[-1]
    phases = record["phase_seconds"]
    assert list(phases) == ["gradient", "cg", "backtracking", "rho", "line_search", "test"]
    assert all(seconds >= 0 for seconds in phases.values())
    assert 0.5 * record["seconds"] <= sum(phases.values()) <= record["seconds"]
    slow = run_blobs(xp, device, iterations=0)
    real = hf_phases.backtrack

    def slow_backtrack(*args):
        time.sleep(0.2)
        return real(*args)

    monkeypatch.setattr(hf_phases, "backtrack", slow_backtrack)
    phases = slow.step()["phase_seconds"]
    assert phases["backtracking"] >= 0.2
    assert max(v for k, v in phases.items() if k != "backtracking") < 0.2


def test_cg_reuses_the_gradient_pass_forward_pass_of_the_curvature_batch(xp, device,
                                                                        monkeypatch):
    """The curvature batch is one of the gradient batches: its forward pass at θ is computed
    once, by the gradient, and CG's products use that one (the G v products agree with the
    model's own product on a fresh forward pass)."""
    optimizer = run_blobs(xp, device, iterations=0)
    model, params = optimizer.model, optimizer.params
    curvature_id = hf_phases.curvature_batch(optimizer.config, optimizer.dataset, 1)
    curvature = optimizer.dataset.batch(curvature_id)
    real_forward = type(model).forward
    at_start = []

    def counted_forward(self, theta, inputs):
        if theta is params and inputs is curvature.inputs:
            at_start.append(1)
        return real_forward(self, theta, inputs)

    monkeypatch.setattr(type(model), "forward", counted_forward)
    optimizer.step()
    assert len(at_start) == 1
    monkeypatch.setattr(type(model), "forward", real_forward)
    kept = HF(classifier(), blobs(xp, device), seed=0, progress=False, max_cg_iter=5)
    kept.batch_objective.value_and_gradient(
        kept.params, hf_phases.gradient_batches(kept.config, kept.dataset), keep=curvature_id)
    cache = kept.batch_objective.kept_forward(kept.params, curvature_id)
    fresh = kept.model.forward(kept.params, curvature.inputs)
    v = xp.ones_like(kept.params)
    batch = kept.dataset.batch(curvature_id)
    np.testing.assert_array_equal(
        host(kept.model.gauss_newton_product(kept.params, batch, v, cache)),
        host(kept.model.gauss_newton_product(kept.params, batch, v, fresh)))


def test_logs_one_record_per_iteration(xp, device, tmp_path):
    optimizer = run_blobs(xp, device, iterations=3, run_dir=tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["iteration"] for r in records] == [1, 2, 3]
    for key in ("train_loss", "test_loss", "test_error", "grad_norm", "theta_norm", "damping",
                "rho", "cg_steps", "cg_stop", "chosen_iterate", "line_search_step", "seconds"):
        assert key in records[0], key
    results = (tmp_path / "results").read_text()
    assert results.count("iter ") == 3
    detailed = (tmp_path / "detailed_results").read_text()
    assert "cg   10" in detailed and "|r|" in detailed
    assert optimizer.history == [json.loads(line) for line in lines]


def test_a_data_set_without_test_batches_trains_and_logs(xp, device, tmp_path):
    """Training without a test set is legitimate: the records and the logs say "no test loss"
    (None, "-") instead of the first iteration dividing by a zero count."""
    dataset = blobs(xp, device)
    dataset.test_batches = []
    optimizer = HF(classifier(), dataset, damping=1.0, max_cg_iter=30, run_dir=tmp_path,
                   progress=False)
    optimizer.run(max_iterations=2)
    assert [(r["test_loss"], r["test_error"]) for r in optimizer.history] == [(None, None)] * 2
    assert all(math.isfinite(r["train_loss"]) for r in optimizer.history)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["test_loss"], r["test_error"]) for r in records] == [(None, None)] * 2
    assert (tmp_path / "results").read_text().count("test -  ") == 2


def test_resumed_run_follows_the_uninterrupted_trajectory_bit_for_bit(xp, device, tmp_path):
    """Fresh training data every iteration (forget), checkpoint at 3, resume in a new optimizer:
    the parameters after 6 iterations are identical to an uninterrupted run's."""
    settings = {"damping": 1.0, "max_cg_iter": 40, "progress": False}
    straight = HF(classifier(), FreshBlobs(xp, device), **settings)
    straight.run(max_iterations=6)

    first = HF(classifier(), FreshBlobs(xp, device), run_dir=tmp_path, save_every=3, **settings)
    first.run(max_iterations=3)
    second = HF(classifier(), FreshBlobs(xp, device), run_dir=tmp_path, **settings).resume()
    assert second.iteration == 3
    second.run(max_iterations=6)
    np.testing.assert_array_equal(host(second.params), host(straight.params))

    def without_timing(records):
        return [{k: v for k, v in r.items() if k not in ("seconds", "phase_seconds")}
                for r in records]

    assert without_timing(second.history) == without_timing(straight.history)


def test_checkpoint_loads_onto_another_backend(xp, device, tmp_path):
    """A run saved on another backend (numpy; torch in the numpy session) resumes on the backend
    under test with θ exactly as saved, and goes on as the saving run does."""
    other = other_backend(xp)
    assert backend.name_of(other) != backend.name_of(xp)
    saved_run = run_blobs(other, None, iterations=3, run_dir=tmp_path)
    moved = HF(classifier(), blobs(xp, device), damping=1.0, max_cg_iter=50, progress=False)
    moved.resume(tmp_path)
    assert_matches(moved.params, xp=xp, dtype=xp.float64, device=device)
    np.testing.assert_array_equal(host(moved.params), host(saved_run.params))
    assert backend.namespace(backend.name_of(xp)) is xp
    moved.run(max_iterations=4)
    saved_run.run(max_iterations=4)
    assert relative_error(moved.params, saved_run.params) <= 1e-8


def test_resume_with_other_settings_is_refused(xp, device, tmp_path):
    run_blobs(xp, device, iterations=1, run_dir=tmp_path)
    other = HF(classifier(), blobs(xp, device), damping=1.0, max_cg_iter=20, progress=False)
    with pytest.raises(ValueError, match=r"config\.max_cg_iter: checkpoint 50, now 20"):
        other.resume(tmp_path)
    other.resume(tmp_path, force=True)
    assert other.iteration == 1


def test_resume_compares_the_line_search_limit_as_it_acts(xp, device, tmp_path):
    """``max_line_search=None`` means the mode's limit: a run saved with Armijo's 60 spelled out
    (as every checkpoint made before None existed) resumes under the default, and a limit that
    acts differently is still refused."""
    run_blobs(xp, device, iterations=1, run_dir=tmp_path, max_line_search=60)
    same = HF(classifier(), blobs(xp, device), damping=1.0, max_cg_iter=50, progress=False)
    assert same.resume(tmp_path).iteration == 1
    other = HF(classifier(), blobs(xp, device), damping=1.0, max_cg_iter=50, progress=False,
               line_search="armijo", max_line_search=59)
    with pytest.raises(ValueError, match=r"config\.max_line_search: checkpoint 60, now 59"):
        other.resume(tmp_path)


def test_ctrl_c_saves_the_last_completed_iteration(xp, device, tmp_path):
    optimizer = HF(classifier(), blobs(xp, device), damping=1.0, max_cg_iter=30,
                   run_dir=tmp_path, save_every=0, progress=False)

    def interrupt(record):
        if record["iteration"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        optimizer.run(max_iterations=5, stop=interrupt)
    arrays, meta = checkpoint.read_arrays(tmp_path / "checkpoint.npz")
    assert meta["iteration"] == 2
    np.testing.assert_array_equal(arrays["params"], host(optimizer.params))


def test_an_interrupted_save_leaves_the_previous_checkpoint(xp, device, tmp_path, monkeypatch):
    optimizer = run_blobs(xp, device, iterations=2, run_dir=tmp_path)
    saved_params = host(optimizer.params)

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(np, "savez", crash)
    optimizer.step()
    with pytest.raises(OSError, match="simulated"):
        optimizer.save()
    arrays, meta = checkpoint.read_arrays(tmp_path / "checkpoint.npz")
    assert meta["iteration"] == 2
    np.testing.assert_array_equal(arrays["params"], saved_params)


def test_a_crash_between_the_renames_falls_back_to_the_previous_file(tmp_path):
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, {"params": np.arange(3.0)}, {"iteration": 1})
    checkpoint.save(path, {"params": np.arange(4.0)}, {"iteration": 2})
    path.unlink()  # as if killed after the first rename
    arrays, meta, used = checkpoint.read_latest(path)
    assert meta["iteration"] == 1 and used.name == "checkpoint.prev.npz"
    path.write_bytes(b"PK\x03\x04 torn")  # a damaged newest file: also falls back
    assert checkpoint.read_latest(path)[1]["iteration"] == 1
    with pytest.raises(checkpoint.CheckpointError, match="damaged"):
        checkpoint.read_arrays(path)


def test_a_newer_checkpoint_format_is_refused(tmp_path):
    path = tmp_path / "future.npz"
    np.savez(path, params=np.zeros(2), __meta__=np.array(json.dumps({"format_version": 99})))
    with pytest.raises(checkpoint.CheckpointError, match="format version 99"):
        checkpoint.read_arrays(path)


class PoisonedAwayFromStart(arrayhf.FNN):
    """An FNN whose loss is NaN everywhere except at the starting parameters."""

    def __init__(self, start_host):
        super().__init__([5, 16, 3], hidden="tanh", output="softmax")
        self.start_host = start_host

    def loss(self, params, batch, cache=None):
        value = super().loss(params, batch, cache)
        if not np.array_equal(host(params), self.start_host):
            return value * float("nan")
        return value


def test_a_non_finite_step_is_rejected_and_damping_raised(xp, device):
    start = host(classifier().init(0, xp=backend.namespace("numpy")))
    model = PoisonedAwayFromStart(start)
    optimizer = HF(model, blobs(xp, device), damping=2.0, max_cg_iter=20, progress=False,
                   test_every=0)
    optimizer.run(max_iterations=1)
    record = optimizer.history[0]
    assert record["rho"] == -math.inf
    assert record["line_search_step"] == 0.0
    assert optimizer.damping == 3.0
    np.testing.assert_array_equal(host(optimizer.params), start)
    assert np.isfinite(host(optimizer.params)).all()


def test_bad_settings_are_refused(xp, device):
    with pytest.raises(ValueError, match="rho_model"):
        HF(classifier(), blobs(xp, device), rho_model="sometimes")
    with pytest.raises(ValueError, match="line_search"):
        HF(classifier(), blobs(xp, device), line_search="golden")
    with pytest.raises(ValueError, match="positive finite initial damping"):
        HF(classifier(), blobs(xp, device), damping=0.0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        HF(classifier(), blobs(xp, device), dampening=1.0)


def test_a_batch_with_no_counted_output_is_refused(xp, device):
    dataset = blobs(xp, device)
    empty = dataset.batch(dataset.train_batches[0])
    masked = arrayhf.Batch(empty.inputs, empty.targets,
                           backend.from_host(np.zeros(empty.n_cases), xp, device=device))
    dataset._batches[dataset.train_batches[0]] = masked
    optimizer = HF(classifier(), dataset, progress=False)
    with pytest.raises(ValueError, match="to count at least one output, got a mask that is zero"):
        optimizer.step()
    assert optimizer.iteration == 0


@pytest.mark.parametrize("kept", ["both checkpoints", "only checkpoint.prev.npz"])
def test_a_new_run_in_a_run_dir_that_holds_one_is_refused(xp, device, tmp_path, kept):
    """A run dir with a checkpoint holds a run: a new run there is refused and appends nothing
    to the old run's metrics.jsonl. Killed between the two renames of a save, a run dir holds
    only checkpoint.prev.npz: it is still a run (resume() reads it)."""
    run_blobs(xp, device, iterations=1, run_dir=tmp_path)
    latest = tmp_path / checkpoint.CHECKPOINT_NAME
    if kept == "only checkpoint.prev.npz":
        latest.unlink()
        assert checkpoint.previous_path(latest).exists()
    again = HF(classifier(), blobs(xp, device), damping=1.0, max_cg_iter=50, run_dir=tmp_path,
               progress=False)
    with pytest.raises(ValueError, match="already holds a run"):
        again.run(max_iterations=2)
    assert [json.loads(line)["iteration"]
            for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1]


def test_a_model_without_an_operator_trains_through_its_product(xp, device):
    """HF uses a model's gauss_newton_operator when it has one and its gauss_newton_product when
    not (a user's own model need not have the operator): the same trajectory either way."""

    class ProductOnly:
        """The FNN seen through the methods HF needs, without gauss_newton_operator."""

        def __init__(self, model):
            self._model = model
            for name in ("output", "n_params", "init", "forward", "r_forward", "backprop",
                         "loss", "gradient", "gauss_newton_product", "config", "predict"):
                setattr(self, name, getattr(model, name))

    with_operator = run_blobs(xp, device, iterations=3)
    settings = {"damping": 1.0, "max_cg_iter": 50, "progress": False}
    without = HF(ProductOnly(classifier()), blobs(xp, device), seed=0, **settings)
    without.run(max_iterations=3)
    assert not hasattr(without.model, "gauss_newton_operator")
    assert relative_error(without.params, with_operator.params) <= 1e-12


def test_a_decrease_run_saved_before_settings_version_2_resumes_as_it_acted(xp, device,
                                                                           tmp_path):
    """Before settings version 2 the release's line search ignored max_line_search and tried 50
    step lengths: such a checkpoint (the command line's pathological runs) resumes under the
    default (decrease: 50) without --force; from version 2 its stored limit is what acted."""
    settings = {"damping": 1.0, "max_cg_iter": 50, "progress": False, "line_search": "decrease"}
    HF(classifier(), blobs(xp, device), run_dir=tmp_path, max_line_search=60,
       **settings).run(max_iterations=1)
    path = tmp_path / checkpoint.CHECKPOINT_NAME
    arrays, meta = checkpoint.read_arrays(path)
    with pytest.raises(ValueError, match=r"config\.max_line_search: checkpoint 60, now 50"):
        HF(classifier(), blobs(xp, device), **settings).resume(tmp_path)
    del meta["settings_version"]                       # as every checkpoint before version 2
    checkpoint.save(path, arrays, meta)
    assert HF(classifier(), blobs(xp, device), **settings).resume(tmp_path).iteration == 1


def test_run_returns_a_result_and_calls_its_callbacks(xp, device):
    """HF.run returns an OptimizeResult-like record; callbacks see every iteration after it is
    logged, and one raising StopIteration ends the run there."""
    seen = []

    def watch(optimizer, record):
        seen.append((record["iteration"], optimizer.iteration, len(optimizer.history)))

    optimizer = HF(classifier(), blobs(xp, device), seed=0, damping=1.0, max_cg_iter=20,
                   progress=False)
    result = optimizer.run(max_iterations=3, callbacks=[watch])
    assert seen == [(1, 1, 1), (2, 2, 2), (3, 3, 3)]
    assert (result.status, result.success, result.nit) == (1, False, 3)
    assert result.message == "reached max_iterations" and result["nit"] == result.nit
    assert result.x is optimizer.params and result.history == optimizer.history
    assert result.ncg == optimizer.cg_total == sum(r["cg_steps"] for r in result.history)
    assert result.fun == optimizer.history[-1]["objective"]

    def stop_at_five(optimizer, record):
        if record["iteration"] == 5:
            raise StopIteration

    result = optimizer.run(max_iterations=9, callbacks=[watch, stop_at_five])
    assert (result.status, result.success, result.nit) == (2, False, 5)
    assert [entry[0] for entry in seen] == [1, 2, 3, 4, 5]

    result = optimizer.run(max_iterations=9, stop=lambda record: True)
    assert (result.status, result.success, result.nit) == (0, True, 6)
    with pytest.raises(AttributeError):
        getattr(result, "nothing")  # noqa: B009


def test_an_interrupt_while_an_iteration_is_logged_is_held_back():
    """Ctrl-C or SIGTERM in the middle of logging an iteration waits until its lines are
    written, then stops the run as usual (so a checkpoint never holds an iteration the logs
    lack)."""
    import os
    import signal

    from arrayhf.hf import running

    reached = []
    with pytest.raises(KeyboardInterrupt, match="held back"):
        with running.deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("after the signal")
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
