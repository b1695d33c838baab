"""Running the HF loop: ``HF.run``'s iterations with their checkpoints, stop test and callbacks,
and what a run returns (``HFResult``, in the manner of ``scipy.optimize.OptimizeResult``).

A run checkpoints every ``save_every`` iterations, at the end, and on Ctrl-C or SIGTERM (the last
committed iteration; then the KeyboardInterrupt goes on). An interrupt that comes while an
iteration's record is being logged is held back until its lines are written; one that falls
between the iteration's commit and its log has the record logged before the checkpoint, so the
checkpoint never holds an iteration the logs lack.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from arrayhf.hf import state

if TYPE_CHECKING:
    from arrayhf.hf.optimizer import HF


class HFResult(dict):
    """What ``HF.run`` returns: a dict whose keys are also attributes, as scipy's
    ``OptimizeResult``.

    Attributes
    ----------
    x : array
        The final θ (on the run's backend).
    success : bool
        Whether the stop condition was met (False when the iteration limit ended the run).
    status : int
        0: the stop condition was met; 1: ``max_iterations`` reached; 2: a callback raised
        StopIteration.
    message : str
        The reason in words.
    nit : int
        HF iterations done, counted from the run's start (a resumed run included).
    ncg : int
        CG steps done in all.
    fun : float or None
        The last iteration's objective f(θ) (eq. (H1)) on its gradient batches.
    history : list of dict
        Every iteration's record, as in ``metrics.jsonl``.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Laps:
    """Wall seconds of an iteration's phases (the record's ``phase_seconds``), each counted
    from the end of the phase before it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, phase: str) -> None:
        """The phase ``phase`` ends now."""
        now = time.perf_counter()
        self.seconds = {**self.seconds, phase: now - self._last}
        self._last = now


MESSAGES = {0: "stop condition met", 1: "reached max_iterations",
            2: "a callback asked to stop"}


def run(optimizer: HF, max_iterations: int, stop: Callable[[dict], bool] | None,
        callbacks: Iterable[Callable[[HF, dict], Any]]) -> HFResult:
    """Iterate ``optimizer`` until ``optimizer.iteration == max_iterations``, ``stop(record)``,
    or a callback (called as ``callback(optimizer, record)`` after every iteration, after its
    log line and checkpoint) raises StopIteration."""
    callbacks = list(callbacks)
    if optimizer.iteration == 0 and not optimizer._resumed and optimizer.run_dir is not None:
        state.refuse_existing_run(optimizer.run_dir, optimizer.communicator)
    optimizer.log.start_run(optimizer.iteration, max_iterations,
                            optimizer.communicator.world_size)
    if optimizer.iteration == 0 and not optimizer._resumed:
        optimizer.save()   # from here on a kill at any moment leaves a checkpoint to resume
    status = 1
    try:
        while optimizer.iteration < max_iterations and status == 1:
            record = optimizer.step()
            with deferred_interrupts():      # the record and its log lines, never half of them
                optimizer.history.append(record)
                optimizer.log.iteration(record)
            if optimizer.save_every and optimizer.iteration % optimizer.save_every == 0:
                optimizer.save()
            if stop is not None and stop(record):
                optimizer.log.message(f"stop condition met at iteration {optimizer.iteration}")
                status = 0
            status = _call(callbacks, optimizer, record, status)
    except KeyboardInterrupt:
        optimizer.log.end_run()
        _log_committed(optimizer)
        optimizer.log.message(f"interrupted: saving iteration {optimizer.iteration}")
        optimizer.save()
        raise
    finally:
        optimizer.log.end_run()
    optimizer.save()
    return result(optimizer, status)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while the body runs, then raise KeyboardInterrupt if one came
    (on the main thread; elsewhere signals are not delivered to this code)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {number: signal.signal(number, lambda signum, frame: pending.append(signum))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if pending:
        raise KeyboardInterrupt(f"signal {pending[0]}, held back while the iteration was logged")


def _call(callbacks: list, optimizer: HF, record: dict, status: int) -> int:
    """Call every callback; status 2 when one raises StopIteration (and none met the stop
    condition first)."""
    for callback in callbacks:
        try:
            callback(optimizer, record)
        except StopIteration:
            optimizer.log.message(f"a callback stopped the run at iteration "
                                  f"{optimizer.iteration}")
            status = 2 if status == 1 else status
    return status


def _log_committed(optimizer: HF) -> None:
    """Log the last committed iteration if the interrupt fell between its commit and its log."""
    last = optimizer.last_record
    if last is not None and last["iteration"] == optimizer.iteration and (
            not optimizer.history or optimizer.history[-1] is not last):
        optimizer.history.append(last)
        optimizer.log.iteration(last)


def result(optimizer: HF, status: int) -> HFResult:
    """The HFResult of the optimizer as it stands."""
    last = optimizer.history[-1] if optimizer.history else None
    return HFResult(x=optimizer.params, success=status == 0, status=status,
                    message=MESSAGES[status], nit=optimizer.iteration, ncg=optimizer.cg_total,
                    fun=None if last is None else last["objective"],
                    history=optimizer.history)
