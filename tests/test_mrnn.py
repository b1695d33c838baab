"""The multiplicative RNN, both variants (SMH11's and the 2011 release's), with float and
character-id inputs, masks and variable lengths: the hand-derived passes against central finite
differences and the torch.func oracle, the structural damping term, ids against their one-hot
rows, the Gauss-Newton identities, dtype/device, bad input and initialization. The gradient,
R-forward and G v checks shared by every model run on these configurations in
test_model_derivatives.py.

Tolerances (float64) as in test_model_derivatives.py: ≤ 1e-7 against central differences, ≤ 1e-10
against torch.func, ≤ 1e-12 for identities exact in exact arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import arrayhf
from arrayhf import backend
from arrayhf.models.mrnn import MRNN

from helpers import assert_matches, host, other_backend, relative_error
from problems import MRNN_CONFIGURATIONS as CONFIGURATIONS
from problems import MRNN_ID_CONFIGURATIONS as ID_CONFIGURATIONS
from problems import MRNNProblem

FD_TOLERANCE = 1e-7
ORACLE_TOLERANCE = 1e-10
EXACT_TOLERANCE = 1e-12
STRUCTURAL = 0.7  # λμ in the tests

@pytest.fixture(params=list(CONFIGURATIONS))
def problem(request, xp, device):
    return MRNNProblem(request.param, xp, device)


# -- against central finite differences ----------------------------------------------------
# gradient, R-forward and G v against central differences and torch.func: the shared suite,
# tests/test_model_derivatives.py, runs them on these configurations (problems.CASES "mrnn/...").


def test_structural_damping_product_matches_torch_func(problem):
    product = problem.model.structural_damping_product(problem.params, problem.batch, problem.v)
    assert relative_error(product, problem.oracle_structural_product()) <= ORACLE_TOLERANCE


def test_damped_product_matches_torch_func(problem):
    *_, gauss_newton_v = problem.oracle()
    expected = gauss_newton_v + STRUCTURAL * problem.oracle_structural_product()
    product = problem.model.gauss_newton_product(problem.params, problem.batch, problem.v,
                                                 structural_damping=STRUCTURAL)
    assert relative_error(product, expected) <= ORACLE_TOLERANCE


# -- identities ----------------------------------------------------------------------------
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


def test_gauss_newton_and_structural_term_are_symmetric_and_positive_semidefinite(problem):
    """uᵀ(Av) = vᵀ(Au) and vᵀAv ≥ 0 for A = G, S and G + λμS; vᵀGv = (Jv)ᵀ H_L (Jv)."""
    xp, model, params, batch = problem.xp, problem.model, problem.params, problem.batch
    cache = model.forward(params, batch.inputs)
    products = {
        "G": lambda w: model.gauss_newton_product(params, batch, w, cache),
        "S": lambda w: model.structural_damping_product(params, batch, w, cache),
        "G + λμS": lambda w: model.gauss_newton_product(params, batch, w, cache,
                                                        structural_damping=STRUCTURAL),
    }
    rng = np.random.default_rng(1)
    directions = [problem.to_xp(rng.standard_normal(model.n_params)) for _ in range(5)]
    for name, product in products.items():
        u_a_v = float(xp.sum(problem.u * product(problem.v)))
        v_a_u = float(xp.sum(problem.v * product(problem.u)))
        assert abs(u_a_v - v_a_u) <= EXACT_TOLERANCE * abs(u_a_v), name
        for v in directions:
            assert float(xp.sum(v * product(v))) >= 0.0, name
    for v in directions:
        jacobian_v = model.r_forward(params, v, batch.inputs, cache)
        weighted = float(xp.sum(jacobian_v * model.output.hessian_vector(
            cache.net_output, jacobian_v, batch.mask, targets=batch.targets)))
        curvature = float(xp.sum(v * products["G"](v)))
        assert abs(curvature - weighted) <= EXACT_TOLERANCE * abs(weighted)


# -- character ids -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ID_CONFIGURATIONS)
def test_ids_give_exactly_what_their_one_hot_rows_give(xp, device, name):
    """A row gather is the product with a one-hot row, and the one-hot product of the backward
    pass is the same product: loss, R-forward, gradient and (G + λμS)v agree bit for bit."""
    ids = MRNNProblem(name, xp, device)
    dense = MRNNProblem(name, xp, device, one_hot=True)
    assert ids.batch.inputs.ndim == 2 and dense.batch.inputs.ndim == 3
    model, params = ids.model, ids.params
    results = []
    for problem in (ids, dense):
        cache = model.forward(params, problem.batch.inputs)
        results.append([
            model.loss(params, problem.batch, cache),
            model.r_forward(params, ids.v, problem.batch.inputs, cache),
            model.gradient(params, problem.batch, cache),
            model.gauss_newton_product(params, problem.batch, ids.v, cache,
                                       structural_damping=STRUCTURAL),
        ])
    for from_ids, from_one_hot in zip(*results):
        np.testing.assert_array_equal(host(from_ids), host(from_one_hot))


@pytest.mark.parametrize("ids_dtype", ["uint8", "int16", "int32"])
def test_any_integer_dtype_of_ids(xp, device, ids_dtype):
    reference = MRNNProblem("release-ids-softmax-lengths-no-biases", xp, device)
    problem = MRNNProblem("release-ids-softmax-lengths-no-biases", xp, device,
                          ids_dtype=ids_dtype)
    assert problem.batch.inputs.dtype == getattr(xp, ids_dtype)
    model, params = problem.model, problem.params
    assert relative_error(model.loss(params, problem.batch),
                          model.loss(params, reference.batch)) == 0.0
    assert relative_error(model.gauss_newton_product(params, problem.batch, problem.v),
                          model.gauss_newton_product(params, reference.batch, problem.v)) == 0.0


def test_narrow_ids_with_a_large_alphabet(xp, device):
    """uint8 ids and 300 symbols: the range check compares only with scalars uint8 can hold."""
    model = MRNN(300, 3, 2, 4)
    params = model.init(0, xp=xp, device=device)
    ids = np.array([[0, 255], [7, 200]])
    z_uint8 = model.forward(params, backend.from_host(ids.astype("uint8"), xp, device=device))
    z_int64 = model.forward(params, backend.from_host(ids, xp, device=device))
    np.testing.assert_array_equal(host(z_uint8.net_output), host(z_int64.net_output))


def test_padding_past_the_end_of_a_sequence_changes_nothing(xp, device):
    problem = MRNNProblem("paper-ids-softmax-lengths", xp, device)
    padding = problem.host["mask"] == 0
    assert padding.any()
    junk = np.where(padding, (problem.host["inputs"] + 1) % problem.model.n_inputs,
                    problem.host["inputs"])
    changed = problem.with_inputs(junk)
    model, params = problem.model, problem.params
    assert relative_error(model.loss(params, changed), model.loss(params, problem.batch)) == 0.0
    assert relative_error(model.gradient(params, changed),
                          model.gradient(params, problem.batch)) <= EXACT_TOLERANCE
    assert relative_error(model.gauss_newton_product(params, changed, problem.v),
                          model.gauss_newton_product(params, problem.batch, problem.v)
                          ) <= EXACT_TOLERANCE


# -- dtype, device, bad input --------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["paper-ids-softmax-lengths", "release-float-logistic-every-step"])
def test_outputs_keep_dtype_and_device(xp, device, dtype, name):
    problem = MRNNProblem(name, xp, device, dtype=dtype)
    model, params, batch = problem.model, problem.params, problem.batch
    expected = {"xp": xp, "dtype": problem.dtype, "device": device}
    cache = model.forward(params, batch.inputs)
    for result in (cache.net_output, cache.hiddens, cache.factors, model.loss(params, batch),
                   model.gradient(params, batch),
                   model.r_forward(params, problem.v, batch.inputs, cache),
                   model.gauss_newton_product(params, batch, problem.v, cache,
                                              structural_damping=STRUCTURAL),
                   model.structural_damping_product(params, batch, problem.v, cache),
                   model.init(3, xp=xp, dtype=dtype, device=device)):
        assert_matches(result, **expected)


def test_float32_agrees_with_the_float64_oracle(xp, device):
    problem = MRNNProblem("release-ids-softmax-lengths-no-biases", xp, device, dtype="float32")
    loss, gradient, _, gauss_newton_v = problem.oracle()
    model, params, batch = problem.model, problem.params, problem.batch
    assert relative_error(model.loss(params, batch), loss) <= 1e-5
    assert relative_error(model.gradient(params, batch), gradient) <= 1e-4
    assert relative_error(model.gauss_newton_product(params, batch, problem.v),
                          gauss_newton_v) <= 1e-4


def test_bad_input_is_refused(xp, device):
    problem = MRNNProblem("paper-ids-softmax-lengths", xp, device)
    model, params, batch = problem.model, problem.params, problem.batch
    ids = problem.host["inputs"]
    for bad in (ids + 4, ids - 1):
        with pytest.raises(ValueError, match=r"expected character ids in \[0, 4\)"):
            model.loss(params, problem.with_inputs(bad))
    with pytest.raises(ValueError, match=r"expected character ids in \[0, 4\)"):
        model.forward(params, problem.inputs_to_xp(ids + 4))
    shapes = r"expected inputs of shape \[\*, \*\] of an integer dtype \(character ids\) or " \
             r"\[\*, \*, 4\] of dtype \S*float64, got "
    with pytest.raises(TypeError, match=shapes + r"\[6, 5\] of dtype \S*float64"):
        model.forward(params, problem.to_xp(ids))                         # float ids
    with pytest.raises(ValueError, match=shapes + r"\[6, 5, 3\]"):
        model.forward(params, problem.to_xp(np.zeros((6, 5, 3))))        # wrong n_inputs
    with pytest.raises(ValueError, match=shapes + r"\[30\]"):
        model.forward(params, problem.inputs_to_xp(ids.reshape(-1)))     # flat ids
    with pytest.raises(TypeError, match="expected inputs of a real floating dtype"):
        model.forward(params, problem.inputs_to_xp(ids[..., None] * np.ones(4, dtype=int)))
    with pytest.raises(TypeError, match=r"expected inputs of dtype \S*float64 \(that of params\)"):
        model.forward(params, backend.from_host(np.eye(4)[ids], xp, dtype="float32",
                                                device=device))
    with pytest.raises(ValueError, match=r"expected targets of shape \[6, 5, 4\], got \[6, 4, 4\]"):
        model.loss(params, arrayhf.Batch(batch.inputs, batch.targets[:, :4, :]))
    with pytest.raises(ValueError, match=r"expected mask of shape \[6, 5\], got \[6, 4\]"):
        model.loss(params, arrayhf.Batch(batch.inputs, batch.targets, batch.mask[:, :4]))
    cache = model.forward(params, batch.inputs)
    with pytest.raises(ValueError, match=r"expected delta_net_output of shape \[6, 5, 4\]"):
        model.backprop(params, batch.inputs, cache, batch.targets[:, :4, :])
    with pytest.raises(ValueError, match=r"expected v of shape \[\d+\], got \[3\]"):
        model.gauss_newton_product(params, batch, params[:3])
    with pytest.raises(ValueError, match="variant"):
        MRNN(4, 4, 3, 4, variant="mrnn")
    with pytest.raises(ValueError, match="n_factors"):
        MRNN(4, 4, 0, 4)
    with pytest.raises(ValueError, match="structural_curvature"):
        MRNN(4, 4, 3, 4, structural_curvature=-1.0)


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


def test_same_seed_same_parameters_and_loss_on_another_backend(xp, device):
    """The session's backend against a different one (helpers.other_backend): the same seed gives
    the same θ bit for bit and the same loss to 1e-12."""
    other = other_backend(xp)
    assert backend.name_of(other) != backend.name_of(xp)
    for name in ("paper-ids-softmax-lengths", "release-float-logistic-every-step"):
        problem = MRNNProblem(name, xp, device)
        reference = MRNNProblem(name, other, None)
        for scheme in ("sparse", "dense"):
            np.testing.assert_array_equal(
                host(problem.model.init(4, xp=xp, device=device, scheme=scheme)),
                host(reference.model.init(4, scheme=scheme)))
        expected = float(reference.model.loss(reference.params, reference.batch))
        assert abs(float(problem.model.loss(problem.params, problem.batch)) - expected) \
            <= 1e-12 * expected
