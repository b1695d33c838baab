"""HF on several processes: the gradient phase and one G v of the release's RNN on addition, on
P processes × k threads each, with the time spent in all-reduce (arrayhf/distributed.py: gloo on
CPU, NCCL on CUDA); bench/README.md, "Several processes", says what is timed.

    python -m bench.micro.distributed                 # 1 process × 2 threads, 2 processes × 1
    python -m bench.micro.distributed --quick         # tiny sizes: checks that it runs
    python -m bench.micro.distributed --backend torch --device cuda --configurations 1x1,2x1,4x1,8x1
                                                      # one process per GPU (NCCL)

The configurations run one after another, each in fresh processes this script starts with the
environment ``torchrun`` sets: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import array_api_compat

from arrayhf import backend, distributed, threads
from bench import common
from bench.release import release_run

ROOT = pathlib.Path(__file__).resolve().parents[2]


class TimedCommunicator:
    """A communicator that adds up the seconds spent in its collectives."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0
        self.rank, self.world_size = inner.rank, inner.world_size

    def _timed(self, operation, *args):
        started = time.perf_counter()
        result = operation(*args)
        common.synchronize(result)
        self.seconds += time.perf_counter() - started
        return result

    def all_reduce_sum(self, array):
        return self._timed(self.inner.all_reduce_sum, array)

    def sum_floats(self, *values):
        return self._timed(self.inner.sum_floats, *values)

    def broadcast(self, array, source=0):
        return self._timed(self.inner.broadcast, array, source)


def measure(args) -> dict:
    """In one process of a configuration: medians of the gradient phase and of one G v."""
    threads.configure(args.threads)
    communicator = TimedCommunicator(distributed.from_environment(
        cuda=bool(args.device and args.device.startswith("cuda"))))
    model, _, optimizer = release_run("addition", args.T, hidden=args.hidden,
                                      batch_size=args.batch_size, train_batches=args.batches,
                                      test_batches=1, backend_name=args.backend,
                                      device=args.device, communicator=communicator)
    objective, params = optimizer.batch_objective, optimizer.params
    ids = list(optimizer.dataset.train_batches)
    curvature_batch = objective.batch(ids[0])
    cache = model.forward(params, curvature_batch.inputs)
    product = objective.curvature_operator(params, curvature_batch, cache, 0.0)
    v = backend.normal(1, model.n_params, optimizer.xp, dtype=params.dtype,
                       device=array_api_compat.device(params))
    phases = {"gradient": lambda: objective.value_and_gradient(params, ids)[1],
              "Gv": lambda: product(v)}
    results = {}
    for name, phase in phases.items():
        for _ in range(args.warmup):
            common.synchronize(phase())
        times, waits = [], []
        for _ in range(args.repeats):
            communicator.inner.sum_floats(0.0)   # a barrier: every process starts together
            before, started = communicator.seconds, time.perf_counter()
            common.synchronize(phase())
            times.append(time.perf_counter() - started)
            waits.append(communicator.seconds - before)
        results[name] = {"median": statistics.median(times), "all_reduce": statistics.median(waits),
                         "times": times}
    return {"rank": communicator.rank, "world_size": communicator.world_size,
            "n_params": model.n_params, "threads": args.threads, **results}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_configuration(args, processes: int, threads: int, folder: pathlib.Path) -> list[dict]:
    """Start ``processes`` workers of ``threads`` threads each; their results."""
    port, workers = str(free_port()), []
    options = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
               if k in ("backend", "T", "hidden", "batch_size", "batches", "repeats", "warmup")]
    if args.device:
        options.append(f"--device={args.device}")
    for rank in range(processes):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": str(processes),
               "LOCAL_WORLD_SIZE": str(processes), "ARRAYHF_THREADS": str(threads),
               "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
               "MKL_NUM_THREADS": str(threads)}
        output = folder / f"{processes}x{threads}-{rank}.json"
        workers.append(subprocess.Popen([sys.executable, "-m", "bench.micro.distributed",
                                         "--worker", str(output), f"--threads={threads}",
                                         *options], env=env, cwd=ROOT))
    codes = [worker.wait() for worker in workers]
    if any(codes):
        raise SystemExit(f"configuration {processes}x{threads}: worker exit codes {codes}")
    return [json.loads((folder / f"{processes}x{threads}-{rank}.json").read_text())
            for rank in range(processes)]


def main() -> None:
    parser = common.options(__doc__.split("\n")[0], default_backend="numpy")
    parser.add_argument("--configurations", default="1x2,2x1",
                        help="PROCESSESxTHREADS, comma-separated (default 1x2,2x1)")
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.T, args.hidden, args.batch_size, args.batches = 10, 8, 20, 2
    args.repeats = args.repeats or (2 if args.quick else 5)
    if args.worker is not None:
        results = measure(args)
        pathlib.Path(args.worker).write_text(json.dumps(results))
        distributed.shutdown()
        return
    rows, payload = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for configuration in args.configurations.split(","):
            processes, threads = (int(part) for part in configuration.split("x"))
            results = run_configuration(args, processes, threads, pathlib.Path(folder))
            slowest = {name: max(results, key=lambda r, n=name: r[n]["median"])[name]
                       for name in ("gradient", "Gv")}
            payload[configuration] = results
            rows.append([f"{processes} × {threads}", slowest["gradient"]["median"],
                         slowest["gradient"]["all_reduce"], slowest["Gv"]["median"],
                         slowest["Gv"]["all_reduce"]])
    base = rows[0]
    table = [[*row, base[1] / row[1], base[3] / row[3]] for row in rows]
    common.print_table(
        f"RNN on addition, T = {args.T}, {args.hidden} hidden, {args.batches} × "
        f"{args.batch_size} sequences for the gradient, G v on {args.batch_size}; "
        f"{args.backend}{' ' + args.device if args.device else ''}, float64 (medians, seconds)",
        ["processes × threads", "gradient", "of it all-reduce", "G v", "of it all-reduce",
         "gradient speed-up", "G v speed-up"], table)
    common.write_json("distributed", args.json, {"configurations": payload})


if __name__ == "__main__":
    main()
