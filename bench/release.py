"""The 2011 release's run on a pathological problem, built through arrayhf's API: what ``arrayhf
train --problem P --T T`` builds (``arrayhf.cli.runs.build``), without a run directory.

    from bench.release import release_run
    model, dataset, optimizer = release_run("addition", 20, batch_size=300, backend="torch")

The settings are the release demo's (``opt.r.demo``): ``hidden`` tanh units without biases (a
gated model always has its biases), the release's initialization from ``seed``, damping
λ₀ = 0.01 × outputs, structural damping μ = 0.03, ρ on the damped model, the "first step that
lowers the loss" line search, Martens' walk-back, CG up to 300 steps, the gradient on every
training batch, the curvature on batch 0, fresh training data every iteration.
"""

from __future__ import annotations

from typing import Any

import arrayhf
from arrayhf import backend, distributed

GATED = {"lstm": arrayhf.LSTM, "gru": arrayhf.GRU}


def release_model(name: str, dataset: Any, hidden: int) -> Any:
    """The net ``arrayhf train --model NAME --hidden H`` trains on ``dataset``'s problem."""
    if name in GATED:
        return GATED[name](dataset.n_inputs, hidden, dataset.n_outputs, output=dataset.output)
    if name == "mrnn":
        return arrayhf.MRNN(dataset.n_inputs, hidden, hidden, dataset.n_outputs, hidden="tanh",
                            output=dataset.output, biases=False)
    if name != "rnn":
        raise ValueError(f"expected model rnn, mrnn, lstm or gru, got {name!r}")
    return arrayhf.RNN(dataset.n_inputs, hidden, dataset.n_outputs, hidden="tanh",
                       output=dataset.output, biases=False)


def release_run(problem: str, T: int, *, model: str = "rnn", hidden: int = 100,
                batch_size: int = 1000, train_batches: int = 10, test_batches: int = 10,
                seed: int = 0, backend_name: str = "numpy", device: str | None = None,
                dtype: str = "float64", communicator: Any = None, **hf_settings: Any
                ) -> tuple[Any, Any, arrayhf.HF]:
    """(model, data set, HF optimizer) of the release's run, θ from ``seed``, on
    ``communicator``'s processes (default this one); ``hf_settings`` (``arrayhf.HFConfig``'s
    fields, e.g. ``max_cg_iter=20``) replace the release's."""
    xp = backend.namespace(backend_name, device=device)
    backend.enable_float64(xp, dtype)
    dataset = arrayhf.Pathological(problem, T, batch_size=batch_size,
                                   n_train_batches=train_batches, n_test_batches=test_batches,
                                   seed=seed, xp=xp, dtype=dtype,
                                   device=distributed.local_device(device))
    net = release_model(model, dataset, hidden)
    settings = {"damping": 0.01 * dataset.n_outputs, "structural_damping_mu": 0.03,
                "max_cg_iter": 300, "curvature_batches": (dataset.train_batches[0],),
                "rho_model": "damped", "line_search": "decrease", "backtracking": "martens",
                **hf_settings}
    optimizer = arrayhf.HF(net, dataset, seed=seed, progress=False, communicator=communicator,
                           **settings)
    return net, dataset, optimizer
