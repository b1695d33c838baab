"""arrayhf: Hessian-free optimization with hand-derived Gauss-Newton products on any array backend.

The public API: the models (FNN, RNN, MRNN, LSTM, GRU) and their matching losses, the Batch
container and the data sets (ArrayDataset, Pathological, Text, and ShardedDataset, one process's
rows of any of them), the HF optimizer and its iteration as a function of an explicit state
(``hf_step``, ``HFState``, ``StepRecord``), the protocols HF relies on (HFModel, HFDataset),
load() (a model and θ from a checkpoint), the backend layer, and the communicator of runs on
several processes (``arrayhf.distributed``).
"""

from arrayhf import backend, curvature, distributed, losses, nonlinearities
from arrayhf.checkpoint import load_model as load
from arrayhf.data.arrays import ArrayDataset
from arrayhf.data.batch import Batch
from arrayhf.data.pathological import Pathological
from arrayhf.data.sharded import ShardedDataset
from arrayhf.data.text import Text
from arrayhf.data.vocabulary import Vocabulary
from arrayhf.hf.optimizer import HF, HFConfig
from arrayhf.hf.state import HFState
from arrayhf.hf.step import StepRecord, hf_step
from arrayhf.interop import from_torch
from arrayhf.layout import Layout
from arrayhf.losses import CrossEntropy, MatchingLoss, SoftmaxCrossEntropy, SquaredError
from arrayhf.models import FNN, GRU, LSTM, MRNN, RNN, Model
from arrayhf.protocols import HFDataset, HFModel

__version__ = "0.1.0"

__all__ = [
    "from_torch",
    "FNN",
    "GRU",
    "HF",
    "ArrayDataset",
    "HFConfig",
    "HFState",
    "HFDataset",
    "HFModel",
    "Batch",
    "CrossEntropy",
    "LSTM",
    "Layout",
    "MRNN",
    "MatchingLoss",
    "Model",
    "Pathological",
    "RNN",
    "SoftmaxCrossEntropy",
    "ShardedDataset",
    "SquaredError",
    "StepRecord",
    "Text",
    "Vocabulary",
    "backend",
    "curvature",
    "distributed",
    "hf_step",
    "load",
    "losses",
    "nonlinearities",
]
