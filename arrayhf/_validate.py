"""Argument checks shared by the public entry points: one namespace, one device, one dtype, shapes.

Imports no backend: it works on whatever arrays it is given. Every check raises before any work is
done, with a message that says what was expected and what was received.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import array_api_compat


def is_integer(value: object) -> bool:
    """A Python or numpy integer, and not a bool (``True`` is an ``int`` to Python, but never a
    count, a size or a seed here)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def _backend_label(array) -> str:
    return type(array).__module__.split(".")[0] + "." + type(array).__name__


def namespace_of(*arrays: Any) -> Any:
    """The one array namespace of ``arrays`` (None entries ignored).

    Raises TypeError when the arrays come from two backends, and ValueError when they sit on two
    devices: both name what they found.
    """
    present = [a for a in arrays if a is not None]
    for array in present:
        if not array_api_compat.is_array_api_obj(array):
            raise TypeError(f"expected arrays (numpy, torch, cupy, jax, array_api_strict), got "
                            f"a {type(array).__module__}.{type(array).__name__}")
    try:
        xp = array_api_compat.array_namespace(*present)
    except TypeError as error:
        kinds = sorted({_backend_label(a) for a in present})
        raise TypeError(
            f"arrays from more than one backend in one call ({', '.join(kinds)}): move them to "
            f"one backend first (arrayhf.backend.to)"
        ) from error
    devices = []
    for array in present:
        where = array_api_compat.device(array)
        if where not in devices:
            devices.append(where)
    if len(devices) > 1:
        raise ValueError(
            f"arrays on more than one device in one call ({', '.join(map(str, devices))}): "
            f"move them to one device first"
        )
    return xp


def check_floating(xp: Any, name: str, array: Any, dtype: Any = None) -> None:
    """``array`` is real floating point (and of ``dtype`` when given)."""
    if not xp.isdtype(array.dtype, "real floating"):
        raise TypeError(f"expected {name} of a real floating dtype, got {array.dtype}")
    if dtype is not None and array.dtype != dtype:
        raise TypeError(f"expected {name} of dtype {dtype} (that of params), got {array.dtype}")


def check_shape(name: str, array: Any, expected: tuple) -> None:
    """``array.shape == expected``; ``None`` in ``expected`` matches any size."""
    shape = tuple(array.shape)
    if len(shape) != len(expected) or any(
        want is not None and got != want for got, want in zip(shape, expected)
    ):
        pretty = ", ".join("*" if s is None else str(s) for s in expected)
        raise ValueError(f"expected {name} of shape [{pretty}], got {list(shape)}")


def check_finite(xp: Any, name: str, array: Any) -> None:
    """Every entry of a floating ``array`` is finite (no NaN, no ±Inf); integer and boolean arrays
    pass. One reduction and one host read: call it where values enter (data sets, the HF driver,
    loading), not inside the passes."""
    if not xp.isdtype(array.dtype, "real floating"):
        return
    finite = xp.isfinite(array)
    if not bool(xp.all(finite)):
        bad = int(xp.sum(xp.astype(xp.logical_not(finite), array.dtype)))
        raise ValueError(f"expected finite values in {name}, got {bad} NaN or Inf entries of "
                         f"{math.prod(array.shape)}")
