"""Preconditioned conjugate gradient on any linear operator, with Martens' stopping rule.

CG minimizes the quadratic model φ(x) = ½ xᵀA x − bᵀx (A symmetric positive definite, given only
as a function x ↦ A x), i.e. solves A x = b. HF calls it with A = G + λμS + (λ + w)I (structural
damping S for recurrent models, weight cost w; eq. (H2)) and b = −g = −(∇L + wθ), the gradient of
the objective L + ½w‖θ‖² (eq. (H1)). Each step is the exact minimization of φ along its direction
(eq. (C0a)), so φ decreases at every step (eq. (C0b)). Besides the usual residual and iteration
limits, it stops by *relative progress* (Martens 2010): after step i, with k = max(10, ⌈0.1 i⌉),

    stop when i > k, φ_i < 0 and (φ_i − φ_{i−k}) / φ_i < k ε        (cg-and-damping.md, (C6))

It keeps the iterates at i = ⌈5·1.3ʲ⌉ and the last one, for HF's backtracking. It stops cleanly
(and returns the last good iterate) on non-positive curvature pᵀAp ≤ 0 and on non-finite values.
Every equation is in derivations/cg-and-damping.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from arrayhf._validate import check_shape, namespace_of

STOP_RELATIVE_PROGRESS = "relative_progress"
STOP_RESIDUAL = "residual"
STOP_MAX_ITERATIONS = "max_iterations"
STOP_NON_POSITIVE_CURVATURE = "non_positive_curvature"
STOP_NOT_FINITE = "not_finite"


def backtracking_steps(max_iterations: int) -> list[int]:
    """The steps i = ⌈5·1.3ʲ⌉, j = 0, 1, …, up to max_iterations, whose iterates CG keeps."""
    steps, j = [], 0
    while (step := math.ceil(5 * 1.3**j)) <= max_iterations:
        if step not in steps:
            steps.append(step)
        j += 1
    return steps


@dataclass
class CGStep:
    """What one CG step reports to a callback: the rows of HF's detailed_results."""

    step: int
    model_value: float       # φ(x_i)
    x_norm: float            # ‖x_i‖
    residual_norm: float     # ‖r_i‖
    seconds: float           # wall time of this step


@dataclass
class CGResult:
    """The outcome of one CG run."""

    solution: Any                      # the last iterate x (the last good one on a failure)
    iterates: list = field(default_factory=list)   # [(i, x_i)]: the kept steps and the last
    model_values: list = field(default_factory=list)  # [φ_0, φ_1, …]
    n_steps: int = 0
    stop_reason: str = ""
    restarted_from_zero: bool = False  # the warm start had φ(x_0) > 0 and was dropped (C7)


