"""The backend tour: one model's loss, gradient and Gauss-Newton product on every installed
backend and dtype, checked against each other and against central differences (the README's
"Backends" section shows its output and the columns).

    python -m bench.tools.tour                    # HF10's CURVES autoencoder, every backend
    python -m bench.tools.tour --small --backends numpy,torch --dtypes float64
    python -m bench.tools.tour --device cuda      # the torch rows on a GPU
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import arrayhf
from arrayhf import backend
from bench import common

HEADER = (f"{'backend':<17}{'dtype':<9}{'loss':>14}{'|grad|':>12}{'vᵀGv':>14}"
          f"{'vs numpy':>10}{'check':>9}{'ms/grad':>9}{'ms/Gv':>8}")


def _dtypes(text: str) -> str:
    """The --dtypes list, checked while the command line is read (before any output)."""
    unknown = [dtype for dtype in text.split(",") if dtype not in ("float64", "float32")]
    if unknown:
        raise argparse.ArgumentTypeError(f"expected float64 and/or float32, got {unknown}")
    return text


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default=",".join(backend.BACKENDS),
                        help="comma-separated backends to try (default: all)")
    parser.add_argument("--dtypes", type=_dtypes, default="float64,float32",
                        help="comma-separated float dtypes: float64, float32 (default both)")
    parser.add_argument("--device", default=None, help="device for --device-backend, e.g. cuda")
    parser.add_argument("--device-backend", default="torch")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="a 64-input autoencoder")
    return parser.parse_args(argv)


def installed_backends(requested):
    """(name, namespace) of each requested backend that imports; the others are named, skipped."""
    names = []
    for name in dict.fromkeys(backend.backend_name(n) for n in requested):
        try:
            xp = backend.namespace(name)
        except backend.BackendError as error:
            print(f"{name} skipped: {error}")
            continue
        backend.enable_float64(xp, "float64")  # the float64 rows need JAX's 64-bit mode
        names.append((name, xp))
    return names


def measure(model, xp, dtype, device, images, direction, seed, repeats) -> dict:
    """One row's numbers: loss, gradient, G v (on the host, float64), the central-difference
    check (float64 only) and the median seconds of a gradient and of a G v."""
    params = model.init(seed, xp=xp, dtype=dtype, device=device)
    on_backend = backend.from_host(images, xp, dtype=dtype, device=device)
    batch = arrayhf.Batch(on_backend, on_backend)   # an autoencoder's targets are its inputs
    v = backend.from_host(direction, xp, dtype=dtype, device=device)
    cache = model.forward(params, batch.inputs)
    gradient = model.gradient(params, batch, cache)
    product = model.gauss_newton_product(params, batch, v, cache)
    row = {"loss": float(model.loss(params, batch, cache)),
           "gradient_norm": float(xp.linalg.vector_norm(gradient)),
           "curvature": float(xp.sum(v * product)),
           "product": backend.to_numpy(product).astype(np.float64), "check": "-"}
    if dtype == "float64":
        step, slope = 1e-5, float(xp.sum(v * gradient))
        central = (float(model.loss(params + step * v, batch))
                   - float(model.loss(params - step * v, batch))) / (2 * step)
        row["check"] = f"{abs(slope - central) / abs(slope):.0e}"
    times = common.interleaved_medians(
        {"gradient": lambda: model.gradient(params, batch, cache),
         "Gv": lambda: model.gauss_newton_product(params, batch, v, cache)},
        repeats=repeats, warmup=1)
    row["grad_ms"], row["gv_ms"] = (1e3 * times[name]["median"] for name in ("gradient", "Gv"))
    return row


def main(argv=None) -> int:
    args = parse(argv)
    sizes, hidden = common.autoencoder(args.small)
    model = arrayhf.FNN(sizes, hidden=hidden, output="logistic")
    rng = np.random.default_rng(args.seed)
    images = rng.uniform(size=(args.batch, sizes[0]))
    direction = rng.standard_normal(model.n_params)
    print(f"model: {model}\n       {model.n_params} parameters, sparse init (seed {args.seed}), "
          f"batch of {args.batch} random images, loss = cross-entropy per case")
    print("G v = Jᵀ H_L J v by R-forward + backprop over a cached forward pass; the check column "
          "is |vᵀ∇L − central difference| / |vᵀ∇L| (step 1e-5, float64 rows)")
    backends = installed_backends(args.backends.split(","))
    print(f"\n{HEADER}\n{'-' * len(HEADER)}")
    reference = {}
    for name, xp in backends:
        device = backend.resolve_device(xp, args.device if name == args.device_backend else None)
        for dtype in args.dtypes.split(","):
            row = measure(model, xp, dtype, device, images, direction, args.seed, args.repeats)
            first = reference.setdefault(dtype, row["product"])
            agreement = np.linalg.norm(row["product"] - first) / np.linalg.norm(first)
            print(f"{name:<17}{dtype:<9}{row['loss']:>14.8f}{row['gradient_norm']:>12.6f}"
                  f"{row['curvature']:>14.6f}{agreement:>10.0e}{row['check']:>9}"
                  f"{row['grad_ms']:>9.1f}{row['gv_ms']:>8.1f}")
    print("\n'vs numpy': relative difference of G v from the first backend's, same dtype: the "
          "same seed gives the same parameters and data everywhere.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
