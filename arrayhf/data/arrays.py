"""ArrayDataset: fixed train and test arrays split into batches, in the data-object protocol.

The HF driver asks a data set for ``train_batches`` and ``test_batches`` (lists of batch ids),
``batch(id)`` (a Batch), ``forget()`` (fresh training data; a fixed data set has none to give) and
``zero_one_error(batch, predictions)`` (the fraction of counted positions that are wrong). A data
set whose ``forget`` draws random numbers also has ``get_state()`` / ``set_state(state)`` so that a
resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, overload

from arrayhf._validate import check_finite, namespace_of
from arrayhf.data.batch import Batch

ERROR_KINDS = ("argmax", "threshold", None)


def check_prediction_shape(predictions: Any, targets: Any) -> None:
    """ValueError unless the predictions have the targets' shape."""
    if tuple(predictions.shape) != tuple(targets.shape):
        raise ValueError(f"expected predictions of the targets' shape "
                         f"{list(targets.shape)}, got {list(predictions.shape)}")


def wrong_positions(predictions: Any, targets: Any, kind: str = "argmax") -> Any:
    """Where a prediction is wrong: a boolean array of the targets' shape less its last axis.

    ``"argmax"``: the largest output is not the target's largest (softmax classification);
    ``"threshold"``: some unit is on the wrong side of 0.5 (logistic outputs).
    """
    xp = namespace_of(predictions, targets)
    check_prediction_shape(predictions, targets)
    if kind == "argmax":
        return xp.argmax(predictions, axis=-1) != xp.argmax(targets, axis=-1)
    if kind == "threshold":
        return xp.any((predictions > 0.5) != (targets > 0.5), axis=-1)
    raise ValueError(f"expected an error kind in {ERROR_KINDS}, got {kind!r}")


# the types say what the kinds mean: a str always gives a float, None always gives None
@overload
def zero_one_error(batch: Batch, predictions: Any, kind: str = "argmax") -> float: ...
@overload
def zero_one_error(batch: Batch, predictions: Any, kind: None) -> None: ...
@overload
def zero_one_error(batch: Batch, predictions: Any, kind: str | None) -> float | None: ...


def zero_one_error(batch: Batch, predictions: Any, kind: str | None = "argmax") -> float | None:
    """Fraction of counted (mask 1, or all without a mask) positions whose prediction is wrong
    (:func:`wrong_positions`); ``kind=None``: no zero-one error (regression), returns None."""
    if kind is None:
        return None
    xp = namespace_of(predictions, batch.targets, batch.mask)
    wrong = xp.astype(wrong_positions(predictions, batch.targets, kind), predictions.dtype)
    if batch.mask is None:
        return float(xp.mean(wrong))
    weights = xp.astype(batch.mask, predictions.dtype)
    return float(xp.sum(wrong * weights) / xp.sum(weights))


class ArrayDataset:
    """Train and test arrays (any backend, leading axis = cases) cut into batches of ``batch_size``.

    Batch ids: ``("train", i)`` and ``("test", i)``.
    """

    def __init__(self, train_inputs: Any, train_targets: Any, test_inputs: Any,
                 test_targets: Any, *, batch_size: int, error: str | None = "argmax") -> None:
        if error not in ERROR_KINDS:
            raise ValueError(f"expected error in {ERROR_KINDS}, got {error!r}")
        if batch_size < 1:
            raise ValueError(f"expected batch_size >= 1, got {batch_size}")
        xp = namespace_of(train_inputs, train_targets, test_inputs, test_targets)
        for name, array in (("train_inputs", train_inputs), ("train_targets", train_targets),
                            ("test_inputs", test_inputs), ("test_targets", test_targets)):
            check_finite(xp, name, array)
        self.error = error
        self._batches: dict[tuple[str, int], Batch] = {}
        for split, inputs, targets in (("train", train_inputs, train_targets),
                                       ("test", test_inputs, test_targets)):
            if inputs.shape[0] != targets.shape[0]:
                raise ValueError(f"{split}: {inputs.shape[0]} input rows but "
                                 f"{targets.shape[0]} target rows")
            if inputs.shape[0] == 0:
                raise ValueError(f"{split}: no cases")
            for index, start in enumerate(range(0, inputs.shape[0], batch_size)):
                rows = slice(start, min(start + batch_size, inputs.shape[0]))
                self._batches[(split, index)] = Batch(inputs[rows, ...], targets[rows, ...])
        self.train_batches = [key for key in self._batches if key[0] == "train"]
        self.test_batches = [key for key in self._batches if key[0] == "test"]

    def batch(self, batch_id: Hashable | list) -> Batch:
        """The Batch of an id from ``train_batches`` or ``test_batches``."""
        key = tuple(batch_id) if isinstance(batch_id, list | tuple) else batch_id
        if key not in self._batches:
            raise KeyError(f"no batch {batch_id!r}: expected ('train', i) for i < "
                           f"{len(self.train_batches)} or ('test', i) for i < "
                           f"{len(self.test_batches)}")
        return self._batches[key]

    def forget(self) -> None:
        """A fixed data set has no fresh data to draw."""

    def zero_one_error(self, batch: Batch, predictions: Any) -> float | None:
        """The fraction of counted rows predicted wrong (None when ``error=None``)."""
        return zero_one_error(batch, predictions, self.error)

    def get_state(self) -> dict:
        """Nothing random to restore: a fixed data set."""
        return {}

    def set_state(self, state: dict) -> None:
        """Nothing random to restore: a fixed data set."""
