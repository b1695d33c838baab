"""The pathological problems (:mod:`arrayhf.data.problems`) in the data-object protocol of the HF
driver: :class:`Pathological` draws their batches on the host and moves them to a backend, keeps a
fixed test set, draws fresh training batches on ``forget()``, and scores predictions.

The loss mask is not always where the zero-one error looks: random_permutation trains on every
next-symbol prediction but is scored at its last step only, and memorization (unless
``only_memory_bits``) trains on every step but is scored on the last N.
:meth:`Pathological.zero_one_error` therefore finds the scored steps from the problem's
definition: the one unmasked step of a variable-length problem, the last step of
random_permutation, the last N steps of memorization. It counts SEQUENCES: a sequence is wrong
when any of its scored steps is wrong.

Randomness is drawn on the host with a seeded ``numpy.random.Generator`` and moved to the backend
with :func:`arrayhf.backend.from_host`, so the same seed gives the same data on every backend.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from arrayhf import backend
from arrayhf._validate import namespace_of
from arrayhf.data.arrays import check_prediction_shape, wrong_positions
from arrayhf.data.batch import (
    Batch,
    FreshTrainingBatches,
    check_positive_int,
    check_seed,
)
from arrayhf.data.problems import (
    ADDITION_TARGETS,
    LENGTH_PERCENT,
    MEMORIZATION_SIZES,
    MINIMUM_T,
    N_INPUTS,
    N_OUTPUTS,
    OUTPUTS,
    PROBLEMS,
    check_T,
    generate,
)

# PROBLEMS, MINIMUM_T and generate stay importable from here, where they were defined before
# data/problems.py
__all__ = ["MINIMUM_T", "PROBLEMS", "REAL_VALUED_TOLERANCE", "Pathological", "generate"]

# |prediction - target| above this makes an addition or multiplication answer wrong (H&S 1997).
REAL_VALUED_TOLERANCE = 0.04


class Pathological(FreshTrainingBatches):
    """A pathological problem in the data-object protocol of the HF driver.

    Parameters
    ----------
    problem : one of :data:`PROBLEMS`
    T : int
        Time scale (the release used 200).
    batch_size, n_train_batches, n_test_batches : int
        The release: 1000, 10, 10.
    seed : int
        Two generators are derived from it (``numpy.random.SeedSequence(seed).spawn(2)``): the
        training generator, which ``forget()`` keeps drawing from, and the test generator, used
        once, so that the test set never changes.
    xp, dtype, device
        The backend namespace (default :func:`arrayhf.backend.namespace`), float dtype (default
        float64) and device of the batches.
    only_memory_bits : bool
        Memorization: the loss mask counts only the last N steps.
    addition_target : {"sum", "mean"}
        Addition: A + B (the release) or (A + B) / 2 (MS11).

    Notes
    -----
    Batch ids: ``0 .. n_train_batches - 1`` for training, ``("test", i)`` for testing.

    Attributes ``n_inputs``, ``n_outputs`` and ``output`` (``"linear"``, ``"logistic"`` or
    ``"softmax"``) say how to build the model::

        data = Pathological("addition", 100)
        model = arrayhf.RNN(data.n_inputs, 100, data.n_outputs, output=data.output)
    """

    def __init__(self, problem: str, T: int, *, batch_size: int = 1000,
                 n_train_batches: int = 10, n_test_batches: int = 10, seed: int = 0,
                 xp: Any = None, dtype: Any = None, device: Any = None,
                 only_memory_bits: bool = False, addition_target: str = "sum") -> None:
        check_T(problem, T)
        batch_size = check_positive_int("batch_size", batch_size)
        n_train_batches = check_positive_int("n_train_batches", n_train_batches)
        n_test_batches = check_positive_int("n_test_batches", n_test_batches)
        seed = check_seed(seed)
        if addition_target not in ADDITION_TARGETS:
            raise ValueError(f"expected addition_target in {ADDITION_TARGETS}, "
                             f"got {addition_target!r}")
        self.problem, self.T = problem, int(T)
        self.batch_size, self.seed = batch_size, seed
        self.only_memory_bits, self.addition_target = bool(only_memory_bits), addition_target
        self.n_inputs, self.n_outputs = N_INPUTS[problem], N_OUTPUTS[problem]
        self.output = OUTPUTS[problem]
        self.xp = backend.namespace() if xp is None else xp
        self.dtype = backend.resolve_dtype(self.xp, dtype)
        self.device = backend.resolve_device(self.xp, device)

        train_seed, test_seed = np.random.SeedSequence(self.seed).spawn(2)
        self._train_rng = np.random.default_rng(train_seed)
        test_rng = np.random.default_rng(test_seed)
        self.train_batches = list(range(n_train_batches))
        self.test_batches = [("test", i) for i in range(n_test_batches)]
        self._test = {batch_id: self._draw(test_rng) for batch_id in self.test_batches}
        self._draw_training()

    # -- drawing ---------------------------------------------------------------------------
    def _draw(self, rng) -> Batch:
        arrays = generate(self.problem, self.T, self.batch_size, rng,
                          only_memory_bits=self.only_memory_bits,
                          addition_target=self.addition_target)
        inputs, targets, mask = (backend.from_host(a, self.xp, dtype=self.dtype,
                                                   device=self.device) for a in arrays)
        return Batch(inputs, targets, mask)

    def _draw_training(self) -> None:
        """Draw every training batch, remembering the generator's state from before, which is
        all :meth:`get_state` needs to redraw them."""
        self._train_rng_state = copy.deepcopy(self._train_rng.bit_generator.state)
        self._train = {batch_id: self._draw(self._train_rng) for batch_id in self.train_batches}

    # -- the data-object protocol ----------------------------------------------------------
    def zero_one_error(self, batch: Batch, predictions: Any) -> float:
        """The fraction of sequences of ``batch`` that are wrong.

        A step is wrong when, for linear outputs, ``|prediction - target| > 0.04``; for logistic
        outputs, prediction > 0.5 (z > 0) disagrees with target > 0.5; for softmax outputs, the
        argmax of the prediction differs from the target's. A sequence is wrong when one of its
        scored steps is: the last step of a variable-length problem (where its mask is 1), the
        last step of random_permutation, the last N steps of memorization.
        """
        xp = namespace_of(predictions, batch.targets, batch.mask)
        targets = batch.targets
        check_prediction_shape(predictions, targets)
        if self.output == "linear":
            wrong = xp.any(xp.abs(predictions - targets) > REAL_VALUED_TOLERANCE, axis=-1)
        else:
            wrong = wrong_positions(predictions, targets,
                                    "threshold" if self.output == "logistic" else "argmax")
        if self.problem in LENGTH_PERCENT:           # variable length: scored where mask is 1
            if batch.mask is None:
                raise ValueError(f"{self.problem} needs the batch's mask to find the last step "
                                 f"of each sequence, got a batch without a mask")
            sequence_wrong = xp.any(wrong & (batch.mask > 0), axis=0)
        elif self.problem == "random_permutation":
            sequence_wrong = wrong[-1, ...]
        else:
            n_symbols = MEMORIZATION_SIZES[self.problem][0]
            sequence_wrong = xp.any(wrong[-n_symbols:, ...], axis=0)
        # the count over the number, in Python: a float32 mean makes 10 wrong of 1,000
        # 0.0099999998, which would pass for "fewer than 1%"
        return int(xp.sum(xp.astype(sequence_wrong, xp.int32))) / sequence_wrong.shape[0]

    # -- exact resumes ---------------------------------------------------------------------
    def _settings(self) -> dict:
        return {"problem": self.problem, "T": self.T, "batch_size": self.batch_size,
                "n_train_batches": len(self.train_batches), "seed": self.seed}

    def __repr__(self) -> str:
        return (f"Pathological({self.problem!r}, T={self.T}, batch_size={self.batch_size}, "
                f"n_train_batches={len(self.train_batches)}, "
                f"n_test_batches={len(self.test_batches)}, seed={self.seed})")
