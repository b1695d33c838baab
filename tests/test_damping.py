"""The Levenberg-Marquardt rule and the reduction ratio ρ."""

from __future__ import annotations

import math

import pytest

from arrayhf.hf import LevenbergMarquardt, reduction_ratio, structural_damping_coefficient


@pytest.mark.parametrize(("rho", "expected"), [
    (-math.inf, 1.5), (math.nan, 1.5), (-0.3, 1.5), (0.0, 1.5), (0.2499, 1.5),
    (0.25, 1.0), (0.5, 1.0), (0.75, 1.0),
    (0.7501, 2.0 / 3.0), (1.0, 2.0 / 3.0), (3.0, 2.0 / 3.0),
])
def test_damping_moves_with_rho_as_in_the_table(rho, expected):
    assert LevenbergMarquardt().update(2.0, rho) == pytest.approx(2.0 * expected, rel=1e-15)


def test_constants_are_parameters():
    rule = LevenbergMarquardt(boost=2.0, drop=0.5, lower_ratio=0.1, upper_ratio=0.9)
    assert rule.update(1.0, 0.05) == 2.0
    assert rule.update(1.0, 0.5) == 1.0
    assert rule.update(1.0, 0.95) == 0.5


def test_rho_is_actual_over_predicted_reduction():
    assert reduction_ratio(10.0, 9.0, -2.0) == 0.5


@pytest.mark.parametrize("new_loss", [math.nan, math.inf, 10.5])
def test_rho_is_minus_infinity_when_the_loss_rises_or_is_not_finite(new_loss):
    assert reduction_ratio(10.0, new_loss, -2.0) == -math.inf


def test_structural_damping_coefficient_moves_with_lambda():
    assert structural_damping_coefficient(0.3, 1.0 / 30.0) == pytest.approx(0.01)
