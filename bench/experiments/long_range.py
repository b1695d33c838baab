"""Long range: the pathological problems at T = 100 on this CPU, as ``arrayhf train`` runs them,
and the diagnosis of why the release's batch sizes, cut to a CPU, fail there (bench/README.md,
"Long range", says what the table and the diagnosis hold).

    python -m bench.experiments.long_range              # the table: 4 problems at T = 100, 2 seeds
    python -m bench.experiments.long_range --problems temporal_order --seeds 0 --time-limit 300
    python -m bench.experiments.long_range diagnose --options "--dtype float64"  # 10 × 100
    python -m bench.experiments.long_range diagnose --train-batches 100          # 100 × 100
    python -m bench.experiments.long_range --quick      # T = 20, one short run: checks that it runs
    python -m bench.experiments.long_range markdown bench/results/long_range*.json  # README rows

What this measures is the command line: every run is built from ``arrayhf train --problem P --T T
--threshold 0.01 --seed S ...`` by the CLI's own parser and ``arrayhf.cli.pathological``, so it
gets what a user gets, the CPU-sized settings at T >= 100 included.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from arrayhf import backend, threads
from arrayhf.cli import build_parser, pathological, runs
from arrayhf.curvature import curvature_operator
from bench import common

PROBLEMS = ("addition", "multiplication", "xor", "temporal_order")


def command_settings(problem: str, T: int, seed: int, iterations: int, *extra: str
                     ) -> runs.RunSettings:
    """What ``arrayhf train --problem P --T T --threshold 0.01 --seed S ...`` runs."""
    args = build_parser().parse_args(["train", "--problem", problem, "--T", str(T),
                                      "--threshold", "0.01", "--seed", str(seed),
                                      "--iterations", str(iterations), *extra])
    return pathological.train_settings(args)


def table_run(problem: str, T: int, seed: int, args, *extra: str) -> dict:
    """One run until solved or past the time limit."""
    settings = command_settings(problem, T, seed, args.max_iterations, *extra)
    _, _, optimizer = runs.build(settings, None, progress=False)
    started = time.perf_counter()

    def stop(record) -> bool:
        return (pathological.solved(settings, record)
                or time.perf_counter() - started > args.time_limit)

    optimizer.run(args.max_iterations, stop=stop)
    last = optimizer.history[-1]
    return {"problem": problem, "T": T, "seed": seed, "options": " ".join(extra),
            "batch_size": settings.batch_size, "train_batches": settings.train_batches,
            "solved": pathological.solved(settings, last), "iterations": optimizer.iteration,
            "cg_steps": optimizer.cg_total, "seconds": time.perf_counter() - started,
            "test_error": last["test_error"],
            "history": [{k: r[k] for k in ("iteration", "train_loss", "test_error", "grad_norm",
                                           "damping", "rho", "cg_steps", "seconds")}
                        for r in optimizer.history]}


def table(args) -> list[dict]:
    """Every problem and seed at T; memorization at ``--memorization-T``; the runs without
    structural damping for the first problem."""
    given = tuple(args.options.split())
    plan = [(p, args.T, s, given) for p in args.problems.split(",") for s in args.seed_list]
    if args.memorization_T:
        plan += [("memorization", args.memorization_T, s, given) for s in args.seed_list]
    if args.no_structural:
        plan += [(p, args.T, s, (*given, "--mu", "0")) for p in args.no_structural.split(",")
                 for s in args.seed_list]
    results = []
    for problem, T, seed, extra in plan:
        results.append(table_run(problem, T, seed, args, *extra))
        shown = {k: v for k, v in results[-1].items() if k != "history"}
        print(json.dumps(shown), flush=True)
    common.print_table(
        f"arrayhf train at the CPU's defaults, --threads 2, {args.time_limit:g} s a run at most",
        ["problem", "T", "options", "seed", "result", "HF iterations", "CG steps", "seconds"],
        [[r["problem"], r["T"], r["options"] or "-", r["seed"],
          ("solved" if r["solved"] else "not solved") + f", {100 * r['test_error']:.2f}% wrong",
          r["iterations"], r["cg_steps"], f"{r['seconds']:.0f}"] for r in results])
    return results


class Diagnosis:
    """Per-iteration values beside an HF run's records (the module docstring), from the record
    of the optimizer's last step (``optimizer.last_step``): its θ, the gradient g and the chosen
    step p."""

    def __init__(self, model, dataset, optimizer):
        self.model, self.dataset, self.optimizer = model, dataset, optimizer

    def quadratic_change(self, batch_id) -> float:
        """q(p) − q(0) = gᵀp + ½ pᵀ G p with G of one batch, at the iteration's θ."""
        xp, step = self.optimizer.xp, self.optimizer.last_step
        params, direction = step.params, step.direction
        batch = self.optimizer.batch_objective.batch(batch_id)
        product = curvature_operator(self.model, params, batch,
                                     self.model.forward(params, batch.inputs), 0.0)
        return float(xp.sum(step.gradient * direction)
                     + 0.5 * xp.sum(direction * product(direction)))

    def change(self, batch_ids, step_size: float = 1.0) -> float:
        """f(θ + ηp) − f(θ) on the batches."""
        objective = self.optimizer.batch_objective.value
        params, direction = self.optimizer.last_step.params, self.optimizer.last_step.direction
        return objective(params + step_size * direction, batch_ids) - objective(params, batch_ids)

    def row(self, record: dict) -> dict:
        """The record's values and the diagnosis of its iteration."""
        optimizer, step = self.optimizer, self.optimizer.last_step
        recurrent = self.model.layout.unflatten(step.params, xp=optimizer.xp)["W_hh"]
        radius = float(np.max(np.abs(np.linalg.eigvals(backend.to_numpy(recurrent)))))
        curvature_id = step.curvature_batch
        held_id = next(i for i in self.dataset.train_batches if i != curvature_id)
        grad_ids = step.gradient_batches
        return {**{k: record[k] for k in ("iteration", "train_loss", "test_error", "grad_norm",
                                          "theta_norm", "damping", "rho", "cg_steps",
                                          "chosen_iterate", "line_search_step", "seconds")},
                "radius": radius,
                "q_curvature": self.quadratic_change(curvature_id),
                "q_held": self.quadratic_change(held_id),
                "change_curvature": self.change([curvature_id]),
                "change_held": self.change([held_id]),
                "along_0.3": self.change(grad_ids, 0.3), "along_1": self.change(grad_ids, 1.0)}


