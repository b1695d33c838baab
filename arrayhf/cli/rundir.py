"""A run directory as the command line keeps it: one process at a time (a lock that the
operating system drops when its process ends, so a killed run never blocks its resume), and
starting over (``--overwrite``) by removing what a run wrote there, nothing else.

Host-side code (POSIX ``fcntl.flock``).
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import sys
from typing import IO

from arrayhf import checkpoint

LOCK_NAME = "lock"
# what a run writes in its directory (``--overwrite`` removes these, and nothing else)
RUN_FILES = ("run.json", "metrics.jsonl", "results", "detailed_results", "curves.png",
             "hidden_states.png", checkpoint.CHECKPOINT_NAME,
             checkpoint.previous_path(checkpoint.CHECKPOINT_NAME).name)

_held: dict[pathlib.Path, IO[str]] = {}   # the locks this process holds, kept open until exit


def lock(run_dir: str | os.PathLike) -> None:
    """Hold ``run_dir``'s lock until release_all (the end of the command) or the end of this
    process; ValueError naming the process that holds it when another one does."""
    run_dir = pathlib.Path(run_dir)
    if run_dir.resolve() in _held:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_NAME, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ValueError(f"{run_dir} is in use by {holder}: wait for it to end, or stop it "
                         f"(Ctrl-C, or kill: it saves a checkpoint) and resume") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} ({' '.join(sys.argv[:3])} …)\n")
    handle.flush()
    _held[run_dir.resolve()] = handle


def clear(run_dir: str | os.PathLike) -> list[str]:
    """Remove the files a run wrote in ``run_dir`` (RUN_FILES and set-aside damaged checkpoints);
    returns their names."""
    run_dir = pathlib.Path(run_dir)
    removed = []
    damaged = run_dir.glob("checkpoint.damaged-*.npz")
    for path in [*(run_dir / name for name in RUN_FILES), *damaged]:
        if path.exists():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def release_all() -> None:
    """Give back every lock this process holds (at the end of a command)."""
    for handle in _held.values():
        handle.close()
    _held.clear()
