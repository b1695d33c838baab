"""Gauss-Newton-vector products: arrayhf's hand-derived G v against the same product by torch.func
(bench/autodiff.py), against one gradient, and against the BLAS rate on the matrix shapes the
routine multiplies, for the RNN, the MRNN, the FNN autoencoder, the LSTM and the GRU, in float64
and float32 (bench/README.md, "Gauss-Newton product", gives the cases and what is timed).

    python -m bench.micro.gv                       # torch CPU (and arrayhf on numpy beside it)
    python -m bench.micro.gv --cases lstm,gru      # some cases
    python -m bench.micro.gv --backend torch --device cuda
    python -m bench.micro.gv --backend cupy        # arrayhf on CuPy; torch.func on torch CUDA
    python -m bench.micro.gv --quick               # small sizes: checks that it runs
"""

from __future__ import annotations

import numpy as np

import arrayhf
from arrayhf import backend
from arrayhf.data.pathological import Pathological
from arrayhf.models.mrnn import MRNN
from bench import autodiff, common


# -- the matrix products each routine does, read off the models' code ------------------------
def rnn_products(T, B, n_in, n_h, n_out) -> dict:
    """(m, k, n, count) of every matrix product of arrayhf.RNN's passes (models/rnn.py)."""
    TB = T * B
    forward = [(TB, n_in, n_h, 1), (B, n_h, n_h, T), (TB, n_h, n_out, 1)]
    r_forward = [(TB, n_in, n_h, 1), (TB, n_h, n_h, 1), (B, n_h, n_h, T), (TB, n_h, n_out, 2)]
    backprop = [(TB, n_out, n_h, 1), (B, n_h, n_h, T), (n_in, TB, n_h, 1), (n_h, TB, n_h, 1),
                (n_h, TB, n_out, 1), (B, n_h, n_h, 1)]
    return {"Gv": r_forward + backprop, "gradient": forward + backprop, "forward": forward}


def gated_products(T, B, n_in, n_h, n_out, gates) -> dict:
    """(m, k, n, count) of every matrix product of arrayhf.LSTM's (``gates`` = 4) or
    arrayhf.GRU's (3) passes on float inputs (models/lstm.py, models/gru.py): per step, one
    product with W_h forward, the input and recurrent products of R-forward, the transposed
    products and the per-step weight gradients of BPTT."""
    TB, width = T * B, gates * n_h
    forward = [(TB, n_in, width, 1), (B, n_h, width, T), (TB, n_h, n_out, 1)]
    r_forward = [(B, n_in, width, T), (B, n_h, width, 2 * T), (B, n_h, n_out, T),
                 (TB, n_h, n_out, 1)]
    backprop = [(B, n_out, n_h, T), (B, width, n_h, T), (n_in, B, width, T), (n_h, B, width, T),
                (n_h, TB, n_out, 1)] + ([(B, width, n_h, 1)] if gates == 4 else [])
    return {"Gv": r_forward + backprop, "gradient": forward + backprop, "forward": forward}


