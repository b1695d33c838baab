"""The options of the training commands and the checks of every setting a run is made of: one
table of the values each settings field accepts serves both the command line (as argparse types,
so a bad value is refused while the command line is read, before any other check or any work)
and ``run.json`` (checked when a run is resumed, so a hand-edited file is refused the same way).

Host-side code.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from arrayhf.cli import models, values
from arrayhf.cli.runs import RunSettings, Settings, TextRunSettings
from arrayhf.data.problems import MINIMUM_T, PROBLEMS

# the values each settings field accepts (fields not named here are written by the program)
FIELD_VALUES: dict[str, Callable[[str], Any]] = {
    "problem": values.choice(PROBLEMS),
    "T": values.integer(1),
    "model": values.choice(models.MODELS),
    "hidden": values.integer(1),
    "factors": values.integer(1),
    "batch_size": values.integer(1),
    "train_batches": values.integer(1),
    "test_batches": values.integer(1),
    "seed": values.integer(0),
    "iterations": values.integer(1),
    "backend": values.backend_name,
    "device": values.non_empty,
    "dtype": values.choice(("float32", "float64")),
    "damping": values.positive,
    "mu": values.non_negative,
    "max_cg": values.integer(1),
    "threshold": values.fraction,
    "rho_model": values.choice(("damped", "undamped")),
    "line_search": values.choice(("decrease", "armijo")),
    "backtracking": values.choice(("release", "martens")),
    "score_batches": values.integer(1),
    "save_every": values.integer(1),
    "max_chars": values.integer(1),
    "warmup": values.integer(0),
    "max_vocabulary": values.integer(2),
}

# (flag, what it sets) of the options both training commands take; each fills the settings
# field of its name, is checked by FIELD_VALUES, and its help ends with that field's default.
TRAINING_OPTIONS = (
    ("--hidden", "hidden units"),
    ("--batch-size", "sequences per batch"),
    ("--train-batches", "training batches, drawn afresh every iteration"),
    ("--test-batches", "test batches, fixed"),
    ("--seed", "seed of the initial weights and of the data"),
    ("--iterations", "most HF iterations"),
    ("--backend", "numpy, torch, cupy, jax or array_api_strict"),
    ("--device", "the backend's device, e.g. cuda (default: the backend's own)"),
    ("--dtype", "float dtype"),
    ("--damping", "initial λ"),
    ("--mu", "structural damping μ"),
    ("--max-cg", "most CG steps an iteration"),
    ("--save-every", "checkpoint every this many iterations"),
)


def add_option(parser: argparse.ArgumentParser, flag: str, what: str, *,
               default: Any = None) -> None:
    """One option filling the settings field of its name, checked by FIELD_VALUES; its help
    ends with ``default`` when there is one. The option itself defaults to None, which keeps
    the settings record's default."""
    name = flag[2:].replace("-", "_")
    check = FIELD_VALUES[name]
    choices = getattr(check, "choices", None)
    parser.add_argument(flag, dest=name, type=check, metavar="{" + ",".join(choices) + "}"
                        if choices else name.upper(),
                        help=what if default is None else f"{what} (default {default})")


def add_training_options(parser: argparse.ArgumentParser,
                         settings_class: type[RunSettings | TextRunSettings], *, run_dir: str,
                         defaults: dict[str, str] | None = None) -> None:
    """TRAINING_OPTIONS and ``--run-dir`` on a training command's parser; the help shows each
    settings field's default, or the text ``defaults`` gives for it."""
    shown = {**dataclasses.asdict(settings_class()), **(defaults or {})}
    for flag, what in TRAINING_OPTIONS:
        add_option(parser, flag, what, default=shown[flag[2:].replace("-", "_")])
    parser.add_argument("--run-dir", dest="run_dir", type=values.non_empty,
                        help=f"where the logs and checkpoints go (default {run_dir})")
    add_verbose_option(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="start over when the run directory already holds a run, removing "
                             "that run's files (default: refuse)")


def add_verbose_option(parser: argparse.ArgumentParser) -> None:
    """``--verbose``: the terminal shows each iteration's full record (training and resume)."""
    parser.add_argument("--verbose", action="store_true",
                        help="print each iteration's full record, as in the results file "
                             "(default: a short line)")


def settings_from(args: argparse.Namespace, settings_class: type[Settings],
                  **given: Any) -> Settings:
    """A settings record of ``given``, and of every option given on the command line over them
    (an option left out is None), checked by check_settings; ``--factors`` is refused for a
    model it does not size."""
    for field in dataclasses.fields(settings_class):
        value = getattr(args, field.name, None)
        if value is not None:
            given[field.name] = value
    settings = settings_class(**given)
    check_settings(settings)
    if getattr(args, "factors", None) is not None:
        models.check_factors(settings.model)
    return settings


def check_settings(settings: RunSettings | TextRunSettings, where: str = "") -> None:
    """ValueError naming the first setting out of its range (``where``: e.g. the run.json it was
    read from), and the settings that must agree with each other: the problem's shortest T, a
    text run's warm-up shorter than its sequences."""
    prefix = f"{where}: " if where else ""
    for name, value in dataclasses.asdict(settings).items():
        if name in FIELD_VALUES and value is not None:
            try:
                FIELD_VALUES[name](str(value))
            except argparse.ArgumentTypeError as error:
                raise ValueError(f"{prefix}{name}: {error}") from None
    if isinstance(settings, RunSettings) and settings.T < MINIMUM_T[settings.problem]:
        raise ValueError(f"{prefix}{settings.problem} needs T >= {MINIMUM_T[settings.problem]}, "
                         f"got T={settings.T} ('arrayhf problems' says what T means for each "
                         f"problem)")
    if (isinstance(settings, RunSettings) and settings.score_batches is not None
            and settings.score_batches > settings.train_batches):
        raise ValueError(f"{prefix}expected --score-batches at most --train-batches, got "
                         f"{settings.score_batches} > {settings.train_batches}")
    if isinstance(settings, TextRunSettings) and settings.warmup >= settings.T:
        raise ValueError(f"{prefix}expected --warmup below --T (the unscored first steps of "
                         f"each sequence), got warmup {settings.warmup} and T {settings.T}")
