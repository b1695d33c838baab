"""``arrayhf train-text`` and ``arrayhf sample``: a character-level MRNN (or RNN) trained by HF
on a UTF-8 text, in bits per character, and text generated from its checkpoint on any backend."""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np

from arrayhf import backend, checkpoint
from arrayhf.cli import models, options, runs, values
from arrayhf.data.corpus import bits_per_character, unigram_entropy_bits
from arrayhf.data.text import one_hot
from arrayhf.data.vocabulary import Vocabulary


def train_text_run(settings: runs.TextRunSettings, run_dir: str | os.PathLike, *, resume: bool,
                   force: bool = False, overwrite: bool = False, verbose: bool = False) -> int:
    """Start (or resume) a text run; report bits per character after every HF iteration."""
    opened = runs.open_run(settings, run_dir, resume=resume, force=force, overwrite=overwrite,
                           verbose=verbose)
    if opened is None:
        return 2
    model, dataset, optimizer = opened
    unigram = unigram_entropy_bits(dataset.vocabulary.encode(runs.read_source(settings)))
    print(f"{model}: {model.n_params} parameters; {len(dataset.vocabulary.symbols)} symbols; "
          f"{settings.train_batches}×{settings.batch_size} substrings of {settings.T + 1} "
          f"characters a batch (fresh each iteration, the first {settings.warmup} not scored); "
          f"unigram entropy {unigram:.3f} bits/char")
    started = time.perf_counter()

    def report(record):
        print(f"    bits per character: train {bits_per_character(record['train_loss']):.4f}"
              f"  held-out {bits_per_character(record['test_loss']):.4f}"
              f"  ({time.perf_counter() - started:.0f} s)", flush=True)
        return False

    if not runs.run_until_done(optimizer, settings, run_dir, stop=report):
        return 130
    if optimizer.history:
        first, last = optimizer.history[0], optimizer.history[-1]
        print(f"held-out bits per character: {bits_per_character(first['test_loss']):.4f} after "
              f"iteration {first['iteration']} -> {bits_per_character(last['test_loss']):.4f} "
              f"after iteration {last['iteration']} (unigram entropy {unigram:.3f}); "
              f"sample with 'arrayhf sample {run_dir}'")
    return 0


def train_text(args: argparse.Namespace) -> int:
    """HF on a character-level MRNN or RNN over a text file or --stdlib."""
    if (args.file is None) == (not args.stdlib):
        print("arrayhf train-text: give a FILE or --stdlib (not both)", file=sys.stderr)
        return 2
    if args.file is not None and not pathlib.Path(args.file).is_file():
        print(f"arrayhf train-text: {args.file}: no such file", file=sys.stderr)
        return 2
    source = runs.STDLIB if args.stdlib else str(args.file)
    settings = options.settings_from(args, runs.TextRunSettings, source=source)
    return train_text_run(settings, args.run_dir or "runs/text", resume=False,
                          overwrite=args.overwrite, verbose=args.verbose)


