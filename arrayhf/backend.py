"""Backend selection: array namespaces by name, devices, moving arrays between stacks.

This is host-side code (it may import numpy). Library code that computes on model arrays never
calls it on the hot path: it takes its namespace from its inputs. This module is where a user's
choice of backend ("numpy", "torch", "cupy", "jax", "array_api_strict") becomes a namespace and a
device, where host random numbers become backend arrays (the same seed gives the same numbers on
every backend), and where arrays cross from one stack to another.

Defaults come from the environment: ``ARRAYHF_BACKEND`` (default ``numpy``) and
``ARRAYHF_DEVICE`` (default: the backend's default device).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import array_api_compat
import numpy as np

BACKENDS = ("numpy", "torch", "cupy", "jax", "array_api_strict")

# the package a user has to install for each backend, for error messages
_PACKAGES = {
    "numpy": "numpy",
    "torch": "torch (pip install 'arrayhf[torch]')",
    "cupy": "cupy (pip install 'arrayhf[cupy]', needs an NVIDIA GPU)",
    "jax": "jax (pip install 'arrayhf[jax]')",
    "array_api_strict": "array-api-strict (pip install 'arrayhf[strict]')",
}
_ALIASES = {"strict": "array_api_strict", "array-api-strict": "array_api_strict", "np": "numpy"}


class BackendError(RuntimeError):
    """A backend or device is unknown, not installed, or unusable on this machine."""


def backend_name(name: str | None = None) -> str:
    """The canonical backend name for ``name`` (or ``$ARRAYHF_BACKEND``, default ``numpy``)."""
    if name is None:
        name = os.environ.get("ARRAYHF_BACKEND", "numpy")
    canonical = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if canonical not in BACKENDS:
        raise BackendError(
            f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}"
        )
    return canonical


def namespace(name: str | None = None, device: Any = None) -> Any:
    """The array namespace of backend ``name``.

    Parameters
    ----------
    name : {"numpy", "torch", "cupy", "jax", "array_api_strict"}, optional
        Default: ``$ARRAYHF_BACKEND``, else ``"numpy"``.
    device : optional
        When given (or set in ``$ARRAYHF_DEVICE``), it is resolved now with :func:`device`, so a
        device the machine lacks fails here with a clear message rather than at the first array.

    Returns
    -------
    The array-API-compatible namespace (``array_api_compat.numpy``, ``array_api_compat.torch``,
    ``array_api_compat.cupy``, ``jax.numpy`` or ``array_api_strict``).
    """
    canonical = backend_name(name)
    module_name = {
        "numpy": "array_api_compat.numpy",
        "torch": "array_api_compat.torch",
        "cupy": "array_api_compat.cupy",
        "jax": "jax.numpy",
        "array_api_strict": "array_api_strict",
    }[canonical]
    try:
        xp = importlib.import_module(module_name)
    except ImportError as error:
        raise BackendError(
            f"backend {canonical!r} needs the package {_PACKAGES[canonical]}, "
            f"which is not installed ({error})"
        ) from error
    if canonical == "cupy":
        import cupy

        if not cupy.is_available():
            raise BackendError("backend 'cupy' needs a CUDA device, and none is available")
    if device is not None or os.environ.get("ARRAYHF_DEVICE"):
        resolve_device(xp, device)
    return xp


def name_of(xp: Any) -> str:
    """The backend name of a namespace (inverse of :func:`namespace`)."""
    if array_api_compat.is_numpy_namespace(xp):
        return "numpy"
    if array_api_compat.is_torch_namespace(xp):
        return "torch"
    if array_api_compat.is_cupy_namespace(xp):
        return "cupy"
    if array_api_compat.is_jax_namespace(xp):
        return "jax"
    if array_api_compat.is_array_api_strict_namespace(xp):
        return "array_api_strict"
    raise BackendError(f"unsupported array namespace {getattr(xp, '__name__', xp)!r}")


def resolve_device(xp: Any, device: Any = None) -> Any:
    """The device object of namespace ``xp`` for ``device`` (a string, a device object, or None).

    ``None`` means ``$ARRAYHF_DEVICE`` if set, else the backend's default device. Strings:
    numpy "cpu"; torch "cpu", "cuda", "cuda:1"; cupy "cuda", "cuda:0"; jax "cpu", "gpu",
    "gpu:1"; array_api_strict "CPU_DEVICE", "device1", "device2".
    """
    if device is None:
        device = os.environ.get("ARRAYHF_DEVICE") or None
    name = name_of(xp)
    if device is None:
        if name == "numpy":
            return "cpu"
        if name == "torch":
            import torch

            return torch.get_default_device()
        if name == "jax":
            import jax

            return jax.devices()[0]
        if name == "cupy":
            import cupy

            return cupy.cuda.Device()
        return xp.Device("CPU_DEVICE")
    if not isinstance(device, str):
        return device
    if name == "numpy":
        if device != "cpu":
            raise BackendError(f"backend 'numpy' has only the device 'cpu', got {device!r}")
        return "cpu"
    if name == "torch":
        import torch

        resolved = torch.device(device)
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} asked for, but torch sees no CUDA device")
        return resolved
    if name == "cupy":
        import cupy

        index = int(device.split(":")[-1]) if device[-1].isdigit() else 0
        return cupy.cuda.Device(index)
    if name == "jax":
        import jax

        kind, _, position = device.partition(":")
        try:
            return jax.devices(kind)[int(position or 0)]
        except (RuntimeError, IndexError) as error:
            raise BackendError(f"jax has no device {device!r}: {error}") from error
    return xp.Device(device)


def resolve_dtype(xp: Any, dtype: Any = None) -> Any:
    """The dtype of ``xp`` for ``dtype``: "float32", "float64", a dtype, or None (float64)."""
    if dtype is None:
        dtype = "float64"
    if isinstance(dtype, str):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"expected dtype 'float32' or 'float64', got {dtype!r}")
        return getattr(xp, dtype)
    if dtype not in (xp.float32, xp.float64):
        raise ValueError(f"expected a float32 or float64 dtype of {name_of(xp)}, got {dtype!r}")
    return dtype


def enable_float64(xp: Any, dtype: Any) -> None:
    """Switch JAX to 64-bit mode when ``dtype`` is float64 (JAX computes in float32 otherwise,
    silently); nothing for any other backend or dtype. The one place arrayhf flips the switch."""
    if name_of(xp) == "jax" and dtype in ("float64", "double"):
        import jax

        jax.config.update("jax_enable_x64", True)


def from_host(array: Any, xp: Any, *, dtype: Any = None, device: Any = None) -> Any:
    """Move a host (numpy) array to backend ``xp`` with the given dtype and device.

    Raises if the backend silently changes the dtype, as JAX does with float64 when its 64-bit
    mode is off.
    """
    host = np.asarray(array)
    if dtype is None and not np.issubdtype(host.dtype, np.floating):
        return xp.asarray(host, device=resolve_device(xp, device))  # integer ids, booleans
    target_dtype = resolve_dtype(xp, dtype)
    host = host.astype("float64" if target_dtype == xp.float64 else "float32")
    result = xp.asarray(host, device=resolve_device(xp, device))
    if result.dtype != target_dtype:
        hint = ""
        if name_of(xp) == "jax":
            hint = (" JAX runs in 32-bit mode unless told otherwise: set JAX_ENABLE_X64=1 or call "
                    "jax.config.update('jax_enable_x64', True) before creating arrays.")
        raise BackendError(
            f"asked for {target_dtype} on {name_of(xp)}, got {result.dtype}.{hint}")
    return result


def to_numpy(array: Any) -> np.ndarray:
    """A host numpy copy (or view, where the stack allows) of any backend's array."""
    if isinstance(array, np.ndarray):
        return array
    if array_api_compat.is_torch_array(array):
        return array.detach().cpu().numpy()
    if array_api_compat.is_cupy_array(array):
        return array.get()
    try:
        return np.from_dlpack(array)
    except (TypeError, RuntimeError, BufferError, AttributeError):
        return np.asarray(array)


def to(array: Any, backend: str, device: Any = None) -> Any:
    """Move ``array`` to another backend (and device): DLPack when the pair supports it, else a
    host copy. Dtype and values are kept exactly."""
    xp = namespace(backend)
    target = resolve_device(xp, device)
    try:
        moved = xp.from_dlpack(array)
        if array_api_compat.device(moved) != target:
            moved = xp.asarray(to_numpy(array), device=target)
        return moved
    except (TypeError, RuntimeError, BufferError, AttributeError, ValueError):
        return xp.asarray(to_numpy(array), device=target)


def host_rng(seed: int | np.random.Generator) -> np.random.Generator:
    """The host random generator for ``seed`` (an int, or an existing Generator passed through)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def normal(seed: int | np.random.Generator, shape: int | tuple[int, ...], xp: Any, *,
           dtype: Any = None, device: Any = None, scale: float = 1.0) -> Any:
    """Standard normal numbers drawn on the host (float64) and moved to ``xp``: the same seed
    gives the same numbers on every backend."""
    return from_host(scale * host_rng(seed).standard_normal(shape), xp, dtype=dtype,
                     device=device)
