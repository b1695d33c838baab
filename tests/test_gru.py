"""The GRU (torch.nn.GRU's equations, derivations/gru.md): vᵀSv as the weighted square of
R{a}; S v under junk padding; the forward pass against torch.nn.GRU + Linear; the conversions to
and from torch; its own refusals; description, layout and initialization; and a short HF run.

The gradient, R-forward (J v) and G v against central differences and torch.func, and the
Gauss-Newton identities, run on these configurations in the shared suite
(tests/test_model_derivatives.py, problems.CASES "gru/..."); the structural damping term (against
torch.func, finite differences and the penalty's own second differences), ids against their
one-hot rows, padding, dtype/device, float32, other backends and the shared refusals, for every
recurrent model, in test_recurrent.py. Tolerance (float64): ≤ 1e-12 for identities exact in exact
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

from helpers import host, relative_error
from problems import GRU_CONFIGURATIONS, GRUProblem

EXACT_TOLERANCE = 1e-12


def oracle_pre_activations(problem, params):
    """a = [a^r, a^ζ, a^n] of every step [T, B, 3n_h] on the host, from the oracle's equations."""
    _, inputs, *_ = problem.tensors()
    pre, _ = oracle_gru.gru_pre_activations_and_net_output(problem.model.config(),
                                                          oracle.tensor(params), inputs)
    return pre.numpy()


# -- structural damping (GR19), (GR20) -------------------------------------------------------
@pytest.fixture(params=list(GRU_CONFIGURATIONS))
def problem(request, xp, device):
    return GRUProblem(request.param, xp, device)


def test_structural_term_is_the_weighted_square_of_r_pre(problem):
    """vᵀSv = (J_a v)ᵀ Κ (J_a v) / N: the product against the model's own weights and R{a}."""
    xp, model, params, batch = problem.xp, problem.model, problem.params, problem.batch
    cache = model.forward(params, batch.inputs)
    rng = np.random.default_rng(1)
    directions = [problem.to_xp(rng.standard_normal(model.n_params)) for _ in range(5)]
    weights = model._structural_weights(xp, batch, cache)
    for v in directions:
        _, r_pre = model._r_forward(params, v, batch.inputs, cache, xp=xp, with_pre=True)
        weighted = float(xp.sum(weights * r_pre * r_pre))
        product = model.structural_damping_product(params, batch, v, cache)
        assert abs(float(xp.sum(v * product)) - weighted) <= EXACT_TOLERANCE * weighted


def test_junk_ids_in_the_padding_change_the_structural_term(xp, device):
    """gru.md, "Masks and variable-length sequences": other junk ids in the padding leave L, ∇L
    and G v unchanged (test_recurrent.py); S v, whose Κ has no mask (GR19), changes."""
    problem = GRUProblem("ids-softmax-lengths", xp, device)
    padding = problem.host["mask"] == 0
    assert padding.any()
    model, params = problem.model, problem.params
    for shift in (1, 2):
        junk = np.where(padding, (problem.host["inputs"] + shift) % model.n_inputs,
                        problem.host["inputs"])
        changed = problem.with_inputs(junk)
        assert relative_error(model.structural_damping_product(params, changed, problem.v),
                              model.structural_damping_product(params, problem.batch, problem.v)
                              ) > 1e-6


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


def test_bad_input_is_refused(xp, device):
    """What only the GRU refuses (the shared refusals: test_recurrent.py): a θ of the wrong
    length to convert, a ``hidden`` nonlinearity (the gates and candidate are torch.nn.GRU's,
    fixed)."""
    problem = GRUProblem("ids-softmax-lengths", xp, device)
    with pytest.raises(ValueError, match=r"expected params of shape"):
        problem.model.to_torch(problem.params[:3])
    with pytest.raises(TypeError, match="hidden"):
        GRU(2, 3, 1, hidden="tanh")


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
