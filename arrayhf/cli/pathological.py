"""``arrayhf demo``, ``arrayhf train`` and ``arrayhf resume``: HF on the pathological problems
until the test error is below the threshold, with a verdict at the end; resume continues any run
(a text run too) from its checkpoint."""

from __future__ import annotations

import argparse
import os
from typing import Any

from arrayhf.cli import options, runs, values
from arrayhf.cli.text import train_text_run
from arrayhf.data.problems import PROBLEMS
from arrayhf.hf.optimizer import HF

# The demo on a laptop: T = 20 and 300 sequences a batch (10 batches for the gradient, fresh every
# iteration; curvature on one), stopped at MS11's success criterion (< 1% of test sequences wrong).
# Measured: solved at HF iteration 47 in about a minute on a 2-core CPU (README, "What `arrayhf
# demo` prints"; `python -m bench.tools.readme_figures demo` reruns it).
DEMO_CPU = {"T": 20, "batch_size": 300, "train_batches": 10, "test_batches": 10,
            "threshold": 0.01}


# Long-range runs on a CPU (T >= 100, no GPU): batches of 100 sequences, the curvature on one,
# and MS11's 10,000 gradient sequences as 100 of them. With the release's 10 × 1,000 at a CPU's
# batch of 100, i.e. 1,000 gradient sequences, T = 100 fails: each step fits that iteration's
# draw, the loss on fresh data rises from iteration 2 and the spectral radius of W_hh climbs
# from 1.02 to 1.7 (bench/README.md, "Long range";
# `python -m bench.experiments.long_range diagnose`).
# Backtracking and the line search are judged on 10 of the 100 batches (1,000 sequences): the
# same progress as on all 100 in a measured run, at half the time an iteration. float32, as the
# release on its GPU: an iteration takes half the time of float64's on numpy here, and it solves
# temporal order at T = 100 as float64 does (bench/README.md, "Long range").
LONG_RANGE_CPU = {"batch_size": 100, "train_batches": 100, "score_batches": 10,
                  "dtype": "float32"}
LONG_RANGE_T = 100


def cpu_sized(args: argparse.Namespace, T: int) -> dict:
    """The CPU-sized settings of a run at T >= LONG_RANGE_T with no GPU, less those the command
    line gives; {} on a GPU or at a shorter T."""
    on_gpu = (args.device not in (None, "cpu")) or args.backend == "cupy"
    if on_gpu or T < LONG_RANGE_T:
        return {}
    return {key: value for key, value in LONG_RANGE_CPU.items() if getattr(args, key) is None}


def solved(settings: runs.RunSettings, record: dict) -> bool:
    """The run's success: a test error below ``settings.threshold``."""
    return record["test_error"] is not None and record["test_error"] < settings.threshold


def run_seconds(optimizer: HF) -> float:
    """The whole run's time: every iteration's seconds, in this process and those before it."""
    return sum(float(record.get("seconds") or 0.0) for record in optimizer.history)


def verdict(settings: runs.RunSettings, optimizer: HF) -> str:
    """The line that ends a run: SOLVED or NOT SOLVED, with the test error and what it cost."""
    last = optimizer.history[-1] if optimizer.history else None
    where = f"{settings.problem}, T = {settings.T}"
    if last is None or last["test_error"] is None:
        return f"NOT SOLVED: {where}: no iteration ran"
    error = 100 * last["test_error"]
    cost = (f"HF iteration {optimizer.iteration}, {optimizer.cg_total} CG steps, "
            f"{run_seconds(optimizer):.0f} s on {settings.backend}")
    if solved(settings, last):
        return (f"SOLVED: {where} at {cost}: {error:.2f}% of test sequences wrong "
                f"(< {100 * settings.threshold:g}%)")
    return (f"NOT SOLVED: {where} after {cost}: {error:.2f}% of test sequences wrong "
            f"(needs < {100 * settings.threshold:g}%)")


