"""The run state of HF: what a checkpoint saves, what a resume checks and restores.

A run's checkpoint (``run_dir/checkpoint.npz``, written by arrayhf/checkpoint.py) holds θ and the
last CG solution as host arrays, and a JSON description: the counters, λ, the data set's state,
the settings (``HFConfig.to_json``), the model's ``config()`` and the caller's ``run_info``. A
resume refuses a checkpoint whose settings, model or run description differ from the optimizer's
(unless forced), checks every saved value before any of the optimizer's state is replaced, and
moves the arrays onto the optimizer's backend, dtype and device.

On several processes the state is the same on every process (so any number of processes resumes
it, :data:`AGREED` checks it every iteration); rank 0 alone writes it, every process reads it.
"""

from __future__ import annotations

import math
import os
import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import array_api_compat

from arrayhf import backend, checkpoint
from arrayhf._validate import check_finite, namespace_of
from arrayhf.distributed import raise_together
from arrayhf.hf.settings import acting_settings

if TYPE_CHECKING:
    from arrayhf.distributed import Communicator
    from arrayhf.hf.optimizer import HF
    from arrayhf.hf.runlog import RunLog
    from arrayhf.protocols import HFDataset

STATE_ARRAYS = ("params", "cg_warm_start")
# the record's values every process must hold alike after an iteration (the same iterate)
AGREED = ("objective", "theta_norm", "next_damping", "cg_steps", "chosen_iterate",
          "line_search_step")


@dataclass
class RunState:
    """The state of the last completed iteration that a checkpoint restores."""

    params: Any               # θ
    cg_warm_start: Any        # the last CG iterate x^prev (H2), or None
    damping: float            # λ for the next iteration
    iteration: int
    cg_total: int


def checkpoint_path(run_dir: str | os.PathLike) -> pathlib.Path:
    """Where a run directory's latest checkpoint is."""
    return pathlib.Path(run_dir) / checkpoint.CHECKPOINT_NAME


