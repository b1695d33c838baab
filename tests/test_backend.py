"""The backend layer: names, devices, host RNG -> backend arrays, moving arrays across stacks, and
the errors a user sees when a backend is missing or arrays are mixed."""

from __future__ import annotations

import importlib

import array_api_compat
import array_api_strict
import numpy as np
import pytest
import torch

import arrayhf
from arrayhf import backend
from arrayhf._validate import namespace_of

from helpers import host


def test_namespace_names_round_trip(xp):
    assert backend.namespace(backend.name_of(xp)) is xp


def test_aliases_and_environment_default(monkeypatch):
    assert backend.backend_name("strict") == "array_api_strict"
    monkeypatch.setenv("ARRAYHF_BACKEND", "array_api_strict")
    assert backend.namespace() is array_api_strict
    monkeypatch.delenv("ARRAYHF_BACKEND")
    assert backend.name_of(backend.namespace()) == "numpy"


def test_environment_device_is_used(monkeypatch):
    monkeypatch.setenv("ARRAYHF_BACKEND", "array_api_strict")
    monkeypatch.setenv("ARRAYHF_DEVICE", "device1")
    params = arrayhf.FNN([2, 3, 1]).init(0)
    assert array_api_compat.device(params) == array_api_strict.Device("device1")


def test_unknown_backend_is_refused():
    with pytest.raises(backend.BackendError, match="unknown backend 'tensorflow'"):
        backend.namespace("tensorflow")


def test_missing_backend_names_the_package(monkeypatch):
    real_import = importlib.import_module

    def import_without_jax(name, *args):
        if name.startswith("jax"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", import_without_jax)
    with pytest.raises(backend.BackendError, match=r"needs the package jax \(pip install"):
        backend.namespace("jax")


def test_unavailable_devices_are_refused():
    with pytest.raises(backend.BackendError, match="only the device 'cpu'"):
        backend.resolve_device(backend.namespace("numpy"), "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(backend.BackendError, match="torch sees no CUDA device"):
            backend.namespace("torch", device="cuda")


def test_host_random_numbers_are_the_same_on_every_backend(xp, device):
    drawn = backend.normal(11, (3, 4), xp, device=device)
    expected = np.random.default_rng(11).standard_normal((3, 4))
    np.testing.assert_array_equal(host(drawn), expected)
    assert array_api_compat.device(drawn) == device


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_from_host_keeps_dtype_and_device(xp, device, dtype):
    array = backend.from_host(np.arange(6.0).reshape(2, 3), xp, dtype=dtype, device=device)
    assert array.dtype == getattr(xp, dtype)
    assert array_api_compat.device(array) == device


def test_bad_dtype_is_refused(xp):
    with pytest.raises(ValueError, match="expected dtype 'float32' or 'float64', got 'float16'"):
        backend.from_host(np.zeros(2), xp, dtype="float16")


@pytest.mark.parametrize("target", ["numpy", "torch", "array_api_strict"])
def test_arrays_move_between_stacks_exactly(xp, device, target):
    values = np.random.default_rng(0).standard_normal((4, 5))
    source = backend.from_host(values, xp, device=device)
    moved = backend.to(source, target)
    assert namespace_of(moved) is backend.namespace(target)
    assert moved.dtype == backend.namespace(target).float64
    np.testing.assert_array_equal(host(moved), values)
    back = backend.to(moved, backend.name_of(xp), device=device)
    np.testing.assert_array_equal(host(back), values)
    assert array_api_compat.device(back) == device


def test_numpy_to_torch_shares_memory_through_dlpack():
    values = np.arange(5.0)
    moved = backend.to(values, "torch")
    assert moved.data_ptr() == values.ctypes.data


def test_arrays_from_two_backends_in_one_call_are_refused():
    with pytest.raises(TypeError, match=r"more than one backend.*(numpy|torch)"):
        namespace_of(np.zeros(2), torch.zeros(2))


def test_arrays_on_two_devices_in_one_call_are_refused():
    on_cpu = array_api_strict.asarray([1.0, 2.0])
    on_device1 = array_api_strict.asarray([1.0, 2.0], device=array_api_strict.Device("device1"))
    with pytest.raises(ValueError, match="arrays on more than one device"):
        namespace_of(on_cpu, on_device1)
    model = arrayhf.FNN([2, 1], output="linear")
    params = model.init(0, xp=array_api_strict)
    inputs = array_api_strict.zeros((3, 2), dtype=array_api_strict.float64,
                                    device=array_api_strict.Device("device1"))
    with pytest.raises(ValueError, match="arrays on more than one device"):
        model.forward(params, inputs)


@pytest.mark.only_backend("jax")
def test_jax_float64_without_64_bit_mode_is_a_clear_error():
    """Run in a subprocess: JAX's 64-bit switch is process-wide."""
    import subprocess
    import sys

    code = ("import numpy as np\nfrom arrayhf import backend\n"
            "try:\n backend.from_host(np.zeros(2), backend.namespace('jax'), dtype='float64')\n"
            "except backend.BackendError as e:\n print('refused:', e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"JAX_ENABLE_X64": "0", "PATH": ""}, check=True)
    assert "refused:" in result.stdout and "jax_enable_x64" in result.stdout
