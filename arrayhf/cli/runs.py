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

import dataclasses
import json
import os
import pathlib
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from arrayhf import backend, checkpoint, distributed
from arrayhf.cli import models, rundir
from arrayhf.data.corpus import python_stdlib_corpus
from arrayhf.data.pathological import Pathological
from arrayhf.data.text import Text
from arrayhf.data.vocabulary import Vocabulary
from arrayhf.hf.optimizer import HF

RUN_FILE = "run.json"


# Settings a resumed run may change: how long it goes on, and how often it saves.
CHANGEABLE_ON_RESUME = ("iterations", "save_every")
# Settings added after the first release, with the value every older run had: a run description
# leaves them out at that value, so that older checkpoints resume unchanged.
ADDED_LATER = {"model": "rnn", "factors": None, "backtracking": "martens",
               "score_batches": None}


@dataclass
class _SavedSettings:
    """What both settings records share: the seed of the weights and the data, where the run
    computes (backend, device, float dtype), their JSON form, an atomic run.json, and the part
    of the settings that a resume must find unchanged."""

    seed: int = 0
    backend: str = "numpy"
    device: str | None = None
    dtype: str = "float64"

    def to_json(self) -> dict:
        """The settings as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def run_info(self) -> dict:
        """The settings a checkpoint records and a resume compares (all but
        CHANGEABLE_ON_RESUME)."""
        return {key: value for key, value in self.to_json().items()
                if key not in CHANGEABLE_ON_RESUME
                and not (isinstance(self, RunSettings) and key in ADDED_LATER
                         and value == ADDED_LATER[key])}

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
    model: str = "rnn"                    # models.MODELS
    hidden: int = 100
    factors: int | None = None            # the MRNN's factors; None: as many as hidden units
    batch_size: int = 1000
    train_batches: int = 10
    test_batches: int = 10
    iterations: int = 1000
    damping: float | None = None          # None: 0.01 × outputs (the release's demo)
    mu: float = 0.03                      # structural damping λμ = λ·mu
    max_cg: int = 300
    threshold: float = 0.001              # solved when test error < threshold
    biases: bool = False
    rho_model: str = "damped"
    line_search: str = "decrease"
    backtracking: str = "martens"         # Martens (H4), or "release": the held batch (H4r)
    score_batches: int | None = None      # the first N training batches score backtracking
                                          # and the line search; None: all of them
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
          ) -> tuple[Any, Pathological, HF]:
    """(model, dataset, optimizer) for the settings; the optimizer starts from the seed's θ and
    runs on ``communicator``'s processes (default this one)."""
    xp = xp_for(settings)
    if progress:
        print(f"generating {settings.problem} data: {settings.test_batches}×"
              f"{settings.batch_size} test sequences of T = {settings.T} (training batches: "
              f"fresh every iteration)", flush=True)
    dataset = Pathological(settings.problem, settings.T, batch_size=settings.batch_size,
                           n_train_batches=settings.train_batches,
                           n_test_batches=settings.test_batches, seed=settings.seed, xp=xp,
                           dtype=settings.dtype, device=distributed.local_device(settings.device))
    model = models.pathological_model(settings.model, dataset.n_inputs, dataset.n_outputs,
                                      dataset.output, hidden=settings.hidden,
                                      factors=settings.factors, biases=settings.biases)
    damping = settings.damping if settings.damping is not None else 0.01 * dataset.n_outputs
    scoring = (None if settings.score_batches is None
               else tuple(dataset.train_batches[:settings.score_batches]))
    optimizer = HF(model, dataset, seed=settings.seed, run_dir=run_dir,
                   save_every=settings.save_every, progress=progress, damping=damping,
                   structural_damping_mu=settings.mu, max_cg_iter=settings.max_cg,
                   curvature_batches=(dataset.train_batches[0],),
                   rho_model=settings.rho_model, line_search=settings.line_search,
                   backtracking=settings.backtracking, backtrack_batches=scoring,
                   line_search_batches=scoring, run_info=settings.run_info(),
                   communicator=communicator)
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
    model: str = "mrnn"         # models.MODELS
    T: int = 50
    hidden: int = 100
    factors: int = 100
    batch_size: int = 100
    train_batches: int = 10
    test_batches: int = 2
    warmup: int = 10
    iterations: int = 20
    damping: float = 1.0
    mu: float = 0.1                      # SMH11's structural damping μ
    max_cg: int = 100
    max_vocabulary: int | None = None
    vocabulary: list | None = None       # filled in when the run starts
    save_every: int = 2


# either settings record, as options.settings_from makes the one it is given
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
    if cls is RunSettings:   # an older run.json: the value every run had before a field came
        saved = {**ADDED_LATER, **saved}
    return cls(**saved)


def read_source(settings: TextRunSettings) -> str:
    """The text of a text run: its file, or the standard library corpus, cut to max_chars."""
    if settings.source == STDLIB:
        return python_stdlib_corpus(max_chars=settings.max_chars)
    return pathlib.Path(settings.source).read_text(encoding="utf-8")[:settings.max_chars]


