"""The README's demo transcript is what `arrayhf demo` prints: its first three HF iterations are
rerun here and compared to the printed digits (all but each line's seconds), so that the README
cannot drift from the code again. `python -m bench.tools.readme_figures demo` rewrites the
transcript.

The run is a subprocess with the transcript's own thread count: the number of BLAS threads sets
the order of the sums in every matrix product, and from the first iteration on that shows in the
printed digits (measured: train 0.025802 with 2 threads, 0.025778 with 1)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def transcript() -> tuple[list[str], list[str]]:
    """(the command's arguments, the lines it printed) of the README's demo transcript."""
    block = re.search(r"<!-- figures: demo -->\n```\n\$ arrayhf (demo[^\n]*)\n(.*?)```",
                      README.read_text(), re.S)
    assert block, "README.md has no demo transcript between its figures markers"
    return block.group(1).split(), block.group(2).splitlines()


def comparable(line: str) -> str:
    """A transcript line without what changes from run to run or with --iterations: the
    iteration's seconds, and the total number of iterations."""
    line = re.sub(r"^(iter +\d+)/\d+", r"\1", line)
    line = re.sub(r"  [\d.e+-]+s$", "", line)
    return re.sub(r"^HF: iterations 1\.\.\d+", "HF: iterations 1..N", line)


def test_the_first_demo_iterations_print_what_the_readme_shows(tmp_path):
    command, lines = transcript()
    assert "--threads" in command, "the transcript must say its thread count"
    first_iterations = [i for i, line in enumerate(lines) if line.startswith("iter ")][:3]
    expected = lines[:first_iterations[-1] + 1]
    done = subprocess.run([sys.executable, "-m", "arrayhf", *command, "--iterations", "3"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(README.parent)})
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()[:len(expected)]
    assert [comparable(line) for line in printed] == [comparable(line) for line in expected]
