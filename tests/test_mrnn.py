"""The multiplicative RNN, both variants (SMH11's and the 2011 release's): narrow ids with a
large alphabet, the input checks of its own, its description, layouts and initialization. The
gradient, R-forward and G v checks shared by every model run on its configurations in
test_model_derivatives.py; the structural damping term, ids against their one-hot rows, padding,
dtype/device, float32, other backends and the shared refusals, for every recurrent model, in
test_recurrent.py (problems.CASES "mrnn/...").
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from arrayhf import backend
from arrayhf.models.mrnn import MRNN

from helpers import host
from problems import MRNN_CONFIGURATIONS as CONFIGURATIONS
from problems import MRNNProblem


def test_narrow_ids_with_a_large_alphabet(xp, device):
    """uint8 ids and 300 symbols: the range check compares only with scalars uint8 can hold."""
    model = MRNN(300, 3, 2, 4)
    params = model.init(0, xp=xp, device=device)
    ids = np.array([[0, 255], [7, 200]])
    z_uint8 = model.forward(params, backend.from_host(ids.astype("uint8"), xp, device=device))
    z_int64 = model.forward(params, backend.from_host(ids, xp, device=device))
    np.testing.assert_array_equal(host(z_uint8.net_output), host(z_int64.net_output))


def test_bad_input_is_refused(xp, device):
    """Flat ids and integer rows (the refusals every recurrent model shares, and those of every
    model that reads ids: test_recurrent.py); the MRNN's own settings."""
    problem = MRNNProblem("paper-ids-softmax-lengths", xp, device)
    model, params = problem.model, problem.params
    ids = problem.host["inputs"]
    shapes = r"expected inputs of shape \[\*, \*\] of an integer dtype \(character ids\) or " \
             r"\[\*, \*, 4\] of dtype \S*float64, got "
    with pytest.raises(ValueError, match=shapes + r"\[30\]"):
        model.forward(params, problem.inputs_to_xp(ids.reshape(-1)))     # flat ids
    with pytest.raises(TypeError, match="expected inputs of a real floating dtype"):
        model.forward(params, problem.inputs_to_xp(ids[..., None] * np.ones(4, dtype=int)))
    with pytest.raises(ValueError, match="variant"):
        MRNN(4, 4, 3, 4, variant="mrnn")
    with pytest.raises(ValueError, match="n_factors"):
        MRNN(4, 4, 0, 4)


# -- configuration and initialization ------------------------------------------------------
def test_config_rebuilds_the_model():
    for arguments, _, _ in CONFIGURATIONS.values():
        model = MRNN(**arguments)
        config = model.config()
        assert config["class"] == "MRNN"
        rebuilt = MRNN(**{k: v for k, v in config.items() if k != "class"})
        assert rebuilt.config() == config
        assert rebuilt.layout.names == model.layout.names


def test_block_layout_of_both_variants():
    paper = MRNN(7, 5, 3, 2)
    assert paper.layout.names == ["W_fx", "W_fh", "W_hf", "W_hx", "b_h", "W_hy", "b_y", "h_0"]
    assert [paper.layout.shapes[k] for k in ("W_fx", "W_fh", "W_hf", "W_hx")] == \
        [(7, 3), (5, 3), (3, 5), (7, 5)]
    release = MRNN(7, 5, 3, 2, variant="release", biases=False)
    assert release.layout.names == ["W_vf", "f_bias", "W_hf", "W_fh", "W_vh", "W_hy", "h_0"]
    assert [release.layout.shapes[k] for k in ("W_vf", "f_bias", "W_hf", "W_fh", "W_vh")] == \
        [(7, 3), (3,), (5, 3), (3, 5), (7, 5)]


@pytest.mark.parametrize("variant", ["paper", "release"])
def test_sparse_initialization(xp, device, variant):
    """15 nonzero incoming weights per unit from every weight block, N(0, 1/15); h_0 (and
    f_bias) from N(0, 1/15); b_h, b_y zero."""
    model = MRNN(40, 60, 50, 30, variant=variant)
    blocks = {k: host(b) for k, b in model.unflatten(model.init(0, xp=xp, device=device)).items()}
    scale = 1 / math.sqrt(15)
    for name, block in blocks.items():
        if block.ndim == 2:
            assert (np.count_nonzero(block, axis=0) == 15).all(), name
            assert abs(block[block != 0].std() - scale) < 0.03, name
    for name in ("h_0", "f_bias") if variant == "release" else ("h_0",):
        assert (blocks[name] != 0).all() and abs(blocks[name].std() - scale) < 0.06, name
    assert not blocks["b_h"].any() and not blocks["b_y"].any()
    dense = {k: host(b) for k, b in model.unflatten(
        model.init(0, xp=xp, device=device, scheme="dense")).items()}
    assert not dense["h_0"].any() and dense["W_hf"].all()
