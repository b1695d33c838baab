"""The phases of one HF iteration (derivations/cg-and-damping.md, section "The HF iteration"),
each a function of what it reads and returning what it produced; hf/step.py runs them in order.

- :func:`gradient_batches`, :func:`curvature_batch`: the iteration's batches B and its curvature
  batch, cycled through ``curvature_batches``;
- :func:`evaluate_gradient`: f(θ) = L(θ) + ½ w ‖θ‖² and g = ∇L + wθ on B (H1);
- :func:`solve`: CG on (G + λμS + (λ + w) I) p = −g (H2), warm-started from ``cg_decay`` × the
  previous solution, preconditioned by (H3) when chosen, every product on one forward pass of the
  curvature batch (the gradient's own when the curvature batch is a gradient batch);
- :func:`backtrack`: the chosen CG iterate by (H4) or (H4r) (hf/backtracking.py);
- :func:`rho_and_damping`: ρ (D1) and the Levenberg-Marquardt λ' (D2);
- :func:`line_search_along`: the line search (H5) along the chosen p (hf/line_search.py);
- :func:`test_values`: the test loss and error, every ``test_every`` iterations.

``batch_objective`` is hf/objective.py's ``BatchObjective``: every sum over the data goes through
it, and so over the processes (H6). Python floats are pulled from the arrays only at the decision
points (losses, ρ, CG's scalars).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from arrayhf.hf import backtracking, line_search
from arrayhf.hf.cg import CGResult, conjugate_gradient, release_steps
from arrayhf.hf.damping import (
    LevenbergMarquardt,
    Ratio,
    reduction_ratio,
    structural_damping_coefficient,
)

if TYPE_CHECKING:
    from arrayhf.hf.cg import CGStep
    from arrayhf.hf.objective import BatchObjective
    from arrayhf.hf.runlog import RunLog
    from arrayhf.hf.settings import HFConfig
    from arrayhf.protocols import HFDataset


def gradient_batches(config: HFConfig, dataset: HFDataset) -> list:
    """B, the ids of the gradient batches: ``grad_batches``, or every training batch."""
    return list(config.grad_batches or dataset.train_batches)


def curvature_batch(config: HFConfig, dataset: HFDataset, iteration: int) -> Hashable:
    """The curvature batch of HF iteration ``iteration`` (1, 2, …): ``curvature_batches``, or the
    training batches, one per iteration in turn."""
    ids = list(config.curvature_batches or dataset.train_batches)
    return ids[(iteration - 1) % len(ids)]


def evaluate_gradient(batch_objective: BatchObjective, params: Any, grad_ids: list,
                      curvature_id: Hashable, iteration: int) -> tuple[float, Any, float]:
    """(f(θ), g, ‖g‖) of (H1) on the gradient batches, the curvature batch's forward pass kept for
    CG; FloatingPointError when f(θ) or g is not finite at the current parameters (no step can be
    judged from there)."""
    objective, gradient = batch_objective.value_and_gradient(params, grad_ids, keep=curvature_id)
    gradient_norm = math.sqrt(float(batch_objective.xp.sum(gradient * gradient)))
    if not (math.isfinite(objective) and math.isfinite(gradient_norm)):
        raise FloatingPointError(
            f"iteration {iteration}: at the current parameters the objective is {objective} "
            f"and |gradient| is {gradient_norm}: check the data for NaN/Inf")
    return objective, gradient, gradient_norm


def solve(config: HFConfig, batch_objective: BatchObjective, params: Any, gradient: Any,
          damping: float, previous_solution: Any, curvature_id: Hashable, *,
          cg_step: Callable[[CGStep], None] | None = None) -> tuple[CGResult, Callable]:
    """CG on the damped system A p = −g of (H2), warm-started from ``cg_decay`` × the previous
    solution (none at the first iteration), with Martens' preconditioner (H3) when chosen;
    ``cg_step`` sees every CG step. Returns the CG result and v ↦ B v, the matrix of ρ's model
    (D1), on the same cached forward pass."""
    structural = structural_damping_coefficient(damping, config.structural_damping_mu)
    curvature = batch_objective.batch(curvature_id)
    cache = batch_objective.kept_forward(params, curvature_id)   # once for all of CG,
    shift = damping + config.weight_cost                          # kept from the gradient

    # the products of this iteration share one forward pass and one set of checks
    operator = batch_objective.curvature_operator   # summed over the processes (H6)
    curvature_product = operator(params, curvature, cache, structural)

    def damped_product(v):       # (G + λμ S + (λ + w) I) v  (cg-and-damping.md, (H2))
        return curvature_product(v) + shift * v

    preconditioner = None
    if config.preconditioner:   # (H3)
        squared = batch_objective.squared_gradient(params, curvature, cache)
        preconditioner = (squared + shift) ** 0.75

    warm_start = None if previous_solution is None else config.cg_decay * previous_solution
    keep_steps = (release_steps(config.max_cg_iter, config.cg_eval_every)      # (H4r)
                  if config.backtracking == "release" else None)               # (H4)
    cg = conjugate_gradient(
        damped_product, -gradient, warm_start, preconditioner=preconditioner,
        max_iterations=config.max_cg_iter, min_iterations=config.min_cg_iter,
        epsilon=config.cg_epsilon, keep_steps=keep_steps, callback=cg_step)
    if config.rho_model == "damped":
        return cg, damped_product
    # Martens' model for ρ (D1): (G + w I) v, on the same forward pass; the CG operator is G
    # itself when there is no structural term
    gauss_newton = (curvature_product if structural == 0.0 else
                    operator(params, curvature, cache, 0.0))
    return cg, lambda v: gauss_newton(v) + config.weight_cost * v


def backtrack(config: HFConfig, batch_objective: BatchObjective, params: Any, iterates: list,
              grad_ids: list, curvature_id: Hashable) -> tuple[int, float]:
    """The chosen CG iterate, by (H4) or (H4r) (``backtracking``; hf/backtracking.py). Returns
    (index of the chosen iterate, f(θ + p) on the gradient batches), the latter reused when the
    backtracking batches are the gradient batches."""
    backtrack_ids = backtracking.scoring_batches(
        config.backtracking, config.backtrack_batches, grad_ids, grad_ids, curvature_id)

    def value(index):
        return batch_objective.value(params + iterates[index][1], backtrack_ids)

    chosen, chosen_value = backtracking.RULES[config.backtracking](value, len(iterates))
    if backtrack_ids != grad_ids:   # ρ (D1) and the line search (H5) judge f on B
        chosen_value = batch_objective.value(params + iterates[chosen][1], grad_ids)
    return chosen, chosen_value


def rho_and_damping(config: HFConfig, xp: Any, damping: float, gradient: Any, direction: Any,
                    objective: float, new_objective: float, rho_product: Callable) -> Ratio:
    """ρ of (D1) at the chosen step p, actual over predicted reduction with the prediction from
    the damped or undamped quadratic model (``rho_model``; ``rho_product`` is v ↦ B v), and the
    next λ by the Levenberg-Marquardt rule (D2)."""
    rule = LevenbergMarquardt(boost=config.damping_boost, drop=config.damping_drop)
    curvature_direction = rho_product(direction)                                   # B p
    slope = float(xp.sum(gradient * direction))                                    # gᵀp
    predicted = slope + 0.5 * float(xp.sum(direction * curvature_direction))  # q(p) − q(0)
    rho = reduction_ratio(objective, new_objective, predicted)                     # (D1)
    return Ratio(rho=rho, numerator=new_objective - objective, denominator=predicted,
                 slope=slope, next_damping=rule.update(damping, rho))              # (D2)


def line_search_along(config: HFConfig, batch_objective: BatchObjective, params: Any,
                      direction: Any, objective: float, objective_at_one: float, slope: float,
                      grad_ids: list) -> tuple[float, float]:
    """(η, f_B(θ + ηp)): the line search (H5) (hf/line_search.py) on ``line_search_batches`` L,
    by default the gradient batches B, and the accepted point's f on B, which the record reports:
    reused when L = B or η ∈ {0, 1}, one evaluation otherwise."""
    search_ids = list(config.line_search_batches or grad_ids)

    def along(ids):
        return lambda step_size: batch_objective.value(params + step_size * direction, ids)

    if search_ids == grad_ids:
        return line_search.search(config, along(grad_ids), objective, objective_at_one, slope)
    step_size, _ = line_search.search(config, along(search_ids),     # (H5) on L
                                      batch_objective.value(params, search_ids),
                                      along(search_ids)(1.0), slope)
    if step_size in (0.0, 1.0):
        return step_size, objective if step_size == 0.0 else objective_at_one
    return step_size, along(grad_ids)(step_size)


def test_values(config: HFConfig, batch_objective: BatchObjective, params: Any, iteration: int,
                log: RunLog) -> tuple[float | None, float | None]:
    """(test loss, test error) at θ every ``test_every`` iterations, (None, None) otherwise."""
    if not (config.test_every and iteration % config.test_every == 0):
        return None, None
    log.phase("test")
    return batch_objective.test_loss_and_error(params, batch_objective.dataset.test_batches)
