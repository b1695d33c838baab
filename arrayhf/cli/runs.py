"""Runs as the command line makes them: a settings record (pathological or text), saved as
``run_dir/run.json``, from which the model, the data and the HF optimizer are built again (for
``arrayhf resume``, ``plot`` and ``sample``); the options of the training commands that fill it;
and opening a run directory, new or resumed, and running it until done or interrupted. Under
``torchrun`` a run is shared by its processes (arrayhf/distributed.py): each builds the same
model and data, rank 0 alone writes run.json, the logs and the checkpoints.

Host-side code. The defaults are the 2011 release's demo (``opt.r.demo``): 100 tanh units
without biases, the release's initialization, damping [λ, λμ] = [1, 0.03] × 0.01 × outputs
(μ = 0.03), ρ on the damped model, the "first step that lowers the loss" line search, CG up to
300 steps, gradient on every training batch, curvature on batch 0, fresh training data every
iteration, and success when fewer than 0.1% of the test sequences are wrong.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import arrayhf
from arrayhf import backend, checkpoint, distributed
from arrayhf.data.corpus import python_stdlib_corpus
from arrayhf.data.pathological import Pathological
from arrayhf.data.text import Text
from arrayhf.data.vocabulary import Vocabulary
from arrayhf.hf.optimizer import HF
from arrayhf.models.mrnn import MRNN

RUN_FILE = "run.json"


# Settings a resumed run may change: how long it goes on, and how often it saves.
CHANGEABLE_ON_RESUME = ("iterations", "save_every")


@dataclass
class _SavedSettings:
    """What both settings records share: JSON form, an atomic run.json, and the part of the
    settings that a resume must find unchanged. A dataclass without fields of its own, so that
    ``dataclasses.asdict(self)`` is typed for the records that subclass it."""

    def to_json(self) -> dict:
        """The settings as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def run_info(self) -> dict:
        """The settings a checkpoint records and a resume compares (all but
        CHANGEABLE_ON_RESUME)."""
        return {key: value for key, value in self.to_json().items()
                if key not in CHANGEABLE_ON_RESUME}

    def save(self, run_dir) -> None:
        """Write ``run_dir/run.json`` atomically (a kill leaves the old file or the new one)."""
        path = pathlib.Path(run_dir)
        path.mkdir(parents=True, exist_ok=True)
        temporary = path / f".{RUN_FILE}.tmp"
        temporary.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        os.replace(temporary, path / RUN_FILE)


@dataclass
class RunSettings(_SavedSettings):
    """Everything needed to build a pathological-problem run again."""

    problem: str = "multiplication"
    T: int = 200
    hidden: int = 100
    batch_size: int = 1000
    train_batches: int = 10
    test_batches: int = 10
    seed: int = 0
    iterations: int = 1000
    backend: str = "numpy"
    device: str | None = None
    dtype: str = "float64"
    damping: float | None = None          # None: 0.01 × outputs (the release's demo)
    mu: float = 0.03                      # structural damping λμ = λ·mu
    max_cg: int = 300
    threshold: float = 0.001              # solved when test error < threshold
    biases: bool = False
    rho_model: str = "damped"
    line_search: str = "decrease"
    save_every: int = 5


def xp_for(settings: RunSettings | TextRunSettings) -> Any:
    """The namespace of the run's backend (JAX switched to 64-bit for float64 runs)."""
    xp = backend.namespace(settings.backend, device=settings.device)
    backend.enable_float64(xp, settings.dtype)
    return xp


def communicator_for(settings: RunSettings | TextRunSettings) -> distributed.Communicator:
    """The processes of this run: those ``torchrun`` started (NCCL beside gloo on a CUDA
    device), or this one alone."""
    device = settings.device or os.environ.get("ARRAYHF_DEVICE") or ""
    cuda = settings.backend == "cupy" or device.startswith(("cuda", "gpu"))
    return distributed.from_environment(cuda=cuda)


def build(settings: RunSettings, run_dir: str | os.PathLike | None = None,
          progress: bool = True, communicator: distributed.Communicator | None = None
          ) -> tuple[arrayhf.RNN, Pathological, HF]:
    """(model, dataset, optimizer) for the settings; the optimizer starts from the seed's θ and
    runs on ``communicator``'s processes (default this one)."""
    xp = xp_for(settings)
    dataset = Pathological(settings.problem, settings.T, batch_size=settings.batch_size,
                           n_train_batches=settings.train_batches,
                           n_test_batches=settings.test_batches, seed=settings.seed, xp=xp,
                           dtype=settings.dtype, device=distributed.local_device(settings.device))
    model = arrayhf.RNN(dataset.n_inputs, settings.hidden, dataset.n_outputs, hidden="tanh",
                        output=dataset.output, biases=settings.biases)
    damping = settings.damping if settings.damping is not None else 0.01 * dataset.n_outputs
    optimizer = HF(model, dataset, seed=settings.seed, run_dir=run_dir,
                   save_every=settings.save_every, progress=progress, damping=damping,
                   structural_damping_mu=settings.mu, max_cg_iter=settings.max_cg,
                   curvature_batches=(dataset.train_batches[0],),
                   rho_model=settings.rho_model, line_search=settings.line_search,
                   run_info=settings.run_info(), communicator=communicator)
    return model, dataset, optimizer


