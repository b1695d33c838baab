"""Models with hand-derived forward, R-forward and backprop passes."""

from arrayhf.models.base import Model
from arrayhf.models.fnn import FNN

__all__ = ["FNN", "Model"]
