"""Texts to train on, and the measures in which character-level models are compared.

:func:`python_stdlib_corpus` gives a text that every machine with Python has: the standard
library's own source.

Bits per character
------------------
The softmax loss of a batch is the mean categorical cross-entropy, in nats, over the counted
(mask 1) positions: the mean of ``-ln p(next character)``. Dividing by ln 2 gives bits per
character (:func:`bits_per_character`), the unit in which text models are compared: a net that
has learned nothing beyond character frequencies scores the unigram entropy
(:func:`unigram_entropy_bits`); SMH11's MRNN reached 1.60 bits per character on Wikipedia.
"""

from __future__ import annotations

import math
import os
import sysconfig
from typing import Any

import numpy as np

from arrayhf import backend
from arrayhf.data.batch import check_positive_int
from arrayhf.data.vocabulary import code_points

# directories of the standard library that python_stdlib_corpus leaves out: test suites, installed
# third-party packages, byte-code caches
SKIPPED_STDLIB_DIRECTORIES = frozenset({"test", "tests", "idle_test", "site-packages",
                                        "dist-packages", "__pycache__"})


def bits_per_character(loss: Any) -> float:
    """``loss / ln 2``: a mean categorical cross-entropy in nats per counted character (the
    softmax loss of arrayhf's models, a 0-d array or a float) in bits per character."""
    return float(backend.to_numpy(loss)) / math.log(2.0)


def unigram_entropy_bits(text_or_ids: Any) -> float:
    """The entropy, in bits, of the character frequencies of a text (a str, or its ids): the bits
    per character of the best model that ignores context. ``"aabb"`` gives 1.0."""
    if isinstance(text_or_ids, str):
        symbols = code_points(text_or_ids)
    else:
        symbols = np.asarray(backend.to_numpy(text_or_ids)).reshape(-1)
    if symbols.size == 0:
        raise ValueError("expected a non-empty text, got one with no characters")
    _, counts = np.unique(symbols, return_counts=True)
    probabilities = counts / counts.sum()
    return float(-np.sum(probabilities * np.log2(probabilities)))


def python_stdlib_corpus(max_chars: int | None = 1_000_000) -> str:
    """The Python standard library's own ``.py`` sources, concatenated: a corpus every machine
    with Python has.

    Files are read from ``sysconfig.get_paths()["stdlib"]`` in sorted order (directories and
    file names), skipping :data:`SKIPPED_STDLIB_DIRECTORIES` (test suites, site-packages) and
    files that do not decode as UTF-8; the result is cut at ``max_chars`` characters (None: no
    limit). The same Python version therefore gives the same corpus.
    """
    if max_chars is not None:
        max_chars = check_positive_int("max_chars", max_chars)
    root = sysconfig.get_paths()["stdlib"]
    pieces, n_chars = [], 0
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories
                                   if d not in SKIPPED_STDLIB_DIRECTORIES)
        for name in sorted(f for f in files if f.endswith(".py")):
            try:
                with open(os.path.join(directory, name), encoding="utf-8") as file:
                    source = file.read()
            except (UnicodeDecodeError, OSError):
                continue
            pieces.append(source)
            n_chars += len(source)
            if max_chars is not None and n_chars >= max_chars:
                return "".join(pieces)[:max_chars]
    if not pieces:
        raise FileNotFoundError(f"expected Python sources in the standard library at {root}, "
                                f"found none")
    return "".join(pieces)
