"""The autodiff oracle: the same networks and losses written directly in torch, differentiated by
torch.func in float64. Used only by the tests and the benchmarks, never by the library; the
recurrent oracles share the block layout, the output layer and the structural product below.

Nothing here calls arrayhf's passes: the forward pass and the losses are written again from their
definitions (torch's own log_softmax, binary_cross_entropy_with_logits), so agreement to 1e-10 is
evidence that the hand-derived passes are right, not that a routine agrees with itself.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import grad, jvp, vjp

_ACTIVATIONS = {
    "tanh": torch.tanh,
    "logistic": torch.sigmoid,
    "relu": torch.relu,
    "linear": lambda a: a,
}


def tensor(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array, dtype=np.float64))


def fnn_net_output(layer_sizes, hidden_names, params: torch.Tensor, inputs: torch.Tensor):
    """z of an FNN whose flat parameters are W_1, b_1, …, W_L, b_L (W_l of shape [n_{l−1}, n_l])."""
    offset, hidden = 0, inputs
    n_layers = len(layer_sizes) - 1
    for layer in range(n_layers):
        fan_in, fan_out = layer_sizes[layer], layer_sizes[layer + 1]
        weights = params[offset:offset + fan_in * fan_out].reshape(fan_in, fan_out)
        offset += fan_in * fan_out
        bias = params[offset:offset + fan_out]
        offset += fan_out
        pre = hidden @ weights + bias
        hidden = _ACTIVATIONS[hidden_names[layer]](pre) if layer < n_layers - 1 else pre
    assert offset == params.numel()
    return hidden


def loss_of_net_output(output: str, z, targets, mask=None):
    """Mean over unmasked positions of the per-position loss summed over output units."""
    if output == "linear":
        per_position = 0.5 * ((z - targets) ** 2).sum(-1)
    elif output == "logistic":
        per_position = F.binary_cross_entropy_with_logits(z, targets, reduction="none").sum(-1)
    elif output == "softmax":
        per_position = -(targets * torch.log_softmax(z, dim=-1)).sum(-1)
    else:
        raise ValueError(output)
    weights = torch.ones_like(per_position) if mask is None else mask
    return (weights * per_position).sum() / weights.sum()


def loss_gradient_wrt_net_output(output, z, targets, mask=None):
    return grad(lambda net: loss_of_net_output(output, net, targets, mask))(z)


def loss_hessian_vector(output, z, u, targets, mask=None):
    """H_L u at z by forward-over-reverse."""
    return jvp(lambda net: loss_gradient_wrt_net_output(output, net, targets, mask), (z,), (u,))[1]


def oracle_products(net_output_fn, output, params, v, targets, mask=None):
    """(loss, gradient, J v, G v) of loss(net_output_fn(params)) by torch.func."""
    def loss_of_params(p):
        return loss_of_net_output(output, net_output_fn(p), targets, mask)

    loss_value = loss_of_params(params)
    gradient = grad(loss_of_params)(params)
    z, jacobian_v = jvp(net_output_fn, (params,), (v,))
    curvature_output = loss_hessian_vector(output, z, jacobian_v, targets, mask)
    _, pullback = vjp(net_output_fn, params)
    (gauss_newton_v,) = pullback(curvature_output)
    return loss_value, gradient, jacobian_v, gauss_newton_v


def cut_blocks(params, shapes):
    """The blocks of a flat parameter tensor, cut in the order of ``shapes`` ([(name, shape)]),
    every entry used once."""
    blocks, offset = {}, 0
    for name, shape in shapes:
        size = int(np.prod(shape))
        blocks[name] = params[offset:offset + size].reshape(shape)
        offset += size
    assert offset == params.numel()
    return blocks


def recurrent_blocks(config, params, cell_shapes, cell_biases, states=("h_0",)):
    """The blocks of a recurrent model's flat vector, in the layout every recurrent model uses:
    the cell's weights ``cell_shapes``, [its biases ``cell_biases``], W_hy, [b_y], then the
    initial ``states`` of n_h values each (biases only where ``config["biases"]``)."""
    n_h, n_out = config["n_hidden"], config["n_outputs"]
    shapes = list(cell_shapes)
    if config["biases"]:
        shapes += cell_biases
    shapes.append(("W_hy", (n_h, n_out)))
    if config["biases"]:
        shapes.append(("b_y", (n_out,)))
    shapes += [(name, (n_h,)) for name in states]
    return cut_blocks(params, shapes)


def stacked_and_net_output(config, blocks, pres, hiddens):
    """(the pre-activations stacked over time, z = h W_hy [+ b_y] of every step)."""
    z = torch.stack(hiddens) @ blocks["W_hy"]
    if config["biases"]:
        z = z + blocks["b_y"]
    return torch.stack(pres), z


def slope(function, pre):
    """f'(a) elementwise, by torch's own derivative of f."""
    return jvp(function, (pre,), (torch.ones_like(pre),))[1]


def structural_product(pre_activations, curvatures, params, v, count):
    """S v = J_aᵀ (Κ ⊙ J_a v) / N by torch.func: ``pre_activations(θ)`` gives a, and
    ``curvatures(a)`` Κ's diagonal at a."""
    pre, jacobian_v = jvp(pre_activations, (params,), (v,))
    _, pullback = vjp(pre_activations, params)
    return pullback(curvatures(pre) * jacobian_v / count)[0]


