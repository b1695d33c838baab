"""Character-level text data: next-character prediction, as in Sutskever, Martens & Hinton (2011).

A text becomes a sequence of integer ids through a :class:`~arrayhf.data.vocabulary.Vocabulary`
(every distinct character, sorted, with an unknown symbol at id 0 for characters the vocabulary
does not hold). A net reads a substring one character at a time and, at every step, predicts the
next character with a softmax over the vocabulary.

Batches
-------
A batch holds ``B`` substrings of ``T + 1`` characters, time-major as everywhere in arrayhf:

- ``inputs`` ``[T, B]``: the first ``T`` characters as integer ids (int64 on the backend; under
  JAX's 32-bit mode, int32). ``one_hot_inputs=True`` gives them one-hot, ``[T, B, V]`` in the
  float dtype, for models that take float inputs such as :class:`arrayhf.RNN`;
- ``targets`` ``[T, B, V]``: the next character of every step, one-hot in the float dtype, which is
  what the softmax's matching loss (categorical cross-entropy) takes;
- ``mask`` ``[T, B]``: 0 for the first ``warmup`` steps, 1 after.

Why warm-up steps
-----------------
A substring starts in the middle of the text, with the net's hidden state at its learned initial
value, which knows nothing of the characters before. Its first predictions are therefore poor
through no fault of the weights that the rest of the sequence trains. As the 2011 release did, the
first ``warmup`` steps only warm the hidden state up: they are read but not scored (mask 0).

Training part and held-out part
-------------------------------
The text is cut in two contiguous, disjoint parts: the first ``1 - held_out`` of its characters for
training, the LAST ``held_out`` fraction for testing. Training substrings are drawn at random
start positions inside the training part (they never reach into the held-out part), and
``forget()`` draws new ones. The test substrings are fixed: they start at evenly spaced positions
of the held-out part, from its first character to the last start that fits, so the test loss
measures the same characters at every HF iteration. Both parts must hold at least ``T + 1``
characters.

Randomness is drawn on the host with a seeded ``numpy.random.Generator`` and moved to the backend
with :func:`arrayhf.backend.from_host`, so the same seed gives the same data on every backend.
The softmax loss is in nats per counted character; :mod:`arrayhf.data.corpus` has it in bits per
character, the unigram entropy to compare it with, and a corpus every machine with Python has.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import array_api_compat
import numpy as np

from arrayhf import backend
from arrayhf._validate import is_integer, namespace_of
from arrayhf.data.arrays import zero_one_error
from arrayhf.data.batch import (
    Batch,
    FreshTrainingBatches,
    batch_key,
    check_positive_int,
    check_seed,
)
from arrayhf.data.corpus import bits_per_character, python_stdlib_corpus, unigram_entropy_bits
from arrayhf.data.vocabulary import UNKNOWN, Vocabulary

# the vocabulary and the corpus helpers stay importable from here, where they were defined before
# data/vocabulary.py and data/corpus.py
__all__ = ["UNKNOWN", "Text", "Vocabulary", "bits_per_character", "one_hot",
           "python_stdlib_corpus", "unigram_entropy_bits"]


def one_hot(ids: Any, size: int, *, dtype: Any = None) -> Any:
    """One-hot rows ``[..., size]`` in float ``dtype`` (default float64) of integer ``ids``,
    built on the ids' backend and device."""
    xp = namespace_of(ids)
    if not xp.isdtype(ids.dtype, "integral"):
        raise TypeError(f"expected integer ids, got dtype {ids.dtype}")
    symbols = xp.arange(size, dtype=ids.dtype, device=array_api_compat.device(ids))
    return xp.astype(xp.expand_dims(ids, axis=-1) == symbols, backend.resolve_dtype(xp, dtype))



