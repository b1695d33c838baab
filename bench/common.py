"""What every benchmark shares: command-line options, interleaved timing with warm-up and medians,
waiting for asynchronous backends, counting host syncs inside CG, the machine's description,
tables and JSON results.

Host-side benchmark code: it may import numpy and the backends. Timings of the things compared are
always taken in the same process, interleaved round by round (A, B, A, B, ...), after warm-up
calls, and reported as medians; ratios are of medians.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import time

import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
# the torch.Tensor methods that move a value from the device to Python
SYNC_METHODS = ("__float__", "__bool__", "__int__", "item", "numpy", "tolist")


def options(description: str, *, default_backend: str = "torch") -> argparse.ArgumentParser:
    """The options every benchmark takes; a script adds its own before ``parse_args``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--backend", default=default_backend,
                        help=f"backend of the hand-derived routines (default {default_backend})")
    parser.add_argument("--device", default=None, help="e.g. cuda")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repeats: checks that the script runs")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (median)")
    parser.add_argument("--json", default=None, help="where to write the results (default "
                                                     "bench/results/NAME.json)")
    return parser


def autoencoder(small: bool) -> tuple[list[int], list[str]]:
    """(layer sizes, hidden nonlinearities) of HF10's CURVES autoencoder, or with ``small`` a
    64-input autoencoder of the same form (logistic layers around a linear 6-unit code)."""
    from arrayhf.data.curves import CURVES_HIDDEN, CURVES_SIZES

    if small:
        return [64, 32, 16, 6, 16, 32, 64], ["logistic"] * 2 + ["linear"] + ["logistic"] * 2
    return CURVES_SIZES, CURVES_HIDDEN


def synchronize(result) -> None:
    """Wait until an asynchronous backend has finished computing ``result`` (a tree of arrays)."""
    if isinstance(result, tuple | list):
        for part in result:
            synchronize(part)
        return
    if isinstance(result, dict):
        for part in result.values():
            synchronize(part)
        return
    module = type(result).__module__.split(".")[0]
    if module == "torch" and result.is_cuda:
        import torch

        torch.cuda.synchronize(result.device)
    elif module in ("jax", "jaxlib"):
        result.block_until_ready()
    elif module == "cupy":
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def interleaved_medians(functions: dict, *, repeats: int, warmup: int = 2) -> dict:
    """{name: {"median": s, "times": [...]}}: each function called ``warmup`` times, then once per
    round for ``repeats`` rounds, in turn, so that slow drifts of the machine hit all alike."""
    for _ in range(warmup):
        for function in functions.values():
            synchronize(function())
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            synchronize(function())
            times[name].append(time.perf_counter() - started)
    return {name: {"median": statistics.median(t), "times": t} for name, t in times.items()}


@contextlib.contextmanager
def replaced_in_arrayhf(name: str, wrap):
    """Within: the function ``name`` replaced by ``wrap(original)`` in every loaded arrayhf module
    that holds it (wherever the library imported it from), then put back."""
    holders = [module for key, module in list(sys.modules.items())
               if key.split(".")[0] == "arrayhf" and callable(getattr(module, name, None))]
    originals = {id(module): getattr(module, name) for module in holders}
    for module in holders:
        setattr(module, name, wrap(originals[id(module)]))
    try:
        yield
    finally:
        for module in holders:
            setattr(module, name, originals[id(module)])


@contextlib.contextmanager
def counting_cg():
    """Within: the calls of arrayhf's ``conjugate_gradient`` counted, with the torch host syncs
    (``SYNC_METHODS``) made while CG runs. Yields the counts: ``syncs``, ``steps`` (CG steps of
    every run), and ``active`` (whether CG is running now, for other counters)."""
    import torch

    counts = {"syncs": 0, "steps": 0, "active": False}
    originals = {method: getattr(torch.Tensor, method) for method in SYNC_METHODS}
    for method, original in originals.items():
        def counting(self, *args, _original=original, **kwargs):
            counts["syncs"] += counts["active"]
            return _original(self, *args, **kwargs)

        setattr(torch.Tensor, method, counting)

    def wrap(conjugate_gradient):
        def counted(*args, **kwargs):
            counts["active"] = True
            try:
                result = conjugate_gradient(*args, **kwargs)
            finally:
                counts["active"] = False
            counts["steps"] += result.n_steps
            return result
        return counted

    try:
        with replaced_in_arrayhf("conjugate_gradient", wrap):
            yield counts
    finally:
        for method, original in originals.items():
            setattr(torch.Tensor, method, original)


def machine() -> dict:
    """The machine and software the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("torch", "jax", "cupy", "hessianfree"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    info = {"date": datetime.date.today().isoformat(), "cpu": cpu, "cores": os.cpu_count(),
            "platform": platform.platform(), "versions": versions,
            "threads": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
                        if os.environ.get(k)}}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def print_table(title: str, columns: list[str], rows: list[list]) -> None:
    """A plain-text table: numbers to 4 significant digits."""
    def cell(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in text)) if text else len(c)
              for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in text:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def write_json(name: str, path, payload: dict) -> pathlib.Path:
    """Write the results with the machine's description; returns the path."""
    target = pathlib.Path(path) if path else RESULTS / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"benchmark": name, "machine": machine(),
                                  "command": " ".join(sys.argv), **payload}, indent=1) + "\n")
    print(f"\nresults: {target}")
    return target
