"""End to end: HF solving the addition and multiplication problems, against Adam on the same RNN
(the same θ₀ and data stream) and, with ``--peer``, against hessianfree; every HF run also
reports where its time went (its records' ``phase_seconds``). bench/README.md, "End to end",
says what is measured and the budget rule.

    python -m bench.experiments.end_to_end                  # addition, multiplication at T = 50
    python -m bench.experiments.end_to_end --T 50,100 --seeds 0,1,2 --time-limit 600
    python -m bench.experiments.end_to_end --quick          # T = 20, addition, 20 s: that it runs
    python -m bench.experiments.end_to_end --problems addition --T 20 --batch-size 300 \
        --seeds 0,1,2 --backends numpy --skip-adam --peer   # time to solve against hessianfree
"""

from __future__ import annotations

import math
import statistics
import time

from arrayhf import backend
from bench import common
from bench.release import release_run

THRESHOLD = 0.01   # MS11: solved when fewer than 1% of the test sequences are wrong
# The defaults of the options --quick changes, and what --quick makes them (an option given on the
# command line wins over both).
DEFAULTS = {"problems": "addition,multiplication", "T": "50", "seeds": "0", "time_limit": 240.0,
            "batch_size": 100}
QUICK = {"problems": "addition", "T": "20", "seeds": "0", "time_limit": 20.0, "batch_size": 50}


def integers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build(args, problem: str, T: int, seed: int, backend_name: str):
    """(model, data set, optimizer) of ``arrayhf train --problem P --T T --seed S ...`` with the
    command's options, without a run directory."""
    return release_run(problem, T, batch_size=args.batch_size, train_batches=args.train_batches,
                       test_batches=args.test_batches, seed=seed, backend_name=backend_name,
                       device=None if backend_name == "numpy" else args.device, dtype=args.dtype)


# -- HF ------------------------------------------------------------------------------------------
def hf_run(args, problem: str, T: int, backend_name: str, seed: int) -> dict:
    """One HF run until solved, past the time limit, or at --max-iterations."""
    _, _, optimizer = build(args, problem, T, seed, backend_name)
    trace, phases = [], {}   # (iteration, seconds since the start, test error); phase totals
    started = time.perf_counter()

    def stop(record) -> bool:
        elapsed = time.perf_counter() - started
        trace.append((record["iteration"], elapsed, record["test_error"]))
        for phase, seconds in record["phase_seconds"].items():
            phases[phase] = phases.get(phase, 0.0) + seconds
        if record["iteration"] % 10 == 0:
            print(f"    iteration {record['iteration']}: test error "
                  f"{100 * record['test_error']:.2f}% at {elapsed:.0f} s", flush=True)
        return record["test_error"] < THRESHOLD or elapsed > args.time_limit

    failure = None
    try:
        optimizer.run(args.max_iterations, stop=stop)
    except FloatingPointError as error:   # non-finite loss or gradient: counted as not solved
        failure = str(error)
    seconds = time.perf_counter() - started
    test_error = trace[-1][2] if trace else None
    return {"problem": problem, "T": T, "backend": backend_name, "seed": seed,
            "solved": test_error is not None and test_error < THRESHOLD,
            "iterations": optimizer.iteration, "cg_steps": optimizer.cg_total,
            "seconds": seconds, "test_error": test_error, "failure": failure,
            "trace": trace, "phase_seconds": phases,
            "outside_cg": 1 - phases.get("cg", 0.0) / max(sum(phases.values()), 1e-300)}


def summarize(hf_runs: list[dict]) -> list[dict]:
    """Per (problem, T, backend): success rate, and medians over the solved runs."""
    groups: dict[tuple, list[dict]] = {}
    for run in hf_runs:
        groups.setdefault((run["problem"], run["T"], run["backend"]), []).append(run)
    summary = []
    for (problem, T, backend_name), group in groups.items():
        solved = [run for run in group if run["solved"]]
        summary.append({
            "problem": problem, "T": T, "backend": backend_name,
            "solved": len(solved), "runs": len(group),
            "median_seconds_solved": statistics.median(r["seconds"] for r in solved)
            if solved else None,
            "median_iterations_solved": statistics.median(r["iterations"] for r in solved)
            if solved else None})
    return summary