def conjugate_gradient(
    operator: Callable,
    b,
    x0=None,
    *,
    preconditioner=None,
    max_iterations: int = 250,
    min_iterations: int = 1,
    epsilon: float = 5e-4,
    residual_tolerance: float = 1e-10,
    keep_steps: list[int] | None = None,
    callback: Callable[[CGStep], None] | None = None,
) -> CGResult:
    """Minimize φ(x) = ½ xᵀA x − bᵀx by preconditioned CG, A given as ``operator(x) = A x``.

    Parameters
    ----------
    operator : callable
        x ↦ A x, A symmetric positive (semi-)definite, on arrays of b's namespace and shape.
    b : array, 1-D
    x0 : array, optional
        Warm start (HF passes the previous solution × 0.95); zeros by default. A warm start whose
        model value φ(x_0) is positive, i.e. worse than x = 0, is dropped and CG starts from 0
        (eq. (C7); it happens when the curvature or the gradient changed a lot since the previous
        iteration).
    preconditioner : array, optional
        The diagonal of M (M ≈ A, all entries > 0); CG then works with M⁻¹ r (eq. (C3)).
    max_iterations, min_iterations : int
        Hard limits on the number of CG steps (the relative-progress rule is not applied before
        ``min_iterations``).
    epsilon : float
        ε of the relative-progress rule (Martens: 5e-4).
    residual_tolerance : float
        Stop when ‖r‖ ≤ this.
    keep_steps : list of int, optional
        Steps whose iterates are kept; default ``backtracking_steps(max_iterations)``.
    callback : callable, optional
        Called with a :class:`CGStep` after every step.

    Returns
    -------
    CGResult
        ``solution``, the kept ``iterates`` [(i, x_i)] (always ending with the last step),
        ``model_values`` [φ_0 … φ_n], ``n_steps`` and ``stop_reason`` (one of
        "relative_progress", "residual", "max_iterations", "non_positive_curvature",
        "not_finite").
    """
    xp = namespace_of(b, x0, preconditioner)
    check_shape("b", b, (b.shape[0],))
    if x0 is not None:
        check_shape("x0", x0, tuple(b.shape))
    if preconditioner is not None:
        check_shape("preconditioner", preconditioner, tuple(b.shape))
    keep = set(backtracking_steps(max_iterations) if keep_steps is None else keep_steps)

    def model_value(x, residual):  # φ(x) = ½xᵀAx − bᵀx = −½ xᵀ(r + b), since Ax = b − r (C5)
        return -0.5 * float(xp.sum(x * (residual + b)))

    def precondition(residual):     # y = M⁻¹ r (C3)
        return residual if preconditioner is None else residual / preconditioner

    x, residual = xp.zeros_like(b), b
    restarted = False
    if x0 is not None:
        warm_residual = b - operator(x0)                                     # r_0 = b − A x_0
        if model_value(x0, warm_residual) <= 0.0:
            x, residual = x0, warm_residual
        else:
            restarted = True   # the warm start is worse than x = 0 (φ(0) = 0): start from 0 (C7)
    preconditioned = precondition(residual)
    direction = preconditioned                                               # p_0 = y_0
    residual_dot = float(xp.sum(residual * preconditioned))                  # r_0ᵀ y_0
    model_values = [model_value(x, residual)]
    result = CGResult(solution=x, model_values=model_values, restarted_from_zero=restarted)
    if not math.isfinite(model_values[0]) or not math.isfinite(residual_dot):
        result.stop_reason = STOP_NOT_FINITE
        result.iterates.append((0, x))
        return result

    step = 0
    while True:
        if step >= max_iterations:
            result.stop_reason = STOP_MAX_ITERATIONS
            break
        if math.sqrt(float(xp.sum(residual * residual))) <= residual_tolerance:
            result.stop_reason = STOP_RESIDUAL
            break
        started = time.perf_counter()
        curvature_direction = operator(direction)                            # A p_i
        curvature = float(xp.sum(direction * curvature_direction))           # p_iᵀ A p_i
        if not math.isfinite(curvature):
            result.stop_reason = STOP_NOT_FINITE
            break
        if curvature <= 0.0:     # φ along p_i has no minimum (C0a): no step to take
            result.stop_reason = STOP_NON_POSITIVE_CURVATURE
            break
        step_size = residual_dot / curvature                                 # (C1) α_i
        new_x = x + step_size * direction                                    # (C2) x_{i+1}
        new_residual = residual - step_size * curvature_direction            # r_{i+1}
        new_preconditioned = precondition(new_residual)                      # (C3) y_{i+1}
        new_residual_dot = float(xp.sum(new_residual * new_preconditioned))
        value = model_value(new_x, new_residual)                             # (C5) φ_{i+1}
        if not (math.isfinite(value) and math.isfinite(new_residual_dot)):
            result.stop_reason = STOP_NOT_FINITE
            break
        direction = new_preconditioned + (new_residual_dot / residual_dot) * direction  # (C4)
        x, residual, residual_dot = new_x, new_residual, new_residual_dot
        step += 1
        model_values.append(value)
        result.solution, result.n_steps = x, step
        if step in keep:
            result.iterates.append((step, x))
        if callback is not None:
            callback(CGStep(step=step, model_value=value,
                            x_norm=math.sqrt(float(xp.sum(x * x))),
                            residual_norm=math.sqrt(float(xp.sum(residual * residual))),
                            seconds=time.perf_counter() - started))
        # φ_{i−k} ≥ φ_i (C0b): the ratio below is the relative decrease over the window
        window = max(10, math.ceil(0.1 * step))                             # (C6) k
        if (step >= min_iterations and step > window and value < 0
                and (value - model_values[step - window]) / value < window * epsilon):
            result.stop_reason = STOP_RELATIVE_PROGRESS
            break
    if not result.iterates or result.iterates[-1][0] != result.n_steps:
        result.iterates.append((result.n_steps, result.solution))
    return result
