"""One registry of the models: per model its name, its class, the derivation that proves it,
whether it reads character ids, and how the command line builds it from a run's settings.

Everything that lists the models reads ``REGISTRY``: :func:`from_config` (checkpoints),
the command line's ``--model`` (``arrayhf/cli/models.py``), the tests' cases
(``tests/problems.py``), the parametrized tests over every recurrent model, and the concordance
of code and derivations (``tests/test_concordance.py``). Adding a model is a model file, its
derivation, its oracle and one line here (docs/adding-a-model.md)::

    >>> from arrayhf.models import registry
    >>> registry.entry("lstm").model_class.__name__, registry.entry("lstm").derivation
    ('LSTM', 'lstm.md')
    >>> registry.command_line_names()
    ('rnn', 'mrnn', 'lstm', 'gru')

Host-side code: it only chooses a class and its sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arrayhf.models.base import Model
from arrayhf.models.fnn import FNN
from arrayhf.models.gru import GRU
from arrayhf.models.lstm import LSTM
from arrayhf.models.mrnn import MRNN
from arrayhf.models.recurrent import RecurrentModel
from arrayhf.models.rnn import RNN


@dataclass(frozen=True)
class NetSettings:
    """What the command line knows when it builds a net: the data's sizes and output loss, and
    the run's ``--hidden``, ``--factors`` (None: as many as hidden units) and ``--biases`` (a
    text run always has biases)."""

    n_inputs: int
    n_outputs: int
    output: str
    hidden: int
    factors: int | None = None
    biases: bool = True


@dataclass(frozen=True)
class ModelEntry:
    """One model. ``name``: lower case, ``--model``'s value and the tests' case prefix;
    ``derivation``: its page in derivations/; ``notation_section``: its section of
    derivations/notation.md, if it has one; ``takes_ids``: reads character ids [T, B] as they
    are (a row gather), else text runs give it one-hot rows; ``takes_factors``: the command
    line's ``--factors`` sizes it (else that option is refused); ``build``: the net a command-line
    run trains, from its :class:`NetSettings` (None: not a ``--model`` choice); ``interop``:
    the host-side module (under arrayhf/) that converts it to and from torch, which the same
    derivation proves."""

    name: str
    model_class: type[Model]
    derivation: str
    notation_section: str | None = None
    takes_ids: bool = False
    takes_factors: bool = False
    build: Callable[[NetSettings], Model] | None = None
    interop: str | None = None

    @property
    def recurrent(self) -> bool:
        """Whether the model is recurrent (structural damping, sequences [T, B, ...])."""
        return issubclass(self.model_class, RecurrentModel)

    @property
    def modules(self) -> tuple[str, ...]:
        """The modules, as paths under arrayhf/, whose code the derivation proves."""
        module = self.model_class.__module__.removeprefix("arrayhf.").replace(".", "/") + ".py"
        return (module,) if self.interop is None else (module, self.interop)


def _rnn(net: NetSettings) -> Model:
    """The release's tanh RNN."""
    return RNN(net.n_inputs, net.hidden, net.n_outputs, hidden="tanh", output=net.output,
               biases=net.biases)


def _mrnn(net: NetSettings) -> Model:
    """A tanh MRNN, as many factors as hidden units unless ``factors`` says."""
    return MRNN(net.n_inputs, net.hidden, net.factors or net.hidden, net.n_outputs,
                hidden="tanh", output=net.output, biases=net.biases)


def _gated(model_class: Any) -> Callable[[NetSettings], Model]:
    """A gated model's builder: always with its biases (the LSTM's forget-gate bias starts at 1),
    its own gate nonlinearities."""
    def build(net: NetSettings) -> Model:
        return model_class(net.n_inputs, net.hidden, net.n_outputs, output=net.output)
    return build


# The models, in the order --model lists them (the first command-line one, the tanh RNN, is a
# pathological run's default).
REGISTRY: tuple[ModelEntry, ...] = (
    ModelEntry("fnn", FNN, "fnn.md"),
    ModelEntry("rnn", RNN, "rnn.md", "Recurrent network", takes_ids=True, build=_rnn),
    ModelEntry("mrnn", MRNN, "mrnn.md", "Multiplicative RNN", takes_ids=True,
               takes_factors=True, build=_mrnn),
    ModelEntry("lstm", LSTM, "lstm.md", "LSTM", takes_ids=True, build=_gated(LSTM),
               interop="interop/torch_lstm.py"),
    ModelEntry("gru", GRU, "gru.md", "GRU", takes_ids=True, build=_gated(GRU),
               interop="interop/torch_gru.py"),
)


def names() -> tuple[str, ...]:
    """Every registered model's name, in registry order."""
    return tuple(model.name for model in REGISTRY)


def command_line_names() -> tuple[str, ...]:
    """The models a command-line run can train (``--model``'s choices), in registry order."""
    return tuple(model.name for model in REGISTRY if model.build is not None)


def entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (lower case); ValueError naming the choices otherwise."""
    for model in REGISTRY:
        if model.name == name:
            return model
    raise ValueError(f"expected model one of {', '.join(names())}, got {name!r}")


def from_config(config: dict) -> Model:
    """The model a ``model.config()`` dictionary describes (the JSON of a checkpoint)."""
    classes = {model.model_class.__name__: model.model_class for model in REGISTRY}
    if not isinstance(config, dict) or config.get("class") not in classes:
        raise ValueError(f"expected a model description with 'class' in {sorted(classes)}, "
                         f"got {config!r}")
    arguments = {key: value for key, value in config.items() if key != "class"}
    try:
        return classes[config["class"]](**arguments)
    except TypeError as error:
        raise ValueError(f"model description {config!r} does not fit "
                         f"{config['class']}: {error}") from error
