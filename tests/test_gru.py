"""The GRU (torch.nn.GRU's equations, derivations/gru.md): its structural damping term against
torch.func, finite differences and the penalty's own second differences; the forward pass against
torch.nn.GRU + Linear; the conversions to and from torch; ids against their one-hot rows; padding;
dtype/device; bad input; initialization; and a short HF run.

The gradient, R-forward (J v) and G v against central differences and torch.func, and the
Gauss-Newton identities, run on these configurations in the shared suite
(tests/test_model_derivatives.py, problems.CASES "gru/..."). Tolerances (float64) as there: ≤ 1e-7
against central differences, ≤ 1e-10 against torch.func, ≤ 1e-12 for identities exact in exact
arithmetic and for the forward pass against torch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import arrayhf
from arrayhf import backend
from arrayhf.interop.torch_gru import from_torch
from arrayhf.models.gru import GRU
from oracles import core as oracle
from oracles import gru as oracle_gru

from helpers import assert_matches, finite_difference_jacobian, host, other_backend, relative_error
from problems import GRU_CONFIGURATIONS, GRU_ID_CONFIGURATIONS, GRUProblem

FD_TOLERANCE = 1e-7
ORACLE_TOLERANCE = 1e-10
EXACT_TOLERANCE = 1e-12
STRUCTURAL = 0.7  # λμ in the tests


@pytest.fixture(params=list(GRU_CONFIGURATIONS))
def problem(request, xp, device):
    return GRUProblem(request.param, xp, device)


def oracle_pre_activations(problem, params):
    """a = [a^r, a^ζ, a^n] of every step [T, B, 3n_h] on the host, from the oracle's equations."""
    _, inputs, *_ = problem.tensors()
    pre, _ = oracle_gru.gru_pre_activations_and_net_output(problem.model.config(),
                                                          oracle.tensor(params), inputs)
    return pre.numpy()


# -- structural damping (GR19), (GR20) -------------------------------------------------------
def test_structural_damping_product_matches_torch_func(problem):
    product = problem.model.structural_damping_product(problem.params, problem.batch, problem.v)
    assert relative_error(product, problem.oracle_structural_product()) <= ORACLE_TOLERANCE


def test_structural_damping_product_matches_finite_differences(problem):
    """S v = J_aᵀ Κ J_a v / N with J_a by central differences of a(θ) and Κ of (GR19):
    4κ σ(a)(1 − σ(a)) on the gates, κ (1 − tanh² a) on the candidate."""
    theta = problem.host["params"]
    jacobian = finite_difference_jacobian(lambda p: oracle_pre_activations(problem, p), theta)
    pre = oracle_pre_activations(problem, theta)
    gates = 2 * problem.model.n_hidden
    logistic = 1 / (1 + np.exp(-pre[..., :gates]))
    curvature = np.concatenate([4 * logistic * (1 - logistic),
                                1 - np.tanh(pre[..., gates:]) ** 2], axis=-1)
    weights = problem.model.structural_curvature * curvature.reshape(-1) / problem.output_count
    expected = jacobian.T @ (weights * (jacobian @ problem.host["v"]))
    product = problem.model.structural_damping_product(problem.params, problem.batch, problem.v)
    assert relative_error(product, expected) <= FD_TOLERANCE


def test_structural_matrix_is_the_exact_hessian_of_the_penalty(problem):
    """(GR19): S is the Hessian of D_n (each gated unit's matching loss on its pre-activation) at
    θ_n. uᵀSv against central second differences of D_n, with Richardson's extrapolation."""
    theta, u, v = (problem.host[name] for name in ("params", "u", "v"))
    _, inputs, *_ = problem.tensors()
    config = problem.model.config()
    anchor = torch.as_tensor(oracle_pre_activations(problem, theta))

    def penalty(point):
        return float(oracle_gru.gru_structural_penalty(config, oracle.tensor(point), inputs,
                                                       anchor, problem.output_count))

    def second_difference(step):   # uᵀ∇²D v + O(step²)
        return (penalty(theta + step * (u + v)) - penalty(theta + step * (u - v))
                - penalty(theta - step * (u - v)) + penalty(theta - step * (u + v))) / (4 * step**2)

    extrapolated = (4 * second_difference(1e-4) - second_difference(2e-4)) / 3
    product = problem.model.structural_damping_product(problem.params, problem.batch, problem.v)
    u_s_v = float(np.sum(u * host(product)))
    assert abs(u_s_v - extrapolated) <= FD_TOLERANCE * abs(u_s_v)
    assert abs(penalty(theta)) <= 1e-15 and u_s_v != 0.0


