"""The ``arrayhf`` command line (also ``python -m arrayhf``).

    arrayhf demo                 the 2011 release's demo (multiplication) at a T a laptop solves
    arrayhf demo --T 200 --backend torch --device cuda     the release's experiment itself
    arrayhf train --problem NAME --T 30 ...                any pathological problem
    arrayhf resume RUN_DIR       continue a run from its last checkpoint
    arrayhf plot RUN_DIR         training curves and one test sequence's hidden states, as PNGs
    arrayhf tour                 loss, gradient and G v of a CURVES-shaped autoencoder on every
                                 installed backend, checked against each other
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import statistics
import sys
import time

import numpy as np

import arrayhf
from arrayhf import backend, runs

# HF10's CURVES autoencoder: logistic hidden layers, a linear 6-unit code, logistic output.
CURVES_SIZES = [784, 400, 200, 100, 50, 25, 6, 25, 50, 100, 200, 400, 784]
CURVES_HIDDEN = ["logistic"] * 5 + ["linear"] + ["logistic"] * 5


def _installed_backends(requested):
    names = []
    for name in dict.fromkeys(backend.backend_name(n) for n in requested):
        try:
            xp = backend.namespace(name)
        except backend.BackendError as error:
            print(f"{name} skipped: {error}")
            continue
        if name == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)  # float64 rows need JAX's 64-bit mode
        names.append((name, xp))
    return names


def _median_seconds(repeats, function, *args):
    function(*args)  # warm-up (JIT caches, allocators)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        backend.to_numpy(result)  # wait for asynchronous backends
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tour(args) -> int:
    sizes = [64, 32, 16, 6, 16, 32, 64] if args.small else CURVES_SIZES
    hidden = (["logistic"] * 2 + ["linear"] + ["logistic"] * 2) if args.small else CURVES_HIDDEN
    model = arrayhf.FNN(sizes, hidden=hidden, output="logistic")
    rng = np.random.default_rng(args.seed)
    images = rng.uniform(size=(args.batch, sizes[0]))  # an autoencoder's targets are its inputs
    direction = rng.standard_normal(model.n_params)
    print(f"model: {model}\n       {model.n_params} parameters, sparse init (seed {args.seed}), "
          f"batch of {args.batch} random images, loss = cross-entropy per case")
    print("G v = Jᵀ H_L J v by R-forward + backprop over a cached forward pass; the check column "
          "is |vᵀ∇L − central difference| / |vᵀ∇L| (step 1e-5, float64 rows)")
    backends = _installed_backends(args.backends.split(","))
    print()
    header = (f"{'backend':<17}{'dtype':<9}{'loss':>14}{'|grad|':>12}{'vᵀGv':>14}"
              f"{'vs numpy':>10}{'check':>9}{'ms/grad':>9}{'ms/Gv':>8}")
    print(header)
    print("-" * len(header))
    reference = {}
    for name, xp in backends:
        for dtype in args.dtypes.split(","):
            device = backend.resolve_device(xp, args.device if name == args.device_backend
                                            else None)
            params = model.init(args.seed, xp=xp, dtype=dtype, device=device)
            batch = arrayhf.Batch(backend.from_host(images, xp, dtype=dtype, device=device),
                                  backend.from_host(images, xp, dtype=dtype, device=device))
            v = backend.from_host(direction, xp, dtype=dtype, device=device)
            cache = model.forward(params, batch.inputs)
            loss = float(model.loss(params, batch, cache))
            gradient = model.gradient(params, batch, cache)
            product = model.gauss_newton_product(params, batch, v, cache)
            curvature = float(xp.sum(v * product))
            host_product = backend.to_numpy(product).astype(np.float64)
            key = dtype
            if key not in reference:
                reference[key] = host_product
            agreement = (np.linalg.norm(host_product - reference[key])
                         / np.linalg.norm(reference[key]))
            check = "-"
            if dtype == "float64":
                step = 1e-5
                slope = float(xp.sum(v * gradient))
                central = (float(model.loss(params + step * v, batch))
                           - float(model.loss(params - step * v, batch))) / (2 * step)
                check = f"{abs(slope - central) / abs(slope):.0e}"
            grad_ms = 1e3 * _median_seconds(args.repeats, model.gradient, params, batch, cache)
            gv_ms = 1e3 * _median_seconds(args.repeats, model.gauss_newton_product,
                                          params, batch, v, cache)
            gradient_norm = float(xp.linalg.vector_norm(gradient))
            print(f"{name:<17}{dtype:<9}{loss:>14.8f}{gradient_norm:>12.6f}{curvature:>14.6f}"
                  f"{agreement:>10.0e}{check:>9}{grad_ms:>9.1f}{gv_ms:>8.1f}")
    print("\n'vs numpy': relative difference of G v from the first backend's, same dtype: the "
          "same seed gives the same parameters and data everywhere.")
    return 0


# -- pathological problems -------------------------------------------------------------------
# The demo on a laptop: T = 20 and 300 sequences a batch (10 batches for the gradient, fresh every
# iteration; curvature on one), stopped at MS11's success criterion (< 1% of test sequences wrong).
# Measured: solved at HF iteration 68 in about 3 minutes on a 2-core CPU (README).
DEMO_CPU = {"T": 20, "batch_size": 300, "train_batches": 10, "test_batches": 10,
            "threshold": 0.01}


def _verdict(settings, optimizer, seconds) -> str:
    last = optimizer.history[-1] if optimizer.history else None
    where = f"{settings.problem}, T = {settings.T}"
    if last is None or last["test_error"] is None:
        return f"NOT SOLVED: {where}: no iteration ran"
    error = 100 * last["test_error"]
    cost = (f"HF iteration {optimizer.iteration}, {optimizer.cg_total} CG steps, "
            f"{seconds:.0f} s on {settings.backend}")
    if last["test_error"] < settings.threshold:
        return (f"SOLVED: {where} at {cost}: {error:.2f}% of test sequences wrong "
                f"(< {100 * settings.threshold:g}%)")
    return (f"NOT SOLVED: {where} after {cost}: {error:.2f}% of test sequences wrong "
            f"(needs < {100 * settings.threshold:g}%)")


def _train(settings: runs.RunSettings, run_dir, *, resume: bool) -> int:
    run_dir = pathlib.Path(run_dir)
    if not resume and (run_dir / "checkpoint.npz").exists():
        print(f"{run_dir} already holds a run: continue it with 'arrayhf resume {run_dir}', or "
              f"choose another --run-dir", file=sys.stderr)
        return 2
    _, dataset, optimizer = runs.build(settings, run_dir)
    if resume:
        optimizer.resume()
        if optimizer.history and optimizer.history[-1]["test_error"] is not None and \
                optimizer.history[-1]["test_error"] < settings.threshold:
            print(_verdict(settings, optimizer, 0.0))
            return 0
    else:
        settings.save(run_dir)
    print(f"{settings.problem}: T = {settings.T}, {settings.hidden} hidden units, "
          f"{len(dataset.train_batches)}×{settings.batch_size} training sequences (fresh each "
          f"iteration), curvature on {settings.batch_size}, backend {settings.backend} "
          f"{settings.dtype}; stop when test error < {100 * settings.threshold:g}%")
    started = time.perf_counter()

    def solved(record):
        return record["test_error"] is not None and record["test_error"] < settings.threshold

    try:
        optimizer.run(max_iterations=settings.iterations, stop=solved)
    except KeyboardInterrupt:
        print(f"\ninterrupted; the checkpoint of iteration {optimizer.iteration} is in "
              f"{run_dir}: 'arrayhf resume {run_dir}' continues", file=sys.stderr)
        return 130
    print(_verdict(settings, optimizer, time.perf_counter() - started))
    print(f"logs: {run_dir}/results, {run_dir}/metrics.jsonl; pictures: arrayhf plot {run_dir}")
    return 0


def _settings_from(args, defaults: dict) -> runs.RunSettings:
    values = dict(defaults)
    for field in dataclasses.fields(runs.RunSettings):
        value = getattr(args, field.name, None)
        if value is not None:
            values[field.name] = value
    return runs.RunSettings(**values)


def demo(args) -> int:
    on_cpu = not (args.device and args.device != "cpu") and (args.T is None or args.T < 100)
    defaults = {"problem": "multiplication", **(DEMO_CPU if on_cpu else {})}
    settings = _settings_from(args, defaults)
    return _train(settings, args.run_dir or "runs/demo", resume=False)


def train(args) -> int:
    settings = _settings_from(args, {})
    return _train(settings, args.run_dir or f"runs/{settings.problem}-T{settings.T}",
                  resume=False)


def resume(args) -> int:
    settings = runs.RunSettings.load(args.run_dir)
    if args.iterations is not None:
        settings.iterations = args.iterations
    return _train(settings, args.run_dir, resume=True)


def plot(args) -> int:
    from arrayhf import checkpoint, plots
    from arrayhf.hf.runlog import RunLog

    run_dir = pathlib.Path(args.run_dir)
    settings = runs.RunSettings.load(run_dir)
    settings.backend, settings.device = args.backend, None   # pictures are drawn on the host
    records = RunLog(run_dir, echo=False).read_metrics()
    if not records:
        print(f"{run_dir}/metrics.jsonl has no iterations yet", file=sys.stderr)
        return 2
    title = f"{settings.problem}, T = {settings.T}, {settings.hidden} hidden units"
    plots.plot_curves(records, run_dir / "curves.png", title=title)
    model, dataset, _ = runs.build(settings, None, progress=False)
    arrays, meta, _ = checkpoint.load_latest(run_dir / "checkpoint.npz")
    xp = runs.xp_for(settings)
    params = backend.from_host(arrays["params"], xp, dtype=settings.dtype)
    batch = dataset.batch(dataset.test_batches[0])
    cache = model.forward(params, batch.inputs)
    sequence = args.sequence
    mask = backend.to_numpy(batch.mask)[:, sequence]
    length = int(np.nonzero(mask)[0].max()) + 1 if mask.any() else mask.shape[0]
    pick = [backend.to_numpy(a)[:length, sequence] for a in
            (batch.inputs, cache.hiddens, cache.predictions, batch.targets)]
    plots.plot_sequence(*pick, mask[:length], run_dir / "hidden_states.png",
                        title=f"{title}: test sequence {sequence} at iteration {meta['iteration']}")
    print(f"wrote {run_dir / 'curves.png'} and {run_dir / 'hidden_states.png'}")
    return 0


def _add_run_options(parser, *, for_demo: bool) -> None:
    from arrayhf.data.pathological import PROBLEMS

    if not for_demo:
        parser.add_argument("--problem", required=True, choices=PROBLEMS)
    parser.add_argument("--T", type=int, default=None if for_demo else 30,
                        help="sequence length (the release: 200)")
    parser.add_argument("--hidden", type=int, help="hidden units (default 100)")
    parser.add_argument("--batch-size", dest="batch_size", type=int,
                        help="sequences per batch (default 1000; the CPU demo 100)")
    parser.add_argument("--train-batches", dest="train_batches", type=int)
    parser.add_argument("--test-batches", dest="test_batches", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--iterations", type=int, help="most HF iterations (default 1000)")
    parser.add_argument("--backend", help="numpy (default), torch, cupy, jax, array_api_strict")
    parser.add_argument("--device", help="e.g. cuda")
    parser.add_argument("--dtype", choices=("float32", "float64"))
    parser.add_argument("--damping", type=float, help="initial λ (default 0.01 × outputs)")
    parser.add_argument("--mu", type=float, help="structural damping μ (default 0.03)")
    parser.add_argument("--max-cg", dest="max_cg", type=int, help="most CG steps (default 300)")
    parser.add_argument("--threshold", type=float,
                        help="solved below this test error (default 0.001; MS11: 0.01)")
    parser.add_argument("--run-dir", dest="run_dir")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arrayhf", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 1)[1])
    commands = parser.add_subparsers(dest="command", required=True)

    demo_parser = commands.add_parser(
        "demo", help="HF on the multiplication problem, as the 2011 release's demo")
    _add_run_options(demo_parser, for_demo=True)
    demo_parser.set_defaults(run=demo)

    train_parser = commands.add_parser("train", help="HF on any pathological problem")
    _add_run_options(train_parser, for_demo=False)
    train_parser.set_defaults(run=train)

    resume_parser = commands.add_parser("resume", help="continue a run from its checkpoint")
    resume_parser.add_argument("run_dir")
    resume_parser.add_argument("--iterations", type=int, help="new limit on HF iterations")
    resume_parser.set_defaults(run=resume)

    plot_parser = commands.add_parser("plot", help="curves.png and hidden_states.png of a run")
    plot_parser.add_argument("run_dir")
    plot_parser.add_argument("--sequence", type=int, default=0, help="test sequence to draw")
    plot_parser.add_argument("--backend", default="numpy")
    plot_parser.set_defaults(run=plot)

    tour_parser = commands.add_parser(
        "tour", help="loss, gradient and Gauss-Newton product on every installed backend")
    tour_parser.add_argument("--backends", default=",".join(backend.BACKENDS),
                             help="comma-separated backends to try (default: all)")
    tour_parser.add_argument("--dtypes", default="float64,float32")
    tour_parser.add_argument("--device", default=None,
                             help="device for --device-backend, e.g. cuda")
    tour_parser.add_argument("--device-backend", default="torch")
    tour_parser.add_argument("--batch", type=int, default=200)
    tour_parser.add_argument("--seed", type=int, default=0)
    tour_parser.add_argument("--repeats", type=int, default=5)
    tour_parser.add_argument("--small", action="store_true", help="a 64-input autoencoder")
    tour_parser.set_defaults(run=tour)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (backend.BackendError, ValueError, FileNotFoundError) as error:
        if os.environ.get("ARRAYHF_DEBUG"):
            raise
        print(f"arrayhf {args.command}: {error} (ARRAYHF_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
