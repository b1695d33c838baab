"""Batch(inputs, targets, mask): one minibatch, as every model and the HF driver take it.

Feedforward data is ``[batch, features]`` with mask ``[batch]``; sequences are time-major
``[time, batch, features]`` with mask ``[time, batch]``. The mask says which outputs count (1) and
which do not (0): sequences of different lengths share one array, and a problem whose answer comes
only at the last step masks every other step. ``mask=None`` means every output counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Batch:
    """One minibatch. Targets have the shape of the predictions (one-hot rows for softmax)."""

    inputs: Any
    targets: Any
    mask: Any = None

    @property
    def n_cases(self) -> int:
        """The number of cases (rows, or sequences): the batch axis, second to last of the
        targets (inputs may be integer ids without a feature axis)."""
        return int(self.targets.shape[-2])
