"""Time to solve against the peer package hessianfree 0.4.0 with a mask-aware curvature, on the
HF run's sequences from its θ₀: ``python -m bench.experiments.end_to_end --peer`` runs it beside
every numpy HF run (bench/README.md, "Where an iteration's time goes, and the time to solve
against hessianfree", says what is timed).
"""

from __future__ import annotations

import time

import hessianfree as hf
import numpy as np
from hessianfree.loss_funcs import output_loss

from arrayhf import backend
from bench.micro import peer


class MaskedSquaredError(hf.loss_funcs.SquaredError):
    """hessianfree's squared error with the loss Hessian zero at unscored (NaN) targets."""

    @output_loss
    def d2_loss(self, output, targets):
        return np.where(np.isnan(targets), 0.0, 1.0).astype(output.dtype)


def batch_major(batch) -> tuple[np.ndarray, np.ndarray]:
    """(inputs [B, T, n], targets [B, T, k] with NaN where unscored) of a time-major batch."""
    inputs = backend.to_numpy(batch.inputs).transpose(1, 0, 2)
    targets = backend.to_numpy(batch.targets).copy()
    if batch.mask is not None:
        targets[backend.to_numpy(batch.mask) == 0] = np.nan
    return np.ascontiguousarray(inputs), np.ascontiguousarray(targets.transpose(1, 0, 2))


def peer_net(model, params, loss) -> hf.RNNet:
    """hessianfree's RNN computing arrayhf's function at θ (no biases: they start at zero)."""
    blocks = {name: backend.to_numpy(value)
              for name, value in model.layout.unflatten(params).items()}
    blocks.setdefault("b_h", np.zeros(model.n_hidden))
    blocks.setdefault("b_y", np.zeros(blocks["W_hy"].shape[1]))
    mapping = peer.Mapping(model, blocks)
    return hf.RNNet(shape=[peer.N_INPUTS, model.n_hidden, peer.N_OUTPUTS],
                    layers=[hf.nl.Linear(), hf.nl.Tanh(), hf.nl.Linear()], loss_type=loss,
                    rec_layers=[1], use_GPU=False, debug=False, dtype=np.float64,
                    load_weights=np.array(mapping.phi()), rng=np.random.RandomState(0))


def test_error(net, dataset) -> float:
    """The zero-one error of hessianfree's net over the data set's test batches."""
    errors, count = 0.0, 0
    for batch_id in dataset.test_batches:
        batch = dataset.batch(batch_id)
        inputs, _ = batch_major(batch)
        output = net.forward(inputs, net.W)[-1]                 # [B, T, 1]
        predictions = np.ascontiguousarray(output.transpose(1, 0, 2))
        cases = batch.inputs.shape[1]
        errors += cases * float(dataset.zero_one_error(batch, predictions))
        count += cases
    return errors / count


def peer_run(model, dataset, params, *, time_limit: float, max_iterations: int,
             threshold: float) -> dict:
    """The fixed peer from θ on the data set's stream, until solved or past ``time_limit``."""
    net = peer_net(model, params, MaskedSquaredError())
    optimizer = hf.opt.HessianFree(CG_iter=250, init_damping=1, plotting=False)
    net.optimizer = optimizer
    spent, error, iteration = 0.0, test_error(net, dataset), 0
    while error >= threshold and spent < time_limit and iteration < max_iterations:
        if iteration > 0:
            dataset.forget()                                   # fresh sequences, as HF's
        inputs, targets = batch_major(dataset.batch(dataset.train_batches[0]))
        started = time.perf_counter()
        net.cache_minibatch(inputs, targets)
        net.W += optimizer.compute_update(printing=False)
        spent += time.perf_counter() - started
        iteration += 1
        error = test_error(net, dataset)
    return {"solved": error < threshold, "iterations": iteration, "seconds": spent,
            "test_error": error}


def peer_runs(hf_runs: list[dict], build) -> list[dict]:
    """The fixed peer beside every numpy HF run: ``build(run)`` gives the (model, data set, θ₀)
    of the run's settings and seed; the same time limit and iteration limit."""
    from bench import common

    results = []
    for run in [r for r in hf_runs if r["backend"] == "numpy"]:
        model, dataset, params, limits = build(run)
        print(f"hessianfree (mask-aware curvature) {run['problem']} T={run['T']} seed "
              f"{run['seed']} ...", flush=True)
        result = {key: run[key] for key in ("problem", "T", "seed")}
        result.update(peer_run(model, dataset, params, **limits))
        result["arrayhf_seconds"], result["arrayhf_solved"] = run["seconds"], run["solved"]
        print(f"  {'solved' if result['solved'] else 'NOT solved'}: {result['iterations']} "
              f"iterations, {result['seconds']:.1f} s", flush=True)
        results.append(result)
    common.print_table(
        "Time to solve: arrayhf (numpy) against hessianfree 0.4.0 with a mask-aware curvature, "
        "the same sequences and θ₀",
        ["problem", "T", "seed", "arrayhf s", "hessianfree s", "hessianfree / arrayhf"],
        [[r["problem"], r["T"], r["seed"],
          f"{r['arrayhf_seconds']:.0f}" + ("" if r["arrayhf_solved"] else " (not solved)"),
          f"{r['seconds']:.0f}" + ("" if r["solved"] else " (not solved)"),
          f"{r['seconds'] / r['arrayhf_seconds']:.2f}"] for r in results])
    return results
