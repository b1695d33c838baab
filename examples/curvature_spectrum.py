"""The top of the Gauss-Newton spectrum of a trained model, through scipy's eigsh.

    python examples/curvature_spectrum.py [--backend torch]

Trains a small tanh classifier (5-16-3, softmax) with a few HF iterations, then wraps its
Gauss-Newton matrix G as a scipy LinearOperator (``arrayhf.curvature.linear_operator``: float64
host vectors in and out, whatever backend the model runs on) and asks ``eigsh`` for the largest
eigenvalues. The model is tiny on purpose: G (147 × 147) can also be built densely, column by
column, and its exact eigenvalues printed beside eigsh's.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import arrayhf
from arrayhf import backend
from arrayhf.data.arrays import ArrayDataset
from arrayhf.hf.optimizer import HF


def blobs(xp, rng, n):
    centers = np.array([[2.0, 0, 0, 1, 0], [0, 2.0, 0, 0, -1], [0, 0, 2.0, -1, 0]])
    labels = rng.integers(0, 3, n)
    inputs = centers[labels] + rng.standard_normal((n, 5))
    return backend.from_host(inputs, xp), backend.from_host(np.eye(3)[labels], xp)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default=None)
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        import scipy.sparse.linalg
    except ImportError:
        print("curvature_spectrum.py needs scipy: pip install \".[analysis]\" (from the "
              "checkout) or pip install scipy", file=sys.stderr)
        return 2
    xp = backend.namespace(args.backend)
    if backend.name_of(xp) == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    dataset = ArrayDataset(*blobs(xp, rng, 600), *blobs(xp, rng, 300), batch_size=300)
    model = arrayhf.FNN([5, 16, 3], hidden="tanh", output="softmax")
    optimizer = HF(model, dataset, damping=1.0, max_cg_iter=50, progress=False)
    optimizer.run(max_iterations=6)
    print(f"trained {model} for 6 HF iterations on {backend.name_of(xp)}: test loss "
          f"{optimizer.history[-1]['test_loss']:.4f}")

    batch = dataset.batch(dataset.train_batches[0])
    operator = arrayhf.curvature.linear_operator(model, optimizer.params, batch)
    top = np.sort(scipy.sparse.linalg.eigsh(operator, k=args.top, which="LA",
                                            return_eigenvectors=False))[::-1]
    dense = operator @ np.eye(model.n_params)
    exact = np.linalg.eigvalsh(0.5 * (dense + dense.T))[::-1]
    print(f"Gauss-Newton matrix on {batch.n_cases} cases, {model.n_params} parameters")
    print(f"{'rank':>4} {'eigsh':>14} {'dense':>14} {'rel. diff':>10}")
    for rank, (found, expected) in enumerate(zip(top, exact), start=1):
        difference = abs(found - expected) / expected
        print(f"{rank:>4} {found:>14.8f} {expected:>14.8f} {difference:>10.1e}")
    asymmetry = np.linalg.norm(dense - dense.T) / np.linalg.norm(dense)
    print(f"smallest dense eigenvalue {exact[-1]:.2e} (G is positive semi-definite); "
          f"asymmetry |G − Gᵀ| / |G| = {asymmetry:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