class Text(FreshTrainingBatches):
    """Character-level text in the data-object protocol of the HF driver.

    Parameters
    ----------
    text : str or os.PathLike
        The text itself, or (a ``pathlib.Path``) a UTF-8 file to read. A ``str`` is always the
        text: use :meth:`from_file` for a path given as a string.
    T : int
        Steps per sequence; each substring has ``T + 1`` characters (inputs and next characters).
    batch_size, n_train_batches, n_test_batches : int
        Sequences per batch; training batches (redrawn by ``forget()``); fixed test batches.
    warmup : int
        The first ``warmup`` steps of every sequence are read but not scored (mask 0); needs
        ``0 <= warmup < T``.
    held_out : float
        The fraction of the text, at its end, kept for testing (0 < held_out < 1).
    seed : int
        Seeds the training generator (``numpy.random.SeedSequence(seed)``), which ``forget()``
        keeps drawing from. The test substrings involve no randomness.
    xp, dtype, device
        The backend namespace (default :func:`arrayhf.backend.namespace`), float dtype of
        targets and mask (default float64) and device of the batches.
    vocabulary : Vocabulary or list, optional
        A given vocabulary (or its :meth:`Vocabulary.to_json` list), e.g. that of a trained
        model; default: built from the whole text.
    max_vocabulary : int, optional
        Builds the vocabulary from the ``max_vocabulary`` most frequent characters.
    one_hot_inputs : bool
        Inputs one-hot ``[T, B, V]`` in the float dtype instead of ids ``[T, B]``.

    Notes
    -----
    Batch ids: ``0 .. n_train_batches - 1`` for training, ``("test", i)`` for testing.
    ``n_inputs = n_outputs = vocabulary.size`` and ``output = "softmax"`` say how to build the
    model::

        data = Text.from_file("corpus.txt", T=100, batch_size=100)
        model = arrayhf.MRNN(data.n_inputs, 300, 300, data.n_outputs, output=data.output)
    """

    output = "softmax"

    def __init__(self, text: str | os.PathLike, *, T: int = 100, batch_size: int = 100,
                 n_train_batches: int = 10, n_test_batches: int = 2, warmup: int = 10,
                 held_out: float = 0.1, seed: int = 0, xp: Any = None, dtype: Any = None,
                 device: Any = None, vocabulary: Vocabulary | list | None = None,
                 max_vocabulary: int | None = None, one_hot_inputs: bool = False) -> None:
        if isinstance(text, os.PathLike):
            text = Path(text).read_text(encoding="utf-8")
        if not isinstance(text, str):
            raise TypeError(f"expected the text as a str (or a pathlib.Path to read), got "
                            f"{type(text).__name__}")
        self.T = check_positive_int("T", T)
        self.batch_size = check_positive_int("batch_size", batch_size)
        n_train_batches = check_positive_int("n_train_batches", n_train_batches)
        n_test_batches = check_positive_int("n_test_batches", n_test_batches)
        if not is_integer(warmup) or not 0 <= warmup < T:
            raise ValueError(f"expected warmup to be an integer in 0 .. T - 1 = {T - 1}, "
                             f"got {warmup!r}")
        if isinstance(held_out, bool) or not isinstance(held_out, (int, float)) \
                or not 0.0 < held_out < 1.0:
            raise ValueError(f"expected held_out to be a fraction strictly between 0 and 1, "
                             f"got {held_out!r}")
        seed = check_seed(seed)
        if vocabulary is not None and max_vocabulary is not None:
            raise ValueError("expected either vocabulary or max_vocabulary, got both")
        self.warmup, self.held_out, self.seed = int(warmup), float(held_out), int(seed)
        self.one_hot_inputs = bool(one_hot_inputs)

        if vocabulary is None:
            vocabulary = Vocabulary(text, max_size=max_vocabulary)
        elif not isinstance(vocabulary, Vocabulary):
            vocabulary = Vocabulary.from_json(vocabulary)
        self.vocabulary = vocabulary
        self.n_inputs = self.n_outputs = vocabulary.size

        self.text = text
        self.ids = vocabulary.encode(text)
        self._text_sha256 = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        self.n_held_out = int(round(len(text) * self.held_out))
        self.n_train = len(text) - self.n_held_out
        for part, n_chars in (("training", self.n_train), ("held-out", self.n_held_out)):
            if n_chars < self.T + 1:
                raise ValueError(
                    f"expected the {part} part to hold at least T + 1 = {self.T + 1} "
                    f"characters, got {n_chars} (a text of {len(text)} characters with "
                    f"held_out={self.held_out}): use a longer text, a smaller T or another "
                    f"held_out")

        self.xp = backend.namespace() if xp is None else xp
        self.dtype = backend.resolve_dtype(self.xp, dtype)
        self.device = backend.resolve_device(self.xp, device)
        self._mask = backend.from_host(self._host_mask(), self.xp, dtype=self.dtype,
                                       device=self.device)

        self.train_batches = list(range(n_train_batches))
        self.test_batches = [("test", i) for i in range(n_test_batches)]
        self._test_offsets = self._evenly_spaced_test_offsets()
        self._test = {batch_id: self._make_batch(offsets)
                      for batch_id, offsets in self._test_offsets.items()}
        self._train_rng = np.random.default_rng(np.random.SeedSequence(self.seed))
        self._draw_training()

    @classmethod
    def from_file(cls, path: str | os.PathLike, **options: Any) -> Text:
        """The text of a UTF-8 file; ``options`` are those of :class:`Text`."""
        return cls(Path(path), **options)

    # -- drawing ---------------------------------------------------------------------------
    def _host_mask(self) -> np.ndarray:
        mask = np.ones((self.T, self.batch_size))
        mask[:self.warmup] = 0.0
        return mask

    def _evenly_spaced_test_offsets(self) -> dict:
        """Start positions (in the whole text) of the test substrings: evenly spaced from the
        first character of the held-out part to its last start that fits."""
        n_sequences = len(self.test_batches) * self.batch_size
        last_start = self.n_held_out - (self.T + 1)
        starts = self.n_train + np.round(np.linspace(0, last_start, n_sequences)).astype(np.int64)
        return {batch_id: starts[i * self.batch_size:(i + 1) * self.batch_size]
                for i, batch_id in enumerate(self.test_batches)}

    def _make_batch(self, offsets: np.ndarray) -> Batch:
        windows = self.ids[offsets[None, :] + np.arange(self.T + 1)[:, None]]    # [T + 1, B]
        ids = backend.from_host(np.ascontiguousarray(windows), self.xp, device=self.device)
        inputs, next_ids = ids[:-1, ...], ids[1:, ...]
        if self.one_hot_inputs:
            inputs = one_hot(inputs, self.vocabulary.size, dtype=self.dtype)
        targets = one_hot(next_ids, self.vocabulary.size, dtype=self.dtype)
        return Batch(inputs, targets, self._mask)

    def _draw_training(self) -> None:
        """Draw every training batch's start positions, remembering the generator's state from
        before, which is all :meth:`get_state` needs to redraw them."""
        self._train_rng_state = copy.deepcopy(self._train_rng.bit_generator.state)
        self._train_offsets = {
            batch_id: self._train_rng.integers(0, self.n_train - self.T, size=self.batch_size)
            for batch_id in self.train_batches}
        self._train = {batch_id: self._make_batch(offsets)
                       for batch_id, offsets in self._train_offsets.items()}

    def offsets(self, batch_id: Hashable | list) -> np.ndarray:
        """Where the batch's substrings start in the text: ``B`` character positions (a copy);
        sequence ``b`` is ``text[offsets[b] : offsets[b] + T + 1]``."""
        key = batch_key(batch_id, self._train, self._test)
        source: dict = self._test_offsets if isinstance(key, tuple) else self._train_offsets
        return source[key].copy()

    # -- the data-object protocol ----------------------------------------------------------
    def zero_one_error(self, batch: Batch, predictions: Any) -> float:
        """The fraction of counted (mask 1) positions whose most probable predicted character
        is not the next character."""
        return zero_one_error(batch, predictions, "argmax")

    @staticmethod
    def bits_per_character(loss: Any) -> float:
        """The softmax loss (mean nats per counted character) in bits per character: loss / ln 2.
        """
        return bits_per_character(loss)

    # -- exact resumes ---------------------------------------------------------------------
    def _settings(self) -> dict:
        return {"T": self.T, "batch_size": self.batch_size,
                "n_train_batches": len(self.train_batches), "warmup": self.warmup,
                "held_out": self.held_out, "seed": self.seed, "n_characters": len(self.text),
                "text_sha256": self._text_sha256, "vocabulary": self.vocabulary.to_json()}

    def __repr__(self) -> str:
        return (f"Text({len(self.text)} characters, vocabulary size {self.vocabulary.size}, "
                f"T={self.T}, batch_size={self.batch_size}, "
                f"n_train_batches={len(self.train_batches)}, "
                f"n_test_batches={len(self.test_batches)}, warmup={self.warmup}, "
                f"held_out={self.held_out}, seed={self.seed})")
