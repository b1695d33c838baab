"""The CG loop's overhead, for this tree against a baseline tree (an older checkout) in the same
run: host syncs per CG step and argument checks per G v (torch CPU), and the time of one small HF
iteration, one G v and one gradient (numpy and torch); bench/README.md, "The CG loop's overhead",
says what is counted and timed.

    git worktree add /tmp/baseline ce4df77          # any older commit
    python -m bench.micro.hot_path --baseline /tmp/baseline
    python -m bench.micro.hot_path --quick          # this tree only, small counts

Each tree runs in its own Python processes (its own ``arrayhf`` first on ``sys.path``),
alternating process by process.
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

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]   # this tree: its bench/ serves every tree's worker


def _problems(xp, arrayhf):
    """(name, model, data set) of the two timed problems, built with the public API only."""
    import numpy as np

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 5)) * 2.0
    labels = rng.integers(0, 3, 360)
    inputs = centres[labels] + rng.standard_normal((360, 5))
    targets = np.eye(3)[labels]
    to = lambda a: arrayhf.backend.from_host(a, xp)  # noqa: E731
    blobs = arrayhf.ArrayDataset(to(inputs[:300]), to(targets[:300]), to(inputs[300:]),
                                 to(targets[300:]), batch_size=300)
    addition = arrayhf.Pathological("addition", 20, batch_size=100, n_train_batches=1,
                                    n_test_batches=1, xp=xp)
    return [("FNN 5-32-3", arrayhf.FNN([5, 32, 3], hidden="tanh", output="softmax"), blobs),
            ("RNN addition T=20", arrayhf.RNN(2, 30, 1, biases=False), addition)]


def _optimizer(arrayhf, model, dataset, max_cg):
    return arrayhf.HF(model, dataset, damping=1.0, max_cg_iter=max_cg, cg_epsilon=0.0,
                      progress=False, test_every=0)


def _count(arrayhf, max_cg: int) -> dict:
    """Host syncs per CG step and namespace_of calls per product, on torch CPU."""
    from bench import common

    results = {}
    xp = arrayhf.backend.namespace("torch")
    with common.counting_cg() as counts:
        counts.update(checks=0, products=0)

        def counting_namespace(namespace_of):
            def counted(*arrays):
                counts["checks"] += counts["active"]
                return namespace_of(*arrays)
            return counted

        with common.replaced_in_arrayhf("namespace_of", counting_namespace):
            for name, model, dataset in _problems(xp, arrayhf):
                original_r_forward = type(model)._r_forward

                def counting_r_forward(self, *args, _original=original_r_forward, **kwargs):
                    counts["products"] += counts["active"]
                    return _original(self, *args, **kwargs)

                type(model)._r_forward = counting_r_forward
                counts.update(syncs=0, checks=0, products=0, steps=0)
                _optimizer(arrayhf, model, dataset, max_cg).run(max_iterations=2)
                type(model)._r_forward = original_r_forward
                results[name] = {
                    "syncs per CG step": counts["syncs"] / counts["steps"],
                    "namespace_of per G v": counts["checks"] / max(counts["products"], 1),
                    "CG steps": counts["steps"]}
    return results


def _time(arrayhf, backend_name: str, repeats: int, max_cg: int) -> dict:
    """Median seconds of one HF iteration of each problem on one backend."""
    xp = arrayhf.backend.namespace(backend_name)
    results = {}
    for name, model, dataset in _problems(xp, arrayhf):
        optimizer = _optimizer(arrayhf, model, dataset, max_cg)
        optimizer.step()                                   # warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            optimizer.step()
            times.append(time.perf_counter() - started)
        results[name] = statistics.median(times)
    return results


def _products(arrayhf, backend_name: str, repeats: int) -> dict:
    """Median seconds of one G v (cached forward pass) and one gradient of the release's RNN
    (100 tanh units) on addition at T = 100 with 500 sequences."""
    import numpy as np

    xp = arrayhf.backend.namespace(backend_name)
    data = arrayhf.Pathological("addition", 100, batch_size=500, n_train_batches=1,
                                n_test_batches=1, xp=xp)
    model = arrayhf.RNN(2, 100, 1, biases=False)
    params = model.init(0, xp=xp)
    batch = data.batch(data.train_batches[0])
    cache = model.forward(params, batch.inputs)
    v = arrayhf.backend.from_host(np.random.default_rng(0).standard_normal(model.n_params), xp)
    timed = {"RNN T=100 B=500 G v": lambda: model.gauss_newton_product(params, batch, v, cache),
             "RNN T=100 B=500 gradient": lambda: model.gradient(params, batch)}
    results = {}
    for name, function in timed.items():
        float(function()[0])                               # warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            float(function()[0])
            times.append(time.perf_counter() - started)
        results[name] = statistics.median(times)
    return results


def worker(tree: str, repeats: int, max_cg: int) -> None:
    """Measure the ``arrayhf`` of ``tree`` and print the results as one JSON line."""
    sys.path.insert(0, str(ROOT))        # this tree's bench.common, which imports no arrayhf
    from bench import common  # noqa: F401
    sys.path.remove(str(ROOT))
    sys.path.insert(0, tree)
    import arrayhf

    assert pathlib.Path(arrayhf.__file__).resolve().is_relative_to(pathlib.Path(tree).resolve())
    output = {"counts": _count(arrayhf, max_cg),
              "seconds": {b: {**_time(arrayhf, b, repeats, max_cg),
                              **_products(arrayhf, b, max(repeats // 3, 3))}
                          for b in ("numpy", "torch")}}
    print(json.dumps(output))


def _run_worker(tree, repeats, max_cg) -> dict:
    command = [sys.executable, __file__, "--worker", str(tree), "--repeats", str(repeats),
               "--max-cg", str(max_cg)]
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    finished = subprocess.run(command, capture_output=True, text=True, check=True,
                              env=environment, cwd=HERE)
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=None, help="an older checkout to compare with")
    parser.add_argument("--repeats", type=int, default=15, help="timed HF iterations (median)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per tree, alternating")
    parser.add_argument("--max-cg", type=int, default=50, help="CG steps per HF iteration")
    parser.add_argument("--quick", action="store_true", help="small counts, this tree only")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.repeats, args.max_cg)
        return
    if args.quick:
        args.repeats, args.rounds, args.max_cg, args.baseline = 2, 1, 10, None
    trees = {"this tree": ROOT}
    if args.baseline:
        trees = {"baseline": pathlib.Path(args.baseline).resolve(), **trees}
    runs = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            runs[name].append(_run_worker(tree, args.repeats, args.max_cg))
    print(f"CG run to {args.max_cg} steps; torch CPU for the counts; medians over "
          f"{args.rounds} processes x {args.repeats} HF iterations for the times")
    for name, results in runs.items():
        print(f"\n{name} ({trees[name]})")
        for problem, counted in results[0]["counts"].items():
            print(f"  {problem:20s} host syncs per CG step {counted['syncs per CG step']:.2f}, "
                  f"namespace_of per G v {counted['namespace_of per G v']:.1f}")
        for backend_name in ("numpy", "torch"):
            for problem in results[0]["seconds"][backend_name]:
                seconds = statistics.median(r["seconds"][backend_name][problem] for r in results)
                label = problem if " B=" in problem else f"{problem} HF iteration"
                line = f"  {backend_name:5s} {label:34s} {seconds * 1e3:8.2f} ms"
                if name != "baseline" and "baseline" in runs:
                    base = statistics.median(r["seconds"][backend_name][problem]
                                             for r in runs["baseline"])
                    line += f"   {seconds / base:.2f}x the baseline"
                print(line)


if __name__ == "__main__":
    main()