def adam_budget(args, hf_runs: list[dict], problem: str, T: int) -> float:
    """The Adam budget: the median over seeds of the torch HF runs' wall times (of every
    backend's without torch), an unsolved run counting as the full time limit."""
    same = [r for r in hf_runs if r["problem"] == problem and r["T"] == T]
    on_torch = [r for r in same if r["backend"] == "torch"]
    chosen = on_torch or same
    if not chosen:
        return args.time_limit
    return statistics.median(r["seconds"] if r["solved"] else args.time_limit for r in chosen)


# -- Adam on the same RNN, by torch autodiff -----------------------------------------------------
def torch_net_output(model, theta, inputs):
    """z of the RNN (bench/autodiff.py: arrayhf.models.rnn's equations written in torch)."""
    from bench import autodiff

    return autodiff.rnn_net_output(model, theta, inputs)


def torch_loss(output: str, net_output, batch):
    """arrayhf.losses' matching loss, Σ_p m_p ℓ(z_p, t_p) / Σ_p m_p (the tests' torch losses)."""
    from bench import autodiff

    return autodiff.loss_of_net_output(output, net_output, batch.targets, batch.mask)


def torch_predict(output: str, net_output):
    import torch

    if output == "linear":
        return net_output
    if output == "logistic":
        return torch.sigmoid(net_output)
    return torch.softmax(net_output, dim=-1)


def test_error(dataset, model, theta) -> float:
    """The fraction of test sequences wrong, weighted like HF's (by counted outputs)."""
    import torch

    errors, counts = 0.0, 0.0
    with torch.no_grad():
        for batch_id in dataset.test_batches:
            batch = dataset.batch(batch_id)
            predictions = torch_predict(model.output.name,
                                        torch_net_output(model, theta, batch.inputs))
            count = float(batch.mask.sum())
            errors += count * dataset.zero_one_error(batch, predictions)
            counts += count
    return errors / counts


def check_against_arrayhf(model, dataset, theta, trained) -> dict:
    """Relative differences of the torch loss and gradient at θ₀ from arrayhf's, on batch 0."""
    import torch

    batch = dataset.batch(dataset.train_batches[0])
    loss = torch_loss(model.output.name, torch_net_output(model, trained, batch.inputs), batch)
    (torch_gradient,) = torch.autograd.grad(loss, [trained])
    reference_loss = float(model.loss(theta, batch))
    reference_gradient = model.gradient(theta, batch)
    return {"loss": abs(loss.item() - reference_loss) / abs(reference_loss),
            "gradient": float(torch.linalg.vector_norm(torch_gradient - reference_gradient)
                              / torch.linalg.vector_norm(reference_gradient))}


