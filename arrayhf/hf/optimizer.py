"""The Hessian-free optimizer (Martens 2010; the 2011 release's ``opt.hf``), over any model and
data set: ``HF``, a shell around the run's state and its step.

``HF`` holds the run's :class:`~arrayhf.hf.state.HFState` (θ, λ, the CG warm start, the counters,
the data set's state) and the logs. ``step()`` takes one HF iteration with hf/step.py's
``hf_step`` (its phases are hf/phases.py's; derivations/cg-and-damping.md, section "The HF
iteration") and commits the state it returns in one statement: a Ctrl-C or SIGTERM before that
statement loses only the iteration under way, one after it finds the new state and its record
together. ``run()`` iterates, logs every record, applies the stop test and the callbacks, and
writes a checkpoint every ``save_every`` iterations, at the end and on Ctrl-C. A checkpoint is the
state written out (hf/state.py); ``resume()`` reads a state back and holds it.

The settings are hf/settings.py's ``HFConfig``. On several processes (``communicator``) every sum
over the data is also a sum over the processes (hf/objective.py, (H6)) and every process takes
the same decisions, which ``step()`` confirms at the end of every iteration.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import array_api_compat

from arrayhf import checkpoint, threads
from arrayhf._validate import check_finite, check_floating, check_shape, is_integer, namespace_of
from arrayhf.data.sharded import ShardedDataset
from arrayhf.distributed import SingleProcess, check_agree, raise_together
from arrayhf.hf import state
from arrayhf.hf.objective import BatchObjective
from arrayhf.hf.phases import gradient_batches
from arrayhf.hf.runlog import RunLog
from arrayhf.hf.running import MESSAGES, HFResult, deferred_interrupts
from arrayhf.hf.settings import HFConfig
from arrayhf.hf.state import HFState
from arrayhf.hf.step import StepRecord, hf_step

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

    Attributes
    ----------
    state : HFState
        The run's state after the last committed iteration (θ, λ, the CG warm start, the
        counters, the data set's state): what ``save`` writes; ``params``, ``damping``,
        ``cg_warm_start``, ``iteration`` and ``cg_total`` read it.
    last_step : StepRecord or None
        The record of the last committed iteration, phase by phase (g, the CG result, p, ρ, η);
        its ``metrics`` is the JSON record.
    history : list of dict
        Every logged iteration's JSON record, as in ``metrics.jsonl``.
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
        if self.config.preconditioner and not hasattr(model, "per_case_squared_gradient"):
            raise ValueError(f"preconditioner=True needs {type(model).__name__}."
                             "per_case_squared_gradient, which this model does not have")
        if self.config.structural_damping_mu and not hasattr(model, "structural_damping_product"):
            raise ValueError(f"{type(model).__name__} has no structural damping term: expected "
                             f"structural_damping_mu=0, got {self.config.structural_damping_mu}")
        train_ids = gradient_batches(self.config, dataset)
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
        self.state = HFState(params=params, cg_warm_start=None, damping=self.config.damping,
                             dataset_state=state.dataset_state_of(dataset))
        self.last_step: StepRecord | None = None   # the record of the last committed iteration
        self.history: list[dict] = []
        self._resumed = False
        self.log = self._run_log(self.run_dir)

    def _run_log(self, run_dir: pathlib.Path | None) -> RunLog:
        """The run's logs: written, and echoed, by rank 0 alone."""
        first = self.communicator.rank == 0
        return RunLog(run_dir, echo=self.progress and first, writes=first)

    # -- the state's values, read-only: only step() and resume() replace the state ------------
    @property
    def params(self) -> Any:
        """θ after the last committed iteration."""
        return self.state.params

    @property
    def damping(self) -> float:
        """λ for the next iteration."""
        return self.state.damping

    @property
    def cg_warm_start(self) -> Any:
        """The last CG solution (the next warm start is it × ``cg_decay``), or None."""
        return self.state.cg_warm_start

    @property
    def iteration(self) -> int:
        """HF iterations completed."""
        return self.state.iteration

    @property
    def cg_total(self) -> int:
        """CG steps in all."""
        return self.state.cg_total

    @property
    def last_record(self) -> dict | None:
        """The metrics record of the last committed iteration (``last_step.metrics``), or None."""
        return None if self.last_step is None else self.last_step.metrics

    # -- one HF iteration ----------------------------------------------------------------------
    def step(self) -> dict:
        """Run one HF iteration and return its metrics record (``run()`` appends it to
        ``history`` and logs it; ``step()`` alone does neither). ``last_step`` then holds the
        whole record of the step (hf/step.py's ``StepRecord``)."""
        threads.adapt()     # every core when the machine is idle, a fair share when it is not
        next_state, record = hf_step(self.config, self.model, self.batch_objective, self.state,
                                     log=self.log)
        # commit the iteration in one statement: a Ctrl-C or SIGTERM before it loses only this
        # iteration, one after it finds the state and its record together (run() logs it)
        self.state, self.last_step = next_state, record
        check_agree(self.communicator, [record.metrics[k] for k in state.AGREED],
                    f"iterate {next_state.iteration}")
        return record.metrics

    # -- running, checkpoints, resume ----------------------------------------------------------
    def run(self, max_iterations: int, stop: Callable[[dict], bool] | None = None, *,
            callbacks: Iterable[Callable[[HF, dict], Any]] = ()) -> HFResult:
        """Iterate until ``self.iteration == max_iterations``, ``stop(record)`` is true, or a
        callback (``callback(optimizer, record)``, after every iteration, after its log line and
        checkpoint) raises StopIteration; returns an ``HFResult`` (final θ, iterations, whether
        the stop condition was met, the history). Checkpoints every ``save_every`` iterations,
        at the end, and on Ctrl-C or SIGTERM (then the KeyboardInterrupt goes on)."""
        callbacks = list(callbacks)
        fresh = self.iteration == 0 and not self._resumed
        if fresh and self.run_dir is not None:
            state.refuse_existing_run(self.run_dir, self.communicator)
        self.log.start_run(self.iteration, max_iterations, self.communicator.world_size)
        if fresh:
            self.save()   # from here on a kill at any moment leaves a checkpoint to resume
        status = 1
        try:
            while self.iteration < max_iterations and status == 1:
                record = self.step()
                with deferred_interrupts():      # the record and its log lines, never half
                    self.history.append(record)
                    self.log.iteration(record)
                if self.save_every and self.iteration % self.save_every == 0:
                    self.save()
                if stop is not None and stop(record):
                    self.log.message(f"stop condition met at iteration {self.iteration}")
                    status = 0
                status = self._call(callbacks, record, status)
        except KeyboardInterrupt:
            self.log.end_run()
            self._log_committed()
            self.log.message(f"interrupted: saving iteration {self.iteration}")
            self.save()
            raise
        finally:
            self.log.end_run()
        self.save()
        last = self.history[-1] if self.history else None
        return HFResult(x=self.params, success=status == 0, status=status,
                        message=MESSAGES[status], nit=self.iteration, ncg=self.cg_total,
                        fun=None if last is None else last["objective"], history=self.history)

    def _call(self, callbacks: list, record: dict, status: int) -> int:
        """Call every callback; status 2 when one raises StopIteration (and none met the stop
        condition first)."""
        for callback in callbacks:
            try:
                callback(self, record)
            except StopIteration:
                self.log.message(f"a callback stopped the run at iteration {self.iteration}")
                status = 2 if status == 1 else status
        return status

    def _log_committed(self) -> None:
        """Log the last committed iteration if an interrupt fell between its commit and its log,
        so that the checkpoint never holds an iteration the logs lack."""
        last = self.last_record
        if last is not None and last["iteration"] == self.iteration and (
                not self.history or self.history[-1] is not last):
            self.history.append(last)
            self.log.iteration(last)

    def state_arrays_and_meta(self) -> tuple[dict, dict]:
        """(host arrays, JSON description) of the last completed iteration: what save() writes."""
        return state.arrays_and_meta(self.state, seed=self.seed, config=self.config,
                                     model=self.model, run_info=self.run_info,
                                     processes=self.communicator.world_size)

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
        onto this optimizer's backend, dtype and device, and the data set's saved state into the
        data set; ``run`` then continues from it, bit for bit as the uninterrupted run.

        Refuses (ValueError naming the differences) a checkpoint whose HF settings, model or
        ``run_info`` differ from this optimizer's, unless ``force``; every check passes before
        anything is replaced.
        """
        run_dir = pathlib.Path(run_dir) if run_dir is not None else self.run_dir
        if run_dir is None:
            raise ValueError("resume needs a run_dir")
        resumed = state.read_checked(
            run_dir, config=self.config, model=self.model, run_info=self.run_info,
            like=self.params, dataset=self.dataset, log=self.log,
            rank=self.communicator.rank, force=force)
        self.state, self.last_step = resumed, None   # every check passed: hold the saved state
        self.batch_objective.new_data()
        if self.run_dir is None:
            self.run_dir = run_dir
            self.log = self._run_log(run_dir)
        self.history = self.log.resume(self.iteration)
        self._resumed = True
        return self
