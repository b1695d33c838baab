"""The LSTM's autodiff oracle: torch.nn.LSTM's equations written again in torch ops from their
definition (the torch documentation's i, f, g, o; nothing of arrayhf's passes), differentiated by
torch.func in float64. Used only by the tests and the benchmarks, never by the library.

The flat parameter vector is read in the layout the model documents: W_x [n_in, 4n_h], W_h
[n_h, 4n_h], b [4n_h] (with biases), W_hy [n_h, n_out], b_y [n_out] (with biases), h_0 [n_h],
c_0 [n_h], the gate blocks i, f, g, o along the last axis.
"""

from __future__ import annotations

import torch

from oracles import core as oracle

# The κ_u of each gate unit's structural term per κ (derivations/lstm.md, (LS18)): κ is the tanh
# candidate's (default the release's 1/4), the logistic gates get 4κ (their matching loss's own
# curvature, 1, at the default).
GATE_CURVATURE_RATIOS = (4.0, 4.0, 1.0, 4.0)


def lstm_blocks(config, params):
    n_in, n_h = config["n_inputs"], config["n_hidden"]
    return oracle.recurrent_blocks(config, params, [("W_x", (n_in, 4 * n_h)),
                                                    ("W_h", (n_h, 4 * n_h))],
                                   [("b", (4 * n_h,))], states=("h_0", "c_0"))


def gate_values(pre):
    """[i, f, g, o] from the pre-activations [.., 4n_h]: σ, σ, tanh, σ (torch's order)."""
    pre_i, pre_f, pre_g, pre_o = pre.chunk(4, dim=-1)
    return torch.cat([torch.sigmoid(pre_i), torch.sigmoid(pre_f), torch.tanh(pre_g),
                      torch.sigmoid(pre_o)], dim=-1)


def lstm_pre_activations_and_net_output(config, params, inputs):
    """(a [T, B, 4n_h], z [T, B, n_out]): c_t = f ⊙ c_{t−1} + i ⊙ g, h_t = o ⊙ tanh(c_t)."""
    blocks = lstm_blocks(config, params)
    x = oracle.dense_inputs(config, inputs)
    hidden = blocks["h_0"].expand(x.shape[1], -1)
    cell = blocks["c_0"].expand(x.shape[1], -1)
    pres, hiddens = [], []
    for step in range(x.shape[0]):
        pre = x[step] @ blocks["W_x"] + hidden @ blocks["W_h"]
        if config["biases"]:
            pre = pre + blocks["b"]
        input_gate, forget_gate, candidate, output_gate = gate_values(pre).chunk(4, dim=-1)
        cell = forget_gate * cell + input_gate * candidate
        hidden = output_gate * torch.tanh(cell)
        pres.append(pre)
        hiddens.append(hidden)
    return oracle.stacked_and_net_output(config, blocks, pres, hiddens)


def lstm_net_output(config, params, inputs):
    return lstm_pre_activations_and_net_output(config, params, inputs)[1]


def gate_curvatures(config):
    kappa = config["structural_curvature"]
    kappa = 0.25 if kappa is None else kappa
    return tuple(ratio * kappa for ratio in GATE_CURVATURE_RATIOS)


def lstm_structural_product(config, params, inputs, v, count):
    """S v = J_aᵀ (Κ ⊙ J_a v) / N with Κ = κ_u f_u'(a) per gate block, f_u' from torch's own
    derivative of σ and tanh, by torch.func."""
    n_h = config["n_hidden"]
    kappa = torch.cat([torch.full((n_h,), k, dtype=torch.float64)
                       for k in gate_curvatures(config)])
    return oracle.structural_product(
        lambda p: lstm_pre_activations_and_net_output(config, p, inputs)[0],
        lambda pre: kappa * oracle.slope(gate_values, pre), params, v, count)


def torch_modules_net_output(lstm, head, inputs, initial_state=None):
    """z of torch's own modules, head(lstm(x, (h_0, c_0))[0]), for float64 inputs [T, B, n_in]."""
    x = oracle.tensor(inputs)
    if initial_state is not None:
        initial_state = tuple(s.expand(1, x.shape[1], -1).contiguous() for s in initial_state)
    with torch.no_grad():
        return head(lstm(x, initial_state)[0]).numpy()
