"""RNN specifics: the structural damping term against finite differences and torch.func, its single
pass equal to the separate products, initialization, variable-length sequences, dtype/device and
bad input. The shared derivative checks are in test_model_derivatives.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

import arrayhf
from arrayhf import backend

import oracle
from helpers import assert_matches, finite_difference_jacobian, host, relative_error
from problems import RNN_CONFIGURATIONS, rnn_problem

FD_TOLERANCE = 1e-7
ORACLE_TOLERANCE = 1e-10
EXACT_TOLERANCE = 1e-12
STRUCTURAL = 0.7  # λμ in the tests


@pytest.fixture(params=list(RNN_CONFIGURATIONS))
def problem(request, xp, device):
    return rnn_problem(request.param, xp, device)


def output_count(problem):
    mask = problem.host["mask"]
    if mask is None:
        return float(np.prod(problem.host["targets"].shape[:-1]))
    return float(mask.sum())


def host_pre_activations(problem, params):
    """a_t written again with numpy from the model's blocks: the function whose Jacobian J_a the
    structural term uses."""
    blocks = {k: host(b) for k, b in problem.model.unflatten(problem.to_xp(params)).items()}
    inputs = problem.host["inputs"]
    hidden = np.broadcast_to(blocks["h_0"], (inputs.shape[1], blocks["h_0"].size))
    pres = []
    for step in range(inputs.shape[0]):
        pre = inputs[step] @ blocks["W_xh"] + hidden @ blocks["W_hh"] + blocks.get("b_h", 0.0)
        hidden = np.tanh(pre) if problem.model.hidden.name == "tanh" else 1 / (1 + np.exp(-pre))
        pres.append(pre)
    return np.stack(pres)


def test_structural_damping_product_matches_torch_func(problem):
    params, inputs, _, _, v = problem.tensors()
    expected = oracle.rnn_structural_product(problem.model.config(), params, inputs, v,
                                             output_count(problem))
    product = problem.model.structural_damping_product(problem.params, problem.batch, problem.v)
    assert relative_error(product, expected) <= ORACLE_TOLERANCE


def test_structural_damping_product_matches_finite_differences(problem):
    """S v = J_aᵀ Κ J_a v / N with J_a by central differences and Κ = κ f'(a)."""
    theta = problem.host["params"]
    jacobian = finite_difference_jacobian(lambda p: host_pre_activations(problem, p), theta)
    pre = host_pre_activations(problem, theta).reshape(-1)
    if problem.model.hidden.name == "tanh":
        slope = 1 - np.tanh(pre) ** 2
    else:
        slope = (1 / (1 + np.exp(-pre))) * (1 - 1 / (1 + np.exp(-pre)))
    weights = problem.model.structural_curvature * slope / output_count(problem)
    expected = jacobian.T @ (weights * (jacobian @ problem.host["v"]))
    product = problem.model.structural_damping_product(problem.params, problem.batch, problem.v)
    assert relative_error(product, expected) <= FD_TOLERANCE


def test_damped_product_in_one_pass_equals_the_two_products(problem):
    model, params, batch = problem.model, problem.params, problem.batch
    cache = model.forward(params, batch.inputs)
    combined = model.gauss_newton_product(params, batch, problem.v, cache,
                                          structural_damping=STRUCTURAL)
    separate = (model.gauss_newton_product(params, batch, problem.v, cache)
                + STRUCTURAL * model.structural_damping_product(params, batch, problem.v, cache))
    assert relative_error(combined, separate) <= EXACT_TOLERANCE
    generic = arrayhf.curvature.gauss_newton_product(model, params, batch, problem.v,
                                                     cache=cache, structural_damping=STRUCTURAL)
    assert relative_error(combined, generic) <= EXACT_TOLERANCE


def test_damped_product_matches_torch_func(problem):
    params, inputs, _, _, v = problem.tensors()
    *_, gauss_newton_v = problem.oracle()
    structural = oracle.rnn_structural_product(problem.model.config(), params, inputs, v,
                                               output_count(problem))
    product = problem.model.gauss_newton_product(problem.params, problem.batch, problem.v,
                                                 structural_damping=STRUCTURAL)
    assert relative_error(product, gauss_newton_v + STRUCTURAL * structural) <= ORACLE_TOLERANCE


def test_structural_term_is_symmetric_and_positive_semidefinite(problem):
    xp, model, params, batch = problem.xp, problem.model, problem.params, problem.batch
    cache = model.forward(params, batch.inputs)
    u_s_v = float(xp.sum(problem.u * model.structural_damping_product(params, batch, problem.v,
                                                                      cache)))
    v_s_u = float(xp.sum(problem.v * model.structural_damping_product(params, batch, problem.u,
                                                                      cache)))
    assert abs(u_s_v - v_s_u) <= EXACT_TOLERANCE * abs(u_s_v)
    rng = np.random.default_rng(2)
    for _ in range(10):
        v = problem.to_xp(rng.standard_normal(model.n_params))
        assert float(xp.sum(v * model.structural_damping_product(params, batch, v, cache))) >= 0


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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_outputs_keep_dtype_and_device(xp, device, dtype):
    problem = rnn_problem("tanh-softmax-no-biases", xp, device, dtype=dtype)
    model, params, batch = problem.model, problem.params, problem.batch
    expected = {"xp": xp, "dtype": problem.dtype, "device": device}
    cache = model.forward(params, batch.inputs)
    for result in (cache.net_output, cache.hiddens, model.loss(params, batch),
                   model.gradient(params, batch),
                   model.r_forward(params, problem.v, batch.inputs, cache),
                   model.gauss_newton_product(params, batch, problem.v, cache,
                                              structural_damping=STRUCTURAL),
                   model.init(3, xp=xp, dtype=dtype, device=device)):
        assert_matches(result, **expected)


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
    problem = rnn_problem("tanh-linear-last-step", xp, device)
    flat_inputs = problem.to_xp(np.zeros((7, 2)))
    with pytest.raises(ValueError, match=r"expected inputs of shape \[\*, \*, 2\], got \[7, 2\]"):
        problem.model.forward(problem.params, flat_inputs)
    wrong_mask = arrayhf.Batch(problem.batch.inputs, problem.batch.targets,
                               problem.to_xp(np.ones((7, 6))))
    with pytest.raises(ValueError, match=r"expected mask of shape \[7, 7\], got \[7, 6\]"):
        problem.model.loss(problem.params, wrong_mask)
    with pytest.raises(ValueError, match="n_hidden"):
        arrayhf.RNN(2, 0, 1)


def test_same_seed_same_loss_as_numpy(xp, device):
    problem = rnn_problem("tanh-softmax-no-biases", xp, device)
    reference = rnn_problem("tanh-softmax-no-biases", backend.namespace("numpy"), None)
    np.testing.assert_array_equal(host(problem.model.init(4, xp=xp, device=device)),
                                  host(reference.model.init(4)))
    expected = float(reference.model.loss(reference.params, reference.batch))
    assert abs(float(problem.model.loss(problem.params, problem.batch)) - expected) \
        <= 1e-12 * expected