# -- character-level language modelling ---------------------------------------------------------
STDLIB = "stdlib"  # the source name of the Python standard library's own source files


@dataclass
class TextRunSettings(_SavedSettings):
    """Everything needed to build a text run again (and to sample from it on another machine:
    the vocabulary is stored, not recomputed)."""

    kind: str = "text"
    source: str = STDLIB        # a UTF-8 file, or "stdlib"
    max_chars: int = 300_000
    model: str = "mrnn"         # "mrnn" or "rnn"
    T: int = 50
    hidden: int = 100
    factors: int = 100
    batch_size: int = 100
    train_batches: int = 10
    test_batches: int = 2
    warmup: int = 10
    seed: int = 0
    iterations: int = 20
    backend: str = "numpy"
    device: str | None = None
    dtype: str = "float64"
    damping: float = 1.0
    mu: float = 0.1                      # SMH11's structural damping μ
    max_cg: int = 100
    max_vocabulary: int | None = None
    vocabulary: list | None = None       # filled in when the run starts
    save_every: int = 2


# either settings record, as settings_from makes the one it is given
Settings = TypeVar("Settings", RunSettings, TextRunSettings)


def load_settings(run_dir: str | os.PathLike) -> RunSettings | TextRunSettings:
    """The settings of a run directory: RunSettings or TextRunSettings, by their ``kind``."""
    path = pathlib.Path(run_dir) / RUN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a run directory made by "
                                "'arrayhf train', 'arrayhf demo' or 'arrayhf train-text'?")
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is damaged: not JSON ({error})") from error
    if not isinstance(saved, dict):
        raise ValueError(f"{path} is damaged: expected a JSON object, got {type(saved).__name__}")
    cls: type[RunSettings | TextRunSettings] = (TextRunSettings if saved.get("kind") == "text"
                                                else RunSettings)
    unknown = set(saved) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"{path}: unknown settings {sorted(unknown)}")
    return cls(**saved)


def read_source(settings: TextRunSettings) -> str:
    """The text of a text run: its file, or the standard library corpus, cut to max_chars."""
    if settings.source == STDLIB:
        return python_stdlib_corpus(max_chars=settings.max_chars)
    return pathlib.Path(settings.source).read_text(encoding="utf-8")[:settings.max_chars]


def text_model(settings: TextRunSettings, vocabulary_size: int) -> MRNN | arrayhf.RNN:
    """The MRNN (or RNN) of a text run, for a vocabulary of this size."""
    if settings.model == "mrnn":
        return MRNN(vocabulary_size, settings.hidden, settings.factors, vocabulary_size,
                    output="softmax")
    if settings.model == "rnn":
        return arrayhf.RNN(vocabulary_size, settings.hidden, vocabulary_size, output="softmax")
    raise ValueError(f"expected model 'mrnn' or 'rnn', got {settings.model!r}")


def build_text(settings: TextRunSettings, run_dir: str | os.PathLike | None = None,
               progress: bool = True, communicator: distributed.Communicator | None = None
               ) -> tuple[MRNN | arrayhf.RNN, Text, HF]:
    """(model, dataset, optimizer) of a text run, on ``communicator``'s processes; fills in
    ``settings.vocabulary``."""
    xp = xp_for(settings)
    vocabulary = (Vocabulary.from_json(settings.vocabulary) if settings.vocabulary is not None
                  else None)
    dataset = Text(read_source(settings), T=settings.T, batch_size=settings.batch_size,
                   n_train_batches=settings.train_batches, n_test_batches=settings.test_batches,
                   warmup=settings.warmup, seed=settings.seed, xp=xp, dtype=settings.dtype,
                   device=distributed.local_device(settings.device), vocabulary=vocabulary,
                   max_vocabulary=settings.max_vocabulary,
                   one_hot_inputs=settings.model == "rnn")
    settings.vocabulary = dataset.vocabulary.to_json()
    model = text_model(settings, dataset.vocabulary.size)
    optimizer = HF(model, dataset, seed=settings.seed, run_dir=run_dir,
                   save_every=settings.save_every, progress=progress, damping=settings.damping,
                   structural_damping_mu=settings.mu, max_cg_iter=settings.max_cg,
                   run_info=settings.run_info(), communicator=communicator)
    return model, dataset, optimizer


