"""The Hessian-free loop (Martens 2010; the 2011 release's ``opt.hf``), over any model and data set.

One HF iteration (derivations/cg-and-damping.md, section "The HF iteration"):

1. fresh training data (``dataset.forget()``, from the second iteration on);
2. the objective f(θ) = L(θ) + ½ w ‖θ‖² and its gradient g = ∇L + wθ on the gradient batches,
   each batch weighted by its count of unmasked outputs (eq. (H1));
3. the forward pass of this iteration's curvature batch, computed once;
4. CG on (G + (λ + w) I + λμ S) p = −g, warm-started from 0.95 × the previous CG solution, where
   every product G v reuses that forward pass;
5. backtracking: walking back from the last kept CG iterate while the objective keeps decreasing,
   the first local minimum met (eq. (H4); not the lowest objective of all kept iterates);
6. ρ = actual / predicted reduction (eq. (D1)) and the Levenberg-Marquardt update of λ (eq. (D2));
7. a line search along the chosen p (Armijo, eq. (H5), or the release's "first step that lowers
   the loss");
   a step that finds no decrease, or meets a non-finite loss, is rejected and θ is unchanged;
8. the record of the iteration; ``run()`` then appends it to ``history``, logs it, applies the stop
   test and writes a checkpoint every ``save_every`` iterations.

Python floats are pulled from the arrays only at these decision points (losses, ρ, CG's scalars).
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Callable

import array_api_compat

from arrayhf import checkpoint
from arrayhf._validate import (
    check_batch_values,
    check_finite,
    check_floating,
    check_shape,
    is_integer,
    namespace_of,
)
from arrayhf.hf import state
from arrayhf.hf.cg import conjugate_gradient
from arrayhf.hf.damping import LevenbergMarquardt, reduction_ratio, structural_damping_coefficient
from arrayhf.hf.runlog import RunLog
from arrayhf.hf.settings import HFConfig

CHECKPOINT_NAME = checkpoint.CHECKPOINT_NAME


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
    **settings
        Fields of :class:`HFConfig`.
    """

    def __init__(self, model, dataset, *, params=None, seed: int = 0, run_dir=None,
                 save_every: int = 5, progress: bool = True, run_info: dict | None = None,
                 **settings):
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
        for batch_id in {repr(i): i for i in (*train_ids, *(self.config.curvature_batches or ()),
                                              *(self.config.backtrack_batches or ()))}.values():
            dataset.batch(batch_id)   # an unknown id raises the data set's KeyError now
        first = dataset.batch(train_ids[0])
        self.xp = namespace_of(first.inputs, first.targets, first.mask)
        self._checked_batches: set = set()
        if params is None:
            params = model.init(seed, xp=self.xp, dtype=first.targets.dtype,  # inputs may be ids
                                device=array_api_compat.device(first.inputs))
        else:
            namespace_of(params, first.inputs)  # one backend, one device
            check_shape("params", params, (model.n_params,))
            check_floating(self.xp, "params", params, first.targets.dtype)
            check_finite(self.xp, "params", params)
        self.params = params
        self.damping = self.config.damping
        self.cg_warm_start = None
        self.iteration = 0
        self.cg_total = 0
        self.history: list[dict] = []
        self._dataset_state = self._get_dataset_state()
        self._resumed = False
        self.log = RunLog(self.run_dir, echo=progress)

    # -- batches and the objective -----------------------------------------------------------
    def _train_ids(self):
        return list(self.config.grad_batches or self.dataset.train_batches)

    def _curvature_id(self, iteration):
        ids = list(self.config.curvature_batches or self.dataset.train_batches)
        return ids[(iteration - 1) % len(ids)]

    def _batch(self, batch_id):
        """The data set's batch, its values checked the first time this iteration's data is read
        (finite, mask >= 0 counting some output): bad data is refused before any work on it."""
        batch = self.dataset.batch(batch_id)
        key = repr(batch_id)
        if key not in self._checked_batches:
            check_batch_values(self.xp, f"batch {batch_id!r}", batch)
            self._checked_batches.add(key)
        return batch

    def _output_count(self, batch) -> float:
        """N_β, the batch's count of unmasked outputs: the weight of its loss in (H1)."""
        if batch.mask is None:
            count = float(math.prod(batch.targets.shape[:-1]))
        else:
            count = float(self.xp.sum(self.xp.astype(batch.mask, batch.targets.dtype)))
        if not count > 0:
            raise ValueError(f"a batch with no counted output (mask sum {count}, targets of "
                             f"shape {list(batch.targets.shape)}): its mean loss is undefined")
        return count

    def _weight_penalty(self, params) -> float:
        w = self.config.weight_cost
        return 0.5 * w * float(self.xp.sum(params * params)) if w else 0.0

    def _data_loss(self, params, batch_ids) -> float:
        """L(θ) of (H1): the mean loss over every unmasked output of the batches, Σ N_β L_β / Σ N_β
        (each batch weighted by its number of counted outputs)."""
        total, count = 0.0, 0.0
        for batch_id in batch_ids:
            batch = self._batch(batch_id)
            outputs = self._output_count(batch)
            total += outputs * float(self.model.loss(params, batch))
            count += outputs
        return total / count

    def _objective(self, params, batch_ids) -> float:
        """f(θ) = L(θ) + ½ w ‖θ‖² of (H1); +inf when not finite."""
        value = self._data_loss(params, batch_ids) + self._weight_penalty(params)
        return value if math.isfinite(value) else math.inf

    def _loss_and_gradient(self, params, batch_ids):
        """(f(θ), g) of (H1) over the batches, g = Σ N_β ∇L_β / Σ N_β + wθ, weighted like
        :meth:`_data_loss`."""
        total_loss, gradient, count = 0.0, None, 0.0
        for batch_id in batch_ids:
            batch = self._batch(batch_id)
            outputs = self._output_count(batch)
            cache = self.model.forward(params, batch.inputs)
            total_loss += outputs * float(self.model.loss(params, batch, cache))
            part = outputs * self.model.gradient(params, batch, cache)
            gradient = part if gradient is None else gradient + part
            count += outputs
        gradient = gradient / count
        if self.config.weight_cost:
            gradient = gradient + self.config.weight_cost * params
        return total_loss / count + self._weight_penalty(params), gradient

    # -- one HF iteration ------------------------------------------------------------------
    def step(self) -> dict:
        """Run one HF iteration and return its metrics record (``run()`` appends it to
        ``history`` and logs it; ``step()`` alone does neither)."""
        config, xp = self.config, self.xp
        started = time.perf_counter()
        iteration = self.iteration + 1
        if iteration > 1:
            self.dataset.forget()
            self._checked_batches = set()
        params = self.params
        grad_ids = self._train_ids()
        for batch_id in dict.fromkeys([*grad_ids, self._curvature_id(iteration)]):
            self._batch(batch_id)   # every batch of this iteration checked before any work
        objective, gradient = self._loss_and_gradient(params, grad_ids)
        gradient_norm = math.sqrt(float(xp.sum(gradient * gradient)))
        if not (math.isfinite(objective) and math.isfinite(gradient_norm)):
            raise FloatingPointError(
                f"iteration {iteration}: at the current parameters the objective is {objective} "
                f"and |gradient| is {gradient_norm}: check the data for NaN/Inf")

        damping = self.damping
        structural = structural_damping_coefficient(damping, config.structural_damping_mu)
        curvature_batch = self._batch(self._curvature_id(iteration))
        cache = self.model.forward(params, curvature_batch.inputs)   # once for all of CG
        shift = damping + config.weight_cost

        def damped_product(v):       # (G + λμ S + (λ + w) I) v  (cg-and-damping.md, (H2))
            return (self.model.gauss_newton_product(params, curvature_batch, v, cache,
                                                    structural_damping=structural)
                    + shift * v)

        preconditioner = None
        if config.preconditioner:   # (H3)
            squared = self.model.per_case_squared_gradient(params, curvature_batch, cache)
            preconditioner = (squared + shift) ** 0.75

        warm_start = None if self.cg_warm_start is None else config.cg_decay * self.cg_warm_start
        self.log.start_cg(iteration)
        cg = conjugate_gradient(
            damped_product, -gradient, warm_start, preconditioner=preconditioner,
            max_iterations=config.max_cg_iter, min_iterations=config.min_cg_iter,
            epsilon=config.cg_epsilon, callback=self.log.cg_step)

        # backtracking over the kept iterates, from the last one backwards (H4)
        backtrack_ids = list(config.backtrack_batches or grad_ids)
        chosen = len(cg.iterates) - 1
        chosen_value = self._objective(params + cg.iterates[chosen][1], backtrack_ids)
        for index in range(len(cg.iterates) - 2, -1, -1):
            value = self._objective(params + cg.iterates[index][1], backtrack_ids)
            if value >= chosen_value:
                break
            chosen, chosen_value = index, value
        chosen_step, direction = cg.iterates[chosen]

        # ρ: actual over predicted reduction (D1); the model damped or not
        new_objective = (chosen_value if backtrack_ids == grad_ids
                         else self._objective(params + direction, grad_ids))
        if config.rho_model == "damped":
            curvature_direction = damped_product(direction)
        else:
            curvature_direction = (self.model.gauss_newton_product(params, curvature_batch,
                                                                   direction, cache)
                                   + config.weight_cost * direction)
        slope = float(xp.sum(gradient * direction))                        # gᵀp
        predicted = slope + 0.5 * float(xp.sum(direction * curvature_direction))  # q(p) − q(0)
        rho = reduction_ratio(objective, new_objective, predicted)
        next_damping = self.rule.update(damping, rho)

        # line search along p (H5)
        step_size, accepted_objective = self._line_search(params, direction, objective,
                                                          new_objective, slope, grad_ids)
        if step_size == 0.0:
            next_damping = max(next_damping, damping * config.damping_boost)  # rejected: raise λ
            new_params = params
        else:
            new_params = params + step_size * direction

        # commit the iteration's state in one place (a Ctrl-C before here loses only this one)
        self.params = new_params
        self.cg_warm_start = cg.solution
        self.damping = next_damping
        self.iteration = iteration
        self.cg_total += cg.n_steps
        self._dataset_state = self._get_dataset_state()

        record = {
            "iteration": iteration,
            "train_loss": accepted_objective - self._weight_penalty(new_params),
            "objective": accepted_objective,
            "test_loss": None,
            "test_error": None,
            "grad_norm": gradient_norm,
            "theta_norm": math.sqrt(float(xp.sum(new_params * new_params))),
            "damping": damping,
            "next_damping": next_damping,
            "rho": rho,
            "rho_numerator": new_objective - objective,
            "rho_denominator": predicted,
            "cg_steps": cg.n_steps,
            "cg_total": self.cg_total,
            "cg_stop": cg.stop_reason,
            "cg_warm_start_dropped": cg.restarted_from_zero,
            "chosen_iterate": chosen_step,
            "line_search_step": step_size,
            "seconds": None,
        }
        if config.test_every and iteration % config.test_every == 0:
            record["test_loss"], record["test_error"] = self._evaluate_test(new_params)
        record["seconds"] = time.perf_counter() - started
        return record

    def _line_search(self, params, direction, objective, objective_at_one, slope, grad_ids):
        """(η, f(θ + ηp)): the first step length of 1, γ, γ², … (γ = ``line_search_rate``) that
        passes the test, Armijo's (H5) or the release's plain decrease, or (0, f(θ)) when none
        does within the allowed tries (the step is rejected)."""
        config = self.config
        if config.line_search == "armijo" and not slope < 0:
            return 0.0, objective   # not a descent direction: no step length can pass
        tries = config.max_line_search if config.line_search == "armijo" else 50
        step_size, value = 1.0, objective_at_one
        for attempt in range(tries):
            if attempt > 0:
                step_size *= config.line_search_rate
                value = self._objective(params + step_size * direction, grad_ids)
            if config.line_search == "armijo":
                passes = slope < 0 and value <= objective + config.armijo_c * step_size * slope
            else:
                passes = value < objective
            if passes:
                return step_size, value
        return 0.0, objective

    def _evaluate_test(self, params):
        losses, errors, counts = 0.0, 0.0, 0.0
        has_error = True
        for batch_id in self.dataset.test_batches:
            batch = self._batch(batch_id)
            outputs = self._output_count(batch)
            cache = self.model.forward(params, batch.inputs)
            losses += outputs * float(self.model.loss(params, batch, cache))
            error = self.dataset.zero_one_error(batch, cache.predictions)
            if error is None:
                has_error = False
            else:
                errors += outputs * float(error)
            counts += outputs
        return losses / counts, (errors / counts if has_error else None)

    # -- running, checkpoints, resume ------------------------------------------------------
    def run(self, max_iterations: int, stop: Callable[[dict], bool] | None = None) -> list[dict]:
        """Iterate until ``self.iteration == max_iterations`` or ``stop(record)`` is true.

        Checkpoints every ``save_every`` iterations, at the end, and on Ctrl-C (the last
        completed iteration, then the KeyboardInterrupt goes on).
        """
        if (self.iteration == 0 and not self._resumed and self.run_dir is not None
                and (self.run_dir / CHECKPOINT_NAME).exists()):
            raise ValueError(f"{self.run_dir} already holds a run (its {CHECKPOINT_NAME}): call "
                             f"resume() to continue it, or choose another run_dir")
        self.log.start_run(self.iteration, max_iterations)
        if self.iteration == 0 and not self._resumed:
            self.save()   # from here on a kill at any moment leaves a checkpoint to resume
        try:
            while self.iteration < max_iterations:
                record = self.step()
                self.history.append(record)
                self.log.iteration(record)
                if self.save_every and self.iteration % self.save_every == 0:
                    self.save()
                if stop is not None and stop(record):
                    self.log.message(f"stop condition met at iteration {self.iteration}")
                    break
        except KeyboardInterrupt:
            self.log.message(f"interrupted: saving iteration {self.iteration}")
            self.save()
            raise
        self.save()
        return self.history

    def _get_dataset_state(self):
        getter = getattr(self.dataset, "get_state", None)
        return None if getter is None else getter()

    def state_arrays_and_meta(self):
        """(host arrays, JSON description) of the last completed iteration: what save() writes."""
        return state.arrays_and_meta(self)

    def save(self, path=None):
        """Write the state of the last completed iteration (atomic; the previous file is kept)."""
        if path is None:
            if self.run_dir is None:
                return None
            path = state.checkpoint_path(self.run_dir)
        arrays, meta = self.state_arrays_and_meta()
        return checkpoint.save(path, arrays, meta)

    def resume(self, run_dir=None, *, force: bool = False) -> HF:
        """Load the latest checkpoint of ``run_dir`` (default: this run's) into this optimizer,
        onto this optimizer's backend, dtype and device. ``run`` then continues from it.

        Refuses (ValueError naming the differences) a checkpoint whose HF settings or model
        differ from this optimizer's, unless ``force``.
        """
        run_dir = pathlib.Path(run_dir) if run_dir is not None else self.run_dir
        if run_dir is None:
            raise ValueError("resume needs a run_dir")
        arrays, meta, _ = checkpoint.load_latest(state.checkpoint_path(run_dir))
        state.refuse_other_settings(meta, self, force=force)
        saved = state.read_state(arrays, meta, run_dir, n_params=self.model.n_params,
                                 like=self.params)
        state.restore_dataset_state(self.dataset, meta, force=force, log=self.log)
        # every check passed: only now is this optimizer's state replaced
        self.params, self.cg_warm_start, self.damping = (saved.params, saved.cg_warm_start,
                                                         saved.damping)
        self.iteration, self.cg_total = saved.iteration, saved.cg_total
        self._dataset_state = self._get_dataset_state()
        self._checked_batches = set()
        if self.run_dir is None:
            self.run_dir = run_dir
            self.log = RunLog(run_dir, echo=self.progress)
        self.history = self.log.resume(self.iteration)
        self._resumed = True
        return self
