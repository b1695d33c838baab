"""RNN specifics: the structural damping term against finite differences and torch.func, its single
pass equal to the separate products, initialization, variable-length sequences, dtype/device and
bad input. The shared derivative checks are in test_model_derivatives.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

import arrayhf
from arrayhf import backend
from oracles import core as oracle

from helpers import assert_matches, finite_difference_jacobian, host, other_backend, relative_error
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


def structural_penalty(problem, theta, anchor):
    """D_n(θ) = κ/N Σ d_f(a(θ); aⁿ), d_f(a; aⁿ) = ψ(a) − ψ(aⁿ) − f(aⁿ)(a − aⁿ), with ψ' = f:
    ψ = log cosh for tanh, softplus for logistic (structural-damping.md, section 2), written
    from its definition on the host, aⁿ = a(θ_n) held fixed."""
    pre = host_pre_activations(problem, theta)
    if problem.model.hidden.name == "tanh":
        potential, nonlinearity = (lambda a: np.logaddexp(a, -a)), np.tanh
    else:
        potential, nonlinearity = (lambda a: np.logaddexp(0.0, a)), (lambda a: 1 / (1 + np.exp(-a)))
    divergence = potential(pre) - potential(anchor) - nonlinearity(anchor) * (pre - anchor)
    return problem.model.structural_curvature / output_count(problem) * divergence.sum()


def test_structural_matrix_is_the_exact_hessian_of_the_penalty(problem):
    """(S1)-(S2): S is the Hessian of D_n at θ_n, not only its Gauss-Newton matrix (the dropped
    term vanishes because ∇_a D_n = 0 there). uᵀSv against central second differences of D_n."""
    theta, u, v = (problem.host[name] for name in ("params", "u", "v"))
    anchor = host_pre_activations(problem, theta)
    penalty = lambda point: structural_penalty(problem, point, anchor)  # noqa: E731

    def second_difference(step):   # uᵀ∇²D v + O(step²)
        return (penalty(theta + step * (u + v)) - penalty(theta + step * (u - v))
                - penalty(theta - step * (u - v)) + penalty(theta - step * (u + v))) / (4 * step**2)

    # Richardson's extrapolation cancels the step² term: the error is O(step⁴) plus rounding
    second_difference = (4 * second_difference(1e-4) - second_difference(2e-4)) / 3
    product = problem.model.structural_damping_product(problem.params, problem.batch, problem.v)
    u_s_v = float(np.sum(u * host(product)))
    assert abs(u_s_v - second_difference) <= FD_TOLERANCE * abs(u_s_v)
    assert abs(penalty(theta)) <= 1e-15 and u_s_v != 0.0


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


def test_same_seed_same_parameters_and_loss_on_another_backend(xp, device):
    """θ and the loss from one seed on the backend under test and on another (numpy; torch in
    the numpy session): θ equal, losses to 1e-12."""
    other = other_backend(xp)
    assert backend.name_of(other) != backend.name_of(xp)
    problem = rnn_problem("tanh-softmax-no-biases", xp, device)
    reference = rnn_problem("tanh-softmax-no-biases", other, None)
    np.testing.assert_array_equal(host(problem.model.init(4, xp=xp, device=device)),
                                  host(reference.model.init(4, xp=other)))
    expected = float(reference.model.loss(reference.params, reference.batch))
    assert abs(float(problem.model.loss(problem.params, problem.batch)) - expected) \
        <= 1e-12 * expected


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


@pytest.mark.parametrize("model_class", ["RNN", "MRNN"])
def test_the_fused_damped_product_checks_v_in_every_recurrent_model(xp, device, model_class):
    """The structural path of gauss_newton_product (models/recurrent.py) checks v like θ: a v of
    another dtype or length is refused and named, in both models (they once differed)."""
    if model_class == "RNN":
        problem = rnn_problem("tanh-linear-last-step", xp, device)
    else:
        from problems import mrnn_problem
        problem = mrnn_problem("paper-ids-softmax-lengths", xp, device)
    model, params, batch = problem.model, problem.params, problem.batch
    narrow = backend.from_host(problem.host["v"], xp, dtype="float32", device=device)
    short = problem.to_xp(problem.host["v"][:-1])
    for damping in (0.0, STRUCTURAL):
        with pytest.raises(TypeError, match="v"):
            model.gauss_newton_product(params, batch, narrow, structural_damping=damping)
        with pytest.raises(ValueError, match=r"expected v of shape"):
            model.gauss_newton_product(params, batch, short, structural_damping=damping)
        with pytest.raises(ValueError, match=r"expected v of shape"):
            model.structural_damping_product(params, batch, short)


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
