"""The logs of an HF run, as the 2011 release wrote them, plus a machine-readable one.

- ``metrics.jsonl``: one JSON object per HF iteration (the record of ``HF.step``); non-finite
  numbers are written as the strings "inf", "-inf", "nan".
- ``results``: one human-readable line per iteration.
- ``detailed_results``: the same lines, and between them a row every 10 CG steps: CG step, model
  value φ, ‖x‖, ‖r‖, seconds per CG step.
- the terminal (hf/progress.py): a short line per iteration, and a progress bar with the phase
  of the iteration under way when stderr is a terminal.

Every line is flushed as it is written, so a killed run loses no finished line; a torn last line
of metrics.jsonl (a kill in mid-write) is dropped on resume. On several processes rank 0 alone
writes (``writes=False`` elsewhere: the others read the records on resume, and write nothing).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import TYPE_CHECKING, TextIO

from arrayhf.hf.progress import Terminal

if TYPE_CHECKING:
    from arrayhf.hf.cg import CGStep


def _finite_or_text(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _from_text(value):
    return float(value) if value in ("inf", "-inf", "nan") else value


def format_record(record: dict) -> str:
    """The human line of one iteration."""
    def number(key, spec):
        value = record.get(key)
        return "-" if value is None else format(float(value), spec)

    error = record.get("test_error")
    return (f"iter {record['iteration']:4d}  train {number('train_loss', '.6g')}  "
            f"test {number('test_loss', '.6g')}"
            + (f" (error {100 * error:.2f}%)" if error is not None else "")
            + f"  |g| {number('grad_norm', '.3g')}  |θ| {number('theta_norm', '.4g')}"
            f"  λ {number('damping', '.4g')}  ρ {number('rho', '.3f')}"
            f" = {number('rho_numerator', '.3g')}/{number('rho_denominator', '.3g')}"
            f"  CG {record['cg_steps']} ({record['cg_stop']}, total {record['cg_total']})"
            f"  chose {record['chosen_iterate']}  step {number('line_search_step', '.3g')}"
            f"  {number('seconds', '.2f')}s"
            + (f" on {record['processes']} processes" if record.get("processes", 1) > 1 else ""))


class RunLog:
    """Writes the logs of one run (no files when ``run_dir`` is None)."""

    def __init__(self, run_dir: str | os.PathLike | None, *, echo: bool = True,
                 stream: TextIO | None = None, verbose: bool = False,
                 writes: bool = True) -> None:
        self.run_dir = None if run_dir is None else pathlib.Path(run_dir)
        self.echo, self.writes = echo, writes
        self.terminal = Terminal(stream, verbose=verbose)
        self.cg_iteration = 0
        if self.run_dir is not None and writes:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    def _append(self, name: str, line: str) -> None:
        if self.run_dir is None or not self.writes:
            return
        with open(self.run_dir / name, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _print(self, text: str) -> None:
        if self.echo:
            self.terminal.print(text)

    def message(self, text: str) -> None:
        """A comment line (# …) in results and detailed_results, and on the terminal."""
        self._print(text)
        self._append("results", "# " + text)
        self._append("detailed_results", "# " + text)

    def start_run(self, iteration: int, max_iterations: int, processes: int = 1) -> None:
        """Announce a run's iterations, where its logs go, and its processes when several;
        start the progress bar."""
        where = "" if self.run_dir is None else f", logs in {self.run_dir}"
        shared = f", on {processes} processes" if processes > 1 else ""
        self.message(f"HF: iterations {iteration + 1}..{max_iterations}{where}{shared}")
        if self.echo:
            self.terminal.start(iteration, max_iterations, processes)

    def end_run(self) -> None:
        """The run is over (done, stopped or interrupted): the bar goes."""
        self.terminal.close()

    def phase(self, text: str) -> None:
        """The phase of the iteration under way, on the progress bar."""
        if self.echo:
            self.terminal.phase(f"iteration {self.cg_iteration}: {text}")

    def start_cg(self, iteration: int) -> None:
        """Remember which HF iteration the next CG steps belong to."""
        self.cg_iteration = iteration

    def cg_step(self, step: CGStep) -> None:
        """Every 10th CG step to detailed_results; the step on the progress bar."""
        if step.step % 10 == 0:
            self._append("detailed_results",
                         f"  cg {step.step:4d}  phi {step.model_value:.6g}  |x| {step.x_norm:.4g}"
                         f"  |r| {step.residual_norm:.4g}  {step.seconds:.4f} s/step")
        if self.echo and self.terminal.bar is not None:
            self.terminal.phase(f"iteration {self.cg_iteration}: CG step {step.step}, "
                                f"φ {step.model_value:.4g}", often=True)

    def iteration(self, record: dict) -> None:
        """One HF iteration's record to all three logs and the terminal."""
        line = format_record(record)
        if self.echo:
            self.terminal.iteration(record, line)
        self._append("results", line)
        self._append("detailed_results", line)
        self._append("metrics.jsonl", json.dumps(
            {key: _finite_or_text(value) for key, value in record.items()}))

    def read_metrics(self) -> list[dict]:
        """Every complete record of metrics.jsonl (a torn last line is skipped)."""
        if self.run_dir is None or not (self.run_dir / "metrics.jsonl").exists():
            return []
        records = []
        for line in (self.run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            records.append({key: _from_text(value) for key, value in record.items()})
        return records

    def resume(self, iteration: int) -> list[dict]:
        """Keep the records up to ``iteration`` (later ones are recomputed) and return them;
        ``results`` and ``detailed_results`` are cut to the same iteration."""
        records = [r for r in self.read_metrics() if r["iteration"] <= iteration]
        if self.run_dir is not None and self.writes:
            _replace(self.run_dir / "metrics.jsonl",
                     [json.dumps({k: _finite_or_text(v) for k, v in r.items()}) for r in records])
            for name in ("results", "detailed_results"):
                if (self.run_dir / name).exists():
                    lines = (self.run_dir / name).read_text(encoding="utf-8").splitlines()
                    _replace(self.run_dir / name, lines_up_to(lines, iteration))
        self.message(f"resumed from the checkpoint of iteration {iteration}")
        return records


def lines_up_to(lines: list[str], iteration: int) -> list[str]:
    """The lines of ``results`` or ``detailed_results`` up to the record of ``iteration``: the
    records of later iterations and the CG rows after that record go (a resumed run writes them
    again); comment lines stay."""
    records = [index for index, line in enumerate(lines)
               if line.startswith("iter ") and int(line.split()[1]) <= iteration]
    cut = records[-1] + 1 if records else 0
    return lines[:cut] + [line for line in lines[cut:] if line.startswith("# ")]


def _replace(path: pathlib.Path, lines: list[str]) -> None:
    """Write ``lines`` to ``path`` atomically (a kill leaves the old file or the new one)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(temporary, path)
