"""What gating buys: HF on an LSTM, HF on the release's tanh RNN, and Adam on the same LSTM
(torch autodiff), on one pathological problem at one T, the same seeds, data and wall-time budget
for every method (bench/README.md, "What gating buys").

    python -m bench.experiments.gating                  # temporal_order, T = 50, seeds 0, 1, 120 s
    python -m bench.experiments.gating --problem xor --T 50 --budget 60 --seeds 0
    python -m bench.experiments.gating --quick          # T = 20, 15 s a run: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from bench import autodiff, common
from bench.release import release_run


def build(args, model: str, seed: int):
    """(model, data set, optimizer) as ``arrayhf train --model M`` builds them, torch float64."""
    return release_run(args.problem, args.T, model=model, hidden=args.hidden,
                       batch_size=args.batch_size, seed=seed, backend_name="torch")


def hf_run(args, model_name: str, seed: int) -> dict:
    """HF on ``model_name`` until solved or past the budget."""
    model, dataset, optimizer = build(args, model_name, seed)
    started = time.perf_counter()

    def stop(record) -> bool:
        solved = record["test_error"] is not None and record["test_error"] < 0.01
        return solved or time.perf_counter() - started > args.budget

    optimizer.run(args.max_iterations, stop=stop)
    last = optimizer.history[-1]
    return {"method": f"HF, {model_name.upper()}", "seed": seed,
            "solved": last["test_error"] < 0.01, "test_error": last["test_error"],
            "steps": f"{optimizer.iteration} HF iterations, {optimizer.cg_total} CG steps",
            "seconds": time.perf_counter() - started}


def adam_run(args, seed: int) -> dict:
    """Adam on the LSTM from the HF run's θ₀, one training batch a step."""
    model, dataset, optimizer = build(args, "lstm", seed)
    theta = optimizer.params.detach().clone().requires_grad_(True)
    adam = torch.optim.Adam([theta], lr=args.adam_lr)
    output = model.output.name
    elapsed, step, error = 0.0, 0, 1.0
    while elapsed < args.budget:
        started = time.perf_counter()
        for batch_id in dataset.train_batches:
            batch = dataset.batch(batch_id)
            net_output = autodiff.lstm_net_output(model, theta, batch.inputs)
            loss = autodiff.loss_of_net_output(output, net_output, batch.targets, batch.mask)
            adam.zero_grad()
            loss.backward()
            adam.step()
            step += 1
        dataset.forget()
        elapsed += time.perf_counter() - started
        if step % args.eval_every < len(dataset.train_batches) or elapsed >= args.budget:
            _, error = optimizer.batch_objective.test_loss_and_error(theta.detach(),
                                                                     dataset.test_batches)
            if error < 0.01:
                break
    return {"method": f"Adam (lr {args.adam_lr:g}), LSTM", "seed": seed, "solved": error < 0.01,
            "test_error": error, "steps": f"{step} Adam steps", "seconds": elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", default="temporal_order")
    parser.add_argument("--T", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=100)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds a run")
    parser.add_argument("--max-iterations", dest="max_iterations", type=int, default=300)
    parser.add_argument("--adam-lr", dest="adam_lr", type=float, default=3e-3)
    parser.add_argument("--eval-every", dest="eval_every", type=int, default=50)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.quick:
        args.T, args.hidden, args.budget, args.seeds = 20, 16, 15.0, "0"
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for method in ("HF lstm", "HF rnn", "Adam lstm"):
            results.append(adam_run(args, seed) if method == "Adam lstm"
                           else hf_run(args, method.split()[1], seed))
            print(json.dumps(results[-1]), flush=True)
    common.print_table(
        f"{args.problem}, T = {args.T}, {args.hidden} hidden units, {args.batch_size} sequences a "
        f"batch, torch CPU float64, {args.budget:g} s a run",
        ["method", "seed", "result", "test error", "work", "seconds"],
        [[r["method"], r["seed"], "solved" if r["solved"] else "not solved",
          f"{100 * r['test_error']:.2f}%", r["steps"], f"{r['seconds']:.0f}"] for r in results])
    common.write_json("gating" + ("_quick" if args.quick else ""), args.json,
                      {"arguments": vars(args), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
