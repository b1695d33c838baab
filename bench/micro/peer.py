"""arrayhf against hessianfree (Rasmussen's numpy HF package, 0.4.0): the same recurrent network
and the same Gauss-Newton matrix in two coordinate systems, checked to agree through the exact
map between them, then G v and one HF iteration timed, interleaved (bench/README.md, "Peer
library", gives the map, what differs between the two, and what is timed).

    python -m bench.micro.peer                   # T = 200, batch 1000, 10 CG steps; numpy CPU
    python -m bench.micro.peer --quick           # T = 20, batch 32, 5 CG steps: checks that it runs
    python -m bench.micro.peer --backend torch   # arrayhf on torch CPU, hessianfree on numpy

Needs ``pip install hessianfree``; on a small or shared machine set ``OMP_NUM_THREADS`` and
``OPENBLAS_NUM_THREADS`` (e.g. to 1).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os

import hessianfree as hf
import hessianfree.optimizers as hf_optimizers
import numpy as np

import arrayhf
from arrayhf import Batch, backend
from bench import common

N_INPUTS, N_OUTPUTS = 2, 1
LIMITS = {"float64": 1e-10, "float32": 1e-4}   # largest relative difference of loss, g and G v
DEFAULTS = {"T": 200, "batch": 1000, "cg_steps": 10, "repeats": 5}
QUICK = {"T": 20, "batch": 32, "cg_steps": 5, "repeats": 3}


# -- the problem -------------------------------------------------------------------------------
def draw_problem(model, T, B, seed=0) -> dict:
    """θ, time-major inputs and targets and a direction v (float64 numpy), every block nonzero."""
    rng = np.random.default_rng(seed)
    n_h = model.n_hidden
    blocks = {"W_xh": rng.standard_normal((N_INPUTS, n_h)) / math.sqrt(N_INPUTS),
              "W_hh": rng.standard_normal((n_h, n_h)) / math.sqrt(n_h),
              "b_h": 0.1 * rng.standard_normal(n_h),
              "W_hy": rng.standard_normal((n_h, N_OUTPUTS)) / math.sqrt(n_h),
              "b_y": 0.1 * rng.standard_normal(N_OUTPUTS),
              "h_0": 0.5 * rng.standard_normal(n_h)}
    theta = np.concatenate([blocks[name].reshape(-1) for name in model.layout.names])
    return {"theta": theta, "blocks": blocks,
            "inputs": rng.standard_normal((T, B, N_INPUTS)),
            "targets": rng.standard_normal((T, B, N_OUTPUTS)),
            "v": rng.standard_normal(model.n_params)}


def hessianfree_net(weights, n_hidden, dtype):
    """hessianfree's RNN with the flat weights ``weights`` (copied: the net keeps the array it is
    given as ``net.W`` and updates it in place)."""
    return hf.RNNet(shape=[N_INPUTS, n_hidden, N_OUTPUTS],
                    layers=[hf.nl.Linear(), hf.nl.Tanh(), hf.nl.Linear()],
                    loss_type=hf.loss_funcs.SquaredError(), rec_layers=[1], use_GPU=False,
                    debug=False, dtype=dtype, load_weights=np.array(weights, dtype=dtype),
                    rng=np.random.RandomState(0))


class Mapping:
    """φ: θ ↦ W (arrayhf's coordinates to hessianfree's) at the point θ, and M = ∂φ/∂θ."""

    def __init__(self, model, blocks):
        self.model, self.blocks = model, blocks
        n_h = model.n_hidden
        # hessianfree's flat layout: connection (pre, post) -> (start, end of weights, end of
        # biases) in net.offsets; the "bias" of the recurrent connection (1, 1) is c
        probe = hf.RNNet(shape=[N_INPUTS, n_h, N_OUTPUTS],
                         layers=[hf.nl.Linear(), hf.nl.Tanh(), hf.nl.Linear()], rec_layers=[1],
                         use_GPU=False, rng=np.random.RandomState(0))
        names = {(0, 1): ("W_xh", "b_h"), (1, 2): ("W_hy", "b_y"), (1, 1): ("W_hh", "c")}
        self.layout = {}
        for connection, (start, weights_end, biases_end) in probe.offsets.items():
            weight_name, bias_name = names[connection]
            pre, post = connection
            self.layout[weight_name] = (start, weights_end, (probe.shape[pre], probe.shape[post]))
            self.layout[bias_name] = (weights_end, biases_end, (probe.shape[post],))
        self.size = probe.W.size

    def _to_hessianfree(self, blocks) -> np.ndarray:
        flat = np.zeros(self.size)
        for name, (start, stop, _) in self.layout.items():
            flat[start:stop] = np.reshape(blocks[name], -1)
        return flat

    def _from_hessianfree(self, flat) -> dict:
        flat = np.asarray(flat, dtype=np.float64)
        return {name: np.reshape(flat[start:stop], shape)
                for name, (start, stop, shape) in self.layout.items()}

    def _to_arrayhf(self, blocks) -> np.ndarray:
        return np.concatenate([np.reshape(blocks[name], -1) for name in self.model.layout.names])

    def _arrayhf_blocks(self, flat) -> dict:
        return {name: np.reshape(flat[start:stop], self.model.layout.shapes[name])
                for name, (start, stop) in self.model.layout.offsets.items()}

    def phi(self) -> np.ndarray:
        """W = φ(θ): the shared blocks, and c = h_0 W_hh."""
        return self._to_hessianfree({**self.blocks, "c": self.blocks["h_0"] @ self.blocks["W_hh"]})

    def push(self, v) -> np.ndarray:
        """M v: the shared blocks, and v_c = v_h0 W_hh + h_0 v_Whh."""
        blocks = self._arrayhf_blocks(np.asarray(v, dtype=np.float64))
        blocks["c"] = blocks["h_0"] @ self.blocks["W_hh"] + self.blocks["h_0"] @ blocks["W_hh"]
        return self._to_hessianfree(blocks)

    def pull(self, u) -> np.ndarray:
        """Mᵀ u: W_hh block u_Whh + h_0ᵀ u_c, h_0 block u_c W_hhᵀ (c is not one of θ's blocks)."""
        blocks = self._from_hessianfree(u)
        c = blocks.pop("c")
        blocks["W_hh"] = blocks["W_hh"] + np.outer(self.blocks["h_0"], c)
        blocks["h_0"] = c @ self.blocks["W_hh"].T
        return self._to_arrayhf(blocks)


def relative_difference(a, b) -> float:
    """max|a − b| / max|b|: the largest deviation in units of the largest entry."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


# -- the two sides -------------------------------------------------------------------------------
class ArrayhfSide:
    """θ, the batch and v on arrayhf's backend, in one dtype."""

    def __init__(self, model, problem, xp, device, dtype):
        def move(array):
            return backend.from_host(array, xp, dtype=dtype, device=device)

        self.model = model
        self.params = move(problem["theta"])
        self.batch = Batch(move(problem["inputs"]), move(problem["targets"]))
        self.v = move(problem["v"])


class HessianfreeSide:
    """hessianfree's net at φ(θ), its batch-major batch and M v, in one dtype."""

    def __init__(self, mapping, problem, dtype):
        self.weights = np.array(mapping.phi(), dtype=dtype)
        self.inputs = np.ascontiguousarray(problem["inputs"].transpose(1, 0, 2), dtype=dtype)
        self.targets = np.ascontiguousarray(problem["targets"].transpose(1, 0, 2), dtype=dtype)
        self.v = np.array(mapping.push(problem["v"]), dtype=dtype)
        self.net = hessianfree_net(self.weights, mapping.model.n_hidden, dtype)
        self.net.cache_minibatch(self.inputs, self.targets)  # forward pass with derivatives


def agreement(ours: ArrayhfSide, theirs: HessianfreeSide, mapping, T) -> dict:
    """Relative differences of the loss, the gradient and G v, through the mapping."""
    model, params, batch = ours.model, ours.params, ours.batch
    cache = model.forward(params, batch.inputs)
    loss = float(model.loss(params, batch, cache))
    gradient = backend.to_numpy(model.gradient(params, batch, cache))
    product = backend.to_numpy(model.gauss_newton_product(params, batch, ours.v, cache))
    net = theirs.net
    their_loss = float(net.error())
    their_gradient = net.calc_grad().copy()
    their_product = net.calc_G(theirs.v, damping=0).copy()
    return {"loss": abs(their_loss / T - loss) / abs(loss),
            "gradient": relative_difference(mapping.pull(their_gradient) / T, gradient),
            "Gv": relative_difference(mapping.pull(their_product) / T, product),
            "loss_arrayhf": loss, "loss_hessianfree": their_loss}


# -- what is timed ------------------------------------------------------------------------------
def products(ours: ArrayhfSide, theirs: HessianfreeSide) -> dict:
    """Functions computing G v with the forward pass cached, as each library's CG does."""
    cache = ours.model.forward(ours.params, ours.batch.inputs)
    buffer = np.empty_like(theirs.v)
    return {"arrayhf": lambda: ours.model.gauss_newton_product(ours.params, ours.batch, ours.v,
                                                               cache),
            "hessianfree": lambda: theirs.net.calc_G(theirs.v, damping=0, out=buffer)}


# -- one HF iteration --------------------------------------------------------------------------
@contextlib.contextmanager
def martens_stop_disabled():
    """hessianfree's CG (``optimizers.HessianFree.conjugate_gradient``) applies Martens'
    relative-progress test once i > gap = max(int(0.1 i), 10), and no argument turns it off. The
    module looks ``max`` up in its globals before the builtins, so a module-level ``max`` that
    returns a huge number keeps i ≤ gap: CG then runs exactly ``CG_iter`` steps, unless the
    squared residual falls below 1e-20 or a step is not finite."""
    hf_optimizers.max = lambda *args: 1 << 62
    try:
        yield
    finally:
        del hf_optimizers.max


class CountedCalls:
    """A function that counts its calls (hessianfree's CG looks ``net.calc_G`` up when it
    starts, so a counter put in its place sees every product)."""

    def __init__(self, function):
        self.function, self.calls = function, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.function(*args, **kwargs)


class OneBatch:
    """arrayhf's data-object protocol for one fixed batch: gradient and curvature on it."""

    train_batches = [("train", 0)]
    test_batches: list = []

    def __init__(self, batch):
        self._batch = batch

    def batch(self, batch_id):
        return self._batch

    def forget(self):
        pass

    def zero_one_error(self, batch, predictions):
        return None


def hf_iterations(ours: ArrayhfSide, theirs: HessianfreeSide, args, rounds: int) -> dict:
    """Functions doing one HF iteration from the same start, each call the same work; and the
    CG steps and losses their calls saw."""
    seen = {"arrayhf": [], "hessianfree": []}
    model = copy.copy(ours.model)                   # the same model, its G v products counted
    model.gauss_newton_product = our_products = CountedCalls(ours.model.gauss_newton_product)
    optimizers = [arrayhf.HF(model, OneBatch(ours.batch), params=ours.params,
                             damping=args.damping, max_cg_iter=args.cg_steps,
                             min_cg_iter=args.cg_steps, rho_model="damped", test_every=0,
                             progress=False)
                  for _ in range(rounds)]

    def arrayhf_iteration():
        before = our_products.calls
        record = optimizers.pop().step()
        seen["arrayhf"].append({"cg_steps": record["cg_steps"], "cg_stop": record["cg_stop"],
                                "products": our_products.calls - before,
                                "loss_after": record["train_loss"]})
        return record

    net = theirs.net
    net.calc_G = their_products = CountedCalls(net.calc_G)

    def hessianfree_iteration():
        np.copyto(net.W, theirs.weights)            # the same start every round
        optimizer = hf.opt.HessianFree(CG_iter=args.cg_steps, init_damping=args.T * args.damping,
                                       plotting=False)
        net.optimizer = optimizer                   # sets optimizer.net = net
        before = their_products.calls
        net.cache_minibatch(theirs.inputs, theirs.targets)
        with martens_stop_disabled():
            net.W += optimizer.compute_update(printing=False)
        calls = their_products.calls - before
        stop = "max_iterations" if calls - 2 == args.cg_steps else "residual or non-finite step"
        seen["hessianfree"].append({"cg_steps": calls - 2, "cg_stop": stop, "products": calls})
        return net.W

    return {"functions": {"arrayhf": arrayhf_iteration, "hessianfree": hessianfree_iteration},
            "seen": seen}


# -- the benchmark -----------------------------------------------------------------------------
def measure(model, problem, mapping, dtype, args, xp, device) -> dict:
    T = args.T
    ours = ArrayhfSide(model, problem, xp, device, dtype)
    theirs = HessianfreeSide(mapping, problem, dtype)

    differences = agreement(ours, theirs, mapping, T)
    print(f"{dtype}: relative differences (hessianfree mapped to arrayhf's coordinates): "
          f"loss {differences['loss']:.2e}, gradient {differences['gradient']:.2e}, "
          f"G v {differences['Gv']:.2e}", flush=True)
    failed = [name for name in ("loss", "gradient", "Gv") if not differences[name] <= LIMITS[dtype]]
    if failed:
        raise SystemExit(f"{dtype}: arrayhf and hessianfree disagree on {', '.join(failed)} "
                         f"(relative differences {[differences[n] for n in failed]}, limit "
                         f"{LIMITS[dtype]})")

    gv = common.interleaved_medians(products(ours, theirs), repeats=args.repeats, warmup=2)
    warmup = 1
    iterations = hf_iterations(ours, theirs, args, rounds=warmup + args.repeats)
    iteration = common.interleaved_medians(iterations["functions"], repeats=args.repeats,
                                           warmup=warmup)
    seen = iterations["seen"]
    for library, calls in seen.items():
        steps = sorted({call["cg_steps"] for call in calls})
        if steps != [args.cg_steps]:
            stops = sorted({call["cg_stop"] for call in calls})
            raise SystemExit(f"{dtype}: {library}'s HF iterations ran {steps} CG steps (CG "
                             f"stopped by {stops}), expected exactly {args.cg_steps}: lower "
                             "--damping")
    # hessianfree's loss at its last round's new weights (a fresh forward pass: W changed)
    loss_after = float(theirs.net.error(theirs.net.W.copy()))
    seen["hessianfree"][-1]["loss_after"] = loss_after / T

    return {"dtype": dtype, "agreement": differences, "limit": LIMITS[dtype],
            "seconds": {"arrayhf Gv": gv["arrayhf"]["median"],
                        "hessianfree Gv": gv["hessianfree"]["median"],
                        "arrayhf HF iteration": iteration["arrayhf"]["median"],
                        "hessianfree HF iteration": iteration["hessianfree"]["median"]},
            "all_times": {"Gv": {name: result["times"] for name, result in gv.items()},
                          "HF iteration": {name: result["times"]
                                           for name, result in iteration.items()}},
            "hf_iteration": {"arrayhf": seen["arrayhf"][-1], "hessianfree": seen["hessianfree"][-1],
                             "loss_before": differences["loss_arrayhf"]}}


def report(results, args) -> None:
    where = args.backend + ("" if args.device is None else f" {args.device}")
    common.print_table(
        "agreement through the mapping: max|a − b| / max|b| (loss: |L_hf/T − L_ar| / |L_ar|)",
        ["dtype", "loss", "gradient", "G v", "limit"],
        [[r["dtype"], f"{r['agreement']['loss']:.1e}", f"{r['agreement']['gradient']:.1e}",
          f"{r['agreement']['Gv']:.1e}", f"{r['limit']:.0e}"] for r in results])

    rows = []
    for r in results:
        s = r["seconds"]
        for what, key in (("G v (forward cached)", "Gv"),
                          (f"HF iteration, {args.cg_steps} CG steps", "HF iteration")):
            ours, theirs = s[f"arrayhf {key}"], s[f"hessianfree {key}"]
            rows.append([r["dtype"], what, ours, theirs, theirs / ours])
    common.print_table(
        f"medians, T = {args.T}, batch {args.batch}, {args.hidden} hidden units, "
        f"{args.repeats} rounds: arrayhf on {where}, hessianfree on numpy",
        ["dtype", "operation", "arrayhf s", "hessianfree s", "hessianfree/arrayhf"], rows)

    rows = []
    for r in results:
        for library in ("arrayhf", "hessianfree"):
            seen = r["hf_iteration"][library]
            rows.append([r["dtype"], library, seen["cg_steps"], seen["products"],
                         r["hf_iteration"]["loss_before"], seen["loss_after"]])
    common.print_table(
        f"one HF iteration from the same start (damping: arrayhf {args.damping:g}, hessianfree "
        f"T·{args.damping:g}); loss as arrayhf's mean, L_hf / T",
        ["dtype", "library", "CG steps", "G v products", "loss before", "loss after"], rows)


def main():
    parser = common.options(__doc__.splitlines()[0], default_backend="numpy")
    parser.add_argument("--T", type=int, default=None,
                        help=f"sequence length (default {DEFAULTS['T']}; --quick {QUICK['T']})")
    parser.add_argument("--batch", type=int, default=None,
                        help=f"sequences (default {DEFAULTS['batch']}; --quick {QUICK['batch']})")
    parser.add_argument("--hidden", type=int, default=100, help="hidden units (default 100)")
    parser.add_argument("--cg-steps", type=int, default=None,
                        help=f"CG steps of the timed HF iteration (default "
                             f"{DEFAULTS['cg_steps']}; --quick {QUICK['cg_steps']})")
    parser.add_argument("--damping", type=float, default=1e-3,
                        help="arrayhf's λ of the HF iteration; hessianfree gets T·λ (default "
                             "1e-3: small enough that CG does not converge within its steps)")
    parser.add_argument("--dtypes", default="float64,float32")
    args = parser.parse_args()
    sizes = QUICK if args.quick else DEFAULTS
    for name, value in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    dtypes = [name.strip() for name in args.dtypes.split(",") if name.strip()]
    unknown = [name for name in dtypes if name not in LIMITS]
    if unknown:
        parser.error(f"expected dtypes among {list(LIMITS)}, got {unknown}")

    xp = backend.namespace(args.backend, device=args.device)
    device = backend.resolve_device(xp, args.device)
    model = arrayhf.RNN(N_INPUTS, args.hidden, N_OUTPUTS, hidden="tanh", output="linear",
                        biases=True)
    problem = draw_problem(model, args.T, args.batch)
    mapping = Mapping(model, problem["blocks"])
    print(f"RNN {N_INPUTS}-{args.hidden} tanh (recurrent)-{N_OUTPUTS} linear, squared error, "
          f"T = {args.T}, batch {args.batch}, {model.n_params} parameters; arrayhf "
          f"{arrayhf.__version__} on {args.backend}, hessianfree {hf.__version__} on numpy "
          f"{np.__version__}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}",
          flush=True)
    results = [measure(model, problem, mapping, dtype, args, xp, device) for dtype in dtypes]
    report(results, args)
    settings = {name: getattr(args, name) for name in
                ("T", "batch", "hidden", "cg_steps", "damping", "repeats", "backend", "device")}
    quick_path = common.RESULTS / "peer_quick.json" if args.quick else None
    common.write_json("peer", args.json or quick_path, {"settings": {**settings, "dtypes": dtypes},
                                          "results": results})


if __name__ == "__main__":
    main()