def holds_run(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a run's checkpoint: the latest or, after a kill between the two
    renames of a save, only the previous one."""
    path = checkpoint_path(run_dir)
    return path.exists() or checkpoint.previous_path(path).exists()


def refuse_existing_run(run_dir: str | os.PathLike, communicator: Communicator) -> None:
    """ValueError, on every process, when a new run would start in ``run_dir``, which holds one
    (rank 0 looks: it may already have written this run's first checkpoint when another looks)."""
    def look() -> None:
        if communicator.rank == 0 and holds_run(run_dir):
            latest = checkpoint.CHECKPOINT_NAME
            raise ValueError(f"{run_dir} already holds a run (its {latest} or "
                             f"{checkpoint.previous_path(latest).name}): call resume() to "
                             f"continue it, or choose another run_dir")

    raise_together(communicator, look)


# 2: max_line_search acts in both line-search modes (before, "decrease" ignored it)
SETTINGS_VERSION = 2


def arrays_and_meta(optimizer: HF) -> tuple[dict, dict]:
    """(host arrays, JSON description) of the optimizer's last completed iteration."""
    arrays = {"params": backend.to_numpy(optimizer.params)}
    if optimizer.cg_warm_start is not None:
        arrays["cg_warm_start"] = backend.to_numpy(optimizer.cg_warm_start)
    model = optimizer.model
    meta = {
        "kind": "hf_run",
        "iteration": optimizer.iteration,
        "damping": optimizer.damping,
        "cg_total": optimizer.cg_total,
        "seed": optimizer.seed,
        "dataset_state": optimizer._dataset_state,
        "config": optimizer.config.to_json(),
        "settings_version": SETTINGS_VERSION,
        "model": model.config() if hasattr(model, "config") else None,
        "dtype": str(optimizer.params.dtype).split(".")[-1],
        "run_info": optimizer.run_info,
        "processes": optimizer.communicator.world_size,   # for the record: a resume takes any
    }
    return arrays, meta


def saved_settings(meta: dict) -> dict:
    """The checkpoint's HF settings as they acted when it was written. Before settings version 2
    ``line_search="decrease"`` ignored ``max_line_search`` and always tried 50 step lengths, so
    such a checkpoint's stored value (60, the Armijo default, unless set) is read as 50."""
    saved = meta.get("config", {})
    if (isinstance(saved, dict) and meta.get("settings_version", 1) < 2
            and saved.get("line_search") == "decrease"):
        saved = {**saved, "max_line_search": 50}
    return acting_settings(saved)


def refuse_other_settings(meta: dict, optimizer: HF, *, force: bool) -> None:
    """ValueError naming every difference between the checkpoint's settings, model and run
    description and the optimizer's, unless ``force``."""
    differences = _differences(saved_settings(meta),
                               acting_settings(optimizer.config.to_json()), "config")
    model, run_info = optimizer.model, optimizer.run_info
    if hasattr(model, "config"):
        differences += _differences(meta.get("model") or {}, model.config(), "model")
    if run_info is not None or meta.get("run_info") is not None:
        differences += _differences(meta.get("run_info") or {}, run_info or {}, "run")
    if differences and not force:
        raise ValueError("the checkpoint was made with other settings: "
                         + "; ".join(differences)
                         + " (force=True, or 'arrayhf resume --force', resumes anyway)")


def read_checked(optimizer: HF, run_dir: pathlib.Path, *, force: bool) -> RunState:
    """The latest loadable checkpoint of ``run_dir`` as a RunState on the optimizer's backend,
    after every check (settings, model, arrays, the data set's state, which it restores); a
    damaged latest checkpoint read past is moved aside, so that the next save keeps the good one
    that was read instead of rotating the damaged one over it (by rank 0 alone)."""
    latest = checkpoint_path(run_dir)
    arrays, meta, used = checkpoint.read_latest(latest)
    refuse_other_settings(meta, optimizer, force=force)
    saved = read_state(arrays, meta, run_dir, n_params=optimizer.model.n_params,
                       like=optimizer.params)
    restore_dataset_state(optimizer.dataset, meta, force=force, log=optimizer.log)
    if used != latest and latest.exists() and optimizer.communicator.rank == 0:
        checkpoint.set_aside(latest)
    return saved


def read_state(arrays: dict, meta: dict, run_dir: str | os.PathLike, *, n_params: int,
               like: Any) -> RunState:
    """The checkpoint's state, its arrays on the backend, dtype and device of ``like`` (the
    optimizer's θ); CheckpointError when anything is missing or malformed."""
    for name in STATE_ARRAYS:
        if name in arrays and arrays[name].shape != (n_params,):
            raise checkpoint.CheckpointError(
                f"checkpoint in {run_dir}: expected {name} of shape [{n_params}], got "
                f"{list(arrays[name].shape)}")
    if "params" not in arrays:
        raise checkpoint.CheckpointError(f"checkpoint in {run_dir} has no 'params' array")
    try:
        damping, iteration = float(meta["damping"]), int(meta["iteration"])
        cg_total = int(meta["cg_total"])
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise checkpoint.CheckpointError(
            f"checkpoint in {run_dir}: damaged description ({type(error).__name__}: {error})"
        ) from error
    if not (damping > 0 and math.isfinite(damping) and iteration >= 0 and cg_total >= 0):
        raise checkpoint.CheckpointError(
            f"checkpoint in {run_dir}: expected damping > 0 and counts >= 0, got damping "
            f"{damping}, iteration {iteration}, cg_total {cg_total}")
    xp = namespace_of(like)
    moved = {name: backend.from_host(arrays[name], xp, dtype=like.dtype,
                                     device=array_api_compat.device(like))
             for name in STATE_ARRAYS if name in arrays}
    for name, array in moved.items():
        try:
            check_finite(xp, f"the checkpoint's {name}", array)
        except ValueError as error:
            raise checkpoint.CheckpointError(f"checkpoint in {run_dir}: {error}") from error
    return RunState(params=moved["params"], cg_warm_start=moved.get("cg_warm_start"),
                    damping=damping, iteration=iteration, cg_total=cg_total)


def restore_dataset_state(dataset: HFDataset, meta: dict, *, force: bool, log: RunLog) -> None:
    """Give the data set its saved state (``set_state``), so that it draws what an uninterrupted
    run would; a forced resume goes on from the data set's own seed when it refuses the state."""
    if meta.get("dataset_state") is None or not hasattr(dataset, "set_state"):
        return
    try:
        dataset.set_state(meta["dataset_state"])   # checks its own state first
    except ValueError as error:
        if not force:
            raise
        log.message(f"forced resume: the data set's state was not restored ({error}); it goes "
                    f"on from its own seed")


def restore(optimizer: HF, run_dir: str | os.PathLike | None, *, force: bool) -> None:
    """Load the latest checkpoint of ``run_dir`` (default: the optimizer's) into ``optimizer``
    (HF.resume): every check first, then the state, the data set's state and the logs."""
    run_dir = pathlib.Path(run_dir) if run_dir is not None else optimizer.run_dir
    if run_dir is None:
        raise ValueError("resume needs a run_dir")
    saved = read_checked(optimizer, run_dir, force=force)
    # every check passed: only now is the optimizer's state replaced
    optimizer.params, optimizer.cg_warm_start = saved.params, saved.cg_warm_start
    optimizer.damping, optimizer.iteration = saved.damping, saved.iteration
    optimizer.cg_total = saved.cg_total
    optimizer._dataset_state = optimizer._get_dataset_state()
    optimizer.batch_objective.new_data()
    if optimizer.run_dir is None:
        optimizer.run_dir = run_dir
        optimizer.log = optimizer._run_log(run_dir)
    optimizer.history = optimizer.log.resume(optimizer.iteration)
    optimizer._resumed = True


def _differences(saved, current: dict, label: str) -> list[str]:
    saved = saved if isinstance(saved, dict) else {"(description)": saved}
    keys = sorted(set(saved) | set(current))
    return [f"{label}.{key}: checkpoint {saved.get(key)!r}, now {current.get(key)!r}"
            for key in keys if saved.get(key) != current.get(key)]