def diagnose(args) -> list[dict]:
    """One run of the CLI's settings with ``--train-batches`` and ``--batch-size``, and the
    diagnosis of every iteration, for ``--time-limit`` seconds of HF time at most."""
    extra = ["--train-batches", str(args.train_batches), "--batch-size", str(args.batch_size),
             *args.options.split()]
    settings = command_settings(args.diagnose_problem, args.T, args.seed_list[0],
                                args.max_iterations, *extra)
    model, dataset, optimizer = runs.build(settings, None, progress=False)
    diagnosis = Diagnosis(model, dataset, optimizer)
    rows: list[dict] = []
    columns = ("iteration", "train_loss", "test_error", "grad_norm", "radius", "damping", "rho",
               "cg_steps", "chosen_iterate", "line_search_step", "q_curvature", "q_held",
               "change_curvature", "change_held", "along_0.3", "along_1")
    print(" ".join(f"{c[:10]:>10}" for c in columns))
    while optimizer.iteration < args.max_iterations:
        record = optimizer.step()
        optimizer.history.append(record)
        rows.append(diagnosis.row(record))
        print(" ".join(f"{rows[-1][c]:>10.4g}" if isinstance(rows[-1][c], float)
                       else f"{rows[-1][c]:>10}" for c in columns), flush=True)
        if (pathological.solved(settings, record)
                or sum(r["seconds"] for r in rows) > args.time_limit):
            break
    return rows


def markdown(paths: list[str]) -> str:
    """The table runs of the JSON files, as the README's markdown rows."""
    rows = ["| problem | T | options | seed | result | HF iterations | CG steps | wall time |",
            "|---|---:|---|---:|---|---:|---:|---:|"]
    for path in paths:
        for r in json.loads(pathlib.Path(path).read_text())["results"]:
            result = "solved" if r["solved"] else "**not solved**"
            rows.append(f"| {r['problem']} | {r['T']} | {r['options'] or '-'} | {r['seed']} | "
                        f"{result}, {100 * r['test_error']:.1f}% wrong | {r['iterations']} | "
                        f"{r['cg_steps']:,} | {r['seconds']:.0f} s |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", nargs="?", choices=("table", "diagnose", "markdown"),
                        default="table")
    parser.add_argument("files", nargs="*", help="markdown: the table's JSON files")
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--memorization-T", dest="memorization_T", type=int, default=0,
                        help="also memorization at this T (0: not)")
    parser.add_argument("--no-structural", dest="no_structural", default="temporal_order",
                        help="problems also run with --mu 0 ('' for none)")
    parser.add_argument("--time-limit", dest="time_limit", type=float, default=840.0,
                        help="seconds a run (checked between iterations)")
    parser.add_argument("--max-iterations", dest="max_iterations", type=int, default=1000)
    parser.add_argument("--diagnose-problem", dest="diagnose_problem", default="temporal_order")
    parser.add_argument("--train-batches", dest="train_batches", type=int, default=10,
                        help="diagnose: training batches an iteration")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=100,
                        help="diagnose: sequences a batch")
    parser.add_argument("--options", default="",
                        help="more arrayhf train options for every run")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.quick:
        args.T, args.problems, args.seeds, args.time_limit = 20, "temporal_order", "0", 20.0
        args.no_structural, args.max_iterations = "", 3
        args.options = "--batch-size 50 --train-batches 4 --score-batches 2"
    if args.what == "markdown":
        print(markdown(args.files))
        return 0
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    threads.configure(2)
    results = diagnose(args) if args.what == "diagnose" else table(args)
    name = "long_range" + ("_diagnose" if args.what == "diagnose" else "")
    common.write_json(name + ("_quick" if args.quick else ""), args.json,
                      {"arguments": {k: v for k, v in vars(args).items()}, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