def test_damped_product_matches_torch_func(problem):
    *_, gauss_newton_v = problem.oracle()
    expected = gauss_newton_v + STRUCTURAL * problem.oracle_structural_product()
    product = problem.model.gauss_newton_product(problem.params, problem.batch, problem.v,
                                                 structural_damping=STRUCTURAL)
    assert relative_error(product, expected) <= ORACLE_TOLERANCE


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
    """uᵀ(Av) = vᵀ(Au) and vᵀAv ≥ 0 for A = G, S and G + λμS; vᵀSv = (J_a v)ᵀ Κ (J_a v) / N."""
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
    weights = model._structural_weights(xp, batch, cache)
    for v in directions:
        _, r_pre = model._r_forward(params, v, batch.inputs, cache, xp=xp, with_pre=True)
        weighted = float(xp.sum(weights * r_pre * r_pre))
        assert abs(float(xp.sum(v * products["S"](v))) - weighted) <= EXACT_TOLERANCE * weighted


def test_zero_structural_curvature_switches_the_term_off(xp, device):
    problem = GRUProblem("float-linear-random-no-biases", xp, device)
    model = GRU(2, 3, 2, biases=False, structural_curvature=0.0)
    product = model.structural_damping_product(problem.params, problem.batch, problem.v)
    assert float(problem.xp.max(problem.xp.abs(product))) == 0.0


# -- torch.nn.GRU ----------------------------------------------------------------------------
def torch_modules(n_inputs=4, n_hidden=3, n_outputs=4, bias=True, seed=0,
                  dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    gru = torch.nn.GRU(n_inputs, n_hidden, bias=bias, dtype=dtype)
    head = torch.nn.Linear(n_hidden, n_outputs, bias=bias, dtype=dtype)
    with torch.no_grad():   # weights of a trained size, not torch's ±1/√n_h only
        for parameter in [*gru.parameters(), *head.parameters()]:
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=dtype))
    initial = torch.randn(1, 1, n_hidden, generator=generator, dtype=dtype)
    return gru, head, initial


def torch_net_output(gru, head, initial, inputs):
    """z of torch.nn.GRU + Linear on time-major float inputs, h_0 expanded over the batch."""
    with torch.no_grad():
        states, _ = gru(inputs, initial.expand(1, inputs.shape[1], -1).contiguous())
        return head(states)


@pytest.mark.parametrize("bias", [True, False])
def test_forward_pass_is_torch_gru_and_linear(xp, device, bias):
    """The net output on the backend under test equals torch.nn.GRU + Linear's with the
    converted weights (float64, ≤ 1e-12), for float inputs and for ids (their one-hot rows)."""
    gru, head, initial = torch_modules(bias=bias)
    model, params = from_torch(gru, head, initial, xp=xp, device=device)
    rng = np.random.default_rng(3)
    inputs = rng.standard_normal((5, 3, 4))   # the shapes of the "ids-softmax-lengths" problem
    ids = rng.integers(0, 4, (5, 3))
    for given, dense in ((inputs, inputs), (ids, np.eye(4)[ids])):
        moved = backend.from_host(given, xp, device=device)
        expected = torch_net_output(gru, head, initial, oracle.tensor(dense))
        net_output = model.forward(params, moved).net_output
        assert relative_error(net_output, expected.numpy()) <= EXACT_TOLERANCE


