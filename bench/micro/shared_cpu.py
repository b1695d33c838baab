"""A shared CPU: what a second process costs a run, under each thread setting (``ARRAYHF_THREADS``
and OpenMP's wait policy), on torch CPU: one RNN G v repeated, and a short training run, each
alone and then as two copies side by side (bench/README.md, "A shared CPU").

    python -m bench.micro.shared_cpu                      # G v and a training run, every setting
    python -m bench.micro.shared_cpu --seconds 5 --quick  # short

The ``train`` workload measures the command line: it is ``arrayhf train ...`` as a user starts it,
in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

from bench import common

GV_WORKER = """
import json, statistics, sys, time
import numpy as np
import arrayhf
from arrayhf import backend, threads
seconds = float(sys.argv[1])
xp = backend.namespace("torch")
data = arrayhf.Pathological("addition", 100, batch_size=500, n_train_batches=1,
                            n_test_batches=1, xp=xp)
model = arrayhf.RNN(2, 100, 1, biases=False)
params = model.init(0, xp=xp)
batch = data.batch(data.train_batches[0])
product = model.gauss_newton_operator(params, batch, model.forward(params, batch.inputs))
v = backend.from_host(np.random.default_rng(0).standard_normal(model.n_params), xp)
float(product(v)[0])
times, end = [], time.perf_counter() + seconds
while time.perf_counter() < end or len(times) < 3:
    if len(times) % 10 == 0:
        threads.adapt()     # as HF does at the start of every iteration (~10-300 products)
    started = time.perf_counter()
    float(product(v)[0])
    times.append(time.perf_counter() - started)
print(json.dumps({"seconds": statistics.median(times), "count": len(times)}))
"""

# name: environment of the processes (added to the machine's)
SETTINGS = {
    "defaults (off)": {"ARRAYHF_THREADS": "off"},
    "OMP_WAIT_POLICY=PASSIVE": {"ARRAYHF_THREADS": "off", "OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"ARRAYHF_THREADS": "1"},
    "auto (arrayhf's default)": {"ARRAYHF_THREADS": "auto"},
}


def _command(workload: str, args) -> list[str]:
    if workload == "gv":
        return [sys.executable, "-c", GV_WORKER, str(args.seconds)]
    return [sys.executable, "-m", "arrayhf", "train", "--problem", "addition", "--T", "20",
            "--batch-size", "300", "--iterations", str(args.iterations), "--backend", "torch",
            "--run-dir", "RUN_DIR", "--seed", "0"]


def _measure(workload: str, environment: dict, copies: int, args, scratch: pathlib.Path) -> list:
    """The seconds each of ``copies`` processes started together reports (gv: median product;
    train: wall time)."""
    processes = []
    for copy in range(copies):
        command = _command(workload, args)
        if workload == "train":
            run_dir = scratch / f"run-{time.monotonic_ns()}-{copy}"
            command[command.index("RUN_DIR")] = str(run_dir)
        env = {**os.environ, **environment}
        processes.append((time.perf_counter(), subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)))
    results = []
    for started, process in processes:
        output, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"{workload} exited with {process.returncode}")
        if workload == "gv":
            results.append(json.loads(output.strip().splitlines()[-1])["seconds"])
        else:
            results.append(time.perf_counter() - started)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="gv: seconds per process")
    parser.add_argument("--iterations", type=int, default=10, help="train: HF iterations")
    parser.add_argument("--workloads", default="gv,train")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--alone-repeats", type=int, default=3,
                        help="runs alone per setting (median)")
    parser.add_argument("--quick", action="store_true", help="short runs")
    parser.add_argument("--json", default=str(common.RESULTS / "shared_cpu.json"))
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.iterations, args.alone_repeats = 3.0, 3, 1
    scratch = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / "arrayhf-shared-cpu"
    scratch.mkdir(parents=True, exist_ok=True)
    rows = []
    for workload in args.workloads.split(","):
        for name in args.settings.split(","):
            alone = statistics.median(_measure(workload, SETTINGS[name], 1, args, scratch)[0]
                                      for _ in range(args.alone_repeats))
            side_by_side = _measure(workload, SETTINGS[name], 2, args, scratch)
            rows.append({"workload": workload, "setting": name, "alone": alone,
                         "side_by_side": side_by_side,
                         "worst_ratio": max(side_by_side) / alone})
            print(f"{workload:5s}  {name:24s} alone {alone * 1e3:9.1f} ms   side by side "
                  + ", ".join(f"{t * 1e3:9.1f}" for t in side_by_side)
                  + f" ms   worst {max(side_by_side) / alone:6.2f}x", flush=True)
    path = pathlib.Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rows": rows, "cores": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
