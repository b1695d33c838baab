"""The contracts of arrayhf.protocols: every model and data set of the library satisfies them, and
an object that lacks a method does not."""

from __future__ import annotations

import numpy as np

import arrayhf
from arrayhf.protocols import CurvatureOperatorModel, HFDataset, HFModel, ResumableDataset

from datasets import blobs


def test_every_model_satisfies_the_model_protocol():
    models = [arrayhf.FNN([3, 4, 2]), arrayhf.RNN(3, 4, 2), arrayhf.MRNN(3, 4, 2, 3),
              arrayhf.MRNN(3, 4, 2, 3, variant="release"), arrayhf.LSTM(3, 4, 2),
              arrayhf.GRU(3, 4, 2)]
    for model in models:
        assert isinstance(model, HFModel), type(model).__name__
        assert isinstance(model, CurvatureOperatorModel), type(model).__name__


def test_every_data_set_satisfies_the_data_set_protocol(xp, device):
    text = arrayhf.Text("the quick brown fox jumps over the lazy dog " * 20, T=10,
                        batch_size=4, n_train_batches=1, n_test_batches=1, warmup=2, xp=xp,
                        device=device)
    pathological = arrayhf.Pathological("addition", T=10, batch_size=4, n_train_batches=1,
                                        n_test_batches=1, xp=xp, device=device)
    for dataset in (blobs(xp, device), text, pathological):
        assert isinstance(dataset, HFDataset), type(dataset).__name__
    for dataset in (blobs(xp, device), text, pathological):
        assert isinstance(dataset, ResumableDataset), type(dataset).__name__


def test_an_object_without_the_methods_is_not_a_model_or_data_set():
    class Incomplete:
        output = None
        n_params = 3

        def forward(self, params, inputs):
            return None

    assert not isinstance(Incomplete(), HFModel)
    assert not isinstance(np.zeros(3), HFDataset)
