"""The Hessian-free loop (Martens 2010; the 2011 release's ``opt.hf``), over any model and data set.

One HF iteration (derivations/cg-and-damping.md, section "The HF iteration"), each phase a method:

1. fresh training data (``dataset.forget()``, from the second iteration on);
2. ``_evaluate_gradient``: f(θ) = L(θ) + ½ w ‖θ‖² and g = ∇L + wθ on the gradient batches, each
   batch weighted by its count of unmasked outputs (eq. (H1); hf/objective.py);
3. ``_solve``: the forward pass of this iteration's curvature batch, computed once (the
   gradient's own when the curvature batch is a gradient batch), and CG on
   (G + (λ + w) I + λμ S) p = −g, warm-started from 0.95 × the previous CG solution, where every
   product G v reuses that forward pass;
4. ``_backtrack``: walking back from the last kept CG iterate while the objective keeps
   decreasing, the first local minimum met (eq. (H4); not the lowest of all kept iterates), or,
   with ``backtracking="release"``, the lowest objective on a held batch among the iterates of
   every ``cg_eval_every``-th CG step and the last (eq. (H4r));
5. ``_rho_and_damping``: ρ = actual / predicted reduction (eq. (D1)), then the
   Levenberg-Marquardt update of λ (eq. (D2));
6. ``_line_search`` along the chosen p (Armijo, eq. (H5), or the release's "first step that
   lowers the loss"); a step that finds no decrease, or meets a non-finite loss, is rejected and
   θ is unchanged;
7. ``_record``: the record of the iteration; ``run()`` then appends it to ``history``, logs it,
   applies the stop test and writes a checkpoint every ``save_every`` iterations.

The settings are hf/settings.py's ``HFConfig``; what a checkpoint saves and a resume checks and
restores is in hf/state.py. Python floats are pulled from the arrays only at the decision points
(losses, ρ, CG's scalars). On several processes (``communicator``) every sum over the data is also
a sum over the processes (hf/objective.py, (H6)) and every process takes the same decisions.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import array_api_compat

from arrayhf import checkpoint, threads
from arrayhf._validate import check_finite, check_floating, check_shape, is_integer, namespace_of
from arrayhf.data.sharded import ShardedDataset
from arrayhf.distributed import SingleProcess, check_agree, raise_together
from arrayhf.hf import backtracking, line_search, running, state
from arrayhf.hf.cg import conjugate_gradient, release_steps
from arrayhf.hf.damping import (
    LevenbergMarquardt,
    Ratio,
    reduction_ratio,
    structural_damping_coefficient,
)
from arrayhf.hf.objective import BatchObjective
from arrayhf.hf.runlog import RunLog
from arrayhf.hf.settings import HFConfig

if TYPE_CHECKING:
    from arrayhf.distributed import Communicator
    from arrayhf.protocols import HFDataset, HFModel


class HF:
    """Hessian-free optimizer.

    Parameters
    ----------
    model
        Follows the model protocol (ARCHITECTURE.md, "The model protocol"): ``forward``,
        ``r_forward``, ``backprop``, ``loss``, ``gradient``, ``gauss_newton_product``, ``init``,
        ``output``.
    dataset
        Follows the data-set protocol (ARCHITECTURE.md, "The data-set protocol"):
        ``train_batches``, ``test_batches``, ``batch(id)``, ``forget()``,
        ``zero_one_error(batch, predictions)``; optionally ``get_state`` / ``set_state`` for exact
        resumes.
    params : array, optional
        The starting θ; default ``model.init(seed)`` on the data's backend, dtype and device.
    seed : int
        Seed of the initial parameters.
    run_dir : path, optional
        Where logs (metrics.jsonl, results, detailed_results) and checkpoints go; None: no files.
    save_every : int
        Checkpoint every this many iterations (and on Ctrl-C, and at the end of ``run``).
    progress : bool
        Print one line per HF iteration (and a live CG counter on a terminal).
    run_info : dict, optional
        A JSON-ready description of how the caller built the run (the command line's settings):
        saved in every checkpoint and, like the HF settings and the model, compared on resume.
    communicator : optional
        The processes the run is shared by (arrayhf/distributed.py; default one process): each
        computes on its rows of every batch (``dataset`` is wrapped in a ``ShardedDataset``),
        the sums are taken over all (H6), and rank 0 alone writes the logs and checkpoints.
    **settings
        Fields of :class:`HFConfig`.
    """

    def __init__(self, model: HFModel, dataset: HFDataset, *, params: Any = None, seed: int = 0,
                 run_dir: str | os.PathLike | None = None, save_every: int = 5,
                 progress: bool = True, run_info: dict | None = None,
                 communicator: Communicator | None = None, **settings: Any) -> None:
        self.communicator = communicator if communicator is not None else SingleProcess()
        if self.communicator.world_size > 1 and not isinstance(dataset, ShardedDataset):
            dataset = ShardedDataset(dataset, self.communicator)
        self.model = model
        self.dataset = dataset
        self.config = HFConfig(**settings)
        self.seed = seed
        if not is_integer(save_every) or save_every < 0:
            raise ValueError(f"expected save_every to be an integer >= 0, got {save_every!r}")
        self.save_every = int(save_every)
        self.run_dir = None if run_dir is None else pathlib.Path(run_dir)
        self.progress = progress
        self.run_info = None if run_info is None else json.loads(json.dumps(run_info))
        self.rule = LevenbergMarquardt(boost=self.config.damping_boost,
                                       drop=self.config.damping_drop)
        if self.config.preconditioner and not hasattr(model, "per_case_squared_gradient"):
            raise ValueError(f"preconditioner=True needs {type(model).__name__}."
                             "per_case_squared_gradient, which this model does not have")
        if self.config.structural_damping_mu and not hasattr(model, "structural_damping_product"):
            raise ValueError(f"{type(model).__name__} has no structural damping term: expected "
                             f"structural_damping_mu=0, got {self.config.structural_damping_mu}")
        train_ids = self._train_ids()
        if not train_ids:
            raise ValueError("expected a data set with at least one training batch, got none")
        first = raise_together(self.communicator, lambda: [   # unknown ids: KeyError now
            dataset.batch(i) for i in {repr(i): i for i in (
                *train_ids, *(self.config.curvature_batches or ()),
                *(self.config.backtrack_batches or ()),
                *(self.config.line_search_batches or ()))}.values()][0])
        self.xp = namespace_of(first.inputs, first.targets, first.mask)
        self.batch_objective = BatchObjective(model, dataset, self.xp,
                                              weight_cost=self.config.weight_cost,
                                              communicator=self.communicator)
        if params is None:
            params = model.init(seed, xp=self.xp, dtype=first.targets.dtype,  # inputs may be ids
                                device=array_api_compat.device(first.inputs))
        else:
            namespace_of(params, first.inputs)  # one backend, one device
            check_shape("params", params, (model.n_params,))
            check_floating(self.xp, "params", params, first.targets.dtype)
            check_finite(self.xp, "params", params)
        if self.communicator.world_size > 1:   # rank 0's θ on every process
            params = self.communicator.broadcast(self.xp.asarray(params, copy=True))
        self.params = params
        self.damping = self.config.damping
        self.cg_warm_start = None
        self.iteration = 0
        self.cg_total = 0
        self.history: list[dict] = []
        self.last_record: dict | None = None   # the record of the last committed iteration
        self._dataset_state = self._get_dataset_state()
        self._resumed = False
        self.log = self._run_log(self.run_dir)

    def _run_log(self, run_dir):
        """The run's logs: written, and echoed, by rank 0 alone."""
        first = self.communicator.rank == 0
        return RunLog(run_dir, echo=self.progress and first, writes=first)

    # -- batches and the objective -----------------------------------------------------------
    def _train_ids(self):
        return list(self.config.grad_batches or self.dataset.train_batches)

    def _curvature_id(self, iteration):
        ids = list(self.config.curvature_batches or self.dataset.train_batches)
        return ids[(iteration - 1) % len(ids)]

    def _objective(self, params, batch_ids) -> float:
        """f(θ) of (H1) on the batches; +inf when not finite."""
        return self.batch_objective.value(params, batch_ids)

    def _loss_and_gradient(self, params, batch_ids, keep=None):
        """(f(θ), g) of (H1) on the batches, each weighted by its count of unmasked outputs;
        the forward pass of the batch ``keep`` is kept for CG."""
        return self.batch_objective.value_and_gradient(params, batch_ids, keep=keep)

    # -- one HF iteration, phase by phase ----------------------------------------------------
    def step(self) -> dict:
        """Run one HF iteration and return its metrics record (``run()`` appends it to
        ``history`` and logs it; ``step()`` alone does neither)."""
        started = time.perf_counter()
        threads.adapt()     # every core when the machine is idle, a fair share when it is not
        iteration = self.iteration + 1
        if iteration > 1:
            self.dataset.forget()
            self.batch_objective.new_data()
        params, damping = self.params, self.damping
        grad_ids = self._train_ids()
        raise_together(self.communicator, lambda: [   # all of this iteration checked before work
            self.batch_objective.batch(i) for i in {repr(i): i for i in [
                *grad_ids, self._curvature_id(iteration)]}.values()])
        self.log.start_cg(iteration)
        self.log.phase("gradient")
        laps = running.Laps()                   # the record's phase_seconds
        objective, gradient, gradient_norm = self._evaluate_gradient(params, grad_ids, iteration)
        laps.mark("gradient")
        cg, rho_product = self._solve(params, gradient, iteration)
        laps.mark("cg")
        self.log.phase("backtracking")
        chosen, new_objective = self._backtrack(params, cg.iterates, grad_ids, iteration)
        chosen_step, direction = cg.iterates[chosen]
        laps.mark("backtracking")
        ratio = self._rho_and_damping(gradient, direction, objective, new_objective, rho_product)
        next_damping = ratio.next_damping
        laps.mark("rho")
        self.log.phase("line search")
        step_size, accepted_objective = self._line_search(params, direction, objective,
                                                          new_objective, ratio.slope, grad_ids)
        laps.mark("line_search")
        if step_size == 0.0:
            next_damping = max(next_damping, damping * self.config.damping_boost)  # rejected
            new_params = params
        else:
            new_params = params + step_size * direction

        record = self._record(started, new_params, next_damping, iteration,
                              self.cg_total + cg.n_steps, accepted_objective, gradient_norm,
                              damping, ratio, cg, chosen_step, step_size, laps)
        dataset_state = self._get_dataset_state()
        # commit the iteration in one statement: a Ctrl-C or SIGTERM before it loses only this
        # iteration, one after it finds the state and its record together (run() logs it)
        (self.params, self.cg_warm_start, self.damping, self.iteration, self.cg_total,
         self._dataset_state, self.last_record) = (new_params, cg.solution, next_damping,
                                                   iteration, record["cg_total"],
                                                   dataset_state, record)
        check_agree(self.communicator, [record[k] for k in state.AGREED], f"iterate {iteration}")
        return record

    def _evaluate_gradient(self, params, grad_ids, iteration):
        """(f(θ), g, ‖g‖) of (H1) on the gradient batches; FloatingPointError when f(θ) or g is
        not finite at the current parameters (no step can be judged from there)."""
        objective, gradient = self._loss_and_gradient(params, grad_ids,
                                                      keep=self._curvature_id(iteration))
        gradient_norm = math.sqrt(float(self.xp.sum(gradient * gradient)))
        if not (math.isfinite(objective) and math.isfinite(gradient_norm)):
            raise FloatingPointError(
                f"iteration {iteration}: at the current parameters the objective is {objective} "
                f"and |gradient| is {gradient_norm}: check the data for NaN/Inf")
        return objective, gradient, gradient_norm

    def _solve(self, params, gradient, iteration):
        """CG on the damped system A p = −g of (H2), warm-started from ``cg_decay`` × the previous
        solution, with Martens' preconditioner (H3) when chosen. Returns the CG result and
        v ↦ B v, the matrix of ρ's model (D1), on the same cached forward pass."""
        config = self.config
        structural = structural_damping_coefficient(self.damping, config.structural_damping_mu)
        curvature_batch = self.batch_objective.batch(self._curvature_id(iteration))
        cache = self.batch_objective.kept_forward(               # once for all of CG,
            params, self._curvature_id(iteration))               # kept from the gradient
        shift = self.damping + config.weight_cost

        # the products of this iteration share one forward pass and one set of checks
        operator = self.batch_objective.curvature_operator   # summed over the processes (H6)
        curvature_product = operator(params, curvature_batch, cache, structural)

        def damped_product(v):       # (G + λμ S + (λ + w) I) v  (cg-and-damping.md, (H2))
            return curvature_product(v) + shift * v

        preconditioner = None
        if config.preconditioner:   # (H3)
            squared = self.batch_objective.squared_gradient(params, curvature_batch, cache)
            preconditioner = (squared + shift) ** 0.75

        warm_start = None if self.cg_warm_start is None else config.cg_decay * self.cg_warm_start
        keep_steps = (release_steps(config.max_cg_iter, config.cg_eval_every)      # (H4r)
                      if config.backtracking == "release" else None)               # (H4)
        cg = conjugate_gradient(
            damped_product, -gradient, warm_start, preconditioner=preconditioner,
            max_iterations=config.max_cg_iter, min_iterations=config.min_cg_iter,
            epsilon=config.cg_epsilon, keep_steps=keep_steps, callback=self.log.cg_step)
        if config.rho_model == "damped":
            return cg, damped_product
        # Martens' model for ρ (D1): (G + w I) v, on the same forward pass; the CG operator is G
        # itself when there is no structural term
        gauss_newton = (curvature_product if structural == 0.0 else
                        operator(params, curvature_batch, cache, 0.0))
        return cg, lambda v: gauss_newton(v) + config.weight_cost * v

    def _backtrack(self, params, iterates, grad_ids, iteration):
        """The chosen CG iterate, by (H4) or (H4r) (``backtracking``; hf/backtracking.py).
        Returns (index of the chosen iterate, f(θ + p) on the gradient batches), the latter
        reused when the backtracking batches are the gradient batches."""
        config = self.config
        backtrack_ids = backtracking.scoring_batches(
            config.backtracking, config.backtrack_batches, grad_ids, self._train_ids(),
            self._curvature_id(iteration))

        def value(index):
            return self._objective(params + iterates[index][1], backtrack_ids)

        chosen, chosen_value = backtracking.RULES[config.backtracking](value, len(iterates))
        if backtrack_ids != grad_ids:   # ρ (D1) and the line search (H5) judge f on B
            chosen_value = self._objective(params + iterates[chosen][1], grad_ids)
        return chosen, chosen_value

    def _rho_and_damping(self, gradient, direction, objective, new_objective, rho_product):
        """ρ of (D1) at the chosen step p, actual over predicted reduction with the prediction
        from the damped or undamped quadratic model (``rho_model``; ``rho_product`` is v ↦ B v),
        and the next λ by the Levenberg-Marquardt rule (D2)."""
        xp = self.xp
        curvature_direction = rho_product(direction)                                   # B p
        slope = float(xp.sum(gradient * direction))                                    # gᵀp
        predicted = slope + 0.5 * float(xp.sum(direction * curvature_direction))  # q(p) − q(0)
        rho = reduction_ratio(objective, new_objective, predicted)                     # (D1)
        return Ratio(rho=rho, numerator=new_objective - objective, denominator=predicted,
                      slope=slope, next_damping=self.rule.update(self.damping, rho))  # (D2)

    def _line_search(self, params, direction, objective, objective_at_one, slope, grad_ids):
        """(η, f_B(θ + ηp)): the line search (H5) (hf/line_search.py) on ``line_search_batches``
        L, by default the gradient batches B, and the accepted point's f on B, which the record
        reports: reused when L = B or η ∈ {0, 1}, one evaluation otherwise."""
        search_ids = list(self.config.line_search_batches or grad_ids)

        def along(ids):
            return lambda step_size: self._objective(params + step_size * direction, ids)

        if search_ids == grad_ids:
            return line_search.search(self.config, along(grad_ids), objective,
                                      objective_at_one, slope)
        step_size, _ = line_search.search(self.config, along(search_ids),     # (H5) on L
                                          self._objective(params, search_ids),
                                          along(search_ids)(1.0), slope)
        if step_size in (0.0, 1.0):
            return step_size, objective if step_size == 0.0 else objective_at_one
        return step_size, along(grad_ids)(step_size)

    def _record(self, started, params, next_damping, iteration, cg_total, objective,
                gradient_norm, damping, ratio, cg, chosen_step, step_size, laps) -> dict:
        """The metrics record of the iteration about to be committed (its θ, λ' and counters),
        with the test set evaluated every ``test_every`` iterations."""
        record = {
            "iteration": iteration,
            "train_loss": objective - self.batch_objective.weight_penalty(params),
            "objective": objective,
            "test_loss": None,
            "test_error": None,
            "grad_norm": gradient_norm,
            "theta_norm": math.sqrt(float(self.xp.sum(params * params))),
            "damping": damping,
            "next_damping": next_damping,
            "rho": ratio.rho,
            "rho_numerator": ratio.numerator,
            "rho_denominator": ratio.denominator,
            "cg_steps": cg.n_steps,
            "cg_total": cg_total,
            "cg_stop": cg.stop_reason,
            "cg_warm_start_dropped": cg.restarted_from_zero,
            "chosen_iterate": chosen_step,
            "line_search_step": step_size,
            "seconds": None,
            "phase_seconds": None,
            "processes": self.communicator.world_size,
        }
        if self.config.test_every and iteration % self.config.test_every == 0:
            self.log.phase("test")
            record["test_loss"], record["test_error"] = (
                self.batch_objective.test_loss_and_error(params, self.dataset.test_batches))
        laps.mark("test")
        record["phase_seconds"] = laps.seconds
        record["seconds"] = time.perf_counter() - started
        return record

    # -- running, checkpoints, resume ------------------------------------------------------
    def run(self, max_iterations: int, stop: Callable[[dict], bool] | None = None, *,
            callbacks: Iterable[Callable[[HF, dict], Any]] = ()) -> running.HFResult:
        """Iterate until ``self.iteration == max_iterations``, ``stop(record)`` is true, or a
        callback (``callback(optimizer, record)``, after every iteration) raises StopIteration;
        returns an ``HFResult`` (final θ, iterations, whether the stop condition was met, the
        history). Checkpoints every ``save_every`` iterations, at the end, and on Ctrl-C
        (hf/running.py)."""
        return running.run(self, max_iterations, stop, callbacks)

    def _get_dataset_state(self):
        getter = getattr(self.dataset, "get_state", None)
        return None if getter is None else getter()

    def state_arrays_and_meta(self) -> tuple[dict, dict]:
        """(host arrays, JSON description) of the last completed iteration: what save() writes."""
        return state.arrays_and_meta(self)

    def save(self, path: str | os.PathLike | None = None) -> pathlib.Path | None:
        """Write the state of the last completed iteration (atomic; the previous file is kept);
        on several processes rank 0 alone writes, the others return None."""
        if path is None and self.run_dir is not None:
            path = state.checkpoint_path(self.run_dir)
        if path is None or self.communicator.rank != 0:
            return None
        arrays, meta = self.state_arrays_and_meta()
        return checkpoint.save(path, arrays, meta)

    def resume(self, run_dir: str | os.PathLike | None = None, *, force: bool = False) -> HF:
        """Load the latest checkpoint of ``run_dir`` (default: this run's) into this optimizer,
        onto this optimizer's backend, dtype and device. ``run`` then continues from it.

        Refuses (ValueError naming the differences) a checkpoint whose HF settings or model
        differ from this optimizer's, unless ``force``.
        """
        state.restore(self, run_dir, force=force)
        return self
