"""Conjugate gradient: exact solves, preconditioning, the relative-progress stop, and clean stops on
non-positive curvature and NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from arrayhf import backend
from arrayhf.hf import backtracking_steps, conjugate_gradient

from helpers import host, relative_error


def spd_system(n, seed, condition=100.0):
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eigenvalues = np.geomspace(1.0, condition, n)
    return (basis * eigenvalues) @ basis.T, rng.standard_normal(n)


def on_backend(xp, device, *arrays):
    return [backend.from_host(a, xp, device=device) for a in arrays]


def matrix_operator(matrix):
    return lambda x: matrix @ x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_solves_spd_systems_within_n_steps(xp, device, seed):
    n = 12
    matrix, b = spd_system(n, seed, condition=10.0)
    matrix_x, b_x = on_backend(xp, device, matrix, b)
    result = conjugate_gradient(matrix_operator(matrix_x), b_x, max_iterations=n,
                                residual_tolerance=1e-12, epsilon=0.0)
    assert result.n_steps <= n
    assert relative_error(result.solution, np.linalg.solve(matrix, b)) <= 1e-10


def test_model_values_are_the_quadratic_and_decrease(xp, device):
    matrix, b = spd_system(8, 3)
    matrix_x, b_x = on_backend(xp, device, matrix, b)
    values = []
    result = conjugate_gradient(matrix_operator(matrix_x), b_x, max_iterations=8, epsilon=0.0,
                                callback=lambda step: values.append(step.model_value))
    x = host(result.solution)
    assert math.isclose(result.model_values[-1], 0.5 * x @ matrix @ x - b @ x, rel_tol=1e-12)
    assert result.model_values[0] == 0.0
    assert all(later < earlier for earlier, later in zip(result.model_values,
                                                           result.model_values[1:]))
    assert values == result.model_values[1:]


def test_warm_start_is_used(xp, device):
    matrix, b = spd_system(10, 4)
    solution = np.linalg.solve(matrix, b)
    matrix_x, b_x, start = on_backend(xp, device, matrix, b, solution)
    result = conjugate_gradient(matrix_operator(matrix_x), b_x, start, residual_tolerance=1e-8)
    assert result.n_steps == 0 and result.stop_reason == "residual"
    assert relative_error(result.solution, solution) <= 1e-12
    assert result.iterates == [(0, result.solution)]


def test_preconditioned_cg_matches_the_solution_and_needs_fewer_steps(xp, device):
    """A badly scaled diagonal-dominant system: Jacobi preconditioning fixes the scaling."""
    rng = np.random.default_rng(5)
    scales = np.geomspace(1e-3, 1e3, 40)
    core, b = spd_system(40, 6, condition=3.0)
    matrix = np.sqrt(scales)[:, None] * core * np.sqrt(scales)[None, :]
    matrix_x, b_x, diagonal = on_backend(xp, device, matrix, b, np.diag(matrix).copy())
    expected = scipy.linalg.solve(matrix, b, assume_a="pos")
    plain = conjugate_gradient(matrix_operator(matrix_x), b_x, max_iterations=400,
                               epsilon=0.0, residual_tolerance=1e-9)
    preconditioned = conjugate_gradient(matrix_operator(matrix_x), b_x, max_iterations=400,
                                        epsilon=0.0, residual_tolerance=1e-9,
                                        preconditioner=diagonal)
    assert relative_error(preconditioned.solution, expected) <= 1e-8
    assert preconditioned.n_steps < plain.n_steps
    del rng


def test_keeps_the_backtracking_iterates_and_the_last():
    assert backtracking_steps(60) == [5, 7, 9, 11, 15, 19, 25, 32, 41, 54]


def test_kept_iterates_are_the_iterates_at_those_steps(xp, device):
    matrix, b = spd_system(30, 7, condition=1e4)
    matrix_x, b_x = on_backend(xp, device, matrix, b)
    seen = {}
    result = conjugate_gradient(matrix_operator(matrix_x), b_x, max_iterations=23, epsilon=0.0,
                                callback=lambda step: seen.setdefault(step.step, step.x_norm))
    assert [i for i, _ in result.iterates] == [5, 7, 9, 11, 15, 19, 23]
    for step, x in result.iterates:
        assert math.isclose(float(np.linalg.norm(host(x))), seen[step], rel_tol=1e-12)
    assert result.stop_reason == "max_iterations"


def test_norms_are_computed_only_on_the_steps_whose_callback_reads_them(xp, device):
    """A callback that reads ‖x‖ and ‖r‖ every 10th step, as HF's log does: those steps give
    ‖x_i‖ and ‖b − A x_i‖, and no other step computes ‖x‖ (‖r‖ is the residual test's)."""
    matrix, b = spd_system(30, 7, condition=1e4)
    matrix_x, b_x = on_backend(xp, device, matrix, b)
    steps, read = [], {}

    def every_tenth(step):
        steps.append(step)
        if step.step % 10 == 0:
            read[step.step] = (step.x_norm, step.residual_norm)

    result = conjugate_gradient(matrix_operator(matrix_x), b_x, max_iterations=25, epsilon=0.0,
                                keep_steps=[10, 20], callback=every_tenth)
    assert [step.step for step in steps] == list(range(1, 26)) and sorted(read) == [10, 20]
    for step, x in result.iterates[:2]:
        x_host = host(x)
        assert math.isclose(read[step][0], float(np.linalg.norm(x_host)), rel_tol=1e-12)
        assert math.isclose(read[step][1], float(np.linalg.norm(b - matrix @ x_host)),
                            rel_tol=1e-6)
    assert not [step.step for step in steps if step.step % 10 and "x_norm" in vars(step.norms)]


def test_relative_progress_stop_fires_as_specified(xp, device):
    """A diagonal operator with one eigenvalue per step: φ_i is known in closed form, so the step
    where (φ_i − φ_{i−k}) / φ_i < k ε first holds (k = max(10, ⌈0.1 i⌉)) is computed here
    independently and must be the step where CG stops."""
    n = 100
    eigenvalues = np.geomspace(1.0, 1e3, n)
    b = 1.0 / np.sqrt(np.arange(1, n + 1))
    matrix = np.diag(eigenvalues)
    matrix_x, b_x = on_backend(xp, device, matrix, b)
    epsilon = 5e-4
    result = conjugate_gradient(matrix_operator(matrix_x), b_x, max_iterations=n,
                                epsilon=epsilon, residual_tolerance=0.0)
    values = result.model_values
    expected_stop = None
    for i in range(1, len(values)):
        k = max(10, math.ceil(0.1 * i))
        if i > k and values[i] < 0 and (values[i] - values[i - k]) / values[i] < k * epsilon:
            expected_stop = i
            break
    assert result.stop_reason == "relative_progress"
    assert result.n_steps == expected_stop
    # and with ε = 0 it does not stop there
    longer = conjugate_gradient(matrix_operator(matrix_x), b_x, max_iterations=expected_stop + 5,
                                epsilon=0.0, residual_tolerance=0.0)
    assert longer.n_steps == expected_stop + 5


def test_non_positive_curvature_stops_cleanly(xp, device):
    matrix, b = spd_system(6, 8)
    matrix = matrix.copy()
    matrix[0, 0] = -50.0  # indefinite
    matrix_x, b_x = on_backend(xp, device, matrix, np.eye(6)[0])
    result = conjugate_gradient(matrix_operator(matrix_x), b_x, max_iterations=6)
    assert result.stop_reason == "non_positive_curvature"
    assert result.n_steps == 0
    assert np.all(host(result.solution) == 0.0)


def test_nan_stops_cleanly_and_keeps_the_last_good_iterate(xp, device):
    matrix, b = spd_system(10, 9)
    matrix_x, b_x = on_backend(xp, device, matrix, b)
    calls = {"n": 0}

    def failing_operator(x):
        calls["n"] += 1
        return matrix_x @ x if calls["n"] <= 3 else matrix_x @ x * float("nan")

    result = conjugate_gradient(failing_operator, b_x, max_iterations=10)
    assert result.stop_reason == "not_finite"
    assert result.n_steps == 3
    assert np.isfinite(host(result.solution)).all()
    assert result.iterates[-1][0] == 3


def test_arguments_are_checked(xp, device):
    matrix, b = spd_system(4, 0)
    _, b_x, short = on_backend(xp, device, matrix, b, np.zeros(3))
    with pytest.raises(ValueError, match=r"expected x0 of shape \[4\], got \[3\]"):
        conjugate_gradient(lambda x: x, b_x, short)


def test_a_non_finite_start_returns_the_start_as_its_only_iterate(xp, device):
    b_x = backend.from_host(np.array([1.0, np.nan, 0.0]), xp, device=device)
    result = conjugate_gradient(lambda x: x, b_x)
    assert result.stop_reason == "not_finite"
    assert [step for step, _ in result.iterates] == [0]


def test_a_warm_start_worse_than_zero_is_dropped(xp, device):
    """φ(x_0) > 0 means x_0 is worse than the origin (φ(0) = 0): CG starts from 0 instead."""
    matrix, b = spd_system(10, 11, condition=10.0)
    solution = np.linalg.solve(matrix, b)
    matrix_x, b_x, bad_start = on_backend(xp, device, matrix, b, -10.0 * solution)
    result = conjugate_gradient(matrix_operator(matrix_x), b_x, bad_start, epsilon=0.0,
                                residual_tolerance=1e-12, max_iterations=10)
    assert result.restarted_from_zero and result.model_values[0] == 0.0
    assert relative_error(result.solution, solution) <= 1e-10
    kept = conjugate_gradient(matrix_operator(matrix_x), b_x, on_backend(xp, device,
                                                                         0.5 * solution)[0])
    assert not kept.restarted_from_zero and kept.model_values[0] < 0
