"""HF on several processes: the gradient phase and one G v of an RNN, on P processes × k threads
each, with the time the processes spend in all-reduce (arrayhf/distributed.py, gloo on CPU,
NCCL on CUDA).

    python bench/distributed.py                      # 1 process × 2 threads, 2 processes × 1
    python bench/distributed.py --quick              # tiny sizes: checks that it runs
    python bench/distributed.py --backend torch --device cuda --configurations 1x1,2x1,4x1,8x1
                                                     # one process per GPU (NCCL)

The case is MS11's gradient batch: the RNN of the 2011 release's demo (2 inputs, ``--hidden``
tanh units, 1 linear output, no biases) on the addition problem at ``--T``, with ``--batches`` ×
``--batch-size`` sequences for the gradient (10 × 1000 = 10,000 by default) and one of those
batches for the curvature, float64. Each process holds its rows of every batch
(``ShardedDataset``), as ``torchrun -m arrayhf train`` runs it.

What is timed, in every process, after ``--warmup`` untimed calls, as medians of ``--repeats``
calls that start together (a barrier before each):

* ``gradient``: ``BatchObjective.value_and_gradient`` over the gradient batches: forward and
  backward over this process's rows, then the all-reduce of g and of (loss, count);
* ``Gv``: one product of the curvature operator CG calls (one R-forward and one backward pass
  over this process's rows of the curvature batch, then one all-reduce of n_params values);
* ``all-reduce``: the part of each spent inside the communicator, waiting for the slower process
  included (so it also measures load imbalance); the slowest process's figures are reported.

The configurations run one after another (each in fresh processes started by this script, with
the environment ``torchrun`` sets), not interleaved: run it on an otherwise idle machine.
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
import common

from arrayhf import backend, distributed, threads
from arrayhf.cli import runs


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
    settings = runs.RunSettings(problem="addition", T=args.T, hidden=args.hidden,
                                batch_size=args.batch_size, train_batches=args.batches,
                                test_batches=1, backend=args.backend, device=args.device)
    model, _, optimizer = runs.build(settings, None, progress=False, communicator=communicator)
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
        workers.append(subprocess.Popen([sys.executable, __file__, "--worker", str(output),
                                         f"--threads={threads}", *options], env=env))
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
