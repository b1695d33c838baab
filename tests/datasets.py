"""Small seeded data sets for the optimizer tests."""

from __future__ import annotations

import numpy as np

from arrayhf import backend
from arrayhf.data.arrays import ArrayDataset
from arrayhf.data.batch import Batch

N_FEATURES, N_CLASSES = 5, 3


def blob_arrays(rng, centers, n):
    labels = rng.integers(0, N_CLASSES, n)
    return centers[labels] + rng.standard_normal((n, N_FEATURES)), np.eye(N_CLASSES)[labels]


def blobs(xp, device=None, *, seed=0, n_train=600, n_test=300, batch_size=200, dtype=None):
    """Three Gaussian classes in 5-D: a small classification problem."""
    rng = np.random.default_rng(seed)
    centers = 2.0 * rng.standard_normal((N_CLASSES, N_FEATURES))
    train = blob_arrays(rng, centers, n_train)
    test = blob_arrays(rng, centers, n_test)

    def to_xp(array):
        return backend.from_host(array, xp, dtype=dtype, device=device)

    return ArrayDataset(*(to_xp(a) for a in (*train, *test)), batch_size=batch_size)


class FreshBlobs:
    """Like ``blobs``, but ``forget()`` draws new training data from a seeded Generator, as the
    2011 release's pathological problems do: resuming must restore that Generator's state."""

    def __init__(self, xp, device=None, *, seed=0, n_batches=2, batch_size=150):
        self.xp, self.device = xp, device
        self.rng = np.random.default_rng(seed)
        self.centers = 2.0 * self.rng.standard_normal((N_CLASSES, N_FEATURES))
        self.batch_size = batch_size
        self.train_batches = list(range(n_batches))
        self.test_batches = [("test", 0)]
        self._test = self._draw()
        self._train = {i: self._draw() for i in self.train_batches}

    def _draw(self):
        inputs, targets = blob_arrays(self.rng, self.centers, self.batch_size)
        return Batch(backend.from_host(inputs, self.xp, device=self.device),
                     backend.from_host(targets, self.xp, device=self.device))

    def batch(self, batch_id):
        return self._test if batch_id == ("test", 0) else self._train[batch_id]

    def forget(self):
        self._train = {i: self._draw() for i in self.train_batches}

    def zero_one_error(self, batch, predictions):
        from arrayhf.data.arrays import zero_one_error

        return zero_one_error(batch, predictions, "argmax")

    def get_state(self):
        return {"rng": self.rng.bit_generator.state,
                "train": {str(i): [backend.to_numpy(b.inputs).tolist(),
                                   backend.to_numpy(b.targets).tolist()]
                          for i, b in self._train.items()}}

    def set_state(self, state):
        self.rng.bit_generator.state = state["rng"]
        self._train = {int(i): Batch(backend.from_host(np.array(x), self.xp, device=self.device),
                                     backend.from_host(np.array(t), self.xp, device=self.device))
                       for i, (x, t) in state["train"].items()}