def fnn_products(B, sizes) -> dict:
    """(m, k, n, count) of every matrix product of arrayhf.FNN's passes (models/fnn.py)."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    forward = [(B, fan_in, fan_out, 1) for fan_in, fan_out in layers]
    r_forward = forward + [(B, fan_in, fan_out, 1) for fan_in, fan_out in layers[1:]]
    backprop = ([(B, fan_out, fan_in, 1) for fan_in, fan_out in layers[1:]]
                + [(fan_in, B, fan_out, 1) for fan_in, fan_out in layers])
    return {"Gv": r_forward + backprop, "gradient": forward + backprop, "forward": forward}


def flops(products) -> float:
    return float(sum(2.0 * m * k * n * count for m, k, n, count in products))


def blas_function(xp, device, dtype, products):
    """A function doing exactly ``products`` with random operands on (xp, device, dtype)."""
    rng = np.random.default_rng(0)
    operands = {}
    for m, k, n, _ in products:
        if (m, k, n) not in operands:
            operands[(m, k, n)] = (
                backend.from_host(rng.standard_normal((m, k)), xp, dtype=dtype, device=device),
                backend.from_host(rng.standard_normal((k, n)), xp, dtype=dtype, device=device))

    def run():
        results = []
        for m, k, n, count in products:
            left, right = operands[(m, k, n)]
            for _ in range(count):
                results.append(left @ right)
        return results[-1]

    return run


# -- the cases --------------------------------------------------------------------------------
def rnn_case(quick):
    T, B, n_h = (20, 100, 32) if quick else (200, 1000, 100)
    data = Pathological("addition", T, batch_size=B, n_train_batches=1, n_test_batches=1,
                        seed=0, xp=backend.namespace("numpy"))
    batch = data.batch(data.train_batches[0])
    model = arrayhf.RNN(data.n_inputs, n_h, data.n_outputs, hidden="tanh", output=data.output,
                        biases=False)
    host = {"inputs": np.asarray(batch.inputs), "targets": np.asarray(batch.targets),
            "mask": np.asarray(batch.mask)}
    return {"name": f"RNN {n_h} tanh, addition T={T}, batch {B}", "model": model, "host": host,
            "net": autodiff.rnn_net_output, "products": rnn_products(T, B, 2, n_h, 1)}


def mrnn_case(quick):
    T, B, n_h, symbols = (20, 50, 32, 20) if quick else (100, 200, 100, 86)
    rng = np.random.default_rng(1)
    ids = rng.integers(1, symbols, (T + 1, B))
    model = MRNN(symbols, n_h, n_h, symbols, output="softmax", variant="paper")
    host = {"inputs": ids[:-1], "targets": np.eye(symbols)[ids[1:]], "mask": None}
    return {"name": f"MRNN {symbols} symbols, {n_h} hidden/factors, T={T}, batch {B}",
            "model": model, "host": host, "net": autodiff.mrnn_net_output, "products": None}


def gated_case(model_class, quick):
    """An LSTM or GRU (issue sizes: T = 100, batch 500, 100 hidden; 10 float inputs and 10
    linear outputs, every step scored)."""
    T, B, n_h, n_io = (20, 50, 16, 4) if quick else (100, 500, 100, 10)
    rng = np.random.default_rng(4)
    model = model_class(n_io, n_h, n_io, output="linear")
    host = {"inputs": rng.standard_normal((T, B, n_io)),
            "targets": rng.standard_normal((T, B, n_io)), "mask": None}
    gates, net = ((4, autodiff.lstm_net_output) if model_class is arrayhf.LSTM
                  else (3, autodiff.gru_net_output))
    return {"name": f"{model_class.__name__} {n_h} hidden, {n_io} in/out, T={T}, batch {B}",
            "model": model, "host": host, "net": net, "module_net": autodiff.module_net_output,
            "products": gated_products(T, B, n_io, n_h, n_io, gates)}


def fnn_case(quick):
    B = 100 if quick else 1000
    sizes, hidden = common.autoencoder(quick)
    model = arrayhf.FNN(sizes, hidden=hidden, output="logistic")
    images = np.random.default_rng(2).uniform(size=(B, sizes[0]))
    host = {"inputs": images, "targets": images, "mask": None}
    return {"name": f"FNN {'-'.join(map(str, sizes))}, batch {B}", "model": model, "host": host,
            "net": autodiff.fnn_net_output, "products": fnn_products(B, sizes)}


# -- one case, one dtype ------------------------------------------------------------------------
def on_backend(case, params_host, v_host, xp, device, dtype):
    """(params, v, batch) of the case on a backend; integer ids stay integers."""
    host = case["host"]

    def move(array):
        if array is None:
            return None
        if np.issubdtype(array.dtype, np.integer):
            return backend.from_host(array.astype(np.int64), xp, device=device)
        return backend.from_host(array, xp, dtype=dtype, device=device)

    batch = arrayhf.Batch(move(host["inputs"]), move(host["targets"]), move(host["mask"]))
    return move(params_host), move(v_host), batch


def measure(case, dtype, args):
    model = case["model"]
    rng = np.random.default_rng(3)
    params_host = np.asarray(backend.to_numpy(model.init(0, xp=backend.namespace("numpy"))))
    v_host = rng.standard_normal(model.n_params)
    xp = backend.namespace(args.backend, device=args.device)
    device = backend.resolve_device(xp, args.device)
    params, v, batch = on_backend(case, params_host, v_host, xp, device, dtype)
    cache = model.forward(params, batch.inputs)

    torch_device = "cuda" if args.device not in (None, "cpu") or args.backend == "cupy" else "cpu"
    numpy_xp = backend.namespace("numpy")
    torch_xp = backend.namespace("torch")
    t_params, t_v, t_batch = on_backend(case, params_host, v_host, torch_xp, torch_device, dtype)

    def net(p):
        return case["net"](model, p, t_batch.inputs)

    output = model.output.name
    autodiff_gv = autodiff.gauss_newton_product(net, t_params, t_batch.targets, t_batch.mask,
                                                output)
    timed = {
        "arrayhf Gv": lambda: model.gauss_newton_product(params, batch, v, cache),
        "torch.func Gv": lambda: autodiff_gv(t_v),
        "arrayhf gradient": lambda: model.gradient(params, batch),
        "torch.func gradient": lambda: autodiff.gradient(net, t_params, t_batch.targets,
                                                         t_batch.mask, output),
        "arrayhf forward": lambda: model.forward(params, batch.inputs).net_output,
    }
    on_numpy = {}   # timed in a group of their own: see below
    if backend.name_of(xp) != "numpy" and not args.no_numpy:
        n_params, n_v, n_batch = on_backend(case, params_host, v_host, numpy_xp, None, dtype)
        n_cache = model.forward(n_params, n_batch.inputs)
        on_numpy["arrayhf Gv (numpy)"] = lambda: model.gauss_newton_product(n_params, n_batch,
                                                                            n_v, n_cache)
        on_numpy["arrayhf gradient (numpy)"] = lambda: model.gradient(n_params, n_batch)
    if case["products"] is not None:
        for routine in ("Gv", "gradient"):
            timed[f"BLAS {routine} products"] = blas_function(xp, device, dtype,
                                                              case["products"][routine])

    module_note = None
    if case.get("module_net") is not None:   # autodiff through torch.nn.LSTM / torch.nn.GRU
        def module_net(p):
            return case["module_net"](model, p, t_batch.inputs)
        try:
            module_gv = autodiff.gauss_newton_product(module_net, t_params, t_batch.targets,
                                                      t_batch.mask, output)
            module_gv(t_v)
            timed["torch.func Gv (torch module)"] = lambda: module_gv(t_v)
        except Exception as error:   # any failure of autodiff through the module is the result
            module_note = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
    # the two Gv agree (float64: to rounding; float32: to float32 rounding)
    ours = np.asarray(backend.to_numpy(timed["arrayhf Gv"]()), dtype=np.float64)
    theirs = np.asarray(timed["torch.func Gv"]().detach().cpu().numpy(), dtype=np.float64)
    agreement = float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))
    limit = 1e-10 if dtype == "float64" else 1e-4
    if not agreement <= limit:
        raise SystemExit(f"{case['name']} {dtype}: arrayhf and torch.func G v differ by "
                         f"{agreement:.3g} (relative), more than {limit}")
    # torch's OpenMP threads spin for a while after each parallel region, and OpenBLAS's threads
    # (numpy) compete with them if the two alternate: the numpy column is timed in its own group,
    # after the backend's, each group interleaved within itself.
    medians = common.interleaved_medians(timed, repeats=args.repeats, warmup=2)
    if on_numpy:
        medians.update(common.interleaved_medians(on_numpy, repeats=args.repeats, warmup=2))
    seconds = {name: result["median"] for name, result in medians.items()}
    return {"case": case["name"], "dtype": dtype, "seconds": seconds,
            "module_autodiff_failure": module_note,
            "all_times": {name: result["times"] for name, result in medians.items()},
            "relative_difference_gv": agreement,
            "flops": None if case["products"] is None else
            {routine: flops(case["products"][routine]) for routine in ("Gv", "gradient")}}


def main():
    parser = common.options(__doc__.splitlines()[0], default_backend="torch")
    parser.add_argument("--cases", default="rnn,mrnn,fnn,lstm,gru")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--no-numpy", action="store_true", help="skip the numpy column")
    args = parser.parse_args()
    args.repeats = args.repeats or (3 if args.quick else 5)
    builders = {"rnn": rnn_case, "mrnn": mrnn_case, "fnn": fnn_case,
                "lstm": lambda quick: gated_case(arrayhf.LSTM, quick),
                "gru": lambda quick: gated_case(arrayhf.GRU, quick)}
    results = []
    for name in args.cases.split(","):
        case = builders[name](args.quick)
        for dtype in args.dtypes.split(","):
            print(f"measuring {case['name']}, {dtype} ...", flush=True)
            results.append(measure(case, dtype, args))
    report(results, args)
    common.write_json("gv", args.json, {"results": results})


def report(results, args):
    where = f"{args.backend}{'' if args.device is None else ' ' + args.device}"
    rows = []
    for r in results:
        s = r["seconds"]
        row = [r["case"], r["dtype"], 1e3 * s["arrayhf Gv"], 1e3 * s["torch.func Gv"],
               s["arrayhf Gv"] / s["torch.func Gv"]]
        if "arrayhf Gv (numpy)" in s:
            row += [1e3 * s["arrayhf Gv (numpy)"], s["arrayhf Gv (numpy)"] / s["torch.func Gv"]]
        else:
            row += ["-", "-"]
        rows.append(row + [f"{r['relative_difference_gv']:.1e}"])
    common.print_table(
        f"G v: arrayhf ({where}) vs torch.func, medians (target: ratio <= 0.7)",
        ["case", "dtype", "arrayhf ms", "torch.func ms", "ratio", "arrayhf numpy ms",
         "numpy/torch.func", "|ΔGv|/|Gv|"], rows)

    rows = []
    for r in results:
        if "torch.func Gv (torch module)" in r["seconds"] or r.get("module_autodiff_failure"):
            module = r["seconds"].get("torch.func Gv (torch module)")
            rows.append([r["case"], r["dtype"], 1e3 * r["seconds"]["arrayhf Gv"],
                         "-" if module is None else 1e3 * module,
                         "-" if module is None else r["seconds"]["arrayhf Gv"] / module,
                         r.get("module_autodiff_failure") or "ran"])
    if rows:
        common.print_table(
            f"G v: arrayhf ({where}) vs torch.func through torch.nn.LSTM / torch.nn.GRU "
            "themselves (functional_call), or why that fails",
            ["case", "dtype", "arrayhf ms", "module autodiff ms", "ratio", "autodiff"], rows)

    rows = []
    for r in results:
        s = r["seconds"]
        rows.append([r["case"], r["dtype"], 1e3 * s["arrayhf Gv"], 1e3 * s["arrayhf gradient"],
                     s["arrayhf Gv"] / s["arrayhf gradient"], 1e3 * s["arrayhf forward"],
                     1e3 * s["torch.func gradient"]])
    common.print_table(
        f"G v (forward cached) in units of one gradient (forward + backward), arrayhf on {where}"
        " (target: <= 1.5; theory about 4/3 for the RNN)",
        ["case", "dtype", "Gv ms", "gradient ms", "Gv/gradient", "forward ms",
         "torch.func gradient ms"], rows)

    rows = []
    for r in results:
        if r["flops"] is None:
            continue
        s = r["seconds"]
        for routine, timed_name in (("Gv", "arrayhf Gv"), ("gradient", "arrayhf gradient")):
            work = r["flops"][routine]
            rate = work / s[timed_name] / 1e9
            blas_rate = work / s[f"BLAS {routine} products"] / 1e9
            rows.append([r["case"], r["dtype"], routine, work / 1e9, 1e3 * s[timed_name], rate,
                         blas_rate, f"{100 * rate / blas_rate:.0f}%"])
    common.print_table(
        f"hardware efficiency on {where}: matrix-product FLOPs / time, against BLAS on the same "
        "shapes (target: > 50% for the RNN)",
        ["case", "dtype", "routine", "GFLOP", "ms", "GFLOP/s", "BLAS GFLOP/s", "of BLAS"], rows)


if __name__ == "__main__":
    main()
