"""The LSTM (torch.nn.LSTM's equations): κ of each gate unit; the forward pass against
torch.nn.LSTM + Linear and the conversions both ways; initialization; description and
checkpoints; its own refusals; and a short HF run. The gradient, R-forward and G v checks shared by
every model (central differences, torch.func, the Gauss-Newton identities) run on its
configurations in test_model_derivatives.py; the structural damping term (against finite
differences, the torch.func oracle of oracles/lstm.py and second differences of the penalty
itself), ids against their one-hot rows, padding, float32, dtype/device, other backends and the
shared refusals, for every recurrent model, in test_recurrent.py (problems.CASES "lstm/...").

Tolerance (float64): ≤ 1e-12 against torch's own modules.
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
from oracles import lstm as oracle_lstm

from helpers import host, relative_error
from problems import LSTMProblem

EXACT_TOLERANCE = 1e-12


# -- structural damping over the gate units ------------------------------------------------
def test_structural_curvature_is_each_units_own_by_default():
    """(LS18): κ 1 for the logistic gates i, f, o and 1/4 for the tanh candidate g by default;
    a given κ is the candidate's, the gates get 4κ (as the GRU's); config() records κ; negative
    values are refused."""
    assert LSTM(2, 3, 1).unit_curvatures() == (1.0, 1.0, 0.25, 1.0)
    assert LSTM(2, 3, 1, structural_curvature=0.5).unit_curvatures() == (2.0, 2.0, 0.5, 2.0)
    assert LSTM(2, 3, 1).config()["structural_curvature"] == 0.25
    with pytest.raises(ValueError, match="structural_curvature"):
        LSTM(2, 3, 1, structural_curvature=-1.0)


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
    """What only the LSTM refuses (the shared refusals: test_recurrent.py): a θ of the wrong
    length to convert, a ``hidden`` nonlinearity, an infinite forget-gate bias; ids just out of
    range."""
    problem = LSTMProblem("ids-softmax-lengths", xp, device)
    model, params = problem.model, problem.params
    for bad in ([[0, 4]], [[-1, 2]]):
        with pytest.raises(ValueError, match=r"expected character ids in \[0, 4\)"):
            model.forward(params, backend.from_host(np.array(bad), xp, device=device))
    wrong_length = rf"expected params of shape \[{model.n_params}\], got \[5\]"
    with pytest.raises(ValueError, match=wrong_length):
        model.to_torch(problem.to_xp(np.zeros(5)))
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
