"""Rerun every run the README quotes and rewrite its transcript, table and figures in place,
between its ``<!-- figures: NAME -->`` and ``<!-- /figures -->`` markers (bench/README.md,
"The README's figures"). What this reruns is the command line: ``arrayhf demo``, ``arrayhf
train`` and the examples as a user runs them, in a temporary directory.

    python -m bench.tools.readme_figures                 # every section (about 20 minutes alone)
    python -m bench.tools.readme_figures demo text       # some sections
    python -m bench.tools.readme_figures --check         # print, write nothing
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = re.compile(r"(<!-- figures: (\w+) -->\n)(.*?)(<!-- /figures -->)", re.S)
# The results table: (problem, T, sequences per batch); the first row is the demo's run.
RESULTS = [("multiplication", 20, 300), ("addition", 20, 300), ("xor", 20, 100), ("xor", 50, 100),
           ("temporal_order", 20, 100), ("temporal_order", 50, 100),
           ("temporal_order_3bit", 20, 100), ("random_permutation", 20, 100),
           ("memorization", 20, 100), ("memorization_20bit", 30, 100), ("memorization", 60, 100)]
# T = 100 is bench/long_range.py's table (the CPU-sized settings of arrayhf train at T >= 100)
TIME_LIMIT = 420     # seconds a results row may run (the README says so)
# Every run with 2 threads: BLAS's thread count sets the order of its sums, and so the digits.
THREADS = ("--threads", "2")
DEMO = ("demo", *THREADS)
COMMAND = "python -m bench.tools.readme_figures"   # how the README credits a section
# the runs import this checkout's arrayhf, installed or not (they run in a temporary directory)
ENVIRONMENT = {**os.environ,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                           os.environ.get("PYTHONPATH")]))}
# The paragraphs under the text and autoencoder sections (wrap() joins their lines)
TEXT_FIGURE = """`python examples/text.py` on the 2-core CPU (numpy, float64, {today},
`{command} text`): an MRNN with 100 hidden units and 100 factors, {symbols} symbols, the first
300,000 characters of the standard library's sources, 5 × 100 substrings of 51 characters a
batch. Held-out bits per character fall from {first} after the first HF iteration to {last} after
iteration {iterations} ({minutes:.1f} minutes), against a unigram entropy of {entropy}; `arrayhf
sample runs/text-example --prime "def " --temperature 0.7` then writes ({same}):"""
AUTOENCODER_FIGURE = """`--small` on a 2-core CPU (numpy, float32, {today}, `{command}
autoencoder`): the 784-256-64-6-64-256-784 net goes from {start} squared error per test case at
its sparse random start to {end} after {iterations} HF iterations ({cg} CG steps, {seconds:.0f}
s); the baselines it prints: the mean image ({mean}) and PCA with 6 components ({pca})."""


def arrayhf(*args: str, cwd: pathlib.Path, timeout: float | None = None) -> tuple[str, float]:
    """Run ``python -m arrayhf ARGS`` in ``cwd``; (its stdout, wall seconds)."""
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "arrayhf", *args], cwd=cwd, text=True,
                              capture_output=True, timeout=timeout, env=ENVIRONMENT)
        out = done.stdout
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout.decode() if isinstance(expired.stdout, bytes) else expired.stdout or ""
    return out, time.perf_counter() - started


def today() -> str:
    return datetime.date.today().isoformat()


def wrap(paragraph: str) -> str:
    """A prose paragraph in the README's 100 columns."""
    return textwrap.fill(paragraph, width=100, break_long_words=False, break_on_hyphens=False)


def demo(work: pathlib.Path) -> str:
    """The transcript of `arrayhf demo`: its first four and last three iterations."""
    out, _ = arrayhf(*DEMO, cwd=work)
    lines = out.rstrip("\n").splitlines()
    iterations = [i for i, line in enumerate(lines) if line.startswith("iter ")]
    shown = lines[:iterations[3] + 1] + ["..."] + lines[iterations[-3]:]
    return ("```\n$ arrayhf " + " ".join(DEMO) + "\n" + "\n".join(shown) + "\n```\n"
            + wrap(f"(`{COMMAND} demo`, {today()}, numpy float64 on the "
                   "2-core CPU of the development machine. `--threads 2` is what `auto` gives an "
                   "idle 2-core machine; another thread count sums the matrix products in another "
                   "order, which shows in the digits from the first iteration on.)") + "\n")


