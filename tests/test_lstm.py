"""The LSTM (torch.nn.LSTM's equations) with float and character-id inputs, masks and variable
lengths: its structural damping term against finite differences, the torch.func oracle
(oracles/lstm.py) and second differences of the penalty itself; ids against their one-hot
rows; padding; float32; the forward pass against torch.nn.LSTM + Linear and the conversions both
ways; initialization across backends; bad input; and a short HF run. The gradient, R-forward and
G v checks shared by every model (central differences, torch.func, the Gauss-Newton identities)
run on these configurations in test_model_derivatives.py (problems.CASES "lstm/...").

Tolerances (float64) as in test_model_derivatives.py: ≤ 1e-7 against central differences, ≤ 1e-10
against torch.func, ≤ 1e-12 for identities exact in exact arithmetic and for torch's own modules.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import arrayhf
from arrayhf import backend, checkpoint
from arrayhf.hf.optimizer import HF
from arrayhf.interop.torch_lstm import from_torch
from arrayhf.models.lstm import LSTM
from oracles import core as oracle
from oracles import lstm as oracle_lstm

from helpers import (
    assert_matches,
    finite_difference_jacobian,
    host,
    other_backend,
    relative_error,
)
from problems import LSTM_CONFIGURATIONS as CONFIGURATIONS
from problems import LSTM_ID_CONFIGURATIONS as ID_CONFIGURATIONS
from problems import LSTMProblem

FD_TOLERANCE = 1e-7
ORACLE_TOLERANCE = 1e-10
EXACT_TOLERANCE = 1e-12
STRUCTURAL = 0.7  # λμ in the tests


@pytest.fixture(params=list(CONFIGURATIONS))
def problem(request, xp, device):
    return LSTMProblem(request.param, xp, device)


def host_pre_activations(problem, params):
    """a_t [T, B, 4n_h] at host θ, from the oracle's forward pass (evaluated, not differentiated):
    the function whose Jacobian J_a the structural term uses."""
    _, inputs, *_ = problem.tensors()
    pre, _ = oracle_lstm.lstm_pre_activations_and_net_output(
        problem.model.config(), oracle.tensor(params), inputs)
    return pre.numpy()


def gate_curvature_row(problem):
    n = problem.model.n_hidden
    return np.repeat(oracle_lstm.gate_curvatures(problem.model.config()), n)


# -- structural damping over the gate units ------------------------------------------------
def test_structural_damping_product_matches_torch_func(problem):
    product = problem.model.structural_damping_product(problem.params, problem.batch, problem.v)
    assert relative_error(product, problem.oracle_structural_product()) <= ORACLE_TOLERANCE


def test_structural_damping_product_matches_finite_differences(problem):
    """S v = J_aᵀ Κ J_a v / N with J_a by central differences and Κ = κ_u f_u'(a) (LS18):
    σ(1 − σ) on the i, f, o blocks, 1 − tanh² on the g block."""
    theta = problem.host["params"]
    jacobian = finite_difference_jacobian(lambda p: host_pre_activations(problem, p), theta)
    pre = host_pre_activations(problem, theta)
    n = problem.model.n_hidden
    logistic = 1 / (1 + np.exp(-pre))
    slope = logistic * (1 - logistic)
    slope[..., 2 * n:3 * n] = 1 - np.tanh(pre[..., 2 * n:3 * n]) ** 2
    weights = (gate_curvature_row(problem) * slope).reshape(-1) / problem.output_count
    expected = jacobian.T @ (weights * (jacobian @ problem.host["v"]))
    product = problem.model.structural_damping_product(problem.params, problem.batch, problem.v)
    assert relative_error(product, expected) <= FD_TOLERANCE


def structural_penalty(problem, theta, anchor):
    """D_n(θ) = Σ_u κ_u/N Σ d_u(a(θ); aⁿ), d(a; aⁿ) = ψ(a) − ψ(aⁿ) − f(aⁿ)(a − aⁿ) with ψ' = f:
    softplus for the logistic gates, log cosh for the tanh candidate (derivations/lstm.md,
    "Structural damping"), written from its definition on the host, aⁿ = a(θ_n) held fixed."""
    pre = host_pre_activations(problem, theta)
    n = problem.model.n_hidden
    candidate = np.zeros(pre.shape[-1], dtype=bool)
    candidate[2 * n:3 * n] = True
    potential = np.where(candidate, np.logaddexp(pre, -pre), np.logaddexp(0.0, pre))
    potential_n = np.where(candidate, np.logaddexp(anchor, -anchor), np.logaddexp(0.0, anchor))
    value_n = np.where(candidate, np.tanh(anchor), 1 / (1 + np.exp(-anchor)))
    divergence = potential - potential_n - value_n * (pre - anchor)
    return float((gate_curvature_row(problem) * divergence).sum()) / problem.output_count


def test_structural_matrix_is_the_exact_hessian_of_the_penalty(problem):
    """(LS18) with (S1): S is the Hessian of D_n at θ_n, not only its Gauss-Newton matrix (the
    dropped term vanishes because ∇_a D_n = 0 there). uᵀSv against central second differences
    of D_n, with Richardson's extrapolation."""
    theta, u, v = (problem.host[name] for name in ("params", "u", "v"))
    anchor = host_pre_activations(problem, theta)
    penalty = lambda point: structural_penalty(problem, point, anchor)  # noqa: E731

    def second_difference(step):   # uᵀ∇²D v + O(step²)
        return (penalty(theta + step * (u + v)) - penalty(theta + step * (u - v))
                - penalty(theta - step * (u - v)) + penalty(theta - step * (u + v))) / (4 * step**2)

    second_difference = (4 * second_difference(1e-4) - second_difference(2e-4)) / 3
    product = problem.model.structural_damping_product(problem.params, problem.batch, problem.v)
    u_s_v = float(np.sum(u * host(product)))
    assert abs(u_s_v - second_difference) <= FD_TOLERANCE * abs(u_s_v)
    assert abs(penalty(theta)) <= 1e-15 and u_s_v != 0.0


