"""The inputs of the recurrent models: float rows ``[T, B, n_in]`` (one-hot rows, or any features)
or integer character ids ``[T, B]`` of any integer dtype in [0, n_in), which stand for their one-hot
rows (derivations/mrnn.md, "Character ids", eq. (M23)).

With ids, x_t W is a row gather ``take(W, ids)`` (no dense one-hot on the forward and R-forward
paths). The weight gradients Σ_t x_tᵀ D_t are a scatter-add of the rows of D into the ids' rows,
which the array API lacks, so they are computed portably as products E_tᵀ D_t with the one-hot rows
E_t = (ids_t == alphabet) built from the ids: per step (:func:`step_rows`, in a BPTT loop) or for
all T·B positions at once (:func:`input_rows`, where the gradients are batched over time). A gather
returns exactly the rows the one-hot product returns, and the backward products multiply by the
same one-hot rows, so ids and their one-hot rows give the same numbers bit for bit.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from arrayhf._validate import check_floating


def check_inputs(xp: Any, inputs: Any, n_inputs: int, dtype: Any) -> None:
    """Float inputs ``[T, B, n_inputs]`` of ``dtype`` (θ's), or integer ids ``[T, B]`` in
    [0, n_inputs). The range check pulls one Python bool, once per public call."""
    shape = list(inputs.shape)
    expected = (f"expected inputs of shape [*, *] of an integer dtype (character ids) or "
                f"[*, *, {n_inputs}] of dtype {dtype}")
    if len(shape) == 2:
        if not xp.isdtype(inputs.dtype, "integral"):
            raise TypeError(f"{expected}, got {shape} of dtype {inputs.dtype}")
        limits = xp.iinfo(inputs.dtype)  # compare only with scalars the dtype can hold
        valid = inputs >= 0 if limits.min < 0 else None
        if n_inputs <= limits.max:
            below = inputs < n_inputs
            valid = below if valid is None else valid & below
        if valid is not None and not bool(xp.all(valid)):
            raise ValueError(
                f"expected character ids in [0, {n_inputs}) (n_inputs = {n_inputs}), got ids "
                f"from {int(xp.min(inputs))} to {int(xp.max(inputs))}")
        return
    if len(shape) != 3 or shape[2] != n_inputs:
        raise ValueError(f"{expected}, got {shape}")
    check_floating(xp, "inputs", inputs, dtype)


def positions(inputs: Any) -> tuple:
    """The (time step, sequence) axes: all of ``[T, B]`` ids, or ``[T, B, n_in]`` less its last."""
    return tuple(inputs.shape) if inputs.ndim == 2 else tuple(inputs.shape[:-1])


def flat_ids(xp: Any, inputs: Any) -> Any:
    """The ids as one ``[T·B]`` index vector of int32 or int64 (what every backend's take and
    comparison accept; ids are checked to lie in [0, n_in), so int32 holds them)."""
    ids = xp.reshape(inputs, (-1,))
    if ids.dtype == xp.int32 or ids.dtype == xp.int64:
        return ids
    return xp.astype(ids, xp.int32)


def input_product(xp: Any, inputs: Any, weights: Any) -> Any:
    """x_t W for every t, ``[T, B, n]``: one matrix product for float rows, a row gather
    ``take(W, ids)`` for ids (eq. (M23))."""
    if inputs.ndim == 2:
        rows = xp.take(weights, flat_ids(xp, inputs), axis=0)
        return xp.reshape(rows, (inputs.shape[0], inputs.shape[1], weights.shape[1]))
    return inputs @ weights


def input_steps(xp: Any, inputs: Any) -> tuple:
    """The T per-step inputs x_t, for the loops: float rows ``[B, n_in]``, or ids ``[B]`` of
    int32 or int64."""
    if inputs.ndim == 2:
        inputs = xp.reshape(flat_ids(xp, inputs), tuple(inputs.shape))
    return xp.unstack(inputs, axis=0)


def step_product(xp: Any, input_step: Any, weights: Any) -> Any:
    """x_t W for one step: a row gather ``take(W, ids)`` for ids ``[B]``, a product for rows
    ``[B, n_in]`` (eq. (M23))."""
    if input_step.ndim == 1:
        return xp.take(weights, input_step, axis=0)
    return input_step @ weights


def alphabet(xp: Any, inputs: Any, n_inputs: int) -> Any:
    """0, 1, …, n_in − 1 in the ids' index dtype, the columns the one-hot rows compare with; None
    for float rows. Made once per backward pass, for :func:`step_rows`."""
    if inputs.ndim != 2:
        return None
    index_dtype = xp.int64 if inputs.dtype == xp.int64 else xp.int32   # flat_ids's
    return xp.arange(n_inputs, dtype=index_dtype, device=array_api_compat.device(inputs))


def step_rows(xp: Any, input_step: Any, columns: Any, dtype: Any) -> Any:
    """x_t as rows ``[B, n_in]`` for x_tᵀ D: for ids ``[B]``, their one-hot rows
    E_t = (ids == ``columns``) (:func:`alphabet`), so that E_tᵀ D is the scatter-add of D's rows the
    array API lacks (eq. (M23)); float rows as given."""
    if input_step.ndim == 1:
        return xp.astype(xp.reshape(input_step, (-1, 1)) == columns, dtype)
    return input_step


def input_rows(xp: Any, inputs: Any, n_inputs: int, dtype: Any) -> Any:
    """flat(x) ``[T·B, n_in]``, so that Σ_t x_tᵀ D_t = flat(x)ᵀ flat(D) in one product: float rows
    as given, or the one-hot rows E of every position's id (eq. (M23))."""
    if inputs.ndim == 2:
        ids = xp.reshape(flat_ids(xp, inputs), (-1, 1))
        columns = xp.arange(n_inputs, dtype=ids.dtype, device=array_api_compat.device(ids))
        return xp.astype(ids == columns, dtype)
    return xp.reshape(inputs, (inputs.shape[0] * inputs.shape[1], inputs.shape[2]))
