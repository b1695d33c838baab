"""Data: the Batch container and the data sets."""

from arrayhf.data.batch import Batch

__all__ = ["Batch"]