def sample(args: argparse.Namespace) -> int:
    """Generate text from a checkpoint: feed the prime, then draw each next character from the
    softmax of the model's output (divided by the temperature, the unknown symbol excluded) with
    a seeded host generator; at temperature 0, the most likely character (greedy). Characters of
    the prime that the run's vocabulary lacks are fed as the unknown symbol, and said so."""
    run_dir = pathlib.Path(args.run_dir)
    settings = runs.load_settings(run_dir)
    if not isinstance(settings, runs.TextRunSettings) or settings.vocabulary is None:
        print(f"{run_dir} is not a text run", file=sys.stderr)
        return 2
    settings.backend, settings.device = args.backend, args.device
    xp = runs.xp_for(settings)
    vocabulary = Vocabulary.from_json(settings.vocabulary)
    model = runs.text_model(settings, vocabulary.size)
    arrays, meta, _ = checkpoint.read_latest(run_dir / checkpoint.CHECKPOINT_NAME)
    params = backend.from_host(arrays["params"], xp, dtype=settings.dtype, device=args.device)
    rng = np.random.default_rng(args.seed)
    ids = list(vocabulary.encode(args.prime)) or [int(rng.integers(1, vocabulary.size))]
    unknown = sorted({character for character, id_ in zip(args.prime, ids) if id_ == 0})
    if unknown:
        print(f"note: --prime holds {len(unknown)} character(s) the run's vocabulary lacks "
              f"({', '.join(map(repr, unknown))}): they are fed as the unknown symbol",
              file=sys.stderr)
    generated = []
    for _ in range(args.length):
        window = np.asarray(ids[-args.context:], dtype=np.int64)[:, None]      # [T, 1]
        inputs = backend.from_host(window, xp, device=args.device)
        if not models.takes_ids(settings.model):
            inputs = one_hot(inputs, vocabulary.size, dtype=settings.dtype)
        net_output = backend.to_numpy(model.forward(params, inputs).net_output)[-1, 0]
        ids.append(_next_id(net_output.astype(np.float64), args.temperature, rng))
        generated.append(ids[-1])
    print(f"# {model} at iteration {meta['iteration']}, on {settings.backend}; "
          f"temperature {args.temperature}, seed {args.seed}")
    print(args.prime + vocabulary.decode(generated))
    return 0


def _next_id(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """The next character's id from the model's logits at the last step: drawn from
    softmax(logits / temperature), or at temperature 0 the most likely one; never id 0, the
    unknown symbol, which is not a character to write."""
    if temperature == 0.0:
        return 1 + int(np.argmax(logits[1:]))
    scaled = logits / temperature
    probabilities = np.exp(scaled - scaled.max())
    probabilities[0] = 0.0
    probabilities /= probabilities.sum()
    return int(rng.choice(logits.size, p=probabilities))


def _add_text_options(parser) -> None:
    parser.add_argument("file", nargs="?", help="a UTF-8 text file")
    parser.add_argument("--stdlib", action="store_true",
                        help="train on the Python standard library's own source files")
    options.add_option(parser, "--max-chars", "use the first this many characters",
                       default="300000")
    options.add_option(parser, "--model", "the net", default="mrnn")
    options.add_option(parser, "--T", "characters a sequence", default=50)
    options.add_option(parser, "--factors", "MRNN factors", default=100)
    options.add_option(parser, "--warmup", "unscored first steps of each sequence", default=10)
    options.add_option(parser, "--max-vocabulary",
                       "keep only this many of the most frequent characters",
                       default="every character of the text")
    options.add_training_options(parser, runs.TextRunSettings, run_dir="runs/text")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """train-text and sample, on the ``arrayhf`` parser's subcommands."""
    text_parser = commands.add_parser(
        "train-text", help="a character-level MRNN (or RNN) on a text, in bits per character")
    _add_text_options(text_parser)
    text_parser.set_defaults(run=train_text)

    sample_parser = commands.add_parser("sample", help="generate text from a text run")
    sample_parser.add_argument("run_dir", type=values.non_empty, metavar="RUN_DIR",
                               help="a run directory made by 'arrayhf train-text'")
    sample_parser.add_argument("--length", type=values.integer(1), default=200,
                               help="characters to generate (default 200)")
    sample_parser.add_argument("--prime", default="",
                               help="text fed to the model first, and printed (default none)")
    sample_parser.add_argument("--temperature", type=values.non_negative, default=1.0,
                               help="divides the logits: below 1 more likely characters, above "
                                    "1 more varied ones; 0 always writes the most likely one "
                                    "(greedy) (default 1)")
    sample_parser.add_argument("--context", type=values.integer(1), default=200,
                               help="characters fed to the model for each next one "
                                    "(default 200)")
    sample_parser.add_argument("--seed", type=values.integer(0), default=0,
                               help="seed of the draws (default 0)")
    sample_parser.add_argument("--backend", type=values.backend_name, default="numpy",
                               help="numpy, torch, cupy, jax or array_api_strict (default "
                                    "numpy)")
    sample_parser.add_argument("--device", type=values.non_empty,
                               help="the backend's device, e.g. cuda (default: the backend's "
                                    "own)")
    sample_parser.set_defaults(run=sample)
