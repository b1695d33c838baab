"""The contracts the HF driver relies on, as ``typing.Protocol`` classes (ARCHITECTURE.md, "The
model protocol" and "The data-set protocol").

Any object with these attributes works: ``HF`` takes a model and a data set by what they can do,
not by their class. ``arrayhf.FNN``, ``RNN``, ``MRNN``, ``LSTM`` and ``GRU`` satisfy
:class:`HFModel` through ``arrayhf.Model``; ``ArrayDataset``, ``Pathological`` and ``Text`` satisfy
:class:`HFDataset`. The classes are ``runtime_checkable``, so ``isinstance(obj, HFModel)`` tells
whether the methods are there (not whether they are right: the derivative tests do that).

Arrays are typed ``Any``: the array API standard has no static array type, and arrayhf takes the
arrays of any conforming library.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, runtime_checkable

from arrayhf.data.batch import Batch
from arrayhf.losses import MatchingLoss

Array = Any


@runtime_checkable
class ForwardCache(Protocol):
    """What a model's forward pass returns: at least the net outputs z and the predictions g(z)."""

    net_output: Array
    predictions: Array


@runtime_checkable
class HFModel(Protocol):
    """A model with hand-derived passes, as ``HF`` uses it (derivations/gauss-newton.md)."""

    output: MatchingLoss

    @property
    def n_params(self) -> int: ...

    def init(self, seed: int, *, xp: Any = None, dtype: Any = None,
             device: Any = None) -> Array: ...

    def forward(self, params: Array, inputs: Array) -> ForwardCache: ...

    def r_forward(self, params: Array, v: Array, inputs: Array, cache: Any) -> Array: ...

    def backprop(self, params: Array, inputs: Array, cache: Any,
                 delta_net_output: Array) -> Array: ...

    def loss(self, params: Array, batch: Batch, cache: Any = None) -> Array: ...

    def gradient(self, params: Array, batch: Batch, cache: Any = None) -> Array: ...

    def gauss_newton_product(self, params: Array, batch: Batch, v: Array, cache: Any = None,
                             structural_damping: float = 0.0) -> Array: ...

    def config(self) -> dict: ...


@runtime_checkable
class CurvatureOperatorModel(HFModel, Protocol):
    """A model that can also return its product as an operator with the checks done once
    (``arrayhf.Model`` does); ``HF`` uses it when it is there, ``gauss_newton_product`` when not."""

    def gauss_newton_operator(self, params: Array, batch: Batch, cache: Any = None,
                              structural_damping: float = 0.0) -> Callable[[Array], Array]: ...


@runtime_checkable
class HFDataset(Protocol):
    """The 2011 release's data object in Python form, as ``HF`` uses it. The batch ids are
    read-only to HF (properties here, so that a data set's own ``list[int]`` matches)."""

    @property
    def train_batches(self) -> Sequence[Hashable]: ...

    @property
    def test_batches(self) -> Sequence[Hashable]: ...

    def batch(self, batch_id: Hashable) -> Batch: ...

    def forget(self) -> None: ...

    def zero_one_error(self, batch: Batch, predictions: Array) -> float | None: ...


@runtime_checkable
class ResumableDataset(HFDataset, Protocol):
    """A data set whose ``forget`` draws random numbers, and which can save and restore them so
    that a resumed run sees the same data as an uninterrupted one."""

    def get_state(self) -> dict: ...

    def set_state(self, state: dict) -> None: ...
