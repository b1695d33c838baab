"""What an HF run shows on the terminal: one short line per iteration (at most 120 columns: the
full record stays in ``results`` and ``metrics.jsonl``; ``verbose`` prints it instead), and, when
stderr is a terminal, a tqdm progress bar under the lines: HF iteration k/N, elapsed time, ETA,
and the phase of the iteration under way (gradient, CG step, backtracking, line search, test).
Output stays plain (no bar, no escape codes) when stderr is not a terminal: CI logs, files.

tqdm (not rich): one small dependency with no others of its own, that draws a bar on any
terminal, clears it for the lines printed above it (``tqdm.write``), rate-limits its redraws
(``mininterval``) so a CG step costs no terminal writes of its own, and disables itself off a
terminal.

Host-side code.
"""

from __future__ import annotations

import math
import sys
from typing import TextIO

from tqdm import tqdm

WIDTH = 120


def short_line(record: dict, total: int | None) -> str:
    """The terminal line of one iteration: k/N, losses, test error, λ, ρ ("rejected" when the
    CG step raised the loss: ρ = −∞ of (D1), and λ grows), "θ kept" when the line search found no
    step that lowers the loss, CG steps and the iteration's seconds (the bar shows the elapsed
    time and the ETA; the verdict the whole run's time)."""
    def number(key: str, spec: str) -> str:
        value = record.get(key)
        return "-" if value is None else format(float(value), spec)

    error = record.get("test_error")
    rho = record.get("rho")
    rejected = rho is not None and rho == -math.inf     # the CG step raised the loss (D1)
    kept = record.get("line_search_step") == 0.0        # no step lowered it: θ unchanged
    rho_spec = ".1g" if rho is not None and abs(rho) >= 1000 else ".3g"
    seconds = record.get("seconds")
    return (f"iter {record['iteration']:4d}" + (f"/{total}" if total else "")
            + f"  train {number('train_loss', '.5g')}  test {number('test_loss', '.5g')}"
            + (f" (error {100 * error:.2f}%)" if error is not None else "")
            + f"  λ {number('damping', '.3g')}"
            + ("  ρ rejected" if rejected else f"  ρ {number('rho', rho_spec)}")
            + ("  θ kept" if kept else "")
            + f"  CG {record['cg_steps']}  "
            + number("seconds", ".0f" if seconds is not None and seconds >= 1000 else ".3g")
            + "s")


class Terminal:
    """The terminal side of a run's log: lines on ``stream``, the bar on stderr."""

    def __init__(self, stream: TextIO | None = None, *, verbose: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.verbose = verbose
        self.live = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.bar: tqdm | None = None
        self.total: int | None = None

    def start(self, iteration: int, total: int, processes: int = 1) -> None:
        """A run of iterations ``iteration + 1 .. total`` begins (on ``processes`` processes)."""
        self.total = total
        if self.live:
            self.close()
            desc = "HF iteration" + (f" ({processes} processes)" if processes > 1 else "")
            self.bar = tqdm(total=total, initial=iteration, desc=desc, unit="it",
                            file=sys.stderr, dynamic_ncols=True, mininterval=0.2, leave=False)

    def phase(self, text: str, *, often: bool = False) -> None:
        """What the iteration under way is doing, on the bar: redrawn at once, or (``often``: a
        CG step's count) at most 5 times a second."""
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=not often)
            if often:
                self.bar.update(0)

    def print(self, text: str) -> None:
        """A line above the bar."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
            self.stream.flush()
        else:
            print(text, file=self.stream, flush=True)

    def iteration(self, record: dict, full_line: str) -> None:
        """An iteration's line (the full record when verbose), and the bar one step on."""
        self.print(full_line if self.verbose else short_line(record, self.total))
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        """Take the bar away (the lines stay)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
