"""Batch(inputs, targets, mask): one minibatch, as every model and the HF driver take it.

Feedforward data is ``[batch, features]`` with mask ``[batch]``; sequences are time-major
``[time, batch, features]`` with mask ``[time, batch]``. The mask says which outputs count (1) and
which do not (0): sequences of different lengths share one array, and a problem whose answer comes
only at the last step masks every other step. ``mask=None`` means every output counts.

Also what a batch's values must be where they enter HF (``check_batch_values``: finite, a mask
>= 0 that counts some output), and what the generated data sets (pathological problems, text) check
alike: their counts, their seed, and their batch ids (an int for training, ``("test", i)`` for
testing).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from arrayhf._validate import check_finite, is_integer


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


def check_batch_values(xp: Any, name: str, batch: Batch) -> None:
    """A Batch's floating inputs, targets and mask are finite, its mask is not negative and
    counts at least one output: what makes its mean loss defined and G positive semi-definite."""
    check_finite(xp, f"{name}.inputs", batch.inputs)
    check_finite(xp, f"{name}.targets", batch.targets)
    if batch.mask is not None:
        check_finite(xp, f"{name}.mask", batch.mask)
        weights = xp.astype(batch.mask, xp.float64 if batch.mask.dtype == xp.float64
                            else xp.float32)
        if bool(xp.any(weights < 0)):
            raise ValueError(f"expected {name}.mask >= 0 (a weight per output), got negative "
                             "entries")
        if not float(xp.sum(weights)) > 0:
            raise ValueError(f"expected {name}.mask to count at least one output, got a mask "
                             "that is zero everywhere: the mean loss is undefined")


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int; ValueError unless it is an integer (not a bool) of at least 1."""
    if not is_integer(value) or value < 1:
        raise ValueError(f"expected {name} to be a positive integer, got {value!r}")
    return int(value)


def check_seed(seed: Any) -> int:
    """``seed`` as an int; ValueError unless it is a non-negative integer (not a bool)."""
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"expected seed to be a non-negative integer, got {seed!r}")
    return int(seed)


def batch_key(batch_id: Any, train: dict, test: dict) -> int | tuple:
    """The key of ``batch_id`` in a data set's ``train`` or ``test`` batches: an int (not a bool)
    for training, ``("test", i)`` (or the list a JSON round trip makes of it) for testing.
    KeyError for any other id, naming the ids there are."""
    if isinstance(batch_id, (list, tuple)):
        if tuple(batch_id) in test:
            return tuple(batch_id)
    elif is_integer(batch_id) and int(batch_id) in train:
        return int(batch_id)
    raise KeyError(f"unknown batch id {batch_id!r}: expected a training id 0 .. "
                   f"{len(train) - 1} or a test id ('test', 0 .. {len(test) - 1})")


class FreshTrainingBatches:
    """The ``batch``, ``forget``, ``get_state`` and ``set_state`` of a data set that keeps its
    batches in ``_train`` (ids 0, 1, …) and ``_test`` (ids ``("test", i)``), draws fresh
    training batches with ``_draw_training()`` from the host generator ``_train_rng`` (keeping
    its state from before the draw in ``_train_rng_state``), and describes what shapes its
    batches with ``_settings()``: the part of the data-set protocol Pathological and Text
    share."""

    _train: dict
    _test: dict
    _train_rng: Any
    _train_rng_state: dict

    def _draw_training(self) -> None:
        raise NotImplementedError

    def _settings(self) -> dict:
        raise NotImplementedError

    def batch(self, batch_id: Any) -> Batch:
        """The batch ``batch_id``: an int for training, ``("test", i)`` (or the list a JSON
        round trip makes of it) for testing."""
        key = batch_key(batch_id, self._train, self._test)
        return self._test[key] if isinstance(key, tuple) else self._train[key]

    def forget(self) -> None:
        """Replace the training batches with fresh ones; the test set stays as it is."""
        self._draw_training()

    # -- exact resumes ---------------------------------------------------------------------
    def get_state(self) -> dict:
        """A JSON-ready state: the settings that shape the batches (``_settings()``) and the
        training generator's state from before the current training batches were drawn."""
        return {**self._settings(), "train_rng_state": copy.deepcopy(self._train_rng_state)}

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state`'s state: the training batches become those of that moment,
        and later ``forget()`` calls draw what they drew then. ValueError, naming the settings
        that differ, for the state of a data set with other settings."""
        settings = self._settings()
        saved = {key: state.get(key) for key in settings}
        if saved != settings:
            differing = sorted(key for key in settings if saved[key] != settings[key])
            shown = {key: (saved[key], settings[key]) for key in differing
                     if not isinstance(settings[key], (list, dict))}
            raise ValueError(f"expected a state of a data set with settings like this one's, "
                             f"got one that differs in {', '.join(differing)} (saved, current): "
                             f"{shown}")
        self._train_rng.bit_generator.state = copy.deepcopy(state["train_rng_state"])
        self._draw_training()
