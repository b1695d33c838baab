"""Train on one array stack, predict on the others: the portable checkpoint round trip.

    python examples/port_predictions.py            # trains on torch (float32), predicts everywhere
    python examples/port_predictions.py --keep runs/port     # and keeps the run directory

Needs torch (pip install ".[torch]"); the run directory is a temporary one, removed at the end,
unless --keep names one.

A checkpoint is θ in an .npz file (read with allow_pickle=False: loading never runs code) plus a
JSON description of the model, so `arrayhf.load(run_dir, backend=...)` rebuilds the model and its
parameters on any installed backend. The script trains a small classifier with HF on torch, then
loads the checkpoint on numpy, array-api-strict and jax (those installed) and prints how far each
stack's predictions are from torch's; `arrayhf.backend.to` moves arrays between stacks (without a
copy where DLPack allows it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import numpy as np

import arrayhf
from arrayhf import backend


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", metavar="RUN_DIR",
                        help="train into this run directory and keep it (default: a temporary "
                             "one, removed at the end)")
    args = parser.parse_args(argv)
    try:
        backend.namespace("torch")
    except backend.BackendError as error:
        print(f"port_predictions.py trains on torch: {error}", file=sys.stderr)
        return 2
    if args.keep:
        return port(args.keep)
    with tempfile.TemporaryDirectory(prefix="arrayhf-port-") as run_dir:
        return port(run_dir)


def port(run_dir: str) -> int:
    """Train on torch into run_dir, then load and predict on every installed backend."""
    trainer = backend.namespace("torch")
    rng = np.random.default_rng(0)
    centers = 2.0 * rng.standard_normal((3, 5))

    def blobs(n):
        labels = rng.integers(0, 3, n)
        return centers[labels] + rng.standard_normal((n, 5)), np.eye(3)[labels]

    train, test = blobs(600), blobs(200)
    as_torch = [backend.from_host(a, trainer, dtype="float32") for a in (*train, *test)]
    dataset = arrayhf.ArrayDataset(*as_torch, batch_size=200)
    model = arrayhf.FNN([5, 16, 3], hidden="tanh", output="softmax")
    optimizer = arrayhf.HF(model, dataset, damping=1.0, max_cg_iter=50, run_dir=run_dir,
                           progress=False)
    optimizer.run(max_iterations=5)
    reference = backend.to_numpy(model.predict(optimizer.params, as_torch[2]))
    print(f"trained {model} on torch float32 for 5 HF iterations (test error "
          f"{100 * optimizer.history[-1]['test_error']:.1f}%); checkpoint in {run_dir}")
    print(f"{'backend':<18}{'dtype':<10}{'max |Δ prediction|':>20}{'relative':>12}")
    for name in ("torch", "numpy", "array_api_strict", "jax"):
        try:
            loaded_model, params = arrayhf.load(run_dir, backend=name)
        except backend.BackendError as error:
            print(f"{name:<18}skipped: {error}")
            continue
        xp = backend.namespace(name)
        inputs = backend.from_host(test[0], xp, dtype="float32")
        predictions = backend.to_numpy(loaded_model.predict(params, inputs))
        difference = np.abs(predictions - reference).max()
        relative = np.linalg.norm(predictions - reference) / np.linalg.norm(reference)
        print(f"{name:<18}{str(params.dtype).split('.')[-1]:<10}{difference:>20.2e}"
              f"{relative:>12.1e}")
    on_numpy = backend.to(optimizer.params, "numpy")   # DLPack: no copy on the CPU
    print(f"backend.to(torch params, 'numpy'): shares memory with the torch tensor: "
          f"{np.shares_memory(on_numpy, optimizer.params.numpy())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
