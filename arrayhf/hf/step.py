"""One HF iteration as a function: ``hf_step(config, model, batch_objective, state)`` returns the
next state and the step's record, in the manner of optax's ``update`` and optimistix's ``step``
(derivations/cg-and-damping.md, section "The HF iteration").

The input state is never changed: the step reads θ, λ, the CG warm start and the counters from
it and builds a new :class:`~arrayhf.hf.state.HFState`. What changes besides is the data set's
(``forget()`` from the second iteration on draws fresh training batches; the new state holds the
data set's ``get_state()`` after it) and the objective's batch checks. The run loop, the logs and
the checkpoints belong to the caller (hf/optimizer.py's ``HF``), which commits the new state.

The record (:class:`StepRecord`) carries what each phase produced (g, the CG result with its kept
iterates, the chosen iterate p, ρ, the line-search step η, the phase times) and ``metrics``, the
JSON record that the logs write (metrics.jsonl) and ``HF.step`` returns.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arrayhf.distributed import raise_together
from arrayhf.hf import phases
from arrayhf.hf.runlog import RunLog
from arrayhf.hf.state import HFState, dataset_state_of

if TYPE_CHECKING:
    from arrayhf.hf.cg import CGResult
    from arrayhf.hf.damping import Ratio
    from arrayhf.hf.objective import BatchObjective
    from arrayhf.hf.settings import HFConfig
    from arrayhf.protocols import HFModel


@dataclass(frozen=True, eq=False)
class StepRecord:
    """What one HF iteration produced, phase by phase (for diagnosis), and its JSON record."""

    iteration: int             # the iteration's number, 1, 2, …
    params: Any                # θ the iteration started from
    gradient_batches: list     # B
    curvature_batch: Hashable  # the batch whose G the CG products use
    objective: float           # f(θ) on B (H1)
    gradient: Any              # g = ∇L + wθ on B (H1)
    cg: CGResult               # CG's result: its kept iterates [(i, x_i)], its solution
    chosen: int                # the index in cg.iterates of the chosen step p (H4), (H4r)
    direction: Any             # p, the chosen iterate
    new_objective: float       # f(θ + p) on B
    ratio: Ratio               # ρ (D1), its numerator and denominator, gᵀp, λ' (D2)
    step_size: float           # η of the line search (H5); 0: the step was rejected
    metrics: dict              # the JSON record of metrics.jsonl (what HF.step returns)

    @property
    def phase_seconds(self) -> dict[str, float]:
        """Wall seconds of each phase of the iteration, in order."""
        return self.metrics["phase_seconds"]


class Laps:
    """Wall seconds of an iteration's phases (the record's ``phase_seconds``), each counted
    from the end of the phase before it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, phase: str) -> None:
        """The phase ``phase`` ends now."""
        now = time.perf_counter()
        self.seconds = {**self.seconds, phase: now - self._last}
        self._last = now


def _batches(config: HFConfig, batch_objective: BatchObjective, iteration: int
             ) -> tuple[list, Hashable]:
    """(B, the curvature batch) of iteration ``iteration``, on fresh training data from the second
    on (``forget``), every batch's values checked, on every process, before any work on them."""
    dataset = batch_objective.dataset
    if iteration > 1:
        dataset.forget()
        batch_objective.new_data()
    grad_ids = phases.gradient_batches(config, dataset)
    curvature_id = phases.curvature_batch(config, dataset, iteration)
    raise_together(batch_objective.communicator, lambda: [
        batch_objective.batch(i) for i in {repr(i): i for i in [*grad_ids, curvature_id]}.values()])
    return grad_ids, curvature_id


def hf_step(config: HFConfig, model: HFModel, batch_objective: BatchObjective, state: HFState,
            *, log: RunLog | None = None) -> tuple[HFState, StepRecord]:
    """Take one HF iteration from ``state``: (the next state, the step's record).

    ``batch_objective`` is the objective (H1) of ``model`` over the data set
    (hf/objective.py); ``log`` (default: none) shows the phases and CG's steps as they go and
    writes CG's rows to detailed_results. Raises FloatingPointError when f(θ) or g is not finite.
    """
    if batch_objective.model is not model:
        raise ValueError("expected the objective of the model stepped, got another model's")
    log = log if log is not None else RunLog(None, echo=False)
    started = time.perf_counter()
    iteration = state.iteration + 1
    grad_ids, curvature_id = _batches(config, batch_objective, iteration)
    params, damping = state.params, state.damping
    log.start_cg(iteration)
    log.phase("gradient")
    laps = Laps()
    objective, gradient, gradient_norm = phases.evaluate_gradient(
        batch_objective, params, grad_ids, curvature_id, iteration)
    laps.mark("gradient")
    cg, rho_product = phases.solve(config, batch_objective, params, gradient, damping,
                                   state.cg_warm_start, curvature_id, cg_step=log.cg_step)
    laps.mark("cg")
    log.phase("backtracking")
    chosen, new_objective = phases.backtrack(config, batch_objective, params, cg.iterates,
                                             grad_ids, curvature_id)
    chosen_step, direction = cg.iterates[chosen]
    laps.mark("backtracking")
    ratio = phases.rho_and_damping(config, batch_objective.xp, damping, gradient, direction,
                                   objective, new_objective, rho_product)
    next_damping = ratio.next_damping
    laps.mark("rho")
    log.phase("line search")
    step_size, accepted_objective = phases.line_search_along(
        config, batch_objective, params, direction, objective, new_objective, ratio.slope,
        grad_ids)
    laps.mark("line_search")
    if step_size == 0.0:
        next_damping = max(next_damping, damping * config.damping_boost)  # rejected
        new_params = params
    else:
        new_params = params + step_size * direction
    test_loss, test_error = phases.test_values(config, batch_objective, new_params, iteration,
                                               log)
    laps.mark("test")
    metrics = {
        "iteration": iteration,
        "train_loss": accepted_objective - batch_objective.weight_penalty(new_params),
        "objective": accepted_objective,
        "test_loss": test_loss,
        "test_error": test_error,
        "grad_norm": gradient_norm,
        "theta_norm": math.sqrt(float(batch_objective.xp.sum(new_params * new_params))),
        "damping": damping,
        "next_damping": next_damping,
        "rho": ratio.rho,
        "rho_numerator": ratio.numerator,
        "rho_denominator": ratio.denominator,
        "cg_steps": cg.n_steps,
        "cg_total": state.cg_total + cg.n_steps,
        "cg_stop": cg.stop_reason,
        "cg_warm_start_dropped": cg.restarted_from_zero,
        "chosen_iterate": chosen_step,
        "line_search_step": step_size,
        "seconds": time.perf_counter() - started,
        "phase_seconds": laps.seconds,
        "processes": batch_objective.communicator.world_size,
    }
    next_state = HFState(params=new_params, cg_warm_start=cg.solution, damping=next_damping,
                         iteration=iteration, cg_total=metrics["cg_total"],
                         dataset_state=dataset_state_of(batch_objective.dataset))
    return next_state, StepRecord(
        iteration=iteration, params=params, gradient_batches=grad_ids,
        curvature_batch=curvature_id, objective=objective, gradient=gradient, cg=cg,
        chosen=chosen, direction=direction, new_objective=new_objective, ratio=ratio,
        step_size=step_size, metrics=metrics)