def test_gates_have_the_logistic_s_absolute_accuracy(xp, device):
    """(GR2) computes σ(a) as ½ tanh(a/2) + ½ (gru.md, "The logistic through tanh"): within a few
    ulps of 1 of the exact σ, also where |a| is large (θ × 30 here: |a| up to ~100)."""
    problem = GRUProblem("float-logistic-every-step-kappa-1", xp, device)
    large = 30 * problem.host["params"]
    cache = problem.model.forward(problem.to_xp(large), problem.batch.inputs)
    gate_pres = oracle_pre_activations(problem, large)[..., :2 * problem.model.n_hidden]
    assert np.abs(gate_pres).max() > 40
    exact = torch.sigmoid(torch.as_tensor(gate_pres)).numpy()
    gates = np.stack([host(step) for step in cache.gate_steps])
    assert np.abs(gates - exact).max() <= 4 * np.finfo(np.float64).eps


def test_to_torch_then_from_torch_is_the_identity(xp, device):
    """θ → modules → θ gives θ bit for bit (float64 and float32), and the modules run as the
    model does; the modules' dtype is θ's."""
    for name in GRU_CONFIGURATIONS:
        problem = GRUProblem(name, xp, device)
        gru, head, initial = problem.model.to_torch(problem.params)
        assert tuple(initial.shape) == (1, 1, problem.model.n_hidden)
        assert gru.weight_ih_l0.dtype == torch.float64
        model, params = from_torch(gru, head, initial, output=problem.model.output,
                                   structural_curvature=problem.model.structural_curvature,
                                   xp=xp, device=device)
        assert model.config() == problem.model.config()
        np.testing.assert_array_equal(host(params), problem.host["params"])
        dense = oracle.dense_inputs(model.config(),
                                        oracle.inputs_tensor(problem.host["inputs"]))
        expected = model.forward(params, problem.batch.inputs).net_output
        assert relative_error(torch_net_output(gru, head, initial, dense).numpy(),
                              expected) <= EXACT_TOLERANCE
    narrow = backend.from_host(problem.host["params"], xp, dtype="float32", device=device)
    gru, head, initial = problem.model.to_torch(narrow)
    assert gru.weight_hh_l0.dtype == head.weight.dtype == initial.dtype == torch.float32
    _, back = from_torch(gru, head, initial, xp=xp, dtype="float32", device=device)
    np.testing.assert_array_equal(host(back), host(narrow))


@pytest.mark.parametrize("bias", [True, False])
def test_from_torch_then_to_torch_gives_the_same_modules(bias):
    """modules → θ → modules: the same weights and h_0, and the same outputs; torch's global
    random state is left alone (the new modules are not initialized randomly first)."""
    gru, head, initial = torch_modules(bias=bias, seed=5)
    model, params = from_torch(gru, head, initial[0, 0], xp=backend.namespace("numpy"))
    for same_state in (initial, initial.numpy()[0], initial.reshape(-1).tolist()):
        np.testing.assert_array_equal(from_torch(gru, head, same_state,
                                                 xp=backend.namespace("numpy"))[1], params)
    state = torch.random.get_rng_state()
    new_gru, new_head, new_initial = model.to_torch(params)
    assert torch.equal(state, torch.random.get_rng_state())
    for old, new in ((gru, new_gru), (head, new_head)):
        old_state, new_state = old.state_dict(), new.state_dict()
        assert list(old_state) == list(new_state)
        assert all(torch.equal(old_state[key], new_state[key]) for key in old_state)
    assert torch.equal(new_initial, initial)
    inputs = torch.randn(5, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch_net_output(new_gru, new_head, new_initial, inputs),
                       torch_net_output(gru, head, initial, inputs))


