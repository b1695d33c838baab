"""``arrayhf plot`` and ``arrayhf predict``: what a run has made, looked at from its run directory
or checkpoint: training curves and hidden states as pictures, predictions for new inputs."""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

import arrayhf
from arrayhf import backend, checkpoint, plots
from arrayhf.cli import runs, values
from arrayhf.cli.problems import lengths as problem_lengths
from arrayhf.data import problems
from arrayhf.data.corpus import unigram_entropy_bits
from arrayhf.data.vocabulary import Vocabulary
from arrayhf.hf.runlog import RunLog


def plot(args: argparse.Namespace) -> int:
    """curves.png (and hidden_states.png for pathological runs) in the run dir. The curves come
    from the logs alone: they are drawn even when no checkpoint loads (status 1, saying why the
    hidden states were not)."""
    run_dir = pathlib.Path(args.run_dir)
    settings = runs.load_settings(run_dir)
    settings.backend, settings.device = args.backend, None   # pictures are drawn on the host
    records = RunLog(run_dir, echo=False).read_metrics()
    if not records:
        print(f"{run_dir}/metrics.jsonl has no iterations yet", file=sys.stderr)
        return 2
    if isinstance(settings, runs.TextRunSettings):
        vocabulary = Vocabulary.from_json(settings.vocabulary or [])
        entropy = unigram_entropy_bits(vocabulary.encode(runs.read_source(settings)))
        plots.plot_curves(records, run_dir / "curves.png", entropy_bits=entropy,
                          title=f"{settings.model} on {settings.source}, T = {settings.T}")
        print(f"wrote {run_dir / 'curves.png'} (bits per character)")
        return 0
    if not 0 <= args.sequence < settings.batch_size:
        raise ValueError(f"expected --sequence in 0..{settings.batch_size - 1} (the test "
                         f"sequences), got {args.sequence}")
    title = (f"{settings.problem}, T = {settings.T}, {settings.model.upper()} of "
             f"{settings.hidden} hidden units")
    plots.plot_curves(records, run_dir / "curves.png", title=title,
                      threshold=settings.threshold)
    try:
        arrays, meta, _ = checkpoint.read_latest(run_dir / checkpoint.CHECKPOINT_NAME)
    except checkpoint.CheckpointError as error:
        print(f"wrote {run_dir / 'curves.png'} from the logs; hidden_states.png not drawn: "
              f"{error}", file=sys.stderr)
        return 1
    _plot_hidden_states(settings, arrays, meta, args.sequence, run_dir, title)
    print(f"wrote {run_dir / 'curves.png'} and {run_dir / 'hidden_states.png'}")
    return 0


def _plot_hidden_states(settings, arrays, meta, sequence, run_dir, title) -> None:
    """hidden_states.png: one test sequence through the checkpoint's model, up to the
    sequence's last scored step (sequences of most problems vary in length)."""
    model, dataset, _ = runs.build(settings, None, progress=False)
    xp = runs.xp_for(settings)
    params = backend.from_host(arrays["params"], xp, dtype=settings.dtype)
    batch = dataset.batch(dataset.test_batches[0])
    cache = model.forward(params, batch.inputs)
    mask = backend.to_numpy(batch.mask)[:, sequence]
    length = int(np.nonzero(mask)[0].max()) + 1 if mask.any() else mask.shape[0]
    inputs, hiddens, predictions, targets = (
        backend.to_numpy(a)[:length, sequence]
        for a in (batch.inputs, cache.hiddens, cache.predictions, batch.targets))
    plots.plot_sequence(inputs, hiddens, predictions, targets, mask[:length],
                        run_dir / "hidden_states.png",
                        title=f"{title}\ntest sequence {sequence} at iteration "
                              f"{meta['iteration']}: its {length} steps"
                              + _lengths(settings.problem, settings.T))


def _lengths(problem: str, T: int) -> str:
    """How long the problem's sequences are at T, for the picture's title."""
    if problem not in problems.LENGTH_PERCENT:
        return ""
    return f"; {problem} at T = {T}: sequences of {problem_lengths(problem, T)}"


