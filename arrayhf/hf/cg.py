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

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from arrayhf import backend
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


def release_steps(max_iterations: int, every: int) -> list[int]:
    """The steps i = 1, 1 + every, 1 + 2·every, … up to max_iterations whose iterates the 2011
    release scores for its backtracking (its ``i % cg_eval_freq == 0`` with i counted from 0;
    derivations/cg-and-damping.md, (H4r)); CG keeps the last iterate besides."""
    return list(range(1, max_iterations + 1, every))


class _Norms:
    """‖x_i‖ and ‖r_i‖ of one step. ‖r_i‖ comes with the step's other scalars (the residual test
    needs it every step); ‖x_i‖ is computed when first read (one reduction and one host sync),
    so a callback that reads it only on some steps costs nothing on the others."""

    def __init__(self, xp, x, residual_norm: float):
        self._xp, self._x, self.residual_norm = xp, x, residual_norm

    @functools.cached_property
    def x_norm(self) -> float:
        return math.sqrt(float(self._xp.sum(self._x * self._x)))


def _to_host(xp, *scalars) -> list[float]:
    """0-d arrays as Python floats, moved to the host together: one device-to-host sync."""
    return [float(value) for value in backend.to_numpy(xp.stack(scalars))]


@dataclass
class _Iterate:
    """The arithmetic's state at step i: x_i, r_i, p_i, r_iᵀ y_i and φ_i."""

    x: Any
    residual: Any
    direction: Any
    residual_dot: Any        # r_iᵀ y_i, a 0-d array (α and β are formed on the device)
    model_value: float
    norms: _Norms = field(repr=False)


@dataclass
class CGStep:
    """What one CG step reports to a callback: the rows of HF's detailed_results. ``x_norm`` and
    ``residual_norm`` are computed when first read, so a callback that reads them only on some
    steps (HF's log: every 10th) costs no extra reduction on the others."""

    step: int
    model_value: float       # φ(x_i)
    seconds: float           # wall time of this step
    norms: _Norms = field(repr=False, compare=False)

    @property
    def x_norm(self) -> float:
        """‖x_i‖."""
        return self.norms.x_norm

    @property
    def residual_norm(self) -> float:
        """‖r_i‖."""
        return self.norms.residual_norm


@dataclass
class CGResult:
    """The outcome of one CG run."""

    solution: Any                      # the last iterate x (the last good one on a failure)
    iterates: list = field(default_factory=list)   # [(i, x_i)]: the kept steps and the last
    model_values: list = field(default_factory=list)  # [φ_0, φ_1, …]
    n_steps: int = 0
    stop_reason: str = ""
    restarted_from_zero: bool = False  # the warm start had φ(x_0) > 0 and was dropped (C7)


class _Arithmetic:
    """The numbers of CG, (C1)-(C5) and (C7), for one system A x = b: no record of them.

    α_i and β_i stay on the device; a step pulls two host values: p_iᵀAp_i (its sign decides
    whether the step is taken) and then r_{i+1}ᵀy_{i+1}, φ_{i+1} and ‖r_{i+1}‖² together."""

    def __init__(self, xp, operator, b, preconditioner):
        self.xp, self.operator, self.b, self.preconditioner = xp, operator, b, preconditioner

    def model_value(self, x, residual):  # φ(x) = ½xᵀAx − bᵀx = −½ xᵀ(r + b), since Ax = b − r (C5)
        return -0.5 * self.xp.sum(x * (residual + self.b))

    def precondition(self, residual):     # y = M⁻¹ r (C3)
        return residual if self.preconditioner is None else residual / self.preconditioner

    def iterate(self, x, residual, preconditioned, direction) -> tuple[_Iterate, float]:
        """The iterate (x, r, p) with rᵀy, φ and ‖r‖ (one host sync); also rᵀy as a float."""
        xp = self.xp
        residual_dot = xp.sum(residual * preconditioned)
        dot, value, squared = _to_host(xp, residual_dot, self.model_value(x, residual),
                                       xp.sum(residual * residual))
        norms = _Norms(xp, x, math.sqrt(squared))   # NaN stays NaN: the step then fails
        return _Iterate(x, residual, direction, residual_dot, value, norms), dot

    def start(self, x0) -> tuple[_Iterate, float, bool]:
        """(the start x_0, r_0, p_0 = y_0; r_0ᵀy_0; whether the warm start ``x0`` was dropped
        (C7))."""
        x, residual = self.xp.zeros_like(self.b), self.b
        restarted = False
        if x0 is not None:
            warm_residual = self.b - self.operator(x0)                           # r_0 = b − A x_0
            if float(self.model_value(x0, warm_residual)) <= 0.0:
                x, residual = x0, warm_residual
            else:
                restarted = True   # worse than x = 0, where φ(0) = 0: start from 0 (C7)
        preconditioned = self.precondition(residual)
        start, dot = self.iterate(x, residual, preconditioned, preconditioned)     # p_0 = y_0
        return start, dot, restarted

    def step(self, current: _Iterate) -> tuple[_Iterate | None, str]:
        """(step i + 1, "") by (C1)-(C4), or (None, the stop reason) when it cannot be taken:
        p_iᵀ A p_i not positive or a value not finite (the step is then never applied)."""
        xp = self.xp
        curvature_direction = self.operator(current.direction)                 # A p_i
        curvature = xp.sum(current.direction * curvature_direction)            # p_iᵀ A p_i
        curvature_value = float(curvature)
        if not math.isfinite(curvature_value):
            return None, STOP_NOT_FINITE
        if curvature_value <= 0.0:     # φ along p_i has no minimum (C0a): no step to take
            return None, STOP_NON_POSITIVE_CURVATURE
        step_size = current.residual_dot / curvature                           # (C1) α_i
        new_x = current.x + step_size * current.direction                      # (C2) x_{i+1}
        new_residual = current.residual - step_size * curvature_direction      # r_{i+1}
        new_preconditioned = self.precondition(new_residual)                   # (C3) y_{i+1}
        following, dot = self.iterate(new_x, new_residual, new_preconditioned,
                                      current.direction)                       # (C5) φ_{i+1}
        if not (math.isfinite(following.model_value) and math.isfinite(dot)):
            return None, STOP_NOT_FINITE
        beta = following.residual_dot / current.residual_dot
        following.direction = new_preconditioned + beta * current.direction             # (C4)
        return following, ""


