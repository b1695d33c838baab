"""The README's demo transcript is what `arrayhf demo` prints: its first three HF iterations are
rerun here and compared to the printed digits (all but each line's seconds), so that the README
cannot drift from the code again. `python bench/readme_figures.py demo` rewrites the transcript."""

from __future__ import annotations

import pathlib
import re

from arrayhf import cli

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def transcript() -> list[str]:
    block = re.search(r"<!-- figures: demo -->\n```\n\$ arrayhf demo\n(.*?)```", README.read_text(),
                      re.S)
    assert block, "README.md has no demo transcript between its figures markers"
    return block.group(1).splitlines()


def comparable(line: str) -> str:
    """A transcript line without what changes from run to run or with --iterations: the
    iteration's seconds, and the total number of iterations."""
    line = re.sub(r"^(iter +\d+)/\d+", r"\1", line)
    line = re.sub(r"  [\d.e+-]+s$", "", line)
    return re.sub(r"^HF: iterations 1\.\.\d+", "HF: iterations 1..N", line)


def test_the_first_demo_iterations_print_what_the_readme_shows(tmp_path, monkeypatch, capsys):
    lines = transcript()
    first_iterations = [i for i, line in enumerate(lines) if line.startswith("iter ")][:3]
    expected = lines[:first_iterations[-1] + 1]
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo", "--iterations", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()[:len(expected)]
    assert [comparable(line) for line in printed] == [comparable(line) for line in expected]
