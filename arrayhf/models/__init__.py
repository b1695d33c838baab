"""Models with hand-derived forward, R-forward and backprop passes; ``registry`` lists them."""

from arrayhf.models.base import Model
from arrayhf.models.fnn import FNN
from arrayhf.models.gru import GRU
from arrayhf.models.lstm import LSTM
from arrayhf.models.mrnn import MRNN
from arrayhf.models.registry import from_config
from arrayhf.models.rnn import RNN

__all__ = ["FNN", "GRU", "LSTM", "MRNN", "RNN", "Model", "from_config"]
