"""What the GPU path will do at T = 200, counted on the CPU: torch operations (one kernel launch
each on CUDA) per G v, gradient and objective evaluation, host syncs per CG step, and from them a
rough time for a CG step and an HF iteration of ``arrayhf demo --T 200`` on one GPU (a model, not
a measurement; bench/README.md, "T = 200 on one GPU", says how it counts).

    python -m bench.tools.gpu_estimate                  # T = 200, counted with 20 sequences a batch
    python -m bench.tools.gpu_estimate --launch-us 8 --tflops 20
"""

from __future__ import annotations

import argparse

import torch
from torch.overrides import TorchFunctionMode

from arrayhf import threads
from bench import common
from bench.release import release_run


class Counting(TorchFunctionMode):
    """Counts every torch function call made while it is active."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def count_calls(function) -> int:
    """Torch calls made by ``function()``."""
    with Counting() as counting:
        function()
    return counting.calls


def host_syncs_per_cg_step(optimizer) -> tuple[float, int]:
    """(host syncs per CG step, CG steps) over one HF iteration's CG run."""
    with common.counting_cg() as counts:
        optimizer.step()
    return counts["syncs"] / counts["steps"], counts["steps"]


def flops(T: int, batch: int, hidden: int, n_in: int, n_out: int) -> dict:
    """Multiply-add flops (2 per product term) of one pass at the release's sizes: the forward
    pass has 2 products a step (x W_xh, h W_hh) and the output's; the R-forward 4 and 2; the
    backward pass 4 and 2 (derivations/rnn.md, "Cost")."""
    per_step = {"forward": 2 * batch * (n_in * hidden + hidden * hidden + hidden * n_out)}
    per_step["r_forward"] = 2 * per_step["forward"]
    per_step["backward"] = 2 * per_step["forward"]
    return {name: T * value for name, value in per_step.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--T", type=int, default=200)
    parser.add_argument("--count-batch", dest="count_batch", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000, help="the GPU run's batch")
    parser.add_argument("--cg-steps", dest="cg_steps", type=int, default=300,
                        help="CG steps an iteration (the release's limit)")
    parser.add_argument("--launch-us", dest="launch_us", type=float, default=6.0)
    parser.add_argument("--sync-us", dest="sync_us", type=float, default=20.0)
    parser.add_argument("--tflops", type=float, default=10.0,
                        help="float32 rate reached by the (small) matrix products")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    threads.configure(2)
    model, dataset, optimizer = release_run("addition", args.T, batch_size=args.count_batch,
                                            test_batches=1, backend_name="torch",
                                            dtype="float32", max_cg_iter=20)
    batch = dataset.batch(dataset.train_batches[0])
    params = optimizer.params
    cache = model.forward(params, batch.inputs)
    direction = torch.ones_like(params)
    calls = {"G v (forward cached)": count_calls(
                 lambda: model.gauss_newton_product(params, batch, direction, cache)),
             "forward pass": count_calls(lambda: model.forward(params, batch.inputs)),
             "gradient (forward + backward)": count_calls(lambda: model.gradient(params, batch)),
             "loss (objective of one batch)": count_calls(lambda: model.loss(params, batch))}
    syncs, steps = host_syncs_per_cg_step(optimizer)
    work = flops(args.T, args.batch, model.n_hidden, dataset.n_inputs, dataset.n_outputs)
    gv_flops = work["r_forward"] + work["backward"]
    launch_s = calls["G v (forward cached)"] * args.launch_us * 1e-6
    compute_s = gv_flops / (args.tflops * 1e12)
    step_s = max(launch_s, compute_s) + syncs * args.sync_us * 1e-6
    gradient_s = 10 * max(calls["gradient (forward + backward)"] * args.launch_us * 1e-6,
                          (work["forward"] + work["backward"]) / (args.tflops * 1e12))
    objective_s = 10 * max(calls["loss (objective of one batch)"] * args.launch_us * 1e-6,
                           work["forward"] / (args.tflops * 1e12))
    iteration_s = args.cg_steps * step_s + gradient_s + 4 * objective_s
    rows = [[name, count, f"{count / args.T:.1f}"] for name, count in calls.items()]
    common.print_table(f"torch operations at T = {args.T} (counted on the CPU)",
                       ["call", "torch operations", "per time step"], rows)
    print(f"\nhost syncs per CG step: {syncs:.2f} (over a CG run of {steps} steps)")
    print(f"G v at batch {args.batch}: {gv_flops / 1e9:.1f} GFLOP; launches "
          f"{launch_s * 1e3:.1f} ms at {args.launch_us:g} µs each, compute "
          f"{compute_s * 1e3:.1f} ms at {args.tflops:g} TFLOP/s: a CG step ≈ "
          f"{step_s * 1e3:.1f} ms, {'launch' if launch_s > compute_s else 'compute'}-bound")
    outside_s = iteration_s - args.cg_steps * step_s
    run_min = (10_000 * step_s + 10_000 / args.cg_steps * outside_s) / 60
    print(f"one HF iteration of {args.cg_steps} CG steps, gradient on 10 × {args.batch}, "
          f"4 objective evaluations on 10 batches: ≈ {iteration_s:.0f} s; 10,000 CG steps "
          f"(the release: 'it can sometimes take 10,000 CG steps') ≈ {run_min:.0f} min")
    common.write_json("gpu_estimate", args.json,
                      {"arguments": vars(args), "torch_operations": calls,
                       "host_syncs_per_cg_step": syncs, "gv_gflop": gv_flops / 1e9,
                       "cg_step_seconds": step_s, "iteration_seconds": iteration_s})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
