"""Models with hand-derived forward, R-forward and backprop passes."""

from arrayhf.models.base import Model
from arrayhf.models.fnn import FNN
from arrayhf.models.mrnn import MRNN
from arrayhf.models.rnn import RNN

__all__ = ["FNN", "MRNN", "RNN", "Model"]
