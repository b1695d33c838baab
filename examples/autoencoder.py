"""Train HF10's CURVES deep autoencoder with Hessian-free optimization from a sparse random start.

    python examples/autoencoder.py --small                    # a 2-core CPU, under two minutes
    python examples/autoencoder.py --backend torch --device cuda   # the full setting, on a GPU

The data are CURVES-style images generated from a seed (arrayhf.data.curves): 28×28 pictures of
random smooth curves. The full net is HF10's 784-400-200-100-50-25-6-25-50-100-200-400-784
(--small: 784-256-64-6-64-256-784) with logistic units, a linear 6-unit code and logistic outputs
trained with cross-entropy; the metric HF10 reports is the squared reconstruction error per case,
Σ_pixels (y − x)², printed for the train and test sets before training and after every HF
iteration, beside two baselines: predicting the mean image, and PCA with as many components as the
code has units. Settings follow Martens' code: initial λ = 45 (1 with --small, whose 22 iterations
leave no time for λ to come down from 45), weight cost 2e-5, the diagonal preconditioner,
curvature on one of four chunks in turn, CG warm start 0.95.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

import arrayhf
from arrayhf import backend
from arrayhf.data.arrays import ArrayDataset
from arrayhf.data.curves import CURVES_HIDDEN, CURVES_SIZES, curve_images
from arrayhf.hf.optimizer import HF


def squared_error_per_case(model, params, dataset, batch_ids) -> float:
    """HF10's metric: Σ over pixels of (reconstruction − image)², averaged over cases."""
    total, cases = 0.0, 0
    for batch_id in batch_ids:
        batch = dataset.batch(batch_id)
        error = model.predict(params, batch.inputs) - batch.targets
        total += float(backend.to_numpy(error * error).sum())
        cases += batch.n_cases
    return total / cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true",
                        help="a 784-256-64-6-64-256-784 net, 2,000 training images, ≤ 60 CG steps "
                             "an iteration, 22 iterations")
    parser.add_argument("--backend", default=None, help="numpy (default), torch, cupy, jax, ...")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--damping", type=float, default=None,
                        help="initial λ (default: Martens' 45; 1 with --small)")
    parser.add_argument("--max-cg", type=int, default=None)
    parser.add_argument("--run-dir", default="runs/autoencoder")
    args = parser.parse_args(argv)

    if args.small:
        n_train, n_test, max_cg, iterations, damping = 2000, 500, 60, 22, 1.0
    else:
        n_train, n_test, max_cg, iterations, damping = 20000, 10000, 250, 200, 45.0
    damping = args.damping or damping
    iterations = args.iterations or iterations
    max_cg = args.max_cg or max_cg
    xp = backend.namespace(args.backend)
    if backend.name_of(xp) == "jax" and args.dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
    started = time.perf_counter()
    images = curve_images(n_train + n_test, seed=args.seed)
    on_backend = [backend.from_host(part, xp, dtype=args.dtype, device=args.device)
                  for part in (images[:n_train], images[n_train:])]
    dataset = ArrayDataset(on_backend[0], on_backend[0], on_backend[1], on_backend[1],
                           batch_size=n_train // 4, error=None)
    if args.small:
        sizes = [784, 256, 64, 6, 64, 256, 784]
        hidden = ["logistic", "logistic", "linear", "logistic", "logistic"]
    else:
        sizes, hidden = CURVES_SIZES, CURVES_HIDDEN
    model = arrayhf.FNN(sizes, hidden=hidden, output="logistic")
    print(f"{model.n_params} parameters; {n_train} training and {n_test} test images "
          f"({time.perf_counter() - started:.1f}s to generate); backend "
          f"{backend.name_of(xp)}, {args.dtype}")

    optimizer = HF(model, dataset, seed=args.seed, run_dir=args.run_dir, damping=damping,
                   weight_cost=2e-5, preconditioner=True, max_cg_iter=max_cg, save_every=5,
                   progress=False)
    if (pathlib.Path(args.run_dir) / "checkpoint.npz").exists():
        optimizer.resume()   # a rerun continues the run in --run-dir (same settings)
        print(f"resumed {args.run_dir} at iteration {optimizer.iteration}")
    train_ids, test_ids = dataset.train_batches, dataset.test_batches

    def report(label):
        train = squared_error_per_case(model, optimizer.params, dataset, train_ids)
        test = squared_error_per_case(model, optimizer.params, dataset, test_ids)
        print(f"{label:>12}  squared error per case: train {train:8.3f}  test {test:8.3f}"
              f"   ({time.perf_counter() - started:6.1f}s)", flush=True)
        return test

    mean_image = images[:n_train].mean(axis=0)
    _, _, components = np.linalg.svd(images[:n_train] - mean_image, full_matrices=False)
    centred_test = images[n_train:] - mean_image
    residual = centred_test - centred_test @ components[:6].T @ components[:6]
    print(f"baselines on the test set: the mean image {np.mean(np.sum(centred_test**2, 1)):.3f}, "
          f"PCA with 6 components {np.mean(np.sum(residual**2, 1)):.3f}")
    first = report("start")

    def after_iteration(record):
        report(f"iter {record['iteration']:3d}  λ {record['damping']:7.3g}  "
               f"CG {record['cg_steps']:3d}")
        return False

    optimizer.run(max_iterations=iterations, stop=after_iteration)
    last = report("final")
    print(f"test squared error per case: {first:.3f} at the start -> {last:.3f} after "
          f"{optimizer.iteration} HF iterations ({optimizer.cg_total} CG steps); logs and "
          f"checkpoint in {args.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
