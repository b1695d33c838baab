"""``arrayhf problems``: what it says of each problem's lengths at T is what the generators draw,
every problem is listed, and a T out of range is refused as every option is."""

from __future__ import annotations

import re

import numpy as np
import pytest

from arrayhf import cli
from arrayhf.cli import problems as problems_command
from arrayhf.data import problems


@pytest.mark.parametrize("T", [20, 100])
@pytest.mark.parametrize("problem", problems.PROBLEMS)
def test_the_lengths_said_are_the_lengths_drawn(problem, T):
    if T < problems.MINIMUM_T[problem]:
        with pytest.raises(ValueError, match=f"needs T >= {problems.MINIMUM_T[problem]}"):
            problems_command.lengths(problem, T)
        return
    said = problems_command.lengths(problem, T)
    low, high = (int(n) for n in re.match(r"(\d+)(?: to (\d+))? steps", said).groups("0"))
    high = max(high, low)
    inputs, _, mask = problems.generate(problem, T, 400, np.random.default_rng(1))
    if problem in problems.LENGTH_PERCENT:       # a sequence ends at its one scored step
        drawn = np.argmax(mask[::-1], axis=0)
        lengths = mask.shape[0] - drawn
    else:
        lengths = np.full(inputs.shape[1], inputs.shape[0])
    assert lengths.min() == low and lengths.max() == high, (said, lengths.min(), lengths.max())


def test_every_problem_is_listed_with_its_least_T_and_the_success_rule(capsys):
    assert cli.main(["problems", "--T", "20"]) == 0
    out = capsys.readouterr().out
    for problem in problems.PROBLEMS:
        assert f"\n{problem} (T >= {problems.MINIMUM_T[problem]})\n" in f"\n{out}"
    assert "xor (T >= 20)\n  sequences at T = 20: 10 steps (lengths in [0.5T, 0.55T))" in out
    assert "memorization_20bit (T >= 22)\n  sequences at T = 20: undefined" in out
    assert out.rstrip().endswith("MS11 and the CPU demo: 0.01).")


def test_a_bad_T_is_refused_and_train_points_to_problems(tmp_path, capsys):
    assert cli.main(["problems", "--T", "0"]) == 2
    assert "argument --T: expected an integer >= 1" in capsys.readouterr().err
    assert cli.main(["train", "--problem", "xor", "--T", "1", "--run-dir",
                     str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "xor needs T >= 20, got T=1 ('arrayhf problems' says what T means" in error
    assert not (tmp_path / "run").exists()