def test_from_torch_refuses_other_modules():
    gru, head, _ = torch_modules()
    cases = [
        ((torch.nn.LSTM(4, 3), head), TypeError, "expected gru a torch.nn.GRU"),
        ((gru, torch.nn.GRU(3, 2)), TypeError, "expected head a torch.nn.Linear"),
        ((torch.nn.GRU(4, 3, num_layers=2), head), ValueError, "num_layers=1"),
        ((torch.nn.GRU(4, 3, bidirectional=True), head), ValueError, "bidirectional=False"),
        ((torch.nn.GRU(4, 3, batch_first=True), head), ValueError, "batch_first=False"),
        ((gru, torch.nn.Linear(5, 2)), ValueError, r"head.in_features = gru.hidden_size = 3"),
        ((gru, torch.nn.Linear(3, 2, bias=False)), ValueError, "biases on both"),
        ((gru, head, torch.zeros(1, 2, 3)), ValueError,
         r"expected initial_state a float array of shape \[3\], \[1, 3\] or \[1, 1, 3\]"),
        ((gru, head, torch.zeros(3, dtype=torch.int64)), ValueError, "initial_state"),
    ]
    for arguments, error, message in cases:
        with pytest.raises(error, match=message):
            from_torch(*arguments)


# -- character ids ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", GRU_ID_CONFIGURATIONS)
def test_ids_give_exactly_what_their_one_hot_rows_give(xp, device, name):
    """The row gather is the product with a one-hot row, and BPTT's product with the one-hot
    rows is the same product: loss, J v, gradient and (G + λμS) v agree bit for bit."""
    ids = GRUProblem(name, xp, device)
    dense = GRUProblem(name, xp, device, one_hot=True)
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
    reference = GRUProblem("ids-softmax-lengths", xp, device)
    problem = GRUProblem("ids-softmax-lengths", xp, device, ids_dtype=ids_dtype)
    assert problem.batch.inputs.dtype == getattr(xp, ids_dtype)
    model, params = problem.model, problem.params
    assert relative_error(model.gauss_newton_product(params, problem.batch, problem.v),
                          model.gauss_newton_product(params, reference.batch, problem.v)) == 0.0


def test_padding_past_the_end_of_a_sequence_changes_nothing(xp, device):
    """gru.md, "Masks and variable-length sequences": other junk ids in the padding leave L, ∇L
    and G v unchanged; S v, whose Κ has no mask (GR19), changes."""
    problem = GRUProblem("ids-softmax-lengths", xp, device)
    padding = problem.host["mask"] == 0
    assert padding.any()
    model, params = problem.model, problem.params
    for shift in (1, 2):
        junk = np.where(padding, (problem.host["inputs"] + shift) % model.n_inputs,
                        problem.host["inputs"])
        changed = problem.with_inputs(junk)
        assert relative_error(model.loss(params, changed),
                              model.loss(params, problem.batch)) == 0.0
        assert relative_error(model.gradient(params, changed),
                              model.gradient(params, problem.batch)) <= EXACT_TOLERANCE
        assert relative_error(model.gauss_newton_product(params, changed, problem.v),
                              model.gauss_newton_product(params, problem.batch, problem.v)
                              ) <= EXACT_TOLERANCE
        assert relative_error(model.structural_damping_product(params, changed, problem.v),
                              model.structural_damping_product(params, problem.batch, problem.v)
                              ) > 1e-6


# -- dtype, device, bad input ----------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_outputs_keep_dtype_and_device(xp, device, dtype):
    for name in ("ids-softmax-lengths", "float-logistic-every-step-kappa-1"):
        problem = GRUProblem(name, xp, device, dtype=dtype)
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


def test_float32_agrees_with_the_float64_oracle(xp, device):
    """float32 runs the same maths: within float32 rounding (1e-4 relative) of the oracle."""
    for name in GRU_CONFIGURATIONS:
        problem = GRUProblem(name, xp, device, dtype="float32")
        loss, gradient, _, gauss_newton_v = problem.oracle()
        model, params, batch = problem.model, problem.params, problem.batch
        assert relative_error(model.loss(params, batch), loss) <= 1e-5
        assert relative_error(model.gradient(params, batch), gradient) <= 1e-4
        assert relative_error(model.gauss_newton_product(params, batch, problem.v,
                                                         structural_damping=STRUCTURAL),
                              gauss_newton_v + STRUCTURAL * problem.oracle_structural_product()
                              ) <= 1e-4


