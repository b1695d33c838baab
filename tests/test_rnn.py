"""RNN specifics: float junk in the padding, the release's initialization, the input check,
κ's default by hidden nonlinearity, and the conventions the recurrent models share. The
derivative checks every model shares are in test_model_derivatives.py; the structural damping
term, dtype/device, float32, other backends and the shared refusals, for every recurrent model,
in test_recurrent.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

import arrayhf

from helpers import host, relative_error
from problems import rnn_problem

EXACT_TOLERANCE = 1e-12


def test_padding_leaves_the_gauss_newton_product_unchanged(xp, device):
    """rnn.md, "Masks and variable-length sequences": padding changes neither L, ∇L nor G. Two
    copies of a batch padded with different junk past each sequence's end give the same G v."""
    problem = rnn_problem("tanh-linear-last-step", xp, device)
    lengths = problem.host["mask"].argmax(axis=0) + 1
    steps = np.arange(problem.host["inputs"].shape[0])[:, None]
    padding = steps >= lengths
    assert padding.any()
    products = []
    for junk in (5.0, -3.0):
        inputs = problem.host["inputs"].copy()
        inputs[padding] = junk
        batch = arrayhf.Batch(problem.to_xp(inputs), problem.batch.targets, problem.batch.mask)
        products.append(problem.model.gauss_newton_product(problem.params, batch, problem.v))
    assert relative_error(products[0], products[1]) <= EXACT_TOLERANCE
    assert relative_error(products[0], problem.model.gauss_newton_product(
        problem.params, problem.batch, problem.v)) <= EXACT_TOLERANCE


def test_padding_past_the_end_of_a_sequence_changes_nothing(xp, device):
    problem = rnn_problem("tanh-linear-last-step", xp, device)
    mask = problem.host["mask"]
    lengths = mask.argmax(axis=0) + 1
    noisy = problem.host["inputs"].copy()
    steps = np.arange(noisy.shape[0])[:, None]
    noisy[steps >= lengths] = 5.0  # garbage in the padding
    changed = arrayhf.Batch(problem.to_xp(noisy), problem.batch.targets, problem.batch.mask)
    model, params = problem.model, problem.params
    assert relative_error(model.loss(params, changed), model.loss(params, problem.batch)) == 0.0
    assert relative_error(model.gradient(params, changed),
                          model.gradient(params, problem.batch)) <= EXACT_TOLERANCE


def test_release_initialization(xp, device):
    """The 2011 demo: 15 nonzero incoming weights per unit from N(0, 1/15), W_xh × 0.25, and
    h_0 from N(0, 1/15)."""
    model = arrayhf.RNN(40, 100, 30, biases=False)
    blocks = {k: host(b) for k, b in model.unflatten(model.init(0, xp=xp, device=device)).items()}
    assert list(blocks) == ["W_xh", "W_hh", "W_hy", "h_0"]
    for name in ("W_xh", "W_hh", "W_hy"):
        assert (np.count_nonzero(blocks[name], axis=0) == 15).all(), name
    scale = 1 / math.sqrt(15)
    assert abs(blocks["W_hh"][blocks["W_hh"] != 0].std() - scale) < 0.02
    assert abs(blocks["W_xh"][blocks["W_xh"] != 0].std() - 0.25 * scale) < 0.01
    assert abs(blocks["h_0"].std() - scale) < 0.02 and (blocks["h_0"] != 0).all()


def test_bad_input_is_refused(xp, device):
    """Inputs [T, B, n_in] only (the shared refusals: test_recurrent.py)."""
    problem = rnn_problem("tanh-linear-last-step", xp, device)
    flat_inputs = problem.to_xp(np.zeros((7, 2)))    # [T, B] but float: not character ids
    with pytest.raises(TypeError, match=r"expected inputs of shape \[\*, \*\] of an integer "
                                        r"dtype \(character ids\) or \[\*, \*, 2\] of dtype "
                                        r"\S*float64, got \[7, 2\]"):
        problem.model.forward(problem.params, flat_inputs)


@pytest.mark.parametrize("model_class", ["RNN", "MRNN"])
def test_structural_curvature_follows_the_hidden_nonlinearity(model_class):
    """κ of (S2) by default: the release's 1/4 for tanh, 1 (the matching loss's own curvature)
    for logistic, relu and linear units; a given κ is kept, and config() records the one used."""
    def build(**arguments):
        if model_class == "RNN":
            return arrayhf.RNN(2, 3, 1, **arguments)
        return arrayhf.MRNN(2, 3, 2, 1, **arguments)

    defaults = {name: build(hidden=name).structural_curvature
                for name in ("tanh", "logistic", "relu", "linear")}
    assert defaults == {"tanh": 0.25, "logistic": 1.0, "relu": 1.0, "linear": 1.0}
    assert build(hidden="logistic", structural_curvature=0.5).config()[
        "structural_curvature"] == 0.5
    with pytest.raises(ValueError, match="structural_curvature"):
        build(structural_curvature=-1.0)


def test_recurrent_models_share_output_names_keyword_order_and_description():
    """One convention for every recurrent model: output blocks W_hy, b_y; sizes, then hidden,
    output, the model's options, biases, structural_curvature; config() and repr() from it."""
    rnn = arrayhf.RNN(3, 4, 2, "logistic", "softmax")
    mrnn = arrayhf.MRNN(3, 4, 5, 2, "logistic", "softmax", "release")
    for model in (rnn, mrnn):
        assert {"W_hy", "b_y"} <= set(model.layout.names)
        assert model.hidden.name == "logistic" and model.output.name == "softmax"
        rebuilt = arrayhf.models.from_config(model.config())
        assert rebuilt.config() == model.config() and repr(rebuilt) == repr(model)
    assert repr(mrnn) == ("MRNN(3, 4, 5, 2, hidden='logistic', output='softmax', "
                          "variant='release', biases=True, structural_curvature=1.0)")
    assert list(rnn.config()) == ["class", "n_inputs", "n_hidden", "n_outputs", "hidden",
                                  "output", "biases", "structural_curvature"]


def test_mrnn_output_blocks_sit_where_the_old_names_did():
    """The rename W_oh, b_o -> W_hy, b_y moved nothing in θ: a checkpoint saved before it loads
    unchanged. The offsets are those of the pre-0.2 layout [W_fx, W_fh, W_hf, W_hx, b_h, W_oh,
    b_o, h_0] with n_in 7, n_h 5, n_f 3, n_out 2."""
    layout = arrayhf.MRNN(7, 5, 3, 2).layout
    offsets = dict(zip(layout.names, np.cumsum([0] + [int(np.prod(layout.shapes[name]))
                                                      for name in layout.names])))
    assert (offsets["W_hy"], offsets["b_y"], offsets["h_0"]) == (21 + 15 + 15 + 35 + 5,
                                                                 91 + 10, 101 + 2)
