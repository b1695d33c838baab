"""``ShardedDataset``: this process's rows of every batch of any data set, for HF on several
processes (arrayhf/distributed.py; derivations/cg-and-damping.md, (H6)).

Every process builds the same data set (same settings, same seed), so every process holds the
same batches, and each takes its own contiguous block of rows of each: of a batch of B cases,
rank r of P takes cases ⌊rB/P⌋ .. ⌊(r+1)B/P⌋ − 1 along the batch axis (the second-to-last axis
of the targets: ``[batch, …]`` feedforward, ``[time, batch, …]`` sequences, and the same axis of
the inputs, ids included, and of the mask). The blocks cover the batch once, so the sums of
(H6) over the processes are the sums over the whole batch.

``forget()`` asks the data set for fresh batches on every process alike (the same draws: the same
generator state everywhere, which is also what a checkpoint saves, so a run resumes on any
number of processes) and then checks that the processes still hold the same batches: a
fingerprint of every batch (its case count and the sums of its inputs, targets and mask) must be
rank 0's on every process.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from arrayhf import backend
from arrayhf._validate import namespace_of
from arrayhf.data.batch import Batch

if TYPE_CHECKING:
    from arrayhf.distributed import Communicator
    from arrayhf.protocols import HFDataset


def rows_of(rank: int, world_size: int, n_cases: int) -> slice:
    """The cases of a batch of ``n_cases`` that rank ``rank`` of ``world_size`` takes."""
    return slice(rank * n_cases // world_size, (rank + 1) * n_cases // world_size)


def shard(batch: Batch, rows: slice) -> Batch:
    """The cases ``rows`` of ``batch``: the same slice of the batch axis of its inputs, targets
    and mask (views where the backend makes them)."""
    axis = batch.targets.ndim - 2

    def cut(array):
        return None if array is None else array[(slice(None),) * axis + (rows, ...)]

    return Batch(cut(batch.inputs), cut(batch.targets), cut(batch.mask))


class ShardedDataset:
    """The data-set protocol over another data set's batches, each cut to this process's rows.

    Parameters
    ----------
    dataset
        Any data set (ARCHITECTURE.md, "The data-set protocol"), built alike on every process.
    communicator
        This process's rank and world size (arrayhf/distributed.py).

    Notes
    -----
    Every other attribute (``n_inputs``, ``vocabulary``, …) is the wrapped data set's.
    """

    def __init__(self, dataset: HFDataset, communicator: Communicator) -> None:
        self.dataset = dataset
        self.communicator = communicator
        self._shards: dict[str, tuple[Batch, Batch]] = {}
        self.check_same_batches()

    @property
    def train_batches(self) -> Sequence[Hashable]:
        """The wrapped data set's training batch ids."""
        return self.dataset.train_batches

    @property
    def test_batches(self) -> Sequence[Hashable]:
        """The wrapped data set's test batch ids."""
        return self.dataset.test_batches

    def batch(self, batch_id: Hashable) -> Batch:
        """This process's rows of the batch ``batch_id`` (cut once per batch the data set gives).

        ValueError when the batch has fewer cases than there are processes, or when this
        process's rows count no output (their mask is zero)."""
        whole = self.dataset.batch(batch_id)
        cached = self._shards.get(repr(batch_id))
        if cached is not None and cached[0] is whole:
            return cached[1]
        rank, world_size = self.communicator.rank, self.communicator.world_size
        if whole.n_cases < world_size:
            raise ValueError(f"batch {batch_id!r} has {whole.n_cases} cases, fewer than the "
                             f"{world_size} processes: each process needs at least one; use "
                             f"larger batches or fewer processes")
        rows = rows_of(rank, world_size, whole.n_cases)
        part = shard(whole, rows)
        if part.mask is not None:
            xp = namespace_of(part.mask)
            if not float(xp.sum(xp.astype(part.mask, part.targets.dtype))) > 0:
                raise ValueError(f"batch {batch_id!r}: the cases {rows.start} .. {rows.stop - 1} "
                                 f"of rank {rank} count no output (their mask is zero), so their "
                                 f"mean loss is undefined: use fewer processes, or mix the cases")
        self._shards[repr(batch_id)] = (whole, part)
        return part

    def forget(self) -> None:
        """Fresh training batches on every process alike, checked to be the same everywhere."""
        self.dataset.forget()
        self._shards = {}
        self.check_same_batches()

    def zero_one_error(self, batch: Batch, predictions: Any) -> float | None:
        """The wrapped data set's error on this process's rows (HF weights it by their count of
        outputs, (H6))."""
        return self.dataset.zero_one_error(batch, predictions)

    def get_state(self) -> dict | None:
        """The wrapped data set's state (the same on every process), or None without one."""
        getter = getattr(self.dataset, "get_state", None)
        return None if getter is None else getter()

    def set_state(self, state: dict) -> None:
        """Restore the wrapped data set's state, on every process alike."""
        setter = getattr(self.dataset, "set_state", None)
        if setter is not None:
            setter(state)
        self._shards = {}
        self.check_same_batches()

    def fingerprint(self) -> np.ndarray:
        """Per batch (training, then test): its case count and the sums of its inputs, targets
        and mask, on the host (one device-to-host copy)."""
        parts = []
        for batch_id in [*self.train_batches, *self.test_batches]:
            whole = self.dataset.batch(batch_id)
            xp = namespace_of(whole.inputs, whole.targets, whole.mask)
            dtype = whole.targets.dtype
            sums = [xp.sum(xp.astype(a, dtype)) for a in (whole.inputs, whole.targets, whole.mask)
                    if a is not None]
            host = backend.to_numpy(xp.stack(sums)).astype(np.float64)
            parts.append(np.concatenate([[float(whole.n_cases)], host]))
        return np.concatenate(parts) if parts else np.zeros(0)

    def check_same_batches(self) -> None:
        """ValueError on every process unless every process holds rank 0's batches (to a relative
        1e-9 in the fingerprint's sums: their order of summation may differ)."""
        communicator = self.communicator
        if communicator.world_size == 1:
            return
        mine = self.fingerprint()
        (sizes,) = communicator.sum_floats(float(mine.size))
        reference = (communicator.broadcast(mine.copy())
                     if sizes == mine.size * communicator.world_size else None)
        same = reference is not None and np.allclose(mine, reference, rtol=1e-9, atol=0.0)
        (differ,) = communicator.sum_floats(float(not same))
        if differ:
            raise ValueError(
                f"rank {communicator.rank}: {int(differ)} of {communicator.world_size} processes "
                f"hold other batches than rank 0: every process must build its data set with the "
                f"same settings and seed")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("dataset", "communicator", "_shards"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return (f"ShardedDataset({self.dataset!r}, rank {self.communicator.rank} of "
                f"{self.communicator.world_size})")