class _Record:
    """CG's bookkeeping: the model values, the kept iterates, the callback, the stop (C6)."""

    def __init__(self, start: _Iterate, restarted: bool, keep: set, callback):
        self.result = CGResult(solution=start.x, model_values=[start.model_value],
                               restarted_from_zero=restarted)
        self.keep, self.callback = keep, callback

    def add(self, iterate: _Iterate, seconds: float) -> None:
        """Record step i + 1: its model value, the iterate when kept, the callback."""
        result = self.result
        result.n_steps += 1
        result.model_values.append(iterate.model_value)
        result.solution = iterate.x
        if result.n_steps in self.keep:
            result.iterates.append((result.n_steps, iterate.x))
        if self.callback is not None:
            self.callback(CGStep(step=result.n_steps, model_value=iterate.model_value,
                                 seconds=seconds, norms=iterate.norms))

    def stalled(self, min_iterations: int, epsilon: float) -> bool:
        """Martens' relative-progress stop after step i (C6)."""
        step, values = self.result.n_steps, self.result.model_values
        value = values[step]
        # φ_{i−k} ≥ φ_i (C0b): the ratio below is the relative decrease over the window
        window = max(10, math.ceil(0.1 * step))                             # (C6) k
        return (step >= min_iterations and step > window and value < 0
                and (value - values[step - window]) / value < window * epsilon)

    def stop(self, reason: str) -> CGResult:
        """The result, stopped for ``reason``; the kept iterates end with the last step."""
        result = self.result
        result.stop_reason = reason
        if not result.iterates or result.iterates[-1][0] != result.n_steps:
            result.iterates.append((result.n_steps, result.solution))
        return result


def conjugate_gradient(
    operator: Callable[[Any], Any],
    b: Any,
    x0: Any = None,
    *,
    preconditioner: Any = None,
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
        Called with a :class:`CGStep` after every step; its norms ‖x‖ and ‖r‖ are computed only
        when the callback reads them.

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
    arithmetic = _Arithmetic(xp, operator, b, preconditioner)
    current, residual_dot, restarted = arithmetic.start(x0)
    record = _Record(current, restarted, keep, callback)
    if not (math.isfinite(current.model_value) and math.isfinite(residual_dot)):
        return record.stop(STOP_NOT_FINITE)
    while True:
        if record.result.n_steps >= max_iterations:
            return record.stop(STOP_MAX_ITERATIONS)
        if current.norms.residual_norm <= residual_tolerance:
            return record.stop(STOP_RESIDUAL)
        started = time.perf_counter()
        following, failure = arithmetic.step(current)
        if following is None:
            return record.stop(failure)
        current = following
        record.add(current, time.perf_counter() - started)
        if record.stalled(min_iterations, epsilon):
            return record.stop(STOP_RELATIVE_PROGRESS)
