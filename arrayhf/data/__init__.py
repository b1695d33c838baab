"""Data: the Batch container and the data sets."""

from arrayhf.data.arrays import ArrayDataset
from arrayhf.data.batch import Batch
from arrayhf.data.pathological import Pathological
from arrayhf.data.problems import PROBLEMS

__all__ = ["PROBLEMS", "ArrayDataset", "Batch", "Pathological"]
