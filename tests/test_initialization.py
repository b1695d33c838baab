"""The sparse initialization gives each unit min(n_nonzero, fan-in) nonzero incoming weights
(initialization.py; derivations/fnn.md, rnn.md, mrnn.md and gru.md, "Initialization"): a unit
with fewer than 15 inputs gets all of them, not 15."""

from __future__ import annotations

import numpy as np
import pytest

import arrayhf
from arrayhf import initialization

from helpers import host


def test_sparse_weights_give_each_unit_min_n_nonzero_fan_in_nonzeros():
    rng = np.random.default_rng(0)
    for fan_in, expected in ((4, 4), (15, 15), (40, 15)):
        weights = initialization.sparse_weights(rng, fan_in, 7)
        assert (np.count_nonzero(weights, axis=0) == expected).all(), fan_in


# a model with blocks of fan-in below and above 15, and each weight block's fan-in
SMALL_FAN_IN = {
    "fnn": (lambda: arrayhf.FNN([4, 20, 3], hidden="tanh", output="linear"),
            {"W_1": 4, "W_2": 20}),
    "rnn": (lambda: arrayhf.RNN(3, 8, 2), {"W_xh": 3, "W_hh": 8, "W_hy": 8}),
    "mrnn": (lambda: arrayhf.MRNN(5, 20, 6, 2), None),
    "gru": (lambda: arrayhf.GRU(3, 6, 2), {"W_hy": 6}),
}


@pytest.mark.parametrize("name", list(SMALL_FAN_IN))
def test_models_give_each_unit_min_15_fan_in_nonzero_weights(xp, device, name):
    build, fan_ins = SMALL_FAN_IN[name]
    model = build()
    blocks = {k: host(b) for k, b in model.unflatten(model.init(0, xp=xp, device=device)).items()}
    if fan_ins is None:  # every 2-d block of the MRNN: its rows are the fan-in
        fan_ins = {k: block.shape[0] for k, block in blocks.items() if block.ndim == 2}
    assert min(fan_ins.values()) < 15
    for block, fan_in in fan_ins.items():
        counts = np.count_nonzero(blocks[block], axis=0)
        assert (counts == min(15, fan_in)).all(), (block, counts)
