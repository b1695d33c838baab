"""``arrayhf info RUN_DIR``: what a run directory holds, without running anything: its settings,
how far it got (HF iterations, CG steps, time), its test error or bits per character (last and
best), the verdict of a pathological run, the state of its checkpoints and whether a process is
using it.

Host-side code: it reads run.json, metrics.jsonl and the checkpoints' descriptions only.
"""

from __future__ import annotations

import argparse
import fcntl
import pathlib

from arrayhf import checkpoint
from arrayhf.cli import rundir, runs, values
from arrayhf.data.corpus import bits_per_character
from arrayhf.hf.runlog import RunLog


def info(args: argparse.Namespace) -> int:
    """Print what RUN_DIR holds."""
    run_dir = pathlib.Path(args.run_dir)
    settings = runs.load_settings(run_dir)
    records = RunLog(run_dir, echo=False).read_metrics()
    text = isinstance(settings, runs.TextRunSettings)
    if isinstance(settings, runs.TextRunSettings):
        what = f"text run ({settings.model} on {settings.source}, T = {settings.T})"
    else:
        what = (f"pathological run ({settings.problem}, T = {settings.T}, {settings.model} of "
                f"{settings.hidden} hidden units)")
    print(f"{run_dir}: {what}, {settings.backend} {settings.dtype}")
    shown = {key: value for key, value in settings.to_json().items() if key != "vocabulary"}
    print("settings: " + ", ".join(f"{key} {value}" for key, value in shown.items()))
    if not records:
        print("progress: no iteration logged yet")
    else:
        seconds = sum(float(record.get("seconds") or 0.0) for record in records)
        print(f"progress: {records[-1]['iteration']} of {settings.iterations} HF iterations, "
              f"{records[-1]['cg_total']} CG steps, {seconds:.1f} s")
        print(_scores(settings, records, text))
    for line in _checkpoints(run_dir):
        print(line)
    print(f"lock: {_lock_state(run_dir)}")
    return 0


def _scores(settings, records: list[dict], text: bool) -> str:
    """The last and best held-out score, and a pathological run's verdict."""
    tested = [record for record in records if record.get("test_loss") is not None]
    if not tested:
        return "test: not evaluated yet"
    if text:
        best = min(tested, key=lambda record: record["test_loss"])
        return (f"held-out bits per character: last "
                f"{bits_per_character(tested[-1]['test_loss']):.4f} (iteration "
                f"{tested[-1]['iteration']}), best {bits_per_character(best['test_loss']):.4f} "
                f"(iteration {best['iteration']})")
    best = min(tested, key=lambda record: record["test_error"])
    solved = tested[-1]["test_error"] < settings.threshold
    return (f"test error: last {100 * tested[-1]['test_error']:.2f}% (iteration "
            f"{tested[-1]['iteration']}), best {100 * best['test_error']:.2f}% (iteration "
            f"{best['iteration']}); threshold {100 * settings.threshold:g}%: "
            f"{'SOLVED' if solved else 'NOT SOLVED'}")


def _checkpoints(run_dir: pathlib.Path) -> list[str]:
    """One line per checkpoint file: its iteration, or why it does not load."""
    latest = run_dir / checkpoint.CHECKPOINT_NAME
    paths = [latest, checkpoint.previous_path(latest),
             *sorted(run_dir.glob("checkpoint.damaged-*.npz"))]
    lines = []
    for path in paths:
        if not path.exists():
            lines.append(f"{path.name}: absent")
            continue
        try:
            _, meta = checkpoint.read_arrays(path)
        except checkpoint.CheckpointError as error:
            lines.append(f"{path.name}: damaged ({error})")
        else:
            lines.append(f"{path.name}: iteration {meta.get('iteration')}, "
                         f"{path.stat().st_size} bytes")
    return lines


def _lock_state(run_dir: pathlib.Path) -> str:
    """'free', or the process that holds the run directory's lock."""
    path = run_dir / rundir.LOCK_NAME
    if not path.exists():
        return "free"
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return f"in use by {handle.read().strip() or 'another process'}"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return "free"


def add_commands(commands: argparse._SubParsersAction) -> None:
    """info, on the ``arrayhf`` parser's subcommands."""
    info_parser = commands.add_parser("info", help="what a run directory holds")
    info_parser.add_argument("run_dir", type=values.non_empty, metavar="RUN_DIR",
                             help="a run directory")
    info_parser.set_defaults(run=info)
