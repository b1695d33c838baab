"""The HF iteration as a function of an explicit state: ``hf_step(config, model, objective,
state) -> (state, record)`` leaves its input state as it was, returns what ``HF.step`` commits,
and its record carries what each phase produced, the same numbers as the JSON record; ``HFState``
is frozen and a checkpoint holds it exactly."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pytest

import arrayhf
from arrayhf import HFState, StepRecord, hf_step
from arrayhf.hf import phases
from arrayhf.hf.optimizer import HF

from datasets import FreshBlobs
from helpers import host

TIMING = ("seconds", "phase_seconds")


def fresh_optimizer(xp, device, **settings):
    """HF on blobs whose training data is drawn afresh every iteration (``forget``)."""
    return HF(arrayhf.FNN([5, 16, 3], hidden="tanh", output="softmax"), FreshBlobs(xp, device),
              seed=0, damping=1.0, max_cg_iter=30, progress=False, **settings)


def snapshot(state: HFState) -> dict:
    """The state's values, its arrays on the host: what "unchanged" compares."""
    return {"params": host(state.params).copy(),
            "cg_warm_start": None if state.cg_warm_start is None else
            host(state.cg_warm_start).copy(),
            "damping": state.damping, "iteration": state.iteration,
            "cg_total": state.cg_total, "dataset_state": copy.deepcopy(state.dataset_state)}


def assert_same_state(actual: HFState, expected: HFState) -> None:
    """Bit for bit: arrays of the same dtype and values, the same numbers and data-set state."""
    actual_values, expected_values = snapshot(actual), snapshot(expected)
    for name in ("params", "cg_warm_start"):
        assert (actual_values[name] is None) == (expected_values[name] is None), name
        if expected_values[name] is not None:
            assert actual_values[name].dtype == expected_values[name].dtype, name
            np.testing.assert_array_equal(actual_values[name], expected_values[name], name)
    for name in ("damping", "iteration", "cg_total", "dataset_state"):
        assert actual_values[name] == expected_values[name], name


def without_timing(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in TIMING}


def test_the_step_leaves_its_input_state_and_returns_what_hf_step_commits(xp, device):
    """From the state after one iteration (a warm start, data drawn afresh by the step), the
    function's new state and metrics equal those a second optimizer commits with ``HF.step``,
    bit for bit, and the state it was given holds its old values and arrays."""
    stepped = fresh_optimizer(xp, device)
    stepped.step()
    given = stepped.state
    before = snapshot(given)
    params, warm_start = given.params, given.cg_warm_start
    new_state, record = hf_step(stepped.config, stepped.model, stepped.batch_objective, given)

    assert given.params is params and given.cg_warm_start is warm_start
    assert_same_state(given, dataclasses.replace(
        given, params=before["params"], cg_warm_start=before["cg_warm_start"]))
    assert before["dataset_state"] == given.dataset_state != new_state.dataset_state
    reference = fresh_optimizer(xp, device)
    reference.step()
    metrics = reference.step()
    assert reference.state.iteration == new_state.iteration == 2
    assert_same_state(new_state, reference.state)
    assert without_timing(record.metrics) == without_timing(metrics)
    assert stepped.state is given    # the function commits nothing: HF still holds the old state


def test_the_same_state_in_gives_the_same_state_out(xp, device):
    """At the first iteration (no fresh data drawn) two steps from one state agree bit for bit."""
    optimizer = fresh_optimizer(xp, device)
    first, _ = hf_step(optimizer.config, optimizer.model, optimizer.batch_objective,
                       optimizer.state)
    second, _ = hf_step(optimizer.config, optimizer.model, optimizer.batch_objective,
                        optimizer.state)
    assert_same_state(first, second)


def test_the_step_refuses_an_objective_of_another_model(xp, device):
    optimizer = fresh_optimizer(xp, device)
    other = arrayhf.FNN([5, 16, 3], hidden="tanh", output="softmax")
    with pytest.raises(ValueError, match="another model"):
        hf_step(optimizer.config, other, optimizer.batch_objective, optimizer.state)


def test_the_state_and_the_record_are_frozen(xp, device):
    optimizer = fresh_optimizer(xp, device)
    optimizer.step()
    with pytest.raises(dataclasses.FrozenInstanceError):
        optimizer.state.damping = 2.0            # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        optimizer.last_step.step_size = 0.5      # type: ignore[union-attr, misc]
    with pytest.raises(AttributeError):
        optimizer.params = optimizer.params      # type: ignore[misc]  # read from the state


def test_a_state_round_trips_through_a_checkpoint_exactly(xp, device, tmp_path):
    """save() writes the state, resume() reads it back into another optimizer: the same arrays
    (values and dtype), λ, counters and data-set state."""
    saved = fresh_optimizer(xp, device, run_dir=tmp_path)
    saved.run(max_iterations=2)
    assert saved.state.cg_warm_start is not None and saved.state.dataset_state is not None
    resumed = fresh_optimizer(xp, device).resume(tmp_path)
    assert_same_state(resumed.state, saved.state)
    assert resumed.state.params.dtype == saved.state.params.dtype
    assert [without_timing(r) for r in resumed.history] == [
        without_timing(r) for r in saved.history]


def test_the_record_carries_g_p_rho_and_eta_matching_the_json_record(xp, device, tmp_path):
    """``last_step`` after ``step()``: g, the kept CG iterates and the chosen p, ρ with its parts
    and η, each the very number (or array) behind the logged record."""
    optimizer = fresh_optimizer(xp, device, run_dir=tmp_path)
    optimizer.run(max_iterations=2)
    step: StepRecord = optimizer.last_step
    metrics = step.metrics
    logged = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert logged == metrics == optimizer.history[-1]
    assert step.iteration == metrics["iteration"] == 2
    assert step.gradient_batches == phases.gradient_batches(optimizer.config, optimizer.dataset)
    assert step.curvature_batch == phases.curvature_batch(optimizer.config, optimizer.dataset, 2)

    objective, gradient = optimizer.batch_objective.value_and_gradient(
        step.params, step.gradient_batches)
    np.testing.assert_array_equal(host(step.gradient), host(gradient))             # g
    assert step.objective == objective
    assert math.sqrt(float(xp.sum(step.gradient * step.gradient))) == metrics["grad_norm"]

    assert step.cg.n_steps == metrics["cg_steps"] and step.cg.solution is optimizer.cg_warm_start
    chosen_step, direction = step.cg.iterates[step.chosen]                        # p
    assert chosen_step == metrics["chosen_iterate"] and step.direction is direction
    assert (step.ratio.rho, step.ratio.numerator, step.ratio.denominator) == (      # ρ
        metrics["rho"], metrics["rho_numerator"], metrics["rho_denominator"])
    assert step.ratio.numerator == step.new_objective - step.objective
    assert step.ratio.slope == float(xp.sum(step.gradient * step.direction))
    assert step.step_size == metrics["line_search_step"] > 0                       # η
    np.testing.assert_array_equal(host(optimizer.params),
                                  host(step.params + step.step_size * step.direction))
    assert step.phase_seconds == metrics["phase_seconds"]
    assert list(step.phase_seconds) == ["gradient", "cg", "backtracking", "rho", "line_search",
                                        "test"]