def test_bad_input_is_refused(xp, device):
    problem = GRUProblem("ids-softmax-lengths", xp, device)
    model, params, batch = problem.model, problem.params, problem.batch
    ids = problem.host["inputs"]
    for bad in (ids + 4, ids - 1):
        with pytest.raises(ValueError, match=r"expected character ids in \[0, 4\)"):
            model.loss(params, problem.with_inputs(bad))
    shapes = r"expected inputs of shape \[\*, \*\] of an integer dtype \(character ids\) or " \
             r"\[\*, \*, 4\] of dtype \S*float64, got "
    with pytest.raises(TypeError, match=shapes + r"\[5, 3\] of dtype \S*float64"):
        model.forward(params, problem.to_xp(ids))                         # float ids
    with pytest.raises(ValueError, match=shapes + r"\[5, 3, 2\]"):
        model.forward(params, problem.to_xp(np.zeros((5, 3, 2))))        # wrong n_inputs
    with pytest.raises(TypeError, match=r"expected inputs of dtype \S*float64 \(that of params\)"):
        model.forward(params, backend.from_host(np.eye(4)[ids], xp, dtype="float32",
                                                device=device))
    with pytest.raises(ValueError, match=r"expected targets of shape \[5, 3, 4\], got \[5, 2, 4\]"):
        model.loss(params, arrayhf.Batch(batch.inputs, batch.targets[:, :2, :]))
    with pytest.raises(ValueError, match=r"expected mask of shape \[5, 3\], got \[5, 2\]"):
        model.loss(params, arrayhf.Batch(batch.inputs, batch.targets, batch.mask[:, :2]))
    with pytest.raises(ValueError, match=r"expected params of shape \[\d+\], got \[3\]"):
        model.forward(params[:3], batch.inputs)
    narrow = backend.from_host(problem.host["v"], xp, dtype="float32", device=device)
    for damping in (0.0, STRUCTURAL):
        with pytest.raises(TypeError, match="v"):
            model.gauss_newton_product(params, batch, narrow, structural_damping=damping)
        with pytest.raises(ValueError, match=r"expected v of shape \[\d+\], got \[3\]"):
            model.gauss_newton_product(params, batch, params[:3], structural_damping=damping)
    with pytest.raises(ValueError, match=r"expected params of shape"):
        model.to_torch(params[:3])


def test_bad_constructor_arguments_are_refused():
    with pytest.raises(ValueError, match="n_hidden"):
        GRU(2, 0, 1)
    with pytest.raises(ValueError, match="n_inputs"):
        GRU(2.5, 3, 1)
    with pytest.raises(ValueError, match="structural_curvature"):
        GRU(2, 3, 1, structural_curvature=-1.0)
    with pytest.raises(TypeError, match="biases"):
        GRU(2, 3, 1, biases=1)
    with pytest.raises(ValueError, match="unknown output"):
        GRU(2, 3, 1, output="tanh")
    with pytest.raises(TypeError, match="hidden"):
        GRU(2, 3, 1, hidden="tanh")   # the gates and candidate are torch.nn.GRU's, fixed


# -- description, layout, initialization ----------------------------------------------------
def test_config_layout_and_keyword_order():
    """Sizes, then output, biases, structural_curvature (the recurrent models' order, without
    hidden); blocks W_x, W_h, b_x, b_h, W_hy, b_y, h_0; config() rebuilds the model."""
    model = GRU(3, 4, 2, "softmax", False, 0.5)
    assert repr(model) == "GRU(3, 4, 2, output='softmax', biases=False, structural_curvature=0.5)"
    assert list(model.config()) == ["class", "n_inputs", "n_hidden", "n_outputs", "output",
                                    "biases", "structural_curvature"]
    rebuilt = arrayhf.models.from_config(model.config())
    assert rebuilt.config() == model.config() and repr(rebuilt) == repr(model)
    full = GRU(3, 4, 2)
    assert full.layout.names == ["W_x", "W_h", "b_x", "b_h", "W_hy", "b_y", "h_0"]
    assert [full.layout.shapes[name] for name in full.layout.names] == \
        [(3, 12), (4, 12), (12,), (12,), (4, 2), (2,), (4,)]
    assert model.layout.names == ["W_x", "W_h", "W_hy", "h_0"]
    assert full.structural_curvature == 0.25 and full.hidden.name == "tanh"