def text_model(settings: TextRunSettings, vocabulary_size: int) -> Any:
    """The net of a text run, for a vocabulary of this size."""
    return models.text_model(settings.model, vocabulary_size, hidden=settings.hidden,
                             factors=settings.factors)


def build_text(settings: TextRunSettings, run_dir: str | os.PathLike | None = None,
               progress: bool = True, communicator: distributed.Communicator | None = None
               ) -> tuple[Any, Text, HF]:
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
                   one_hot_inputs=not models.takes_ids(settings.model))
    settings.vocabulary = dataset.vocabulary.to_json()
    model = text_model(settings, dataset.vocabulary.size)
    optimizer = HF(model, dataset, seed=settings.seed, run_dir=run_dir,
                   save_every=settings.save_every, progress=progress, damping=settings.damping,
                   structural_damping_mu=settings.mu, max_cg_iter=settings.max_cg,
                   run_info=settings.run_info(), communicator=communicator)
    return model, dataset, optimizer


# -- a run directory ---------------------------------------------------------------------------
def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    """Whether the run directory holds a checkpoint (or the one kept before it)."""
    path = pathlib.Path(run_dir) / checkpoint.CHECKPOINT_NAME
    return path.exists() or checkpoint.previous_path(path).exists()


@overload
def open_run(settings: RunSettings, run_dir: str | os.PathLike, *, resume: bool,
             force: bool = False, overwrite: bool = False, verbose: bool = False
             ) -> tuple[Any, Pathological, HF] | None: ...
@overload
def open_run(settings: TextRunSettings, run_dir: str | os.PathLike, *, resume: bool,
             force: bool = False, overwrite: bool = False, verbose: bool = False
             ) -> tuple[Any, Text, HF] | None: ...


def open_run(settings: RunSettings | TextRunSettings, run_dir: str | os.PathLike, *,
             resume: bool, force: bool = False, overwrite: bool = False,
             verbose: bool = False) -> tuple[Any, Any, HF] | None:
    """(model, dataset, optimizer) of a run, or None, with a message, when a new run would go
    where one is already (``overwrite``: remove that run's files and start over; ``verbose``: the
    terminal shows each iteration's full record). The run directory is locked to this process
    (to rank 0 under ``torchrun``). A new run saves its settings to run.json first (rank 0); a
    resumed one continues from its checkpoint, on any number of processes, and one killed before
    its first checkpoint starts again from iteration 0. (Every process looks for a checkpoint
    here: none can be written before all have looked, since building the optimizer waits for
    every process.)"""
    run_dir = pathlib.Path(run_dir)
    primary = os.environ.get("RANK", "0") == "0"     # this process, or rank 0 of torchrun's
    if primary and (resume or run_dir.exists()):
        rundir.lock(run_dir)
    if not resume and has_checkpoint(run_dir):
        if not overwrite:
            print(f"{run_dir} already holds a run: continue it with 'arrayhf resume {run_dir}', "
                  f"start it over with --overwrite, or choose another --run-dir",
                  file=sys.stderr)
            return None
        if primary:
            print(f"starting {run_dir} over: removed {', '.join(rundir.clear(run_dir))}",
                  file=sys.stderr)
    communicator = communicator_for(settings)
    built: tuple[Any, Any, HF] = (build_text(settings, run_dir, communicator=communicator)
                                  if isinstance(settings, TextRunSettings)
                                  else build(settings, run_dir, communicator=communicator))
    if primary:
        rundir.lock(run_dir)
    built[2].log.terminal.verbose = verbose
    if resume and has_checkpoint(run_dir):
        built[2].resume(force=force)
    elif resume:
        print(f"{run_dir} has no checkpoint yet (stopped before its first save): starting it "
              f"from iteration 0", file=sys.stderr)
    elif communicator.rank == 0:
        settings.save(run_dir)
    return built


def run_until_done(optimizer: HF, settings: RunSettings | TextRunSettings,
                   run_dir: str | os.PathLike, stop: Callable[[dict], bool] | None) -> bool:
    """Run up to ``settings.iterations`` HF iterations, or until ``stop(record)``; False, after
    saying how to continue, when Ctrl-C or SIGTERM (what batch schedulers send before SIGKILL)
    stopped it: the optimizer saved its checkpoint first."""
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if on_main_thread else None
    try:
        optimizer.run(max_iterations=settings.iterations, stop=stop)
    except KeyboardInterrupt:
        print(f"\ninterrupted; the checkpoint of iteration {optimizer.iteration} is in "
              f"{run_dir}: 'arrayhf resume {run_dir}' continues", file=sys.stderr)
        return False
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return True


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM acts as Ctrl-C: the loop saves a checkpoint and stops."""
    raise KeyboardInterrupt(f"signal {signum}")
