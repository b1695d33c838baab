"""Models with hand-derived forward, R-forward and backprop passes."""

from arrayhf.models.base import Model
from arrayhf.models.fnn import FNN
from arrayhf.models.gru import GRU
from arrayhf.models.lstm import LSTM
from arrayhf.models.mrnn import MRNN
from arrayhf.models.rnn import RNN

__all__ = ["FNN", "GRU", "LSTM", "MRNN", "RNN", "Model", "from_config"]


def from_config(config: dict) -> Model:
    """The model a ``model.config()`` dictionary describes (the JSON of a checkpoint)."""
    classes = {"FNN": FNN, "RNN": RNN, "MRNN": MRNN, "LSTM": LSTM, "GRU": GRU}
    if not isinstance(config, dict) or config.get("class") not in classes:
        raise ValueError(f"expected a model description with 'class' in {sorted(classes)}, "
                         f"got {config!r}")
    arguments = {key: value for key, value in config.items() if key != "class"}
    try:
        return classes[config["class"]](**arguments)
    except TypeError as error:
        raise ValueError(f"model description {config!r} does not fit "
                         f"{config['class']}: {error}") from error

