"""The autodiff baseline of the benchmarks: the same networks written in torch, their Gauss-Newton
product and gradient computed by ``torch.func`` (used only in tests and benchmarks, never in the
library).

The networks are written as an autodiff user would write them *and* with arrayhf's own batching
(input and output products over all time steps at once, one recurrent product per step, character
ids as row gathers), so that the comparison measures hand-derived passes against autodiff, not two
ways of ordering the matrix products.

Per-step slices are taken with ``unbind``: the backward pass of ``x[step]`` writes its gradient
into a zero tensor of x's full size, once per step; ``unbind``'s backward stacks the T slices once.

Gauss-Newton product by autodiff, with the forward pass cached as arrayhf caches it::

    z, pullback = vjp(net, θ)                    # once per curvature batch (the "cache")
    G v = pullback(H_L · jvp(net, θ; v))         # per product: one jvp (forward + tangent),
                                                 # the loss Hessian by forward-over-reverse,
                                                 # one pullback (reverse pass)
"""

from __future__ import annotations

import math

import torch
from torch.func import grad, jvp, vjp

from oracles.core import loss_of_net_output  # the tests' torch losses, from their definitions

ACTIVATIONS = {"tanh": torch.tanh, "logistic": torch.sigmoid, "relu": torch.relu,
               "linear": lambda a: a}


def unflatten(layout, params) -> dict:
    """Views of a flat torch vector as arrayhf's named blocks (the layout's order and shapes)."""
    blocks, offset = {}, 0
    for name in layout.names:
        shape = layout.shapes[name]
        size = math.prod(shape)
        blocks[name] = params[offset:offset + size].reshape(shape)
        offset += size
    return blocks


def input_part(model, blocks, inputs, weights: str, bias: str):
    """x W [+ b] over all time steps at once (the bias where the model has biases)."""
    part = inputs @ blocks[weights]
    return part + blocks[bias] if model.biases else part


def net_output(model, blocks, hiddens):
    """z = h W_hy [+ b_y] over all time steps at once, from the per-step hidden states."""
    output = torch.stack(hiddens) @ blocks["W_hy"]
    return output + blocks["b_y"] if model.biases else output


def fnn_net_output(model, params, inputs):
    """z of arrayhf.FNN ``model``: a_l = h_{l−1} W_l + b_l, h_l = f_l(a_l), z = a_L."""
    blocks = unflatten(model.layout, params)
    hidden = inputs
    for layer, nonlinearity in enumerate(model.hidden, start=1):
        hidden = ACTIVATIONS[nonlinearity.name](hidden @ blocks[f"W_{layer}"]
                                                + blocks[f"b_{layer}"])
    last = model.n_layers
    return hidden @ blocks[f"W_{last}"] + blocks[f"b_{last}"]


def unrolled(model, blocks, step_inputs, cell, state):
    """z of a recurrence over time: ``cell(x_t, state) -> (h_t, state)`` on each step's slice of
    ``step_inputs`` (unbind, not step_inputs[step]: see above), from the initial ``state``."""
    hiddens = []
    for step_input in step_inputs.unbind(0):
        hidden, state = cell(step_input, state)
        hiddens.append(hidden)
    return net_output(model, blocks, hiddens)


def rnn_net_output(model, params, inputs):
    """z of arrayhf.RNN ``model`` on time-major inputs [T, B, n_in]."""
    blocks = unflatten(model.layout, params)
    activation = ACTIVATIONS[model.hidden.name]

    def cell_step(step_input, hidden):
        hidden = activation(step_input + hidden @ blocks["W_hh"])
        return hidden, hidden

    return unrolled(model, blocks, input_part(model, blocks, inputs, "W_xh", "b_h"), cell_step,
                    blocks["h_0"].expand(inputs.shape[1], -1))


def mrnn_net_output(model, params, ids):
    """z of a paper-variant arrayhf.MRNN on character ids [T, B] (SMH11: factors
    (x W_fx) ⊙ (h W_fh), a = factors W_hf + x W_hx + b_h, with x W as a row gather)."""
    if model.variant != "paper":
        raise ValueError("the benchmark's autodiff MRNN is the paper variant")
    blocks = unflatten(model.layout, params)
    activation = ACTIVATIONS[model.hidden.name]
    input_factors = blocks["W_fx"][ids]                                   # [T, B, F]
    step_inputs = blocks["W_hx"][ids]                                     # [T, B, H]
    if model.biases:
        step_inputs = step_inputs + blocks["b_h"]
    hidden = blocks["h_0"].expand(ids.shape[1], -1)
    hiddens = []
    for step_factors, step_input in zip(input_factors.unbind(0), step_inputs.unbind(0)):
        factors = step_factors * (hidden @ blocks["W_fh"])
        hidden = activation(factors @ blocks["W_hf"] + step_input)
        hiddens.append(hidden)
    return net_output(model, blocks, hiddens)


