"""How many threads the CPU math uses, so that a run keeps its speed alone and its fair share
beside another job (host side: it reads /proc and sets the backends' thread pools).

The recurrent models do many small products per time step. With torch's OpenMP pool and numpy's
BLAS pool at one thread per core, each small operation is a parallel region whose threads spin
while they wait for one another; when a second process computes on the same cores, a waiting
thread spins through the time slice its partner needs, and a run can slow down by 10-100x
(bench/README.md, "A shared CPU"). With one thread per run, two runs share two cores fairly,
but a run alone is slower.

The setting, from ``ARRAYHF_THREADS`` or ``arrayhf train --threads`` (or :func:`configure`):

* ``auto`` (the default): at the start of an HF iteration (at most once a second), count the
  runnable threads of other processes (Linux: /proc/loadavg less this process's own running
  threads; the median of five readings a millisecond apart, since an idle machine shows a
  runnable kernel or shell thread now and then, and a busy one an idle moment) and use
  ``cores − others`` threads, at least
  one: every core when the machine is idle, a fair share when it is not;
* ``auto`` under ``torchrun`` with several processes on this machine (``$LOCAL_WORLD_SIZE``
  > 1): a fixed equal share, ``cores // processes`` threads each, at least one (1 thread each for
  2 processes on 2 cores), never adapted to the load: the processes compute each other's load,
  and every process must run the same thread count so that their sums, hence their decisions,
  are the same (arrayhf/distributed.py);
* a positive integer N: always N threads;
* ``off``: leave the backends' thread pools as they are (for a caller who sets them itself).

Where /proc is not there (macOS, Windows), ``auto`` leaves the pools as they are.
"""

from __future__ import annotations

import os
import pathlib
import statistics
import sys
import time

ENVIRONMENT = "ARRAYHF_THREADS"
_setting: int | str | None = None     # None: not read yet
_current: int | None = None           # the count last applied
_checked_at = -float("inf")           # when auto last counted the other processes
RECHECK_SECONDS = 1.0


def parse(value: int | str) -> int | str:
    """``"auto"``, ``"off"`` or a positive int, from a string or an int; ValueError otherwise."""
    if isinstance(value, str) and value.strip().lower() in ("auto", "off"):
        return value.strip().lower()
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if isinstance(value, bool) or count < 1 or str(count) != str(value).strip():
        raise ValueError(f"expected threads 'auto', 'off' or a positive integer, got {value!r}")
    return count


def configure(value: int | str) -> None:
    """Set the thread setting (as ``ARRAYHF_THREADS`` would) and apply it now."""
    global _setting, _checked_at
    _setting = parse(value)
    _checked_at = -float("inf")
    adapt()


def setting() -> int | str:
    """The setting in force: the configured one, else ``ARRAYHF_THREADS``, else ``auto``."""
    global _setting
    if _setting is None:
        _setting = parse(os.environ.get(ENVIRONMENT, "auto"))
    return _setting


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def local_processes() -> int:
    """How many processes of this run ``torchrun`` started on this machine (1 without it)."""
    try:
        return max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def other_runnable() -> int | None:
    """Runnable threads of other processes right now (Linux), or None where it cannot be known:
    the running count of /proc/loadavg less this process's threads in state R."""
    try:
        running = int(pathlib.Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        own = 0
        for task in pathlib.Path("/proc/self/task").iterdir():
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            own += state == "R"
    except (OSError, IndexError, ValueError):
        return None
    return max(running - own, 0)


def adapt() -> int | None:
    """Apply the setting: called by HF at the start of every iteration. Returns the thread count
    in force (None with ``off``, or ``auto`` where /proc is missing)."""
    global _checked_at
    choice = setting()
    if choice == "off":
        return None
    if choice == "auto" and local_processes() > 1:
        choice = max(cores() // local_processes(), 1)   # a fixed share, the same on every process
    if choice == "auto":
        now = time.monotonic()
        if now - _checked_at < RECHECK_SECONDS and _current is not None:
            return _current
        _checked_at = now
        readings: list[int] = []
        for reading in range(5):
            if reading:
                time.sleep(0.001)
            others = other_runnable()
            if others is None:
                return None
            readings.append(others)
        choice = max(cores() - statistics.median_low(readings), 1)
    _apply(int(choice))
    return int(choice)


def _apply(count: int) -> None:
    """torch's intra-op pool and numpy's BLAS pool to ``count`` threads (when they are loaded)."""
    global _current
    if count == _current:
        return
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(count)
    if "numpy" in sys.modules:
        import threadpoolctl

        threadpoolctl.threadpool_limits(limits=count, user_api="blas")
    _current = count
