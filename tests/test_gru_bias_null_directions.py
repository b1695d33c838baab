"""The GRU's gate biases b_x and b_h enter only as sums (derivations/gru.md, (GR1)-(GR2)): for
each of the 2·n_h gate units (r and ζ), the direction that raises its b_x entry and lowers its b_h
entry by as much changes no pre-activation, so G v = 0, S v = 0 and the gradient is orthogonal to
it, exactly. The candidate's pair is not such a direction (b_h^n sits inside the reset product),
nor is the sum of a gate's two biases."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import host
from problems import GRU_CONFIGURATIONS, GRUProblem

STRUCTURAL = 0.7  # λμ
WITH_BIASES = [name for name, (arguments, _, _) in GRU_CONFIGURATIONS.items()
               if arguments.get("biases", True)]


def bias_direction(model, columns, sign):
    """Host v with 1 on b_x's ``columns`` and ``sign`` on b_h's, 0 elsewhere."""
    v = np.zeros(model.n_params)
    v[model.layout.offsets["b_x"][0] + columns] = 1.0
    v[model.layout.offsets["b_h"][0] + columns] = sign
    return v


def products(problem, v):
    """(G v, S v, (G + λμS) v) on the host."""
    model, params, batch, direction = problem.model, problem.params, problem.batch, problem.to_xp(v)
    return (host(model.gauss_newton_product(params, batch, direction)),
            host(model.structural_damping_product(params, batch, direction)),
            host(model.gauss_newton_product(params, batch, direction,
                                            structural_damping=STRUCTURAL)))


@pytest.mark.parametrize("name", WITH_BIASES)
def test_gate_bias_differences_are_null_directions_of_g_and_s(xp, device, name):
    problem = GRUProblem(name, xp, device)
    model, n = problem.model, problem.model.n_hidden
    gradient = host(model.gradient(problem.params, problem.batch))
    for unit in range(2 * n):   # the r and ζ columns of b_x and b_h, one unit at a time
        v = bias_direction(model, np.array([unit]), -1.0)
        for product in products(problem, v):
            assert not product.any(), unit
        assert gradient @ v == 0.0, unit
    gates = np.arange(2 * n)
    weights = np.random.default_rng(1).standard_normal(2 * n)
    v = np.zeros(model.n_params)   # any combination of the 2·n_h directions
    v[model.layout.offsets["b_x"][0] + gates] = weights
    v[model.layout.offsets["b_h"][0] + gates] = -weights
    for product in products(problem, v):
        assert not product.any()


@pytest.mark.parametrize("name", WITH_BIASES)
def test_the_candidate_bias_difference_and_bias_sums_are_not_null(xp, device, name):
    problem = GRUProblem(name, xp, device)
    n = problem.model.n_hidden
    candidate = bias_direction(problem.model, np.arange(2 * n, 3 * n), -1.0)
    gate_sums = bias_direction(problem.model, np.arange(2 * n), 1.0)
    for v in (candidate, gate_sums):
        gauss_newton, structural, _ = products(problem, v)
        assert v @ gauss_newton > 0 and v @ structural > 0
