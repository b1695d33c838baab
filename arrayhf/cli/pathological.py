"""``arrayhf demo``, ``arrayhf train`` and ``arrayhf resume``: HF on the pathological problems
until the test error is below the threshold, with a verdict at the end; resume continues any run
(a text run too) from its checkpoint."""

from __future__ import annotations

import argparse
import os
import time

from arrayhf.cli import models, runs
from arrayhf.cli.text import train_text_run
from arrayhf.data.problems import PROBLEMS
from arrayhf.hf.optimizer import HF

# The demo on a laptop: T = 20 and 300 sequences a batch (10 batches for the gradient, fresh every
# iteration; curvature on one), stopped at MS11's success criterion (< 1% of test sequences wrong).
# Measured: solved at HF iteration 39 in 100 s on a 2-core CPU (README).
DEMO_CPU = {"T": 20, "batch_size": 300, "train_batches": 10, "test_batches": 10,
            "threshold": 0.01}


def solved(settings: runs.RunSettings, record: dict) -> bool:
    """The run's success: a test error below ``settings.threshold``."""
    return record["test_error"] is not None and record["test_error"] < settings.threshold


def verdict(settings: runs.RunSettings, optimizer: HF, seconds: float) -> str:
    """The line that ends a run: SOLVED or NOT SOLVED, with the test error and what it cost."""
    last = optimizer.history[-1] if optimizer.history else None
    where = f"{settings.problem}, T = {settings.T}"
    if last is None or last["test_error"] is None:
        return f"NOT SOLVED: {where}: no iteration ran"
    error = 100 * last["test_error"]
    cost = (f"HF iteration {optimizer.iteration}, {optimizer.cg_total} CG steps, "
            f"{seconds:.0f} s on {settings.backend}")
    if solved(settings, last):
        return (f"SOLVED: {where} at {cost}: {error:.2f}% of test sequences wrong "
                f"(< {100 * settings.threshold:g}%)")
    return (f"NOT SOLVED: {where} after {cost}: {error:.2f}% of test sequences wrong "
            f"(needs < {100 * settings.threshold:g}%)")


def train_run(settings: runs.RunSettings, run_dir: str | os.PathLike, *, resume: bool,
              force: bool = False) -> int:
    """Start (or resume) a pathological run and train it until solved or out of iterations."""
    opened = runs.open_run(settings, run_dir, resume=resume, force=force)
    if opened is None:
        return 2
    _, dataset, optimizer = opened
    if resume and optimizer.history and solved(settings, optimizer.history[-1]):
        print(verdict(settings, optimizer, 0.0))
        return 0
    print(f"{settings.problem}: T = {settings.T}, {settings.model.upper()} of {settings.hidden} "
          f"hidden units, "
          f"{len(dataset.train_batches)}×{settings.batch_size} training sequences (fresh each "
          f"iteration), curvature on {settings.batch_size}, backend {settings.backend} "
          f"{settings.dtype}; stop when test error < {100 * settings.threshold:g}%")
    started = time.perf_counter()
    if not runs.run_until_done(optimizer, settings, run_dir,
                               stop=lambda record: solved(settings, record)):
        return 130
    print(verdict(settings, optimizer, time.perf_counter() - started))
    print(f"logs: {run_dir}/results, {run_dir}/metrics.jsonl; pictures: arrayhf plot {run_dir}")
    return 0


def demo(args: argparse.Namespace) -> int:
    """The 2011 release's demo: multiplication, at a laptop's T unless --T >= 100."""
    on_cpu = not (args.device and args.device != "cpu") and (args.T is None or args.T < 100)
    defaults = {"problem": "multiplication", **(DEMO_CPU if on_cpu else {})}
    settings = runs.settings_from(args, runs.RunSettings, **defaults)
    return train_run(settings, args.run_dir or "runs/demo", resume=False)


def train(args: argparse.Namespace) -> int:
    """HF on a pathological problem, from the command-line settings."""
    settings = runs.settings_from(args, runs.RunSettings)
    return train_run(settings, args.run_dir or f"runs/{settings.problem}-T{settings.T}",
                     resume=False)


def resume(args: argparse.Namespace) -> int:
    """Continue a run (pathological or text) from its last checkpoint. Settings other than
    --iterations and --save-every must be those the checkpoint was made with (--force: resume
    anyway)."""
    settings = runs.load_settings(args.run_dir)
    if args.iterations is not None:
        settings.iterations = args.iterations
    if args.save_every is not None:
        settings.save_every = args.save_every
    if isinstance(settings, runs.TextRunSettings):
        return train_text_run(settings, args.run_dir, resume=True, force=args.force)
    return train_run(settings, args.run_dir, resume=True, force=args.force)


def _add_problem_options(parser, *, for_demo: bool) -> None:
    if not for_demo:
        parser.add_argument("--problem", required=True, choices=PROBLEMS)
    parser.add_argument("--T", type=int, default=None if for_demo else 30,
                        help="sequence length (the release: 200)")
    parser.add_argument("--model", choices=models.MODELS,
                        help="the net (default rnn, the release's)")
    parser.add_argument("--factors", type=int,
                        help="the MRNN's factors (default: as many as hidden units)")
    parser.add_argument("--threshold", type=float,
                        help="solved below this test error (default 0.001, the release's; "
                             "MS11 and the CPU demo: 0.01)")
    runs.add_training_options(
        parser, runs.RunSettings, run_dir="runs/demo" if for_demo else "runs/{problem}-T{T}",
        defaults={"batch_size": "1000; the CPU demo 300", "damping": "0.01 × outputs"})


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
    resume_parser.add_argument("run_dir")
    resume_parser.add_argument("--iterations", type=int, help="new limit on HF iterations")
    resume_parser.add_argument("--save-every", dest="save_every", type=int,
                               help="checkpoint every this many iterations")
    resume_parser.add_argument("--force", action="store_true",
                               help="resume even if run.json differs from the checkpoint's "
                                    "settings")
    resume_parser.set_defaults(run=resume)
