"""Crash safety, tested the hard way: training and checkpoint writing run in subprocesses that are
killed with SIGKILL at random moments. After every kill a checkpoint must load, it may be at most
``save_every`` iterations behind the last logged one, and ``arrayhf resume`` must go on from it;
the killed-and-resumed run must end bit for bit where an uninterrupted run ends (resume is exact).

These tests start processes and sleep: they run in the numpy session only. The kill moments come
from a seeded generator, one seed per test case; ``ARRAYHF_KILL_SEEDS=7,8,9`` runs other seeds.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from arrayhf import checkpoint

pytestmark = pytest.mark.only_backend("numpy")

SEEDS = [int(s) for s in os.environ.get("ARRAYHF_KILL_SEEDS", "0,1,2").split(",")]
ITERATIONS, SAVE_EVERY = 8, 2
RUN = ["--problem", "addition", "--T", "10", "--hidden", "16", "--batch-size", "60",
       "--train-batches", "2", "--test-batches", "1", "--max-cg", "30",
       "--threshold", "1e-9", "--iterations", str(ITERATIONS), "--save-every", str(SAVE_EVERY)]
# One BLAS thread: deterministic sums, and no fight with a parallel test process for the cores.
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def command(*args):
    return [sys.executable, "-m", "arrayhf", *args]


def run_to_end(args, log: pathlib.Path) -> None:
    with open(log, "ab") as out:
        finished = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, env=ENV,
                                  timeout=300)
    assert finished.returncode == 0, log.read_text()


def wait_until(condition, what: str, deadline: float = 60.0, interval: float = 0.002) -> None:
    """Poll ``condition()`` every ``interval`` seconds until it holds; fail after ``deadline``."""
    give_up = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < give_up, f"waited {deadline} s for {what}"
        time.sleep(interval)


def kill_after(args, seconds: float, log: pathlib.Path, ready=None) -> bool:
    """Start ``args``, SIGKILL it ``seconds`` after it started (after ``ready(process)`` first
    held, when given); True if it was still running then."""
    with open(log, "ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=ENV)
        try:
            if ready is not None:
                wait_until(lambda: process.poll() is not None or ready(process),
                           f"{args} to become ready")
            process.wait(timeout=seconds)
            assert process.returncode == 0, log.read_text()
            return False
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True


def logged_iterations(run_dir: pathlib.Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    iterations = []
    for line in path.read_text().splitlines():
        try:
            iterations.append(json.loads(line)["iteration"])
        except json.JSONDecodeError:
            pass   # the torn last line of a kill
    return iterations


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same run, never killed; its final θ and how long it took."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    started = time.perf_counter()
    run_to_end(command("train", *RUN, "--run-dir", str(run_dir)), run_dir.parent / "log")
    seconds = time.perf_counter() - started
    arrays, meta = checkpoint.read_arrays(run_dir / "checkpoint.npz")
    assert meta["iteration"] == ITERATIONS
    return arrays["params"], seconds


@pytest.mark.parametrize("seed", SEEDS)
def test_training_killed_at_random_moments_resumes_exactly(uninterrupted, tmp_path, seed):
    reference_params, reference_seconds = uninterrupted
    rng = np.random.default_rng(seed)
    run_dir, log = tmp_path / "run", tmp_path / "log"
    kills = 0
    for _ in range(6):
        started = (run_dir / "run.json").exists()
        args = (command("resume", str(run_dir)) if started
                else command("train", *RUN, "--run-dir", str(run_dir)))
        if not kill_after(args, rng.uniform(0.0, reference_seconds), log):
            break   # it finished before the kill moment
        kills += 1
        if not (run_dir / "run.json").exists():
            continue   # killed before the run began: nothing to lose
        # whatever moment the kill hit, a checkpoint loads (once the run's first save is done)
        path = run_dir / "checkpoint.npz"
        if not (path.exists() or checkpoint.previous_path(path).exists()):
            continue
        arrays, meta, _ = checkpoint.read_latest(path)
        assert arrays["params"].shape == reference_params.shape
        logged = logged_iterations(run_dir)
        print(f"kill {kills}: logged up to {max(logged, default=0)}, checkpoint "
              f"{meta['iteration']}")
        assert not logged or max(logged) - meta["iteration"] <= SAVE_EVERY, (logged, meta)
    if (run_dir / "run.json").exists():
        run_to_end(command("resume", str(run_dir)), log)
    else:
        run_to_end(command("train", *RUN, "--run-dir", str(run_dir)), log)
    arrays, meta = checkpoint.read_arrays(run_dir / "checkpoint.npz")
    assert meta["iteration"] == ITERATIONS
    np.testing.assert_array_equal(arrays["params"], reference_params)
    assert logged_iterations(run_dir) == list(range(1, ITERATIONS + 1))
    assert kills >= 1, "no kill landed: the run finished before every kill moment"


WRITER = """
import sys, numpy as np
from arrayhf import checkpoint
path = sys.argv[1]
for iteration in range(1, 100_000):
    checkpoint.save(path, {"params": np.full(1_000_000, float(iteration))},
                    {"iteration": iteration})
