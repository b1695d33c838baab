"""What tests/test_distributed.py runs on each of several processes (and, for its one-process
references, in the test process itself): the same functions, on a communicator.

    python tests/distributed_worker.py CASE OUT_DIR     # under the environment torchrun sets

writes OUT_DIR/CASE-RANK.npz (arrays) and OUT_DIR/CASE-RANK.json (records).
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import arrayhf  # noqa: E402
from arrayhf import backend, distributed  # noqa: E402
from arrayhf.cli import runs  # noqa: E402
from arrayhf.data.text import Text  # noqa: E402
from arrayhf.hf.optimizer import HF  # noqa: E402

from datasets import blobs  # noqa: E402

# the RNN on xor at T = 20 of the measured floor, as the command line builds it
XOR = dict(problem="xor", T=20, hidden=20, batch_size=100, train_batches=2, test_batches=1,
           max_cg=100)
FNN_ITERATIONS, XOR_ITERATIONS, TEXT_ITERATIONS = 5, 3, 2


def fnn_optimizer(backend_name, communicator):
    xp = backend.namespace(backend_name)
    backend.enable_float64(xp, "float64")
    model = arrayhf.FNN([5, 16, 3], hidden="tanh", output="softmax")
    return HF(model, blobs(xp), seed=0, damping=1.0, max_cg_iter=50, progress=False,
              communicator=communicator)


def xor_optimizer(backend_name, communicator):
    settings = runs.RunSettings(**XOR, backend=backend_name)
    return runs.build(settings, None, progress=False, communicator=communicator)[2]


def text_optimizer(backend_name, communicator):
    """A character-level MRNN (integer ids as inputs, warm-up steps masked), as train-text."""
    xp = backend.namespace(backend_name)
    data = Text("the cat sat on the mat. " * 40, T=12, batch_size=10, n_train_batches=2,
                n_test_batches=1, warmup=3, xp=xp)
    model = arrayhf.MRNN(data.n_inputs, 8, 8, data.n_outputs, output="softmax")
    return HF(model, data, seed=0, damping=1.0, structural_damping_mu=0.1, max_cg_iter=20,
              progress=False, communicator=communicator)


def products(optimizer) -> dict:
    """f, g, one G v and one (G + λμS) v (recurrent models) of the whole batches at θ₀."""
    objective, params = optimizer.batch_objective, optimizer.params
    xp = optimizer.xp
    value, gradient = objective.value_and_gradient(params, optimizer.dataset.train_batches)
    batch = objective.batch(optimizer.dataset.train_batches[0])
    cache = optimizer.model.forward(params, batch.inputs)
    v = backend.normal(1, optimizer.model.n_params, xp, dtype=params.dtype)
    results = {"f": np.array(value), "g": backend.to_numpy(gradient),
               "Gv": backend.to_numpy(objective.curvature_operator(params, batch, cache, 0.0)(v))}
    if hasattr(optimizer.model, "structural_damping_product"):
        damped = objective.curvature_operator(params, batch, cache, 0.3)(v)
        results["GSv"] = backend.to_numpy(damped)
    return results


def trajectory(optimizer, iterations) -> list[dict]:
    return [optimizer.step() for _ in range(iterations)]


MODELS = {"fnn": (fnn_optimizer, FNN_ITERATIONS), "xor": (xor_optimizer, XOR_ITERATIONS),
          "text": (text_optimizer, TEXT_ITERATIONS)}


def numerics(communicator, backends=("numpy", "torch"), models=("fnn", "xor", "text"),
             iterations=None) -> tuple[dict, dict]:
    """(arrays, records): products at θ₀ and trajectories (``iterations`` HF iterations, default
    each model's), of the FNN, the RNN on xor and the MRNN on a text, on each backend."""
    arrays, records = {}, {}
    for name in backends:
        for model in models:
            build, default_iterations = MODELS[model]
            optimizer = build(name, communicator)
            for key, value in products(optimizer).items():   # at θ₀, changing nothing
                arrays[f"{name}-{model}-{key}"] = value
            records[f"{name}-{model}"] = trajectory(optimizer, iterations or default_iterations)
    return arrays, records


# JAX's copy path: the FNN only, 1 iteration (eager JAX is slow)
CASES = {"numerics": numerics,
         "jax": lambda communicator: numerics(communicator, backends=("jax",), models=("fnn",),
                                              iterations=1)}


def main(case: str, out: pathlib.Path) -> None:
    communicator = distributed.from_environment()
    arrays, records = CASES[case](communicator)
    np.savez(out / f"{case}-{communicator.rank}.npz", **arrays)
    (out / f"{case}-{communicator.rank}.json").write_text(json.dumps(records))
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], pathlib.Path(sys.argv[2]))
