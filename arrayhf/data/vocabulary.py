"""The characters of a text and their integer ids: every distinct character, sorted, with an
unknown symbol at id 0 for the characters a vocabulary does not hold.

Host-side code (numpy): a vocabulary encodes a ``str`` to an int64 array of ids and decodes ids of
any backend back to text; its JSON form (the symbols in id order) is what a run stores so that a
trained model can be sampled on another machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from arrayhf import backend
from arrayhf.data.batch import check_positive_int

UNKNOWN = "\ufffd"    # id 0: every character the vocabulary does not hold (U+FFFD REPLACEMENT)
UNKNOWN_ID = 0


def code_points(text: str) -> np.ndarray:
    """The Unicode code points of ``text`` as an int64 array (lone surrogates included)."""
    encoded = text.encode("utf-32-le", errors="surrogatepass")
    return np.frombuffer(encoded, dtype="<u4").astype(np.int64)



class Vocabulary:
    """The characters of a text and their integer ids.

    Id 0 is :data:`UNKNOWN`, which stands for every character the vocabulary does not hold; ids
    1 .. size - 1 are the text's distinct characters in sorted (code point) order.

    Parameters
    ----------
    text : str
        The text whose characters make the vocabulary (the unknown symbol itself, if the text
        contains it, is not counted as a character: it already has id 0).
    max_size : int, optional
        Keep only the ``max_size`` most frequent characters (ties go to the smaller code point);
        the rarer ones map to the unknown symbol. The vocabulary then has at most
        ``max_size + 1`` symbols, the unknown one included.

    Notes
    -----
    A trained model's vocabulary is saved with :meth:`to_json` and restored with
    :meth:`from_json`, so that the model can be sampled later::

        vocabulary = Vocabulary("hello world")
        ids = vocabulary.encode("hello")           # array([4, 3, 5, 5, 6])
        vocabulary.decode(ids)                     # 'hello'
        Vocabulary.from_json(vocabulary.to_json()) == vocabulary
    """

    def __init__(self, text: str, *, max_size: int | None = None) -> None:
        if not isinstance(text, str):
            raise TypeError(f"expected the text as a str, got {type(text).__name__}")
        codes, counts = np.unique(code_points(text), return_counts=True)
        known = codes != ord(UNKNOWN)
        codes, counts = codes[known], counts[known]
        if max_size is not None:
            max_size = check_positive_int("max_size", max_size)
            by_frequency = np.lexsort((codes, -counts))      # most frequent first, ties by code
            codes = np.sort(codes[by_frequency[:max_size]])
        characters = [chr(code) for code in codes]
        self.symbols = (UNKNOWN, *characters)
        self._codes = np.array([ord(c) for c in characters], dtype=np.int64)

    @classmethod
    def from_json(cls, symbols: Sequence[str]) -> Vocabulary:
        """The vocabulary of :meth:`to_json`'s list: the unknown symbol, then the characters in
        increasing order."""
        if isinstance(symbols, str) or not isinstance(symbols, (list, tuple)):
            raise ValueError(f"expected a list of one-character strings, got "
                             f"{type(symbols).__name__}")
        if not symbols or symbols[0] != UNKNOWN:
            raise ValueError(f"expected the unknown symbol {UNKNOWN!r} first, got "
                             f"{symbols[0] if symbols else 'an empty list'!r}")
        characters = list(symbols[1:])
        if not all(isinstance(c, str) and len(c) == 1 for c in characters):
            wrong = next(c for c in characters if not (isinstance(c, str) and len(c) == 1))
            raise ValueError(f"expected one-character strings, got {wrong!r}")
        if any(a >= b for a, b in zip(characters, characters[1:])):
            raise ValueError("expected the characters after the unknown symbol in strictly "
                             "increasing order, without repeats")
        if UNKNOWN in characters:
            raise ValueError(f"expected the unknown symbol {UNKNOWN!r} only first, got it again "
                             f"among the characters")
        # the vocabulary of a text of exactly these characters: the same symbols, in this order
        return cls("".join(characters))

    def to_json(self) -> list[str]:
        """The symbols in id order (the unknown symbol first): a JSON-ready list."""
        return list(self.symbols)

    @property
    def size(self) -> int:
        """The number of symbols, the unknown one included: the width of one-hot rows."""
        return len(self.symbols)

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.symbols == other.symbols

    def __hash__(self) -> int:
        return hash(self.symbols)

    def __repr__(self) -> str:
        return f"Vocabulary(size={self.size}, symbols={''.join(self.symbols[1:])[:40]!r})"

    def encode(self, text: str) -> np.ndarray:
        """The ids of the characters of ``text``: an int64 numpy array of ``len(text)``; a
        character the vocabulary lacks gets id 0 (unknown)."""
        if not isinstance(text, str):
            raise TypeError(f"expected a str to encode, got {type(text).__name__}")
        codes = code_points(text)
        if self._codes.size == 0:
            return np.zeros(codes.shape, dtype=np.int64)
        positions = np.searchsorted(self._codes, codes)
        found = self._codes[np.minimum(positions, self._codes.size - 1)] == codes
        return np.where(found, positions + 1, UNKNOWN_ID).astype(np.int64)

    def decode(self, ids: Any) -> str:
        """The text of a 1-D sequence of ids (a list, a numpy array or any backend's array)."""
        if isinstance(ids, (list, tuple)):
            host = np.asarray(ids, dtype=np.int64) if ids else np.zeros(0, dtype=np.int64)
        else:
            host = np.asarray(backend.to_numpy(ids))
        if host.ndim != 1:
            raise ValueError(f"expected a 1-D sequence of ids, got shape {list(host.shape)} "
                             f"(decode one sequence at a time, e.g. ids[:, b] of [T, B] inputs)")
        if host.size and not np.issubdtype(host.dtype, np.integer):
            raise ValueError(f"expected integer ids, got dtype {host.dtype}")
        if host.size and (host.min() < 0 or host.max() >= self.size):
            raise ValueError(f"expected ids in 0 .. {self.size - 1}, got values from "
                             f"{host.min()} to {host.max()}")
        return "".join(self.symbols[i] for i in host.tolist())