def rnn_blocks(config, params):
    """The RNN's blocks from its flat vector, in the layout order W_xh, W_hh, [b_h], W_hy, [b_y],
    h_0."""
    n_in, n_h = config["n_inputs"], config["n_hidden"]
    return recurrent_blocks(config, params, [("W_xh", (n_in, n_h)), ("W_hh", (n_h, n_h))],
                            [("b_h", (n_h,))])


def unit_recurrence(config, blocks, x, pre_activation):
    """(a [T, B, n_h], z [T, B, n_out]) of h_t = f(a_t), a_t = pre_activation(x_t, h_{t−1})
    [+ b_h], from h_0: the recurrence of the RNN and the MRNN, f = config["hidden"]."""
    activation = _ACTIVATIONS[config["hidden"]]
    hidden = blocks["h_0"].expand(x.shape[1], -1)
    pres, hiddens = [], []
    for step in range(x.shape[0]):
        pre = pre_activation(x[step], hidden)
        if config["biases"]:
            pre = pre + blocks["b_h"]
        hidden = activation(pre)
        pres.append(pre)
        hiddens.append(hidden)
    return stacked_and_net_output(config, blocks, pres, hiddens)


def net_output_of(pre_activations_and_net_output, config, params, inputs):
    """z alone of a model's ``pre_activations_and_net_output(config, θ, x) -> (a, z)``."""
    return pre_activations_and_net_output(config, params, inputs)[1]


def unit_structural_product(pre_activations_and_net_output, config, params, inputs, v, count):
    """S v = J_aᵀ (κ f'(a) ⊙ J_a v) / N by torch.func for the hidden pre-activations a of the RNN
    or the MRNN (``pre_activations_and_net_output(config, θ, x) -> (a, z)``), f' from torch's own
    derivative of f."""
    activation = _ACTIVATIONS[config["hidden"]]
    return structural_product(
        lambda p: pre_activations_and_net_output(config, p, inputs)[0],
        lambda pre: config["structural_curvature"] * slope(activation, pre), params, v, count)


def rnn_pre_activations_and_net_output(config, params, inputs):
    """(a [T, B, n_h], z [T, B, n_out]) of the RNN, written from its definition; character ids
    [T, B] enter as their one-hot rows."""
    blocks = rnn_blocks(config, params)
    return unit_recurrence(config, blocks, dense_inputs(config, inputs),
                           lambda x_t, hidden: x_t @ blocks["W_xh"] + hidden @ blocks["W_hh"])


# rnn_net_output(config, θ, x) -> z; rnn_structural_product(config, θ, x, v, N) -> S v
rnn_net_output = partial(net_output_of, rnn_pre_activations_and_net_output)
rnn_structural_product = partial(unit_structural_product, rnn_pre_activations_and_net_output)


# -- multiplicative RNN ---------------------------------------------------------------------
def mrnn_blocks(config, params):
    """The MRNN's blocks from its flat vector. paper: W_fx, W_fh, W_hf, W_hx; release: W_vf,
    f_bias, W_hf, W_fh, W_vh; then [b_h], W_hy, [b_y], h_0."""
    n_in, n_h, n_f = config["n_inputs"], config["n_hidden"], config["n_factors"]
    if config["variant"] == "paper":
        shapes = [("W_fx", (n_in, n_f)), ("W_fh", (n_h, n_f)), ("W_hf", (n_f, n_h)),
                  ("W_hx", (n_in, n_h))]
    else:
        shapes = [("W_vf", (n_in, n_f)), ("f_bias", (n_f,)), ("W_hf", (n_h, n_f)),
                  ("W_fh", (n_f, n_h)), ("W_vh", (n_in, n_h))]
    return recurrent_blocks(config, params, shapes, [("b_h", (n_h,))])


def dense_inputs(config, inputs):
    """Character ids [T, B] as one-hot float64 rows [T, B, n_in]; float inputs unchanged."""
    if inputs.dim() == 2:
        return F.one_hot(inputs.long(), config["n_inputs"]).to(torch.float64)
    return inputs


def mrnn_pre_activations_and_net_output(config, params, inputs):
    """(a [T, B, n_h], z [T, B, n_out]) of the MRNN, written from SMH11's equations (paper) or
    the 2011 release's forward_pass (release)."""
    blocks = mrnn_blocks(config, params)

    def paper(x_t, hidden):
        factors = (x_t @ blocks["W_fx"]) * (hidden @ blocks["W_fh"])
        return factors @ blocks["W_hf"] + x_t @ blocks["W_hx"]

    def release(x_t, hidden):
        gate = torch.tanh(x_t @ blocks["W_vf"])                           # B_t
        carried = hidden @ blocks["W_hf"]                                # A_t
        return (carried * (gate + blocks["f_bias"])) @ blocks["W_fh"] + x_t @ blocks["W_vh"]

    return unit_recurrence(config, blocks, dense_inputs(config, inputs),
                           paper if config["variant"] == "paper" else release)


# mrnn_net_output(config, θ, ids) -> z; mrnn_structural_product(config, θ, ids, v, N) -> S v
mrnn_net_output = partial(net_output_of, mrnn_pre_activations_and_net_output)
mrnn_structural_product = partial(unit_structural_product, mrnn_pre_activations_and_net_output)


def inputs_tensor(array):
    """Host inputs as a torch tensor: integer ids as int64, anything else as float64."""
    host_array = np.asarray(array)
    if np.issubdtype(host_array.dtype, np.integer):
        return torch.as_tensor(host_array.astype(np.int64))
    return tensor(host_array)
