"""End to end: HF trains the RNN on pathological problems until they are solved (fewer than 1% of
test sequences wrong, MS11's criterion), on the backend under test and on another (numpy; torch
in the numpy session), from the same seed, in the same number of HF iterations (float64), and in
at most 25% more HF iterations than measured (a regression bound).

Two backends' float64 runs do not stay equal to rounding: CG on the RNN's ill-conditioned damped
Gauss-Newton matrix amplifies rounding. Measured on numpy alone: multiplying θ by (1 + 1e-15·noise)
moves the train loss after the first HF iteration of the addition run by 1e-5 relative; numpy and
torch differ there by 6e-6, and later CG's relative-progress stop can fall a step apart. So the
test compares what the issue asks for, the number of HF iterations to solve, and the first
iteration's CG steps and loss (to 1e-4). (xor at T = 20, not used here: 15 HF iterations on
numpy, 16 on torch.)
"""

from __future__ import annotations

import math

import pytest

from arrayhf import backend
from arrayhf.cli import runs

from helpers import other_backend

# (problem, T, hidden units, sequences per batch, HF iterations to solve measured on numpy,
# the iteration limit of the runs). Measured at commit ce4df77 (2-core CPU; torch took as many):
# addition 19, temporal_order 9 (at eb89ed5, where the test was written: 22 and 9).
SOLVED_RUNS = [
    ("addition", 10, 30, 200, 19, 40),
    ("temporal_order", 20, 30, 100, 9, 30),
]
# A regression bound: solving in more than 25% over the measured HF iterations fails the test.
# Fewer iterations do not (update the measured number when a change makes HF faster).
MARGIN = 1.25


def train(problem, T, hidden, batch_size, bound, backend_name, device=None):
    settings = runs.RunSettings(problem=problem, T=T, hidden=hidden, batch_size=batch_size,
                                train_batches=4, test_batches=2, threshold=0.01, max_cg=100,
                                iterations=bound, backend=backend_name, device=device)
    _, dataset, optimizer = runs.build(settings, None, progress=False)
    optimizer.run(bound, stop=lambda record: record["test_error"] < settings.threshold)
    return optimizer


def device_name(xp, device):
    if backend.name_of(xp) == "array_api_strict":
        return str(device).split("'")[1]
    return None if backend.name_of(xp) in ("numpy", "jax") else str(device)


@pytest.mark.parametrize(("problem", "T", "hidden", "batch_size", "measured", "bound"),
                         SOLVED_RUNS, ids=[run[0] for run in SOLVED_RUNS])
def test_hf_solves_the_problem_in_as_many_iterations_as_on_another_backend(
        xp, device, problem, T, hidden, batch_size, measured, bound):
    assert math.floor(MARGIN * measured) < bound   # else the bound, not the test, stops a slow run
    tested = train(problem, T, hidden, batch_size, bound, backend.name_of(xp),
                   device_name(xp, device))
    assert tested.history[-1]["test_error"] < 0.01, tested.history[-1]
    assert tested.iteration <= MARGIN * measured, (tested.iteration, measured)
    other = other_backend(xp)
    assert backend.name_of(other) != backend.name_of(xp)
    reference = train(problem, T, hidden, batch_size, bound, backend.name_of(other))
    assert reference.history[-1]["test_error"] < 0.01, reference.history[-1]
    assert tested.iteration == reference.iteration
    first, first_tested = reference.history[0], tested.history[0]
    assert first_tested["cg_steps"] == first["cg_steps"]
    assert math.isclose(first_tested["train_loss"], first["train_loss"], rel_tol=1e-4)