def _stop_rule(settings: runs.RunSettings, optimizer: HF, run_dir, *,
               train_on: bool) -> tuple[bool, Any]:
    """(whether to train, the stop rule) of a run about to go on: a run already solved stops
    with its verdict, unless --iterations asks for more (then it trains on with no stop rule)."""
    def stop(record: dict) -> bool:
        return solved(settings, record)

    if optimizer.iteration >= settings.iterations:
        print(verdict(settings, optimizer))
        print(f"{run_dir} is at iteration {optimizer.iteration} already: 'arrayhf resume "
              f"{run_dir} --iterations N' with N > {optimizer.iteration} trains on")
        return False, stop
    if optimizer.history and solved(settings, optimizer.history[-1]):
        if not train_on:
            print(verdict(settings, optimizer))
            print(f"{run_dir} is solved already: 'arrayhf resume {run_dir} --threshold X' (a "
                  f"lower one) or '--iterations N' trains on")
            return False, stop
        print(f"solved already; training on to iteration {settings.iterations}, as "
              f"--iterations asks")
        return True, None
    return True, stop


def train_run(settings: runs.RunSettings, run_dir: str | os.PathLike, *, resume: bool,
              force: bool = False, threshold: float | None = None,
              train_on: bool = False, overwrite: bool = False,
              verbose: bool = False) -> int:
    """Start (or resume) a pathological run and train it until solved or out of iterations.
    A resumed run may get a new ``threshold`` (saved to its run.json); ``train_on``: a solved
    run trains on to ``settings.iterations``."""
    opened = runs.open_run(settings, run_dir, resume=resume, force=force, overwrite=overwrite,
                           verbose=verbose)
    if opened is None:
        return 2
    _, dataset, optimizer = opened
    if threshold is not None:
        settings.threshold = threshold
        optimizer.run_info = settings.run_info()
        settings.save(run_dir)
    go_on, stop = _stop_rule(settings, optimizer, run_dir, train_on=train_on)
    if not go_on:
        return 0
    print(f"{settings.problem}: T = {settings.T}, {settings.model.upper()} of {settings.hidden} "
          f"hidden units, "
          f"{len(dataset.train_batches)}×{settings.batch_size} training sequences (fresh each "
          f"iteration), curvature on {settings.batch_size}, backend {settings.backend} "
          f"{settings.dtype}; stop when test error < {100 * settings.threshold:g}%")
    if not runs.run_until_done(optimizer, settings, run_dir, stop=stop):
        if optimizer.history:   # where an interrupted run (Ctrl-C, SIGTERM, a time limit) stood
            print(verdict(settings, optimizer))
        return 130
    print(verdict(settings, optimizer))
    print(f"logs: {run_dir}/results, {run_dir}/metrics.jsonl; pictures: arrayhf plot {run_dir}")
    return 0


def demo(args: argparse.Namespace) -> int:
    """The 2011 release's demo: multiplication, at a laptop's T unless --T >= 100."""
    on_cpu = not (args.device and args.device != "cpu") and (args.T is None or args.T < 100)
    defaults = {"problem": "multiplication", **(DEMO_CPU if on_cpu else {})}
    settings = _settings(args, **defaults)
    return train_run(settings, args.run_dir or "runs/demo", resume=False,
                     overwrite=args.overwrite, verbose=args.verbose)


def train_settings(args: argparse.Namespace) -> runs.RunSettings:
    """The settings ``arrayhf train`` makes of its command line
    (bench/experiments/long_range.py builds its runs with them)."""
    return _settings(args, T=30)


def train(args: argparse.Namespace) -> int:
    """HF on a pathological problem, from the command-line settings."""
    settings = train_settings(args)
    return train_run(settings, args.run_dir or f"runs/{settings.problem}-T{settings.T}",
                     resume=False, overwrite=args.overwrite, verbose=args.verbose)


def _settings(args: argparse.Namespace, **defaults: Any) -> runs.RunSettings:
    """The run's settings from the command line over ``defaults``, with CPU-sized batches at
    T >= 100 without a GPU (cpu_sized), which a first line names."""
    T = args.T or defaults.get("T", runs.RunSettings.T)
    picked = cpu_sized(args, T)
    settings = options.settings_from(args, runs.RunSettings, **defaults, **picked)
    if picked:
        sequences = settings.train_batches * settings.batch_size
        print("CPU-sized settings at T >= 100 without a GPU: " + ", ".join(
            f"--{key.replace('_', '-')} {value}" for key, value in picked.items())
            + f" ({sequences:,} gradient sequences an iteration"
            + (", as MS11" if sequences == 10_000 else "") + "; options given win)")
    return settings


