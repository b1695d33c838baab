"""``arrayhf problems``: the pathological problems in words. For each, what T means (its
sequences' lengths at a T: the release scales lengths and positions with T, so xor's sequences
are 0.5T to 0.55T steps long and addition's T to 1.1T), its inputs and outputs, the loss, which
steps decide whether a sequence is right, and the rule that makes a run SOLVED.

Host-side code: it reads data/problems.py's tables and generates nothing.
"""

from __future__ import annotations

import argparse

from arrayhf.cli import values
from arrayhf.data import problems
from arrayhf.data.pathological import REAL_VALUED_TOLERANCE

LOSSES = {"linear": "squared error", "logistic": "logistic cross-entropy",
          "softmax": "softmax cross-entropy"}
RIGHT_WHEN = {"linear": f"|prediction - target| <= {REAL_VALUED_TOLERANCE}",
              "logistic": "the prediction is above 1/2 exactly when the target is 1",
              "softmax": "the most likely class is the target's"}
SUCCESS = ("A run is SOLVED when the fraction of its test sequences that are wrong falls below "
           "--threshold (default 0.001, the release's; MS11 and the CPU demo: 0.01).")


def lengths(problem: str, T: int) -> str:
    """How long the problem's sequences are at ``T``, in words; ValueError below its least T."""
    if problem in problems.LENGTH_PERCENT:
        (low, high), _ = problems.layout(problem, T)
        percent_low, percent_high = problems.LENGTH_PERCENT[problem]
        steps = f"{low} steps" if high - 1 == low else f"{low} to {high - 1} steps"
        return f"{steps} (lengths in [{_times_T(percent_low)}, {_times_T(percent_high)}))"
    problems.check_T(problem, T)
    return f"{T} steps (exactly T)"


def _times_T(percent: int) -> str:
    return "T" if percent == 100 else f"{percent / 100:g}T"


def scored_steps(problem: str) -> str:
    """The steps whose predictions decide whether a sequence is right."""
    if problem in problems.LENGTH_PERCENT:
        return "its last step (the answer)"
    if problem == "random_permutation":
        return "its last step (the symbol its first step chose)"
    n_symbols = problems.MEMORIZATION_SIZES[problem][0]
    return f"each of its last {n_symbols} steps (the {n_symbols} symbols recalled)"


def describe(problem: str, T: int) -> str:
    """The problem's lines at ``T``."""
    output = problems.OUTPUTS[problem]
    try:
        shown = lengths(problem, T)
    except ValueError:
        shown = f"undefined (it needs T >= {problems.MINIMUM_T[problem]})"
    return "\n".join([
        f"{problem} (T >= {problems.MINIMUM_T[problem]})",
        f"  sequences at T = {T}: {shown}",
        f"  inputs: {problems.N_INPUTS[problem]} channels; outputs: "
        f"{problems.N_OUTPUTS[problem]}, {output} ({LOSSES[output]})",
        f"  a sequence is right when, at {scored_steps(problem)}, {RIGHT_WHEN[output]}",
    ])


def list_problems(args: argparse.Namespace) -> int:
    """Print every problem's description at ``args.T``."""
    print("\n\n".join([*(describe(problem, args.T) for problem in problems.PROBLEMS), SUCCESS]))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """problems, on the ``arrayhf`` parser's subcommands."""
    parser = commands.add_parser(
        "problems", help="the pathological problems: what T means for each, inputs, outputs, "
                         "the success rule",
        description="What `arrayhf train --problem P --T T` trains on: each problem's sequence "
                    "lengths at T (the release scales lengths with T), its inputs and outputs, "
                    "its loss, and when a sequence counts as right.")
    parser.add_argument("--T", type=values.integer(1), default=100,
                        help="the time scale to show the lengths at (default 100)")
    parser.set_defaults(run=list_problems)
