"""Test sessions, one per backend. Plain ``nox`` runs them all; tests-cupy skips (saying why)
where no CUDA device exists. Dependencies come from pyproject.toml's extras only.

    nox                         # everything a CPU machine can run
    nox -s tests-torch          # one backend; on a CUDA machine it also runs on device cuda
    nox -s tests-numpy -- -k fnn -x     # arguments after -- go to pytest
    nox -s docs                 # the documentation site, docs/_build/html, and its browser test
    nox -s bench                # the CPU benchmarks (not part of plain nox), about 15 minutes
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.sessions = ["lint", "tests-numpy", "tests-strict", "tests-torch", "tests-jax",
                        "tests-cupy", "docs"]
nox.options.default_venv_backend = "venv"


def _pytest(session, *args):
    session.run("pytest", *args, *session.posargs)


@nox.session
def lint(session):
    session.install(".[lint]")
    session.run("ruff", "check", ".")
    session.run("mypy")   # pyproject.toml's [tool.mypy]: the arrayhf package


@nox.session(name="tests-numpy")
def tests_numpy(session):
    session.install(".[test]")
    _pytest(session, "--backend", "numpy")


@nox.session(name="tests-strict")
def tests_strict(session):
    """array-api-strict on its default device, then on its second device: any array created
    without ``device=`` raises there, which is how a CPU machine catches what would break CUDA."""
    session.install(".[test,strict]")
    _pytest(session, "--backend", "array_api_strict")
    _pytest(session, "--backend", "array_api_strict", "--device", "device1")


@nox.session(name="tests-torch")
def tests_torch(session):
    session.install(".[test,torch]")
    _pytest(session, "--backend", "torch", "--device", "cpu")
    has_cuda = session.run("python", "-c", "import torch; print(torch.cuda.is_available())",
                           silent=True)
    if "True" in has_cuda:
        _pytest(session, "--backend", "torch", "--device", "cuda")
    else:
        session.log("torch: no CUDA device on this machine; the suite ran on device cpu only")


@nox.session(name="tests-jax")
def tests_jax(session):
    session.install(".[test,jax]")
    _pytest(session, "--backend", "jax")


def _nvidia_driver_present() -> bool:
    return shutil.which("nvidia-smi") is not None or os.path.exists("/dev/nvidiactl")


@nox.session(name="tests-cupy")
def tests_cupy(session):
    """CuPy needs a CUDA device. Without an NVIDIA driver the session skips before downloading
    CuPy; with one, it installs CuPy and checks ``cupy.is_available()`` (``import cupy`` succeeds
    without a GPU, the first allocation is what fails)."""
    if not _nvidia_driver_present():
        session.skip("tests-cupy: no CUDA device on this machine (no NVIDIA driver: nvidia-smi "
                     "and /dev/nvidiactl are absent); the CuPy suite did not run")
    session.install(".[test,cupy]")
    available = session.run("python", "-c", "import cupy; print(cupy.is_available())",
                            silent=True)
    if "True" not in available:
        session.skip("tests-cupy: CuPy is installed but cupy.is_available() is False: no usable "
                     "CUDA device; the CuPy suite did not run")
    _pytest(session, "--backend", "cupy")


@nox.session
def docs(session):
    """The documentation site, built from scratch into docs/_build/html with warnings as errors
    (docs/conf.py), then its tests (docs/test_*.py): what the pages hold, and in a headless
    Chromium the rendered maths and the equation and code links, with screenshots in
    docs/_build/screenshots. Where Debian's chromium and chromium-driver are not installed the
    browser test skips and says so. To read the site: python -m http.server -d docs/_build/html"""
    session.install(".[docs]")
    shutil.rmtree("docs/_build", ignore_errors=True)
    session.run("sphinx-build", "-W", "--keep-going", "-E", "-q", "-b", "html", "docs",
                "docs/_build/html")
    session.run("pytest", "docs", *session.posargs)


# The sizes nox -s bench runs on a 2-core CPU in about 20 minutes; bench/README.md gives the
# commands for the full sizes and for a GPU (bench/gpu.sh).
BENCH_RUNS = [
    ["bench.micro.gv"],
    ["bench.micro.peer", "--T", "200", "--batch", "1000", "--cg-steps", "3", "--repeats", "3"],
    ["bench.experiments.end_to_end", "--problems", "addition", "--T", "20", "--batch-size", "300",
     "--seeds", "0", "--backends", "numpy,torch", "--time-limit", "100", "--adam-lrs", "1e-3",
     "--peer"],
    ["bench.experiments.long_range", "--problems", "temporal_order", "--seeds", "0",
     "--no-structural", ""],
    ["bench.tools.gpu_estimate"],
]


@nox.session
def bench(session):
    """Gv against torch.func, against a gradient and against BLAS; against the peer library
    hessianfree; HF end to end against Adam. Tables on stdout, JSON in bench/results/. The
    suite's modules run from the repository root (``python -m bench.micro.gv``), not installed."""
    session.install(".[bench,test]")
    for run in BENCH_RUNS:
        session.run("python", "-m", *run, *session.posargs)
