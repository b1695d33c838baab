"""The run state of HF (``HFState``): what one iteration hands the next, what a checkpoint saves,
what a resume checks and reads back.

``HFState`` is frozen: hf/step.py's ``hf_step`` takes one and returns the next, and ``HF`` holds
the latest. A run's checkpoint (``run_dir/checkpoint.npz``, written by arrayhf/checkpoint.py) is
the state written out: θ and the last CG solution as host arrays, and a JSON description: the
counters, λ, the data set's state, and beside them the settings (``HFConfig.to_json``), the
model's ``config()`` and the caller's ``run_info``. A resume refuses a checkpoint whose settings,
model or run description differ from the optimizer's (unless forced), checks every saved value
before it hands back a state, and moves the arrays onto the optimizer's backend, dtype and device.

On several processes the state is the same on every process (so any number of processes resumes
it, :data:`AGREED` checks it every iteration); rank 0 alone writes it, every process reads it.
"""

from __future__ import annotations

import dataclasses
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
    from arrayhf.hf.runlog import RunLog
    from arrayhf.hf.settings import HFConfig
    from arrayhf.protocols import HFDataset, HFModel

STATE_ARRAYS = ("params", "cg_warm_start")
# the record's values every process must hold alike after an iteration (the same iterate)
AGREED = ("objective", "theta_norm", "next_damping", "cg_steps", "chosen_iterate",
          "line_search_step")


@dataclass(frozen=True, eq=False)
class HFState:
    """Everything one HF iteration hands the next, and everything a checkpoint holds of a run
    besides its description: after ``iteration`` completed iterations (0: none yet)."""

    params: Any                # θ
    cg_warm_start: Any         # the last CG solution x^prev (H2), or None before the first
    damping: float             # λ for the next iteration
    iteration: int = 0         # completed HF iterations
    cg_total: int = 0          # CG steps in all
    dataset_state: Any = None  # the data set's get_state() after the iteration (JSON), or None


def dataset_state_of(dataset: HFDataset) -> Any:
    """The data set's state (``get_state()``), or None for a data set that keeps none."""
    getter = getattr(dataset, "get_state", None)
    return None if getter is None else getter()


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


def arrays_and_meta(state: HFState, *, seed: int, config: HFConfig, model: HFModel,
                    run_info: dict | None, processes: int) -> tuple[dict, dict]:
    """(host arrays, JSON description) of ``state``: what a checkpoint holds, with the run's
    seed, settings, model description, ``run_info`` and its number of processes."""
    arrays = {"params": backend.to_numpy(state.params)}
    if state.cg_warm_start is not None:
        arrays["cg_warm_start"] = backend.to_numpy(state.cg_warm_start)
    meta = {
        "kind": "hf_run",
        "iteration": state.iteration,
        "damping": state.damping,
        "cg_total": state.cg_total,
        "seed": seed,
        "dataset_state": state.dataset_state,
        "config": config.to_json(),
        "settings_version": SETTINGS_VERSION,
        "model": model.config() if hasattr(model, "config") else None,
        "dtype": str(state.params.dtype).split(".")[-1],
        "run_info": run_info,
        "processes": processes,   # for the record: a resume takes any
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


def refuse_other_settings(meta: dict, *, config: HFConfig, model: HFModel,
                          run_info: dict | None, force: bool) -> None:
    """ValueError naming every difference between the checkpoint's settings, model and run
    description and the given ones, unless ``force``."""
    differences = _differences(saved_settings(meta), acting_settings(config.to_json()), "config")
    if hasattr(model, "config"):
        differences += _differences(meta.get("model") or {}, model.config(), "model")
    if run_info is not None or meta.get("run_info") is not None:
        differences += _differences(meta.get("run_info") or {}, run_info or {}, "run")
    if differences and not force:
        raise ValueError("the checkpoint was made with other settings: "
                         + "; ".join(differences)
                         + " (force=True, or 'arrayhf resume --force', resumes anyway)")


def read_checked(run_dir: pathlib.Path, *, config: HFConfig, model: HFModel,
                 run_info: dict | None, like: Any, dataset: HFDataset, log: RunLog, rank: int,
                 force: bool) -> HFState:
    """The state of the latest loadable checkpoint of ``run_dir``, its arrays on the backend,
    dtype and device of ``like`` (the optimizer's θ), after every check (settings, model and run
    description against the given ones, arrays); restores the data set's saved state, whose
    ``get_state()`` the state then holds. A damaged latest checkpoint read past is moved aside
    (by rank 0 alone), so that the next save keeps the good one that was read instead of rotating
    the damaged one over it."""
    latest = checkpoint_path(run_dir)
    arrays, meta, used = checkpoint.read_latest(latest)
    refuse_other_settings(meta, config=config, model=model, run_info=run_info, force=force)
    saved = read_state(arrays, meta, run_dir, n_params=model.n_params, like=like)
    restore_dataset_state(dataset, meta, force=force, log=log)
    if used != latest and latest.exists() and rank == 0:
        checkpoint.set_aside(latest)
    return dataclasses.replace(saved, dataset_state=dataset_state_of(dataset))


def read_state(arrays: dict, meta: dict, run_dir: str | os.PathLike, *, n_params: int,
               like: Any) -> HFState:
    """The checkpoint's state, its arrays on the backend, dtype and device of ``like`` (the
    optimizer's θ), without the data set's state; CheckpointError when anything is missing or
    malformed."""
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
    return HFState(params=moved["params"], cg_warm_start=moved.get("cg_warm_start"),
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


def _differences(saved, current: dict, label: str) -> list[str]:
    saved = saved if isinstance(saved, dict) else {"(description)": saved}
    keys = sorted(set(saved) | set(current))
    return [f"{label}.{key}: checkpoint {saved.get(key)!r}, now {current.get(key)!r}"
            for key in keys if saved.get(key) != current.get(key)]