def _read_inputs(path) -> np.ndarray:
    """The inputs of a .npy file: numbers (integer ids or finite floats), never pickled objects."""
    with open(path, "rb") as handle:
        if handle.read(6) != b"\x93NUMPY":
            raise ValueError(f"{path}: not a .npy file (it does not begin as numpy.save's files "
                             "do); save the inputs with numpy.save")
    try:
        host_inputs = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:   # not .npy, pickled, torn or empty
        raise ValueError(f"{path}: expected a .npy file of numbers ({error})") from error
    if host_inputs.dtype.kind not in "iuf":
        raise TypeError(f"{path}: expected inputs of a float or integer dtype, got "
                        f"{host_inputs.dtype}")
    if host_inputs.dtype.kind == "f" and not np.isfinite(host_inputs).all():
        raise ValueError(f"{path}: expected finite inputs, got "
                         f"{int((~np.isfinite(host_inputs)).sum())} NaN or Inf entries")
    return host_inputs


def predict(args: argparse.Namespace) -> int:
    """Load a checkpoint onto a backend and write its predictions for inputs from a .npy file."""
    output = args.output or str(pathlib.Path(args.inputs).with_suffix("")) + ".predictions.npy"
    if not args.inputs.endswith(".npy"):
        raise ValueError(f"--inputs {args.inputs}: expected a .npy file (numpy.save's format)")
    if pathlib.Path(output).exists() and not args.force:
        raise ValueError(f"{output} exists: --force overwrites it, --output names another file")
    host_inputs = _read_inputs(args.inputs)
    model, params = arrayhf.load(args.run_dir, backend=args.backend, device=args.device,
                                 dtype=args.dtype)
    xp = backend.namespace(args.backend)
    is_ids = np.issubdtype(host_inputs.dtype, np.integer)
    inputs = backend.from_host(host_inputs, xp, dtype=None if is_ids else params.dtype,
                               device=args.device)
    predictions = backend.to_numpy(model.predict(params, inputs))
    np.save(output, predictions)
    print(f"{model} on {backend.name_of(xp)} ({params.dtype}): inputs read time-major (T = "
          f"{host_inputs.shape[0]} steps of {host_inputs.shape[1]} sequences); predictions of "
          f"shape {list(predictions.shape)} written to {output}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """plot and predict, on the ``arrayhf`` parser's subcommands."""
    plot_parser = commands.add_parser("plot", help="curves.png and hidden_states.png of a run")
    plot_parser.add_argument("run_dir", type=values.non_empty, metavar="RUN_DIR",
                             help="a run directory")
    plot_parser.add_argument("--sequence", type=values.integer(0), default=0,
                             help="the test sequence drawn in hidden_states.png (default 0)")
    plot_parser.add_argument("--backend", type=values.backend_name, default="numpy",
                             help="the backend that runs the model for the picture (default "
                                  "numpy)")
    plot_parser.set_defaults(run=plot)

    predict_parser = commands.add_parser("predict", help="a checkpoint's predictions")
    predict_parser.add_argument("run_dir", type=values.non_empty, metavar="RUN_DIR",
                                help="a run directory or a checkpoint .npz file")
    predict_parser.add_argument("--inputs", required=True, type=values.non_empty,
                                help="a .npy file of inputs, time-major: [T, B, n_in] floats, "
                                     "or [T, B] integer ids for a model that reads ids")
    predict_parser.add_argument("--output", type=values.non_empty,
                                help="where to write (default INPUTS.predictions.npy)")
    predict_parser.add_argument("--force", action="store_true",
                                help="overwrite the output file if it exists (default: refuse)")
    predict_parser.add_argument("--backend", type=values.backend_name, default=None,
                                help="the backend to run on (default: the run's)")
    predict_parser.add_argument("--device", type=values.non_empty, default=None,
                                help="the backend's device, e.g. cuda (default: the backend's "
                                     "own)")
    predict_parser.add_argument("--dtype", type=values.choice(("float32", "float64")),
                                metavar="{float32,float64}", default=None,
                                help="float dtype (default: the run's)")
    predict_parser.set_defaults(run=predict)