def test_damped_product_in_one_pass_matches_the_two_products_and_torch_func(problem):
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
    *_, gauss_newton_v = problem.oracle()
    expected = gauss_newton_v + STRUCTURAL * problem.oracle_structural_product()
    assert relative_error(combined, expected) <= ORACLE_TOLERANCE


def test_structural_term_and_damped_matrix_are_symmetric_and_positive_semidefinite(problem):
    xp, model, params, batch = problem.xp, problem.model, problem.params, problem.batch
    cache = model.forward(params, batch.inputs)
    products = {
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


def test_structural_curvature_is_each_units_own_by_default():
    """(LS18): κ 1 for the logistic gates i, f, o and 1/4 for the tanh candidate g by default;
    a given κ for all four; config() records what was given; negative values are refused."""
    assert LSTM(2, 3, 1).unit_curvatures() == (1.0, 1.0, 0.25, 1.0)
    assert LSTM(2, 3, 1, structural_curvature=0.5).unit_curvatures() == (0.5,) * 4
    assert LSTM(2, 3, 1).config()["structural_curvature"] is None
    with pytest.raises(ValueError, match="structural_curvature"):
        LSTM(2, 3, 1, structural_curvature=-1.0)


# -- character ids, padding, dtypes --------------------------------------------------------
@pytest.mark.parametrize("name", ID_CONFIGURATIONS)
def test_ids_give_exactly_what_their_one_hot_rows_give(xp, device, name):
    """A row gather is the product with a one-hot row, and the backward pass multiplies by the
    same one-hot rows: loss, R-forward, gradient and (G + λμS)v agree bit for bit."""
    ids = LSTMProblem(name, xp, device)
    dense = LSTMProblem(name, xp, device, one_hot=True)
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


@pytest.mark.parametrize("ids_dtype", ["uint8", "int32"])
def test_any_integer_dtype_of_ids(xp, device, ids_dtype):
    reference = LSTMProblem("ids-softmax-lengths", xp, device)
    problem = LSTMProblem("ids-softmax-lengths", xp, device, ids_dtype=ids_dtype)
    assert problem.batch.inputs.dtype == getattr(xp, ids_dtype)
    model, params = problem.model, problem.params
    assert relative_error(model.gauss_newton_product(params, problem.batch, problem.v),
                          model.gauss_newton_product(params, reference.batch, problem.v)) == 0.0


@pytest.mark.parametrize("inputs", ["ids", "one-hot"])
def test_padding_leaves_loss_gradient_and_gauss_newton_product_unchanged(xp, device, inputs):
    """Causality, as for the RNN (rnn.md, "Masks and variable-length sequences"): junk after a
    sequence's end changes neither L, ∇L nor G v."""
    problem = LSTMProblem("ids-softmax-lengths", xp, device, one_hot=inputs == "one-hot")
    padding = problem.host["mask"] == 0
    assert padding.any()
    model, params, batch = problem.model, problem.params, problem.batch
    ids = problem.host["inputs"] if inputs == "ids" else problem.host["inputs"].argmax(axis=-1)
    for shift in (1, 2):
        junk = np.where(padding, (ids + shift) % model.n_inputs, ids)
        if inputs == "one-hot":
            junk = np.eye(model.n_inputs)[junk]
        changed = problem.with_inputs(junk)
        assert relative_error(model.loss(params, changed), model.loss(params, batch)) == 0.0
        assert relative_error(model.gradient(params, changed),
                              model.gradient(params, batch)) <= EXACT_TOLERANCE
        assert relative_error(model.gauss_newton_product(params, changed, problem.v),
                              model.gauss_newton_product(params, batch, problem.v)) \
            <= EXACT_TOLERANCE


@pytest.mark.parametrize("name", ["ids-softmax-lengths", "float-linear-random-no-biases"])
def test_float32_agrees_with_the_float64_oracle(xp, device, name):
    """float32 runs the same maths: within float32 rounding of the float64 oracle."""
    problem = LSTMProblem(name, xp, device, dtype="float32")
    loss, gradient, jacobian_v, gauss_newton_v = problem.oracle()
    model, params, batch = problem.model, problem.params, problem.batch
    cache = model.forward(params, batch.inputs)
    assert relative_error(model.loss(params, batch, cache), loss) <= 1e-5
    assert relative_error(model.gradient(params, batch, cache), gradient) <= 1e-4
    assert relative_error(model.r_forward(params, problem.v, batch.inputs, cache),
                          jacobian_v) <= 1e-4
    assert relative_error(model.gauss_newton_product(params, batch, problem.v, cache),
                          gauss_newton_v) <= 1e-4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_outputs_keep_dtype_and_device(xp, device, dtype):
    problem = LSTMProblem("ids-softmax-lengths", xp, device, dtype=dtype)
    model, params, batch = problem.model, problem.params, problem.batch
    expected = {"xp": xp, "dtype": problem.dtype, "device": device}
    cache = model.forward(params, batch.inputs)
    for result in (cache.net_output, cache.hiddens, cache.slopes, model.loss(params, batch),
                   model.gradient(params, batch),
                   model.r_forward(params, problem.v, batch.inputs, cache),
                   model.gauss_newton_product(params, batch, problem.v, cache,
                                              structural_damping=STRUCTURAL),
                   model.init(3, xp=xp, dtype=dtype, device=device)):
        assert_matches(result, **expected)


# -- torch.nn.LSTM: the same equations, and the conversions --------------------------------
def torch_modules(n_inputs, n_hidden, n_outputs, *, bias=True, dtype=torch.float64, seed=0):
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(n_inputs, n_hidden, bias=bias, dtype=dtype)
    head = torch.nn.Linear(n_hidden, n_outputs, bias=bias, dtype=dtype)
    torch.random.set_rng_state(generator_state)
    return lstm, head


@pytest.mark.parametrize("bias", [True, False])
def test_forward_pass_equals_torch_lstm_and_linear(xp, device, bias):
    """z = head(lstm(x, (h_0, c_0))[0]) of torch's own modules, with from_torch's θ, to 1e-12
    (float64): the gate order i, f, g, o, the bias sum (LS19) and the initial states."""
    lstm, head = torch_modules(3, 4, 2, bias=bias)
    rng = np.random.default_rng(0)
    initial_state = tuple(torch.as_tensor(rng.standard_normal((1, 1, 4))) for _ in range(2))
    model, params = from_torch(lstm, head, initial_state, xp=xp, device=device)
    assert model.biases is bias and params.dtype == xp.float64
    inputs = rng.standard_normal((6, 5, 3))
    net_output = model.forward(params, backend.from_host(inputs, xp, device=device)).net_output
    expected = oracle_lstm.torch_modules_net_output(lstm, head, inputs, initial_state)
    assert relative_error(net_output, expected) <= EXACT_TOLERANCE


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("biases", [True, False])
def test_from_torch_after_to_torch_is_the_identity(xp, device, dtype, biases):
    """θ → modules → θ exactly (b in bias_ih, zeros in bias_hh), in θ's dtype; and modules →
    θ → modules compute the same outputs (the two biases summed: equal to rounding)."""
    model = LSTM(3, 4, 2, output="softmax", biases=biases)
    params = backend.from_host(np.random.default_rng(1).standard_normal(model.n_params), xp,
                               dtype=dtype, device=device)
    lstm, head, initial_state = model.to_torch(params)
    assert initial_state[0].shape == (1, 1, 4) and lstm.weight_ih_l0.dtype == getattr(torch, dtype)
    back_model, back = from_torch(lstm, head, initial_state, output="softmax", xp=xp,
                                  device=device)
    assert back_model.config() == model.config() and back.dtype == params.dtype
    np.testing.assert_array_equal(host(back), host(params))
    if dtype == "float64":
        original, original_head = torch_modules(3, 4, 2, bias=biases)
        converted, converted_head, state = LSTM.to_torch(*from_torch(original, original_head))
        inputs = np.random.default_rng(2).standard_normal((5, 3, 3))
        assert relative_error(
            oracle_lstm.torch_modules_net_output(converted, converted_head, inputs, state),
            oracle_lstm.torch_modules_net_output(original, original_head, inputs)
        ) <= EXACT_TOLERANCE


def test_from_torch_refuses_what_it_cannot_convert():
    lstm, head = torch_modules(3, 4, 2)
    refused = [
        (torch.nn.LSTM(3, 4, num_layers=2), head, ValueError, "num_layers=1, got 2"),
        (torch.nn.LSTM(3, 4, bidirectional=True), head, ValueError, "bidirectional=False"),
        (torch.nn.LSTM(3, 4, proj_size=2), head, ValueError, "proj_size=0, got 2"),
        (lstm, torch.nn.Linear(5, 2), ValueError, "in_features = hidden_size = 4, got 5"),
        (lstm, torch.nn.Linear(4, 2, bias=False), ValueError, "biases in both modules"),
        (torch.nn.GRU(3, 4), head, TypeError, "expected lstm a torch.nn.LSTM, got GRU"),
        (lstm, torch.nn.Identity(), TypeError, "expected head a torch.nn.Linear"),
    ]
    for module, output_layer, error, message in refused:
        with pytest.raises(error, match=message):
            from_torch(module, output_layer)
    with pytest.raises(ValueError, match=r"h_0 of shape \[1, 1, 4\].*got \[1, 3, 4\]"):
        from_torch(lstm, head, (torch.zeros(1, 3, 4), torch.zeros(1, 1, 4)))
    with pytest.raises(TypeError, match="a pair"):
        from_torch(lstm, head, torch.zeros(1, 1, 4))


# -- initialization, description, checkpoints ----------------------------------------------
def test_initialization_as_torch_with_an_open_forget_gate(xp, device):
    """W_x, W_h, b uniform in ±1/√n_h (torch's draw), b's f block + forget_bias, W_hy from
    N(0, 1/n_h), b_y, h_0 and c_0 zero."""
    n = 50
    model = LSTM(20, n, 3)
    blocks = {k: host(b) for k, b in model.unflatten(model.init(0, xp=xp, device=device)).items()}
    assert list(blocks) == ["W_x", "W_h", "b", "W_hy", "b_y", "h_0", "c_0"]
    bound = 1 / math.sqrt(n)
    for name in ("W_x", "W_h"):
        assert np.abs(blocks[name]).max() <= bound and np.abs(blocks[name]).max() > 0.95 * bound
    forget = blocks["b"][n:2 * n]
    others = np.concatenate([blocks["b"][:n], blocks["b"][2 * n:]])
    assert np.abs(forget - 1.0).max() <= bound and np.abs(others).max() <= bound
    assert abs(blocks["W_hy"].std() - bound) < 0.03
    assert not blocks["b_y"].any() and not blocks["h_0"].any() and not blocks["c_0"].any()
    shut = host(model.unflatten(model.init(0, xp=xp, device=device, forget_bias=0.0))["b"])
    np.testing.assert_array_equal(np.delete(shut, np.s_[n:2 * n]), others)
    np.testing.assert_allclose(forget - shut[n:2 * n], 1.0, rtol=1e-15)


def test_same_seed_same_parameters_and_loss_on_another_backend(xp, device):
    other = other_backend(xp)
    assert backend.name_of(other) != backend.name_of(xp)
    problem = LSTMProblem("ids-softmax-lengths", xp, device)
    reference = LSTMProblem("ids-softmax-lengths", other, None)
    np.testing.assert_array_equal(host(problem.model.init(4, xp=xp, device=device)),
                                  host(reference.model.init(4, xp=other)))
    expected = float(reference.model.loss(reference.params, reference.batch))
    assert abs(float(problem.model.loss(problem.params, problem.batch)) - expected) \
        <= 1e-12 * expected


def test_description_and_checkpoint_rebuild_the_same_model(tmp_path):
    """The recurrent models' convention: sizes, then output, biases, structural_curvature (no
    ``hidden``: the gates' nonlinearities are fixed); config() and repr() rebuild it, and a
    checkpoint loads it by name with arrayhf.load."""
    model = LSTM(3, 4, 2, "softmax", False, 0.5)
    assert list(model.config()) == ["class", "n_inputs", "n_hidden", "n_outputs", "output",
                                    "biases", "structural_curvature"]
    assert repr(model) == "LSTM(3, 4, 2, output='softmax', biases=False, structural_curvature=0.5)"
    params = model.init(0)
    checkpoint.save(tmp_path / "checkpoint.npz", {"params": backend.to_numpy(params)},
                    {"model": model.config(), "dtype": "float64"})
    loaded, loaded_params = arrayhf.load(tmp_path / "checkpoint.npz")
    assert isinstance(loaded, LSTM) and loaded.config() == model.config()
    np.testing.assert_array_equal(host(loaded_params), host(params))


# -- bad input -----------------------------------------------------------------------------
def test_bad_input_is_refused(xp, device):
    problem = LSTMProblem("ids-softmax-lengths", xp, device)
    model, params = problem.model, problem.params
    for bad in ([[0, 4]], [[-1, 2]]):
        with pytest.raises(ValueError, match=r"expected character ids in \[0, 4\)"):
            model.forward(params, backend.from_host(np.array(bad), xp, device=device))
    with pytest.raises(ValueError, match=r"\[\*, \*, 4\] of dtype .*float64, got \[6, 5, 3\]"):
        model.forward(params, problem.to_xp(np.zeros((6, 5, 3))))
    with pytest.raises(TypeError, match="of an integer dtype"):
        model.forward(params, problem.to_xp(np.zeros((6, 5))))
    wrong_targets = arrayhf.Batch(problem.batch.inputs, problem.to_xp(np.zeros((6, 5, 3))))
    with pytest.raises(ValueError, match=r"expected targets of shape \[6, 5, 4\]"):
        model.loss(params, wrong_targets)
    wrong_length = rf"expected params of shape \[{model.n_params}\], got \[5\]"
    with pytest.raises(ValueError, match=wrong_length):
        model.forward(problem.to_xp(np.zeros(5)), problem.batch.inputs)
    with pytest.raises(ValueError, match=wrong_length):
        model.to_torch(problem.to_xp(np.zeros(5)))
    constructors = [({"n_hidden": 0}, ValueError, "n_hidden"),
                    ({"output": "tanh"}, ValueError, "unknown output"),
                    ({"biases": 1}, TypeError, "biases a bool"),
                    ({"structural_curvature": math.nan}, ValueError, "structural_curvature")]
    for arguments, error, message in constructors:
        with pytest.raises(error, match=message):
            LSTM(**{"n_inputs": 2, "n_hidden": 3, "n_outputs": 1, **arguments})
    with pytest.raises(TypeError, match="hidden"):
        LSTM(2, 3, 1, hidden="tanh")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="forget_bias"):
        model.init(0, forget_bias=math.inf)


# -- HF ------------------------------------------------------------------------------------
def test_hf_lowers_the_loss_of_a_character_level_lstm(xp, device):
    """The LSTM plugs into HF: three iterations on character ids, with structural damping, take
    the test loss (nats per character) well below the start's, about log 15 (a uniform guess)."""
    text = "the cat sat on the mat. the dog sat on the log. " * 12
    data = arrayhf.Text(text, T=6, batch_size=16, n_train_batches=1, n_test_batches=1, warmup=2,
                        xp=xp, device=device)
    model = LSTM(data.n_inputs, 8, data.n_outputs, output=data.output)
    optimizer = HF(model, data, damping=0.01, max_cg_iter=15, structural_damping_mu=0.03,
                   progress=False)
    start = float(model.loss(optimizer.params, data.batch(data.test_batches[0])))
    optimizer.run(max_iterations=3)
    losses = [record["test_loss"] for record in optimizer.history]
    assert losses[-1] < 0.7 * start, (start, losses)   # measured on numpy: 2.74 -> 1.46
