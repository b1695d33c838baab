"""The GRU's autodiff oracle: the network written again in torch ops from its equations
(torch.nn.GRU's, derivations/gru.md (GR1)-(GR5)), differentiated by torch.func in float64. Used
only by the tests and the benchmarks, never by the library; nothing here calls arrayhf.

The flat parameter vector is cut into blocks here from the layout the derivation states (W_x,
W_h, [b_x, b_h], W_hy, [b_y], h_0, gates r, ζ, n along the last axis), not by arrayhf's Layout.
"""

from __future__ import annotations

import math

import torch

from oracles import core as oracle


def gru_blocks(config, params):
    """The GRU's blocks from its flat vector, in the order W_x, W_h, [b_x, b_h], W_hy, [b_y],
    h_0."""
    n_in, n_h = config["n_inputs"], config["n_hidden"]
    return oracle.recurrent_blocks(config, params,
                                   [("W_x", (n_in, 3 * n_h)), ("W_h", (n_h, 3 * n_h))],
                                   [("b_x", (3 * n_h,)), ("b_h", (3 * n_h,))])


def gru_pre_activations_and_net_output(config, params, inputs):
    """(a [T, B, 3n_h] = [a^r, a^ζ, a^n] of every step, z [T, B, n_out]) of the GRU, from
    torch.nn.GRU's equations: r = σ(x W_r + b_xr + h W_hr + b_hr), ζ likewise,
    n = tanh(x W_n + b_xn + r ⊙ (h W_hn + b_hn)), h' = (1 − ζ) ⊙ n + ζ ⊙ h."""
    blocks = gru_blocks(config, params)
    x = oracle.dense_inputs(config, inputs)
    n_h = config["n_hidden"]
    hidden = blocks["h_0"].expand(x.shape[1], -1)
    pres, hiddens = [], []
    for step in range(x.shape[0]):
        from_input = x[step] @ blocks["W_x"]
        from_hidden = hidden @ blocks["W_h"]
        if config["biases"]:
            from_input = from_input + blocks["b_x"]
            from_hidden = from_hidden + blocks["b_h"]
        x_r, x_z, x_n = from_input.split(n_h, dim=-1)
        h_r, h_z, h_n = from_hidden.split(n_h, dim=-1)
        reset_pre, update_pre = x_r + h_r, x_z + h_z
        reset, update = torch.sigmoid(reset_pre), torch.sigmoid(update_pre)
        candidate_pre = x_n + reset * h_n
        candidate = torch.tanh(candidate_pre)
        hidden = (1 - update) * candidate + update * hidden
        pres.append(torch.cat([reset_pre, update_pre, candidate_pre], dim=-1))
        hiddens.append(hidden)
    return oracle.stacked_and_net_output(config, blocks, pres, hiddens)


def gru_net_output(config, params, inputs):
    return gru_pre_activations_and_net_output(config, params, inputs)[1]


def gru_products(config, output, params, inputs, v, targets, mask=None):
    """(loss, gradient, J v, G v) by torch.func."""
    return oracle.oracle_products(lambda p: gru_net_output(config, p, inputs), output, params,
                                  v, targets, mask)


def structural_curvatures(config, pre):
    """Κ's diagonal of (GR19) at the pre-activations a = [a^r, a^ζ, a^n]: 4κ σ'(a) on the gates,
    κ tanh'(a) on the candidate, the slopes by torch's own derivatives of sigmoid and tanh."""
    n_h, kappa = config["n_hidden"], config["structural_curvature"]
    gates, candidate = pre[..., :2 * n_h], pre[..., 2 * n_h:]
    return torch.cat([4 * kappa * oracle.slope(torch.sigmoid, gates),
                      kappa * oracle.slope(torch.tanh, candidate)], dim=-1)


def gru_structural_product(config, params, inputs, v, count):
    """S v = J_aᵀ (Κ ⊙ J_a v) / N, eq. (GR19)-(GR20), by torch.func."""
    return oracle.structural_product(
        lambda p: gru_pre_activations_and_net_output(config, p, inputs)[0],
        lambda pre: structural_curvatures(config, pre), params, v, count)


def gru_structural_penalty(config, params, inputs, anchor, count):
    """D_n(θ) = Σ κ_j d_j(a_j(θ); ā_j) / N: the matching loss of every gated unit on its
    pre-activation, ψ = softplus for the logistic gates (κ_j = 4κ), ψ = log cosh for the tanh
    candidate (κ_j = κ), d(a; ā) = ψ(a) − ψ(ā) − ψ'(ā)(a − ā), with ā = ``anchor`` = a(θ_n)
    held fixed (derivations/gru.md, "Structural damping")."""
    n_h, kappa = config["n_hidden"], config["structural_curvature"]
    pre = gru_pre_activations_and_net_output(config, params, inputs)[0]

    def divergence(potential, derivative, a, a_n):
        return potential(a) - potential(a_n) - derivative(a_n) * (a - a_n)

    def log_cosh(a):
        return torch.logaddexp(a, -a) - math.log(2.0)

    def softplus(a):
        return torch.logaddexp(torch.zeros_like(a), a)

    gates = divergence(softplus, torch.sigmoid, pre[..., :2 * n_h], anchor[..., :2 * n_h])
    candidate = divergence(log_cosh, torch.tanh, pre[..., 2 * n_h:], anchor[..., 2 * n_h:])
    return (4 * kappa * gates.sum() + kappa * candidate.sum()) / count