def test_initialization(xp, device):
    """W_x, W_h, b_x, b_h uniform on ±1/√n_h (torch's); W_hy 15 nonzero weights per output unit
    from N(0, 1/15); b_y and h_0 zero."""
    model = GRU(30, 64, 20)
    blocks = {k: host(b) for k, b in model.unflatten(model.init(0, xp=xp, device=device)).items()}
    bound = 1 / math.sqrt(64)
    for name in ("W_x", "W_h", "b_x", "b_h"):
        assert np.abs(blocks[name]).max() <= bound, name
        assert abs(blocks[name].std() - bound / math.sqrt(3)) < 0.1 * bound, name
    assert (np.count_nonzero(blocks["W_hy"], axis=0) == 15).all()
    assert abs(blocks["W_hy"][blocks["W_hy"] != 0].std() - 1 / math.sqrt(15)) < 0.03
    assert not blocks["b_y"].any() and not blocks["h_0"].any()


def test_same_seed_same_parameters_and_loss_on_another_backend(xp, device):
    """The backend under test against another (helpers.other_backend): the same seed gives the
    same θ bit for bit, and the same loss to 1e-12."""
    other = other_backend(xp)
    assert backend.name_of(other) != backend.name_of(xp)
    for name in ("ids-softmax-lengths", "float-logistic-every-step-kappa-1"):
        problem = GRUProblem(name, xp, device)
        reference = GRUProblem(name, other, None)
        np.testing.assert_array_equal(host(problem.model.init(4, xp=xp, device=device)),
                                      host(reference.model.init(4, xp=other)))
        expected = float(reference.model.loss(reference.params, reference.batch))
        assert abs(float(problem.model.loss(problem.params, problem.batch)) - expected) \
            <= 1e-12 * expected


# -- the optimizer ---------------------------------------------------------------------------
def test_a_short_hf_run_decreases_the_loss(xp, device):
    """The GRU plugs into HF: two iterations on the addition problem (T = 10), with structural
    damping, more than halve the training loss (to 0.09 of it, measured). Martens'
    preconditioner is refused (no per-case squared gradients for a recurrent model)."""
    dataset = arrayhf.Pathological("addition", T=10, batch_size=20, n_train_batches=1,
                                   n_test_batches=1, xp=xp, device=device)
    model = GRU(dataset.n_inputs, 3, dataset.n_outputs, output=dataset.output)
    with pytest.raises(ValueError, match="per_case_squared_gradient"):
        arrayhf.HF(model, dataset, preconditioner=True, progress=False)
    optimizer = arrayhf.HF(model, dataset, damping=1.0, max_cg_iter=8,
                           structural_damping_mu=0.1, progress=False)
    batch = dataset.batch(dataset.train_batches[0])
    before = float(model.loss(optimizer.params, batch))
    optimizer.run(2)
    after = float(model.loss(optimizer.params, batch))
    assert after < 0.5 * before, (before, after)


def test_arrayhf_from_torch_chooses_the_converter_by_the_module():
    """arrayhf.from_torch takes either gated module; anything else is refused by name."""
    torch.manual_seed(0)
    for module, model_class in ((torch.nn.GRU(3, 4), arrayhf.GRU),
                                (torch.nn.LSTM(3, 4), arrayhf.LSTM)):
        head = torch.nn.Linear(4, 2)
        model, params = arrayhf.from_torch(module, head)
        assert isinstance(model, model_class)
        rebuilt, rebuilt_head = model.to_torch(params)[:2]
        inputs = torch.randn(5, 2, 3)
        dtype = next(rebuilt.parameters()).dtype
        ours = rebuilt_head(rebuilt(inputs.to(dtype))[0]).to(torch.float32)
        assert torch.allclose(ours, head(module(inputs)[0]), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="expected a torch.nn.LSTM or torch.nn.GRU, got RNN"):
        arrayhf.from_torch(torch.nn.RNN(3, 4), torch.nn.Linear(4, 2))
