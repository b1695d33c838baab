"""Checkpoints: arrays and a JSON description in one ``.npz`` file, written atomically.

Host-side code. A checkpoint is written to a temporary file in the same folder, flushed to disk,
and renamed over the old one, so a crash at any moment leaves either the old or the new file,
never half of one; the one before it is kept as ``NAME.prev.npz``. Reading uses
``numpy.load(allow_pickle=False)``: a file from an untrusted source cannot execute code.

Three readers, named by what they return: :func:`read_arrays`, a file's arrays and description;
:func:`read_latest`, the same from a checkpoint or, when it is missing or damaged, the one kept
before it; :func:`load_model` (``arrayhf.load``), the model and θ on any backend.
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:   # for the annotation only: load_model imports the models when it runs
    from arrayhf.models.base import Model

FORMAT_VERSION = 1
# the name of a run's latest checkpoint in its run directory (the previous one: checkpoint.prev.npz)
CHECKPOINT_NAME = "checkpoint.npz"
_META_KEY = "__meta__"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, damaged, or from a newer format version."""


def previous_path(path: str | os.PathLike) -> pathlib.Path:
    """Where the checkpoint before ``path`` is kept: NAME.prev.npz."""
    path = pathlib.Path(path)
    return path.with_name(path.name.removesuffix(".npz") + ".prev.npz")


def save(path: str | os.PathLike, arrays: dict, meta: dict) -> pathlib.Path:
    """Write ``arrays`` (name -> host array) and ``meta`` (JSON-ready dict) to ``path`` atomically;
    the file it replaces becomes ``previous_path(path)``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if _META_KEY in arrays:
        raise ValueError(f"array name {_META_KEY!r} is reserved")
    document = json.dumps({"format_version": FORMAT_VERSION, **meta})
    for stale in path.parent.glob(f".{path.name}.*.tmp"):   # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        contents = {name: np.asarray(a) for name, a in arrays.items()}
        contents[_META_KEY] = np.array(document)
        np.savez(handle, **contents)  # type: ignore[arg-type]  # numpy's stub reads ** as allow_pickle
        handle.flush()
        os.fsync(handle.fileno())
    if path.exists():
        os.replace(path, previous_path(path))
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def read_arrays(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(arrays, meta)`` from a checkpoint written by :func:`save`."""
    path = pathlib.Path(path)
    try:
        with np.load(path, allow_pickle=False) as contents:
            arrays = {name: contents[name] for name in contents.files}
    except FileNotFoundError:
        raise
    except Exception as error:  # zip, npy header or pickle refusal: all mean "damaged"
        raise CheckpointError(f"checkpoint {path} is damaged or not an arrayhf checkpoint "
                              f"({type(error).__name__}: {error})") from error
    if _META_KEY not in arrays:
        raise CheckpointError(f"checkpoint {path} has no {_META_KEY} record")
    try:
        meta = json.loads(str(arrays.pop(_META_KEY)))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"checkpoint {path}: damaged description ({error})") from error
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: damaged description (a JSON "
                              f"{type(meta).__name__}, expected an object)")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version!r}; this arrayhf "
                              f"reads versions up to {FORMAT_VERSION}: upgrade arrayhf")
    return arrays, meta


def read_latest(path: str | os.PathLike) -> tuple[dict, dict, pathlib.Path]:
    """Read ``path``, or its ``.prev`` twin when ``path`` is missing or damaged (a crash between
    the two renames of :func:`save`, a full disk, a truncated copy). Returns ``(arrays, meta, the
    path read)``. Falling back from a damaged file is never silent: it is named on stderr."""
    errors = []
    for candidate in (pathlib.Path(path), previous_path(path)):
        try:
            arrays, meta = read_arrays(candidate)
        except FileNotFoundError:
            errors.append(f"{candidate}: missing")
            continue
        except CheckpointError as error:
            errors.append(str(error))
            continue
        if errors and candidate != pathlib.Path(path) and pathlib.Path(path).exists():
            print(f"arrayhf: {errors[0]}; reading the checkpoint before it, {candidate} "
                  f"(iteration {meta.get('iteration', '?')})", file=sys.stderr)
        return arrays, meta, candidate
    raise CheckpointError("no loadable checkpoint: " + "; ".join(errors))


def set_aside(path: str | os.PathLike) -> pathlib.Path:
    """Rename a damaged checkpoint to NAME.damaged-K.npz (the first K free), so that the next
    save does not rotate it over the good one kept before it; returns the new name."""
    path = pathlib.Path(path)
    for count in itertools.count(1):
        aside = path.with_name(f"{path.name.removesuffix('.npz')}.damaged-{count}.npz")
        if not aside.exists():
            os.replace(path, aside)
            print(f"arrayhf: moved the damaged {path.name} aside to {aside.name}",
                  file=sys.stderr)
            return aside
    raise AssertionError("unreachable")


def load_model(path: str | os.PathLike, *, backend: str | None = None, device: Any = None,
               dtype: Any = None) -> tuple[Model, Any]:
    """``(model, params)`` from a checkpoint file or a run directory, on any backend.

    The model is rebuilt from the checkpoint's JSON description (no code is loaded: the file is
    read with ``allow_pickle=False``), and θ is moved to ``backend`` (default
    ``$ARRAYHF_BACKEND`` or numpy), ``device`` and ``dtype`` (default: the dtype it was saved in).
    """
    from arrayhf import backend as backends
    from arrayhf.models import from_config

    path = pathlib.Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    elif not path.exists() and not previous_path(path).exists():
        raise FileNotFoundError(f"{path}: no such run directory or checkpoint file")
    arrays, meta, used = read_latest(path)
    if not meta.get("model"):
        raise CheckpointError(f"checkpoint {used} has no model description (saved by a model "
                              "without config()); rebuild the model and load 'params' yourself")
    if "params" not in arrays:
        raise CheckpointError(f"checkpoint {used} has no 'params' array")
    model = from_config(meta["model"])
    xp = backends.namespace(backend, device=device)
    backends.enable_float64(xp, dtype or meta.get("dtype"))
    params = backends.from_host(arrays["params"], xp, dtype=dtype or meta.get("dtype", "float64"),
                                device=device)
    if params.shape != (model.n_params,):
        raise CheckpointError(f"checkpoint {used}: params of length {params.shape[0]}, but the "
                              f"described model has {model.n_params}")
    return model, params
