"""The line search along HF's chosen step p (derivations/cg-and-damping.md, (H5)): Martens'
Armijo test or the 2011 release's "first step that lowers the loss", over the step lengths
η = 1, γ, γ², … (γ = ``line_search_rate``).

Host-side bookkeeping: the values are Python floats from the optimizer's objective.
"""

from __future__ import annotations

from collections.abc import Callable

from arrayhf.hf.settings import HFConfig


def search(config: HFConfig, value: Callable[[float], float], objective: float,
           objective_at_one: float, slope: float) -> tuple[float, float]:
    """(η, f(θ + ηp)): the first step length of 1, γ, γ², … that passes the test, Armijo's
    (H5) ``f(θ + ηp) ≤ f(θ) + c η gᵀp`` or the release's plain decrease, or (0, f(θ)) when none
    does within ``config.line_search_tries`` tries (the step is rejected). ``value(η)`` is
    f(θ + ηp); ``objective`` is f(θ), ``objective_at_one`` f(θ + p), ``slope`` gᵀp."""
    if config.line_search == "armijo" and not slope < 0:
        return 0.0, objective   # not a descent direction: no step length can pass
    step_size, current = 1.0, objective_at_one
    for attempt in range(config.line_search_tries):
        if attempt > 0:
            step_size *= config.line_search_rate
            current = value(step_size)
        if config.line_search == "armijo":
            passes = current <= objective + config.armijo_c * step_size * slope
        else:
            passes = current < objective
        if passes:
            return step_size, current
    return 0.0, objective