def lstm_net_output(model, params, inputs):
    """z of arrayhf.LSTM ``model`` (torch.nn.LSTM's equations) on float inputs [T, B, n_in]."""
    blocks = unflatten(model.layout, params)
    n = model.n_hidden

    def cell_step(step_input, state):
        hidden, cell = state
        pre = step_input + hidden @ blocks["W_h"]
        input_gate, forget_gate = torch.sigmoid(pre[:, :n]), torch.sigmoid(pre[:, n:2 * n])
        candidate, output_gate = torch.tanh(pre[:, 2 * n:3 * n]), torch.sigmoid(pre[:, 3 * n:])
        cell = forget_gate * cell + input_gate * candidate
        hidden = output_gate * torch.tanh(cell)
        return hidden, (hidden, cell)

    initial = (blocks["h_0"].expand(inputs.shape[1], -1),
               blocks["c_0"].expand(inputs.shape[1], -1))
    return unrolled(model, blocks, input_part(model, blocks, inputs, "W_x", "b"), cell_step,
                    initial)


def gru_net_output(model, params, inputs):
    """z of arrayhf.GRU ``model`` (torch.nn.GRU's equations) on float inputs [T, B, n_in]."""
    blocks = unflatten(model.layout, params)
    n = model.n_hidden

    def cell_step(step_input, hidden):
        hidden_part = hidden @ blocks["W_h"]
        if model.biases:
            hidden_part = hidden_part + blocks["b_h"]
        reset = torch.sigmoid(step_input[:, :n] + hidden_part[:, :n])
        update = torch.sigmoid(step_input[:, n:2 * n] + hidden_part[:, n:2 * n])
        candidate = torch.tanh(step_input[:, 2 * n:] + reset * hidden_part[:, 2 * n:])
        hidden = (1 - update) * candidate + update * hidden
        return hidden, hidden

    return unrolled(model, blocks, input_part(model, blocks, inputs, "W_x", "b_x"), cell_step,
                    blocks["h_0"].expand(inputs.shape[1], -1))


def module_net_output(model, params, inputs):
    """z of arrayhf.LSTM or arrayhf.GRU ``model`` computed by torch's own ``torch.nn.LSTM`` /
    ``torch.nn.GRU`` module (fused kernels where torch has them), its weights θ's blocks through
    ``torch.func.functional_call``: what an autodiff user of the torch module differentiates."""
    blocks = unflatten(model.layout, params)
    kind = type(model).__name__
    module_class = torch.nn.LSTM if kind == "LSTM" else torch.nn.GRU
    module = module_class(model.n_inputs, model.n_hidden, device="meta")
    weights = {"weight_ih_l0": blocks["W_x"].T, "weight_hh_l0": blocks["W_h"].T}
    if kind == "LSTM":
        weights["bias_ih_l0"] = blocks["b"]
        weights["bias_hh_l0"] = torch.zeros_like(blocks["b"])
        initial = (blocks["h_0"].expand(1, inputs.shape[1], -1).contiguous(),
                   blocks["c_0"].expand(1, inputs.shape[1], -1).contiguous())
    else:
        weights["bias_ih_l0"], weights["bias_hh_l0"] = blocks["b_x"], blocks["b_h"]
        initial = blocks["h_0"].expand(1, inputs.shape[1], -1).contiguous()
    hiddens, _ = torch.func.functional_call(module, weights, (inputs, initial))
    return hiddens @ blocks["W_hy"] + blocks["b_y"]


def gauss_newton_product(net_output, params, targets, mask, output: str):
    """G v by torch.func with the forward pass and its pullback computed once (see the module
    docstring); returns the function v -> G v."""
    net_value, pullback = vjp(net_output, params)

    def loss_gradient(z):
        return grad(lambda zz: loss_of_net_output(output, zz, targets, mask))(z)

    def product(v):
        _, jacobian_v = jvp(net_output, (params,), (v,))
        _, curvature_output = jvp(loss_gradient, (net_value,), (jacobian_v,))
        return pullback(curvature_output)[0]

    return product


def gradient(net_output, params, targets, mask, output: str):
    """∇L(θ) by torch.func (forward and reverse pass)."""
    return grad(lambda p: loss_of_net_output(output, net_output(p), targets, mask))(params)