def adam_run(args, problem: str, T: int, seed: int, lr: float, budget: float) -> dict:
    """Adam from the HF run's θ₀ on the HF run's data stream, for ``budget`` seconds of training."""
    import torch

    model, dataset, _ = build(args, problem, T, seed, "torch")
    theta = model.init(seed, xp=backend.namespace("torch"), dtype=args.dtype, device=args.device)
    trained = theta.detach().clone().requires_grad_(True)
    check = check_against_arrayhf(model, dataset, theta, trained)
    optimizer = torch.optim.Adam([trained], lr=lr)
    output = model.output.name
    steps, evaluation_seconds, trace = 0, 0.0, []
    solved = diverged = False
    started = time.perf_counter()

    def training_seconds() -> float:
        return time.perf_counter() - started - evaluation_seconds

    def evaluate() -> float:
        nonlocal evaluation_seconds
        begun = time.perf_counter()
        error = test_error(dataset, model, trained)
        evaluation_seconds += time.perf_counter() - begun
        trace.append((steps, training_seconds(), error))
        return error

    while not (solved or diverged) and training_seconds() < budget:
        for batch_id in dataset.train_batches:
            batch = dataset.batch(batch_id)
            loss = torch_loss(output, torch_net_output(model, trained, batch.inputs), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            if not math.isfinite(loss.item()):
                diverged = True
                break
            out_of_time = training_seconds() >= budget
            if steps % args.adam_eval_every == 0 or out_of_time:
                solved = evaluate() < THRESHOLD
                if solved or out_of_time:
                    break
        dataset.forget()   # fresh training sequences after every pass, as HF each iteration
    errors = [error for _, _, error in trace]
    return {"problem": problem, "T": T, "seed": seed, "lr": lr, "budget_seconds": budget,
            "solved": solved, "diverged": diverged, "steps": steps,
            "seconds": trace[-1][1] if trace else training_seconds(),
            "best_test_error": min(errors) if errors else None,
            "final_test_error": errors[-1] if errors else None,
            "check_relative_difference": check, "trace": trace}


# -- the report ----------------------------------------------------------------------------------
def percent(error) -> str:
    return "-" if error is None else f"{100 * error:.2f}%"


def report(hf_runs, summary, adam_runs) -> None:
    common.print_table(
        "HF runs (stop at test error < 1%, or past the time limit)",
        ["problem", "T", "backend", "seed", "solved", "iterations", "CG steps", "seconds",
         "test error"],
        [[r["problem"], r["T"], r["backend"], r["seed"], "yes" if r["solved"] else "no",
          r["iterations"], r["cg_steps"], r["seconds"], percent(r["test_error"])]
         for r in hf_runs])
    common.print_table(
        "HF summary (medians over the solved runs)",
        ["problem", "T", "backend", "success", "median seconds", "median iterations"],
        [[s["problem"], s["T"], s["backend"], f"{s['solved']}/{s['runs']}",
          "-" if s["median_seconds_solved"] is None else s["median_seconds_solved"],
          "-" if s["median_iterations_solved"] is None else s["median_iterations_solved"]]
         for s in summary])
    if adam_runs:
        common.print_table(
            "Adam (torch autodiff, same RNN, θ₀ and data), budget = median torch HF wall time",
            ["problem", "T", "lr", "seed", "budget s", "solved", "steps", "seconds",
             "best test error"],
            [[r["problem"], r["T"], f"{r['lr']:g}", r["seed"], r["budget_seconds"],
              "yes" if r["solved"] else ("diverged" if r["diverged"] else "no"), r["steps"],
              r["seconds"], percent(r["best_test_error"])] for r in adam_runs])
        rates = {}
        for r in adam_runs:
            rates.setdefault((r["problem"], r["T"], r["lr"]), []).append(r["solved"])
        common.print_table(
            "Adam success rate",
            ["problem", "T", "lr", "success"],
            [[p, T, f"{lr:g}", f"{sum(s)}/{len(s)}"] for (p, T, lr), s in rates.items()])


def main():
    parser = common.options(__doc__.splitlines()[0], default_backend="numpy")
    parser.add_argument("--problems", help="comma-separated (default addition,multiplication)")
    parser.add_argument("--T", help="sequence scale(s), comma-separated (default 50)")
    parser.add_argument("--seeds", help="comma-separated (default 0)")
    parser.add_argument("--backends", default="numpy,torch", help="HF backends, comma-separated")
    parser.add_argument("--dtype", default="float64", help="of HF and Adam alike")
    parser.add_argument("--time-limit", dest="time_limit", type=float,
                        help="seconds of wall time per HF run (default 240)")
    parser.add_argument("--batch-size", dest="batch_size", type=int,
                        help="sequences per batch (default 100)")
    parser.add_argument("--train-batches", dest="train_batches", type=int, default=10)
    parser.add_argument("--test-batches", dest="test_batches", type=int, default=10)
    parser.add_argument("--max-iterations", dest="max_iterations", type=int, default=300)
    parser.add_argument("--adam-lrs", dest="adam_lrs", default="1e-3,3e-3")
    parser.add_argument("--adam-eval-every", dest="adam_eval_every", type=int, default=50,
                        help="Adam steps between test evaluations (default 50)")
    parser.add_argument("--skip-adam", dest="skip_adam", action="store_true")
    parser.add_argument("--peer", action="store_true",
                        help="also hessianfree (mask-aware curvature) beside each numpy run")
    parser.add_argument("--torch-threads", dest="torch_threads", type=int, default=None,
                        help="torch.set_num_threads for HF on torch and Adam (default: torch's)")
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick and args.json is None:   # a check, not a result: keep it apart
        args.json = str(common.RESULTS / "end_to_end_quick.json")
    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)
    problems, Ts, seeds = names(args.problems), integers(args.T), integers(args.seeds)
    backends = names(args.backends)
    lrs = [float(lr) for lr in names(args.adam_lrs)]

    print(f"HF on {', '.join(backends)} ({args.dtype}): {', '.join(problems)}, T = "
          f"{', '.join(map(str, Ts))}, seeds {', '.join(map(str, seeds))}; "
          f"{args.train_batches}×{args.batch_size} training sequences (fresh every iteration), "
          f"{args.test_batches}×{args.batch_size} test sequences; stop at test error < 1% or "
          f"past {args.time_limit:g} s", flush=True)
    hf_runs = []
    for problem in problems:
        for T in Ts:
            for backend_name in backends:
                for seed in seeds:
                    print(f"HF {problem} T={T} {backend_name} seed {seed} ...", flush=True)
                    run = hf_run(args, problem, T, backend_name, seed)
                    print(f"  {'solved' if run['solved'] else 'NOT solved'}: "
                          f"{run['iterations']} iterations, {run['cg_steps']} CG steps, "
                          f"{run['seconds']:.1f} s, test error {percent(run['test_error'])}",
                          flush=True)
                    hf_runs.append(run)
    summary = summarize(hf_runs)
    common.print_table("Where an HF run's time went (sums of the records' phase_seconds)",
                       ["problem", "T", "backend", "seed", "outside CG", "phases, s"],
                       [[r["problem"], r["T"], r["backend"], r["seed"],
                         f"{100 * r['outside_cg']:.0f}%", ", ".join(
                             f"{k} {v:.1f}" for k, v in r["phase_seconds"].items())]
                        for r in hf_runs])
    peer_runs = []
    if args.peer:
        from bench.experiments import peer_solve

        def peer_start(run):
            model, dataset, optimizer = build(args, run["problem"], run["T"], run["seed"],
                                              "numpy")
            return model, dataset, optimizer.params, {
                "time_limit": args.time_limit, "max_iterations": args.max_iterations,
                "threshold": THRESHOLD}

        peer_runs = peer_solve.peer_runs(hf_runs, peer_start)

    adam_runs = []
    if not args.skip_adam:
        for problem in problems:
            for T in Ts:
                budget = adam_budget(args, hf_runs, problem, T)
                for seed in seeds:
                    for lr in lrs:
                        print(f"Adam {problem} T={T} seed {seed} lr {lr:g}, {budget:.1f} s ...",
                              flush=True)
                        run = adam_run(args, problem, T, seed, lr, budget)
                        check = run["check_relative_difference"]
                        print(f"  θ₀ check against arrayhf: loss {check['loss']:.1e}, gradient "
                              f"{check['gradient']:.1e} (relative); "
                              f"{'solved' if run['solved'] else 'NOT solved'}: "
                              f"{run['steps']} steps, {run['seconds']:.1f} s, best test error "
                              f"{percent(run['best_test_error'])}", flush=True)
                        adam_runs.append(run)

    report(hf_runs, summary, adam_runs)
    common.write_json("end_to_end", args.json, {
        "settings": {key: value for key, value in vars(args).items()
                     if key not in ("backend", "repeats")},
        "threshold": THRESHOLD, "hf_runs": hf_runs, "hf_summary": summary,
        "adam_runs": adam_runs, "peer_runs": peer_runs})


if __name__ == "__main__":
    main()
