"""What ``HF.run`` returns (``HFResult``, in the manner of ``scipy.optimize.OptimizeResult``) and
how its loop keeps an iteration's log lines whole (``deferred_interrupts``).

A run checkpoints every ``save_every`` iterations, at the end, and on Ctrl-C or SIGTERM (the last
committed iteration; then the KeyboardInterrupt goes on). An interrupt that comes while an
iteration's record is being logged is held back until its lines are written; one that falls
between the iteration's commit and its log has the record logged before the checkpoint, so the
checkpoint never holds an iteration the logs lack (hf/optimizer.py, ``HF.run``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


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


MESSAGES = {0: "stop condition met", 1: "reached max_iterations",
            2: "a callback asked to stop"}


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
