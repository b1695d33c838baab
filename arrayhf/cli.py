"""The ``arrayhf`` command line (also ``python -m arrayhf``).

    arrayhf tour                 loss, gradient and Gauss-Newton product of a CURVES-shaped deep
                                 autoencoder on every installed backend, checked against each other
                                 and against central differences
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import arrayhf
from arrayhf import backend

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arrayhf", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
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
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
