"""The objective of HF over a data set's batches: f(θ) = L(θ) + ½ w ‖θ‖² and its gradient (H1).

L is the mean loss over every unmasked output of the batches, Σ N_β L_β / Σ N_β, so each batch
weighs by its count of unmasked outputs N_β (derivations/cg-and-damping.md, (H1)). The test loss
and zero-one error are weighted the same way. Every batch's values are checked the first time an
iteration's data is read: bad data is refused where it enters, before any work on it.

On several processes (a ``communicator`` of arrayhf/distributed.py, each process holding its rows
of every batch: data/sharded.py) every sum over the batches is a sum over this process's rows,
then over the processes (H6): the numerators and the counts of (H1) alike, the gradient, and
each product of the curvature batch's G, weighted by this process's share N_r / N of its outputs.
With one process the communicator's sums return their input: nothing is added.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from arrayhf.curvature import curvature_operator
from arrayhf.data.batch import check_batch_values
from arrayhf.distributed import SingleProcess

if TYPE_CHECKING:
    from collections.abc import Callable

    from arrayhf.data.batch import Batch
    from arrayhf.distributed import Communicator
    from arrayhf.protocols import HFDataset, HFModel


class BatchObjective:
    """f, L and g of (H1) for ``model`` on the batches of ``dataset`` (arrays of ``xp``), and the
    curvature batch's products, summed over the processes of ``communicator`` (H6)."""

    def __init__(self, model: HFModel, dataset: HFDataset, xp: Any, *,
                 weight_cost: float, communicator: Communicator | None = None) -> None:
        self.model, self.dataset, self.xp = model, dataset, xp
        self.weight_cost = weight_cost
        self.communicator = communicator if communicator is not None else SingleProcess()
        self._checked: set = set()
        self._kept: tuple | None = None   # (batch id, θ, forward pass) of value_and_gradient

    def new_data(self) -> None:
        """The data set's batches may have changed (``forget``, a restored state): check each
        again the first time it is read."""
        self._checked = set()

    def batch(self, batch_id: Hashable) -> Batch:
        """The data set's batch, its values checked the first time this iteration's data is read
        (finite, mask >= 0 counting some output)."""
        batch = self.dataset.batch(batch_id)
        key = repr(batch_id)
        if key not in self._checked:
            check_batch_values(self.xp, f"batch {batch_id!r}", batch)
            self._checked.add(key)
        return batch

    def output_count(self, batch: Batch) -> float:
        """N_β, the batch's count of unmasked outputs: the weight of its loss in (H1)."""
        if batch.mask is None:
            count = float(math.prod(batch.targets.shape[:-1]))
        else:
            count = float(self.xp.sum(self.xp.astype(batch.mask, batch.targets.dtype)))
        if not count > 0:
            raise ValueError(f"a batch with no counted output (mask sum {count}, targets of "
                             f"shape {list(batch.targets.shape)}): its mean loss is undefined")
        return count

    def weight_penalty(self, params: Any) -> float:
        """½ w ‖θ‖², the weight cost of (H1)."""
        w = self.weight_cost
        return 0.5 * w * float(self.xp.sum(params * params)) if w else 0.0

    def data_loss(self, params: Any, batch_ids: Iterable[Hashable]) -> float:
        """L(θ) of (H1): the mean loss over every unmasked output of the batches, Σ N_β L_β / Σ N_β
        (each batch weighted by its number of counted outputs)."""
        total, count = 0.0, 0.0
        for batch_id in batch_ids:
            batch = self.batch(batch_id)
            outputs = self.output_count(batch)
            total += outputs * float(self.model.loss(params, batch))
            count += outputs
        total, count = self.communicator.sum_floats(total, count)          # (H6)
        return total / count

    def value(self, params: Any, batch_ids: Iterable[Hashable]) -> float:
        """f(θ) = L(θ) + ½ w ‖θ‖² of (H1); +inf when not finite."""
        value = self.data_loss(params, batch_ids) + self.weight_penalty(params)
        return value if math.isfinite(value) else math.inf

    def value_and_gradient(self, params: Any, batch_ids: Iterable[Hashable], *,
                           keep: Hashable = None) -> tuple[float, Any]:
        """(f(θ), g) of (H1) over the batches, g = Σ N_β ∇L_β / Σ N_β + wθ, weighted like
        :meth:`data_loss`. The forward pass of the batch ``keep`` (the curvature batch, when it
        is one of them) is kept for :meth:`kept_forward`."""
        total_loss, count = 0.0, 0.0
        gradient: Any = None
        self._kept = None
        for batch_id in batch_ids:
            batch = self.batch(batch_id)
            outputs = self.output_count(batch)
            cache = self.model.forward(params, batch.inputs)
            if keep is not None and repr(batch_id) == repr(keep):
                self._kept = (repr(batch_id), params, cache)
            total_loss += outputs * float(self.model.loss(params, batch, cache))
            part = outputs * self.model.gradient(params, batch, cache)
            gradient = part if gradient is None else gradient + part
            count += outputs
        total_loss, count = self.communicator.sum_floats(total_loss, count)          # (H6)
        gradient = self.communicator.all_reduce_sum(gradient) / count
        if self.weight_cost:
            gradient = gradient + self.weight_cost * params
        return total_loss / count + self.weight_penalty(params), gradient

    def kept_forward(self, params: Any, batch_id: Hashable) -> Any:
        """The forward pass of ``batch_id`` at ``params`` that :meth:`value_and_gradient` kept,
        or a new one (CG's cache: a gradient batch's forward pass is not computed twice)."""
        kept, self._kept = self._kept, None
        if kept is not None and kept[0] == repr(batch_id) and kept[1] is params:
            return kept[2]
        return self.model.forward(params, self.batch(batch_id).inputs)

    def test_loss_and_error(self, params: Any, batch_ids: Sequence[Hashable]
                            ) -> tuple[float | None, float | None]:
        """(L(θ), zero-one error) over the test batches, both weighted like :meth:`data_loss`;
        the error is None when the data set gives none for some batch, and both are None when
        there is no test batch (training without a test set)."""
        if not batch_ids:
            return None, None
        losses, errors, counts = 0.0, 0.0, 0.0
        has_error = True
        for batch_id in batch_ids:
            batch = self.batch(batch_id)
            outputs = self.output_count(batch)
            cache = self.model.forward(params, batch.inputs)
            losses += outputs * float(self.model.loss(params, batch, cache))
            error = self.dataset.zero_one_error(batch, cache.predictions)
            if error is None:
                has_error = False
            else:
                errors += outputs * float(error)
            counts += outputs
        losses, errors, counts, missing = self.communicator.sum_floats(      # (H6)
            losses, errors, counts, float(not has_error))
        # the error rounded to 12 decimals: a weighted mean of exact ratios (10 of 1,000 wrong)
        # then compares with a threshold (< 1%) as the ratio itself does, not as its rounding
        return losses / counts, (round(errors / counts, 12) if not missing else None)

    # -- the curvature batch ---------------------------------------------------------------
    def curvature_share(self, batch: Batch) -> float:
        """N_r / N: this process's share of the curvature batch's counted outputs (1 alone)."""
        if self.communicator.world_size == 1:
            return 1.0
        outputs = self.output_count(batch)
        (total,) = self.communicator.sum_floats(outputs)
        return outputs / total

    def curvature_operator(self, params: Any, batch: Batch, cache: Any,
                           structural_damping: float) -> Callable[[Any], Any]:
        """v ↦ (G + structural_damping · S) v of the whole curvature batch on its cached forward
        pass: with several processes, Σ_r (N_r / N) (G_r + …) v, one all-reduce a product (H6)."""
        product = curvature_operator(self.model, params, batch, cache, structural_damping)
        if self.communicator.world_size == 1:
            return product
        share, reduce = self.curvature_share(batch), self.communicator.all_reduce_sum
        return lambda v: reduce(share * product(v))                           # (H6)

    def squared_gradient(self, params: Any, batch: Batch, cache: Any) -> Any:
        """F of the preconditioner (H3) on the whole curvature batch: Σ_r (N_r / N) F_r (H6)."""
        squared = self.model.per_case_squared_gradient(params, batch, cache)  # type: ignore
        if self.communicator.world_size == 1:
            return squared
        return self.communicator.all_reduce_sum(self.curvature_share(batch) * squared)
