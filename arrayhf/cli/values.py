"""The command line's value checks: one argparse type per kind of value, so that every option of
every command is checked while the command line is read, before any other check or any work, and
a parser whose errors are one line (``arrayhf train: error: argument --iterations: expected an
integer >= 1, got '0'``) with exit status 2, as argparse's own but without the usage block.

Host-side code.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn

from arrayhf import backend


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (``--help`` has the usage)."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE`` and exit with status 2."""
        print(f"{self.prog}: error: {message} (--help lists the options)", file=sys.stderr)
        sys.exit(2)


def integer(minimum: int) -> Callable[[str], int]:
    """The argparse type of an integer >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def _finite(text: str, wanted: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
    return value


def positive(text: str) -> float:
    """The argparse type of a finite number > 0."""
    value = _finite(text, "a finite number > 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def non_negative(text: str) -> float:
    """The argparse type of a finite number >= 0."""
    value = _finite(text, "a finite number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """The argparse type of an error rate: a number in (0, 1]."""
    value = _finite(text, "a fraction in (0, 1]")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return value


def backend_name(text: str) -> str:
    """The argparse type of a backend name (``torch``, ``numpy``, …, or an alias)."""
    try:
        return backend.backend_name(text)
    except backend.BackendError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def non_empty(text: str) -> str:
    """The argparse type of a name or path that is not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a non-empty value")
    return text


def choice(options: tuple[str, ...]) -> Callable[[str], str]:
    """The argparse type of one of ``options`` (its ``choices`` attribute names them for the
    help)."""
    def parse(text: str) -> str:
        if text not in options:
            raise argparse.ArgumentTypeError(
                f"expected one of {', '.join(options)}, got {text!r}")
        return text
    parse.choices = options  # type: ignore[attr-defined]
    parse.__name__ = "choice"
    return parse
