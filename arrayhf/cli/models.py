"""Which net a command-line run trains (``--model``), built from the run's settings: the same
names for the pathological problems (real-valued inputs) and for text (character ids, or one-hot
rows for the models that take only real inputs). The choices and how each is built are the
model registry's (arrayhf/models/registry.py).

Host-side code: it only chooses a class and its sizes.
"""

from __future__ import annotations

from typing import Any

from arrayhf.models import registry

# --model's choices, the first the pathological default (the release's tanh RNN)
MODELS = registry.command_line_names()


def _entry(name: str) -> registry.ModelEntry:
    """The registry entry of a command-line model; ValueError unless ``name`` is one of
    MODELS."""
    if name not in MODELS:
        raise ValueError(f"expected model one of {', '.join(MODELS)}, got {name!r}")
    return registry.entry(name)


def check_model(name: str) -> None:
    """ValueError unless ``name`` is one of MODELS."""
    _entry(name)


def _build(name: str, net: registry.NetSettings) -> Any:
    build = _entry(name).build
    assert build is not None   # MODELS holds only the models that have a builder
    return build(net)


def pathological_model(name: str, n_inputs: int, n_outputs: int, output: str, *, hidden: int,
                       factors: int | None, biases: bool) -> Any:
    """The net of a pathological run: tanh hidden units as in the release, ``factors`` (default:
    as many as hidden units) for the MRNN; ``biases`` applies to the RNN and the MRNN (a gated
    model always has its biases)."""
    return _build(name, registry.NetSettings(n_inputs, n_outputs, output, hidden, factors,
                                             biases))


def text_model(name: str, vocabulary_size: int, *, hidden: int, factors: int) -> Any:
    """The net of a character-level text run (softmax over the vocabulary, biases)."""
    return _build(name, registry.NetSettings(vocabulary_size, vocabulary_size, "softmax", hidden,
                                             factors, biases=True))


def check_factors(name: str) -> None:
    """ValueError unless the model ``name`` is sized by ``--factors`` (the option was given)."""
    if not _entry(name).takes_factors:
        sized = [model for model in MODELS if registry.entry(model).takes_factors]
        raise ValueError(f"--factors sizes {' and '.join(sized)} only, not --model {name}: "
                         f"leave it out, or choose --model {sized[0]}")


def takes_ids(name: str) -> bool:
    """Whether the model reads character ids as they are (a row gather); the others need
    one-hot rows."""
    return _entry(name).takes_ids
