"""Which net a command-line run trains (``--model``), built from the run's settings: the same
names for the pathological problems (real-valued inputs) and for text (character ids, or one-hot
rows for the models that take only real inputs).

Host-side code: it only chooses a class and its sizes.
"""

from __future__ import annotations

from typing import Any

from arrayhf.models.gru import GRU
from arrayhf.models.lstm import LSTM
from arrayhf.models.mrnn import MRNN
from arrayhf.models.rnn import RNN

# --model's choices, the first the pathological default (the release's tanh RNN)
MODELS = ("rnn", "mrnn", "lstm", "gru")
# the gated models, built with biases always (the LSTM's forget-gate bias starts at 1)
GATED = {"lstm": LSTM, "gru": GRU}


def check_model(name: str) -> None:
    """ValueError unless ``name`` is one of MODELS."""
    if name not in MODELS:
        raise ValueError(f"expected model one of {', '.join(MODELS)}, got {name!r}")


def pathological_model(name: str, n_inputs: int, n_outputs: int, output: str, *, hidden: int,
                       factors: int | None, biases: bool) -> Any:
    """The net of a pathological run: tanh hidden units as in the release, ``factors`` (default:
    as many as hidden units) for the MRNN; ``biases`` applies to the RNN and the MRNN (a gated
    model always has its biases)."""
    check_model(name)
    if name in GATED:
        return GATED[name](n_inputs, hidden, n_outputs, output=output)
    if name == "mrnn":
        return MRNN(n_inputs, hidden, factors or hidden, n_outputs, hidden="tanh",
                    output=output, biases=biases)
    return RNN(n_inputs, hidden, n_outputs, hidden="tanh", output=output, biases=biases)


def text_model(name: str, vocabulary_size: int, *, hidden: int, factors: int) -> Any:
    """The net of a character-level text run (softmax over the vocabulary)."""
    check_model(name)
    if name in GATED:
        return GATED[name](vocabulary_size, hidden, vocabulary_size, output="softmax")
    if name == "mrnn":
        return MRNN(vocabulary_size, hidden, factors, vocabulary_size, output="softmax")
    return RNN(vocabulary_size, hidden, vocabulary_size, output="softmax")


def takes_ids(name: str) -> bool:
    """Whether the model reads character ids as they are (a row gather); the others need
    one-hot rows."""
    check_model(name)
    return name != "rnn"