def _result_row(problem: str, T: int, batch: int, work: pathlib.Path) -> str:
    run_dir = f"runs/{problem}-{T}"
    _, seconds = arrayhf("train", "--problem", problem, "--T", str(T), "--batch-size", str(batch),
                         "--threshold", "0.01", "--iterations", "150", "--run-dir", run_dir,
                         *THREADS,
                         cwd=work, timeout=TIME_LIMIT)
    records = [json.loads(line) for line in
               (work / run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = records[-1]
    error = 100 * last["test_error"]
    name = f"{problem} (`arrayhf demo`)" if (problem, T, batch) == RESULTS[0] else problem
    result = (f"solved, {error:.2f}% wrong" if error < 1 else
              f"**not solved**: {error:.0f}% wrong at {last['iteration']} iterations"
              + (f", {TIME_LIMIT} s" if seconds >= TIME_LIMIT else ""))
    return (f"| {name} | {T} | {batch} | {result} | {last['iteration']} | "
            f"{last['cg_total']:,} | {seconds:.0f} s |")


def results(work: pathlib.Path) -> str:
    """The pathological results table, one `arrayhf train` run per row."""
    rows = [_result_row(problem, T, batch, work) for problem, T, batch in RESULTS]
    return (wrap(f"Measured alone on the 2-core CPU of the development machine on {today()} "
                 f"(`{COMMAND} results`: each row is `arrayhf train "
                 f"--problem P --T T --batch-size B --threshold 0.01 --iterations 150 --threads "
                 f"2`, stopped after {TIME_LIMIT} s).") + "\n\n"
            "| problem | T | sequences per batch | result | HF iterations | CG steps | "
            "wall time |\n|---|---:|---:|---|---:|---:|---:|\n" + "\n".join(rows) + "\n")


def text(work: pathlib.Path) -> str:
    """`python examples/text.py`, then a sample from it on numpy and on torch."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "text.py")], cwd=work,
                          text=True, capture_output=True, env=ENVIRONMENT)
    seconds = time.perf_counter() - started
    summary = re.search(r"held-out bits per character: ([\d.]+) after iteration 1 -> ([\d.]+) "
                        r"after iteration (\d+) \(unigram entropy ([\d.]+)\)", done.stdout)
    symbols = re.search(r"; (\d+) symbols;", done.stdout)
    samples = []
    for name in ("numpy", "torch"):
        out, _ = arrayhf("sample", "runs/text-example", "--prime", "def ", "--temperature",
                         "0.7", "--length", "300", "--backend", name, cwd=work)
        samples.append("\n".join(line.rstrip() for line in out.split("\n")[1:]).rstrip("\n"))
    same = ("identically on `--backend numpy` and `--backend torch`, same seed"
            if samples[0] == samples[1] else "on `--backend numpy`; torch's differs")
    first, last, iterations, entropy = summary.groups()
    return wrap(TEXT_FIGURE.format(
        today=today(), command=COMMAND, symbols=symbols.group(1), first=first, last=last,
        iterations=iterations, minutes=seconds / 60, entropy=entropy, same=same)
    ) + f"\n\n```\n{samples[0]}\n```\n"


def autoencoder(work: pathlib.Path) -> str:
    """`python examples/autoencoder.py --small`."""
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "autoencoder.py"), "--small"],
                          cwd=work, text=True, capture_output=True, env=ENVIRONMENT)
    final = re.search(r"test squared error per case: ([\d.]+) at the start -> ([\d.]+) after "
                      r"(\d+) HF iterations \((\d+) CG steps\)", done.stdout)
    baselines = re.search(r"the mean image ([\d.]+), PCA with 6 components ([\d.]+)",
                          done.stdout)
    seconds = re.findall(r"\(\s*([\d.]+)s\)", done.stdout)[-1]
    start, end, iterations, cg = final.groups()
    return wrap(AUTOENCODER_FIGURE.format(
        today=today(), command=COMMAND, start=start, end=end, iterations=iterations, cg=cg,
        seconds=float(seconds), mean=baselines.group(1), pca=baselines.group(2))) + "\n"


SECTIONS = {"demo": demo, "results": results, "text": text, "autoencoder": autoencoder}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sections", nargs="*",
                        help=f"which to rerun (default all: {', '.join(SECTIONS)})")
    parser.add_argument("--check", action="store_true", help="print the sections, write nothing")
    args = parser.parse_args(argv)
    wanted = args.sections or list(SECTIONS)
    unknown = [name for name in wanted if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}: expected some of {', '.join(SECTIONS)}")
    readme = README.read_text()
    present = {match.group(2) for match in MARKER.finditer(readme)}
    missing = [name for name in wanted if name not in present]
    if missing:
        print(f"README.md has no markers for {missing}", file=sys.stderr)
        return 2
    made = {}
    for name in wanted:
        with tempfile.TemporaryDirectory(prefix=f"readme-{name}-") as work:
            print(f"rerunning {name} ...", flush=True)
            made[name] = SECTIONS[name](pathlib.Path(work))
            print(made[name])
    if not args.check:
        readme = MARKER.sub(lambda m: m.group(1) + made.get(m.group(2), m.group(3)) + m.group(4),
                            readme)
        README.write_text(readme)
        print(f"rewrote {', '.join(made)} in {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
