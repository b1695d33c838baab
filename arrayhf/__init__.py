"""arrayhf: Hessian-free optimization with hand-derived Gauss-Newton products on any array backend.

The public API: models (FNN), their matching losses, the Batch container, and the backend layer.
"""

from arrayhf import backend, curvature, losses, nonlinearities
from arrayhf.data.batch import Batch
from arrayhf.layout import Layout
from arrayhf.losses import CrossEntropy, MatchingLoss, SoftmaxCrossEntropy, SquaredError
from arrayhf.models import FNN, Model

__version__ = "0.1.0"

__all__ = [
    "FNN",
    "Batch",
    "CrossEntropy",
    "Layout",
    "MatchingLoss",
    "Model",
    "SoftmaxCrossEntropy",
    "SquaredError",
    "backend",
    "curvature",
    "losses",
    "nonlinearities",
]