# -- the options of the training commands ------------------------------------------------------
# (flag, type, what it sets) of the options both training commands take; each fills the settings
# field of its name, and its help ends with that field's default.
TRAINING_OPTIONS = (
    ("--hidden", int, "hidden units"),
    ("--batch-size", int, "sequences per batch"),
    ("--train-batches", int, "training batches, drawn afresh every iteration"),
    ("--test-batches", int, "test batches, fixed"),
    ("--seed", int, "seed of the initial weights and of the data"),
    ("--iterations", int, "most HF iterations"),
    ("--backend", str, "numpy, torch, cupy, jax or array_api_strict"),
    ("--device", str, "the backend's device, e.g. cuda"),
    ("--dtype", str, "float dtype"),
    ("--damping", float, "initial λ"),
    ("--mu", float, "structural damping μ"),
    ("--max-cg", int, "most CG steps an iteration"),
    ("--save-every", int, "checkpoint every this many iterations"),
)


def add_training_options(parser: argparse.ArgumentParser,
                         settings_class: type[RunSettings | TextRunSettings], *, run_dir: str,
                         defaults: dict[str, str] | None = None) -> None:
    """TRAINING_OPTIONS and ``--run-dir`` on a training command's parser. Every option defaults
    to None, which keeps the settings record's default; the help shows that default, or the
    text ``defaults`` gives for it."""
    shown = {**dataclasses.asdict(settings_class()), **(defaults or {})}
    for flag, kind, what in TRAINING_OPTIONS:
        name = flag[2:].replace("-", "_")
        parser.add_argument(flag, dest=name, type=kind,
                            choices=("float32", "float64") if name == "dtype" else None,
                            help=what if shown[name] is None else f"{what} (default {shown[name]})")
    parser.add_argument("--run-dir", dest="run_dir",
                        help=f"where the logs and checkpoints go (default {run_dir})")


def settings_from(args: argparse.Namespace, settings_class: type[Settings],
                  **values: Any) -> Settings:
    """A settings record of ``values``, and of every option given on the command line over them
    (an option left out is None)."""
    for field in dataclasses.fields(settings_class):
        value = getattr(args, field.name, None)
        if value is not None:
            values[field.name] = value
    return settings_class(**values)


# -- a run directory ---------------------------------------------------------------------------
def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    """Whether the run directory holds a checkpoint (or the one kept before it)."""
    path = pathlib.Path(run_dir) / checkpoint.CHECKPOINT_NAME
    return path.exists() or checkpoint.previous_path(path).exists()


@overload
def open_run(settings: RunSettings, run_dir: str | os.PathLike, *, resume: bool,
             force: bool = False) -> tuple[arrayhf.RNN, Pathological, HF] | None: ...
@overload
def open_run(settings: TextRunSettings, run_dir: str | os.PathLike, *, resume: bool,
             force: bool = False) -> tuple[MRNN | arrayhf.RNN, Text, HF] | None: ...


def open_run(settings: RunSettings | TextRunSettings, run_dir: str | os.PathLike, *,
             resume: bool, force: bool = False) -> tuple[Any, Any, HF] | None:
    """(model, dataset, optimizer) of a run, or None, with a message, when a new run would go
    where one is already. A new run saves its settings to run.json first (rank 0); a resumed one
    continues from its checkpoint, on any number of processes, and one killed before its first
    checkpoint starts again from iteration 0. (Every process looks for a checkpoint here: none can
    be written before all have looked, since building the optimizer waits for every process.)"""
    run_dir = pathlib.Path(run_dir)
    if not resume and has_checkpoint(run_dir):
        print(f"{run_dir} already holds a run: continue it with 'arrayhf resume {run_dir}', or "
              f"choose another --run-dir", file=sys.stderr)
        return None
    communicator = communicator_for(settings)
    built: tuple[Any, Any, HF] = (build_text(settings, run_dir, communicator=communicator)
                                  if isinstance(settings, TextRunSettings)
                                  else build(settings, run_dir, communicator=communicator))
    if resume and has_checkpoint(run_dir):
        built[2].resume(force=force)
    elif resume:
        print(f"{run_dir} has no checkpoint yet (stopped before its first save): starting it "
              f"from iteration 0", file=sys.stderr)
    elif communicator.rank == 0:
        settings.save(run_dir)
    return built


def run_until_done(optimizer: HF, settings: RunSettings | TextRunSettings,
                   run_dir: str | os.PathLike, stop: Callable[[dict], bool]) -> bool:
    """Run up to ``settings.iterations`` HF iterations, or until ``stop(record)``; False, after
    saying how to continue, when Ctrl-C stopped it (the optimizer saved its checkpoint)."""
    try:
        optimizer.run(max_iterations=settings.iterations, stop=stop)
    except KeyboardInterrupt:
        print(f"\ninterrupted; the checkpoint of iteration {optimizer.iteration} is in "
              f"{run_dir}: 'arrayhf resume {run_dir}' continues", file=sys.stderr)
        return False
    return True