"""


@pytest.mark.parametrize("seed", SEEDS)
def test_checkpoint_writing_killed_at_random_moments_leaves_a_whole_file(tmp_path, seed):
    """A process that does nothing but write 8 MB checkpoints is killed mid-write, again and
    again: the newest loadable file is always whole (its θ matches its own iteration).

    The kill comes a random 0 to 0.1 s after the writer opened its first temporary file. One
    save (write, fsync, two renames, fsync of the folder) takes about 15 ms, so that is a random
    moment of one of its first half-dozen saves: the moments a kill 0.5 to 2.5 s after the start
    hit in a later save, without waiting for them (of 60 such kills, 48 came mid-write, 4
    between the two renames, 8 after them)."""
    rng = np.random.default_rng(seed)
    path = tmp_path / "checkpoint.npz"
    log = tmp_path / "log"
    checkpoint.save(path, {"params": np.zeros(1_000_000)}, {"iteration": 0})

    def writing(process):
        return (tmp_path / f".{path.name}.{process.pid}.tmp").exists()

    kills = 0
    for _ in range(5):
        kills += kill_after([sys.executable, "-c", WRITER, str(path)], rng.uniform(0.0, 0.1), log,
                            ready=writing)
        arrays, meta, used = checkpoint.read_latest(path)
        assert np.all(arrays["params"] == meta["iteration"]), used
    assert kills == 5


def test_sigterm_saves_and_a_second_process_is_refused_while_the_first_runs(tmp_path):
    """SIGTERM (a batch scheduler's stop) saves a checkpoint and exits as Ctrl-C does; while a run
    goes on, a second process on its run directory is refused, naming the first; a run killed
    with SIGKILL leaves no lock behind."""
    run_dir, log = tmp_path / "run", tmp_path / "log"
    long_run = [*RUN[:-4], "--iterations", "1000", "--save-every", "1000"]
    with open(log, "ab") as out:
        first = subprocess.Popen(command("train", *long_run, "--run-dir", str(run_dir)),
                                 stdout=out, stderr=subprocess.STDOUT, env=ENV)
        wait_until(lambda: len(logged_iterations(run_dir)) >= 2, "two iterations")
        second = subprocess.run(command("resume", str(run_dir)), capture_output=True,
                                text=True, env=ENV, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"{run_dir} is in use by process {first.pid}" in second.stderr, second.stderr
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 130, log.read_text()
    assert "interrupted; the checkpoint of iteration" in log.read_text()
    _, meta = checkpoint.read_arrays(run_dir / "checkpoint.npz")
    assert meta["iteration"] == logged_iterations(run_dir)[-1] >= 2   # saved at the signal

    started = len(logged_iterations(run_dir))
    with open(log, "ab") as out:
        again = subprocess.Popen(command("resume", str(run_dir)), stdout=out,
                                 stderr=subprocess.STDOUT, env=ENV)
        wait_until(lambda: len(logged_iterations(run_dir)) > started, "a resumed iteration")
        again.send_signal(signal.SIGKILL)
        again.wait()
    resumed = subprocess.run(command("resume", str(run_dir), "--iterations",
                                     str(meta["iteration"] + 1)),
                             capture_output=True, text=True, env=ENV, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