def resume(args: argparse.Namespace) -> int:
    """Continue a run (pathological or text) from its last checkpoint. Settings other than
    --iterations, --threshold and --save-every must be those the checkpoint was made with
    (--force: resume anyway)."""
    settings = runs.load_settings(args.run_dir)
    options.check_settings(settings, where=f"{args.run_dir}/{runs.RUN_FILE}")
    if args.iterations is not None:
        settings.iterations = args.iterations
    if args.save_every is not None:
        settings.save_every = args.save_every
    if isinstance(settings, runs.TextRunSettings):
        if args.threshold is not None:
            raise ValueError(f"--threshold applies to pathological runs; {args.run_dir} is a "
                             f"text run")
        return train_text_run(settings, args.run_dir, resume=True, force=args.force,
                              verbose=args.verbose)
    return train_run(settings, args.run_dir, resume=True, force=args.force,
                     threshold=args.threshold, train_on=args.iterations is not None,
                     verbose=args.verbose)


def _add_problem_options(parser, *, for_demo: bool) -> None:
    if not for_demo:
        parser.add_argument("--problem", required=True, type=options.FIELD_VALUES["problem"],
                            metavar="PROBLEM", help="one of " + ", ".join(PROBLEMS))
    options.add_option(parser, "--T", "the problem's time scale, which its sequence lengths "
                       "follow ('arrayhf problems' lists them; the release: 200)",
                       default="20 on a CPU, 200 on a GPU or with --T >= 100" if for_demo
                       else 30)
    options.add_option(parser, "--model", "the net", default="rnn, the release's")
    options.add_option(parser, "--factors", "the MRNN's factors", default="as many as hidden")
    options.add_option(parser, "--threshold", "solved below this test error",
                       default="0.001, the release's; MS11 and the CPU demo: 0.01")
    options.add_option(parser, "--backtracking",
                       "which CG iterate is the step: release, the lowest loss on a held batch "
                       "among every 10th; martens, walking back on the gradient batches",
                       default="martens")
    options.add_option(parser, "--score-batches",
                       "the first N training batches judge backtracking and the line search",
                       default="all; 10 on a CPU at T >= 100")
    options.add_training_options(
        parser, runs.RunSettings, run_dir="runs/demo" if for_demo else "runs/PROBLEM-TT",
        defaults={"batch_size": "1000; the CPU demo 300; 100 on a CPU at T >= 100",
                  "train_batches": "10; 100 on a CPU at T >= 100",
                  "dtype": "float64; float32 on a CPU at T >= 100",
                  "damping": "0.01 × outputs"})


def add_commands(commands: argparse._SubParsersAction) -> None:
    """demo, train and resume, on the ``arrayhf`` parser's subcommands."""
    demo_parser = commands.add_parser(
        "demo", help="HF on the multiplication problem, as the 2011 release's demo")
    _add_problem_options(demo_parser, for_demo=True)
    demo_parser.set_defaults(run=demo)

    train_parser = commands.add_parser("train", help="HF on any pathological problem")
    _add_problem_options(train_parser, for_demo=False)
    train_parser.set_defaults(run=train)

    resume_parser = commands.add_parser("resume", help="continue a run from its checkpoint")
    resume_parser.add_argument("run_dir", type=values.non_empty, metavar="RUN_DIR",
                               help="the run directory to continue")
    options.add_option(resume_parser, "--iterations",
                       "new limit on HF iterations, counted from the run's start",
                       default="the run's")
    options.add_option(resume_parser, "--threshold",
                       "new success threshold of a pathological run (a solved run trains on "
                       "when it is lowered)", default="the run's")
    options.add_option(resume_parser, "--save-every", "checkpoint every this many iterations",
                       default="the run's")
    options.add_verbose_option(resume_parser)
    resume_parser.add_argument("--force", action="store_true",
                               help="resume even if run.json differs from the checkpoint's "
                                    "settings (default: refuse)")
    resume_parser.set_defaults(run=resume)
