"""Long short-term memory network (Hochreiter & Schmidhuber 1997, in the form of torch.nn.LSTM) with
hand-derived forward, R-forward and backpropagation through time, structural damping over its gate
units, and character-id inputs.

Time-major sequences: inputs x ``[T, B, n_in]`` (float rows) or integer character ids ``[T, B]``,
mask ``[T, B]``. For t = 1 … T, with learned initial states h_0 and c_0 (one row each, shared by
every sequence), and the gate pre-activations a_t in torch's order i, f, g, o along the last axis
(derivations/lstm.md, eq. (LS1)-(LS5)):

    a_t = x_t W_x + h_{t−1} W_h + b                                   [B, 4n_h]     (LS1)
    i_t = σ(a_t^i),  f_t = σ(a_t^f),  g_t = tanh(a_t^g),  o_t = σ(a_t^o)              (LS2)
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t                                                   (LS3)
    h_t = o_t ⊙ τ_t,  τ_t = tanh(c_t)                                                 (LS4)
    z_t = h_t W_hy + b_y                                                              (LS5)

then the output nonlinearity and its matching loss, as in every model. The three passes mirror each
other line by line and never pull a Python float:

- forward: x_t W_x + b for every t is one batched product (one gather for ids) before the loop,
  h_t W_hy + b_y one after it; the loop does the one fused product h_{t−1} W_h ([B, n_h] ×
  [n_h, 4n_h]) and element-wise work, and caches what the other two passes multiply by: the gates,
  D_t = ∂(c_t, h_t)/∂a_t and e_t = ∂h_t/∂c_t (LS6);
- R-forward (LS7)-(LS11): four products a step (x_t R{W_x}, h_{t−1} R{W_h}, R{h_{t−1}} W_h,
  R{h_t} W_hy), the gates' products fused over their 4n_h columns; only h_t R{W_hy} is batched;
- BPTT (LS12)-(LS17): four products a step (δz_t W_hyᵀ, δa_{t+1} W_hᵀ, x_tᵀ δa_t, h_{t−1}ᵀ δa_t),
  the gradients of W_x, W_h and b summed inside the loop; W_hy and b_y batched after it.

Structural damping (derivations/lstm.md, "Structural damping"): the penalty is the matching loss
of every gate unit, on the pre-activations a_t, so S v = J_aᵀ Κ J_a v / N with
Κ = diag(κ_u f_u'(a)) (LS18): σ(1 − σ) for the logistic gates i, f, o and 1 − g² for the tanh
candidate g; κ_g = κ (``structural_curvature``, default 1/4 as for a tanh RNN) and the gates'
κ_u = 4κ, so that each unit gets its own default κ (1 for logistic) at the default and a κ scales
the whole term (``RecurrentModel.unit_curvatures``, the same meaning as the GRU's).

Conversions to and from a torch.nn.LSTM with a torch.nn.Linear head:
``interop.torch_lstm.from_torch`` and :meth:`LSTM.to_torch` (host side, ``interop/torch_lstm.py``;
eq. (LS19)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

import array_api_compat

from arrayhf import backend, initialization
from arrayhf.layout import Layout
from arrayhf.losses import MatchingLoss
from arrayhf.models.inputs import alphabet, input_product, input_steps, step_product
from arrayhf.models.recurrent import RecurrentModel, extra_steps, previous_states, time_steps
from arrayhf.nonlinearities import logistic

__all__ = ["LSTM", "LSTMCache"]


@dataclass(frozen=True)
class LSTMCache:
    """The forward pass, kept for R-forward and BPTT.

    hiddens: [T, B, n_h] stacked h_1 … h_T (h_{t−1} of every step, with h_0, comes from them:
    ``previous_states``); initial: h_0 broadcast over the batch, [B, n_h]; gate_steps: the T
    gate rows [i_t, f_t, g_t, o_t], [B, 4n_h] each (LS2); coefficient_steps: the T rows D_t
    [B, 4n_h] of (LS6); cell_slope_steps: the T rows e_t = o_t ⊙ (1 − τ_t²), [B, n_h] (LS6);
    net_output: z [T, B, n_out]; predictions: g(z).
    """

    hiddens: Any
    initial: Any
    gate_steps: tuple
    coefficient_steps: tuple
    cell_slope_steps: tuple
    net_output: Any
    predictions: Any

    @property
    def slopes(self) -> Any:
        """f_u'(a_t) of every gate unit, [T, B, 4n_h]: σ(1 − σ) for i, f and o, 1 − g² for g
        (a new stacked array at each access; structural damping reads it once per operator)."""
        xp = array_api_compat.array_namespace(self.hiddens)
        gates = xp.stack(self.gate_steps)
        n = gates.shape[-1] // 4
        logistic_slopes = gates * (1.0 - gates)
        candidate = gates[..., 2 * n:3 * n]
        return xp.concat([logistic_slopes[..., :2 * n], 1.0 - candidate * candidate,
                          logistic_slopes[..., 3 * n:]], axis=-1)


class LSTM(RecurrentModel):
    """Long short-term memory network with learned initial states, torch.nn.LSTM's equations.

    Parameters
    ----------
    n_inputs, n_hidden, n_outputs, output, biases
        As for every recurrent model (``RecurrentModel``); biases are b and b_y (torch's
        ``bias=True``).
    structural_curvature : float, optional
        κ of the tanh candidate g, default 1/4 (the release's); the logistic gates i, f, o get
        4κ (eq. (LS18)): at the default, each unit's own κ (1 for the gates).

    Notes
    -----
    The gate nonlinearities are fixed (logistic i, f, o; tanh g and tanh(c_t)), so there is no
    ``hidden`` argument. Parameter blocks, in order: ``W_x`` [n_in, 4n_h], ``W_h`` [n_h, 4n_h],
    ``b`` [4n_h] (gate order i, f, g, o along the last axis), ``W_hy`` [n_h, n_out], ``b_y``
    [n_out] (the biases only when ``biases``), ``h_0`` [n_h], ``c_0`` [n_h].

    Inputs are float rows ``[T, B, n_in]`` or integer character ids ``[T, B]`` in [0, n_in), as
    for every recurrent model (``arrayhf.models.inputs``; derivations/lstm.md, "Character ids").
    """

    sizes = ("n_inputs", "n_hidden", "n_outputs")
    unit_kinds = ("logistic", "logistic", "tanh", "logistic")   # i, f, g, o: κ_u of (LS18)

    def __init__(self, n_inputs: int, n_hidden: int, n_outputs: int,
                 output: str | MatchingLoss = "linear", biases: bool = True,
                 structural_curvature: float | None = None) -> None:
        # the shared checks of sizes, output, biases and κ (tanh: the cell's nonlinearity)
        self._set_common({"n_inputs": n_inputs, "n_hidden": n_hidden, "n_outputs": n_outputs},
                         "tanh", output, biases, structural_curvature)
        n = self.n_hidden
        blocks: list[tuple[str, tuple[int, ...]]] = [("W_x", (self.n_inputs, 4 * n)),
                                                     ("W_h", (n, 4 * n))]
        if biases:
            blocks.append(("b", (4 * n,)))
        blocks += [block for block in self._hidden_and_output_blocks() if block[0] != "b_h"]
        self.layout = Layout(blocks + [("c_0", (n,))])

    def _keywords(self) -> dict:
        """The constructor's keywords (the recurrent models' less ``hidden``: fixed here)."""
        return {name: value for name, value in super()._keywords().items() if name != "hidden"}

    # -- initialization (host RNG, same numbers on every backend) --------------------------
    def init(self, seed: int, *, xp: Any = None, dtype: Any = None, device: Any = None,
             forget_bias: float = 1.0) -> Any:
        """Initial θ drawn on the host from ``seed``: W_x, W_h and b uniform in ±1/√n_h, as torch
        draws them, then ``forget_bias`` (1) added to the f block of b (the forget gates start
        open: Gers et al. 2000, Jozefowicz et al. 2015); W_hy from N(0, 1/n_h) (the RNN's dense
        draw), b_y, h_0 and c_0 zero. Without biases there is no b and no forget bias."""
        if (isinstance(forget_bias, bool) or not isinstance(forget_bias, Real)
                or not math.isfinite(forget_bias)):
            raise ValueError(f"expected forget_bias a finite number, got {forget_bias!r}")
        n, bound = self.n_hidden, 1.0 / math.sqrt(self.n_hidden)
        rng = backend.host_rng(seed)
        host_blocks: dict[str, Any] = {}
        for name in ("W_x", "W_h", "b"):
            if name in self.layout.shapes:
                host_blocks[name] = rng.uniform(-bound, bound, self.layout.shapes[name])
        if self.biases:
            host_blocks["b"] = host_blocks["b"] + ([0.0] * n + [float(forget_bias)] * n
                                                   + [0.0] * (2 * n))
        host_blocks["W_hy"] = initialization.dense_weights(rng, n, self.n_outputs)
        for name in ("b_y", "h_0", "c_0"):
            if name in self.layout.shapes:
                host_blocks[name] = [0.0] * self.layout.shapes[name][0]
        return initialization.pack(self.layout, host_blocks, xp, dtype=dtype, device=device)

    def to_torch(self, params: Any) -> tuple[Any, Any, tuple[Any, Any]]:
        """``(lstm, head, (h_0, c_0))``: a one-layer ``torch.nn.LSTM`` and a ``torch.nn.Linear``
        on the CPU in θ's dtype, and the initial states as tensors of shape [1, 1, n_h] (torch's
        (num_layers, batch, n_h): expand them to the batch, ``h_0.expand(1, B, -1)``). b goes to
        ``bias_ih_l0``, zeros to ``bias_hh_l0`` (eq. (LS19)); ``from_torch`` inverts it exactly."""
        self._check_params(params)
        from arrayhf.interop import torch_lstm  # host side: the model does not need it

        return torch_lstm.to_torch(self, params)

    # -- the three passes, side by side ----------------------------------------------------
    def _forward(self, params, inputs, *, xp):
        """Forward pass, derivations/lstm.md eq. (LS1)-(LS6)."""
        blocks = self.layout.unflatten(params, xp=xp)
        n = self.n_hidden
        input_part = input_product(xp, inputs, blocks["W_x"])                # x_t W_x, every t
        if self.biases:
            input_part = input_part + blocks["b"]
        initial = xp.broadcast_to(blocks["h_0"], (input_part.shape[1], n))
        hidden, cell = initial, xp.broadcast_to(blocks["c_0"], (input_part.shape[1], n))
        hiddens, gate_steps, coefficient_steps, cell_slope_steps = [], [], [], []
        for input_step in time_steps(xp, input_part):
            pre = input_step + hidden @ blocks["W_h"]                             # (LS1) a_t
            input_forget = logistic(xp, pre[:, :2 * n])                           # (LS2) i_t, f_t
            candidate = xp.tanh(pre[:, 2 * n:3 * n])                              # (LS2) g_t
            output_gate = logistic(xp, pre[:, 3 * n:])                            # (LS2) o_t
            input_gate, forget_gate = input_forget[:, :n], input_forget[:, n:]
            previous_cell = cell
            cell = forget_gate * previous_cell + input_gate * candidate          # (LS3) c_t
            cell_tanh = xp.tanh(cell)                                             # τ_t
            hidden = output_gate * cell_tanh                                      # (LS4) h_t
            hiddens.append(hidden)
            gate_steps.append(xp.concat([input_forget, candidate, output_gate], axis=1))
            input_forget_slope = input_forget * (1.0 - input_forget)
            coefficient_steps.append(xp.concat([                                  # (LS6) D_t
                input_forget_slope[:, :n] * candidate,                            # ∂c_t/∂a_t^i
                input_forget_slope[:, n:] * previous_cell,                        # ∂c_t/∂a_t^f
                (1.0 - candidate * candidate) * input_gate,                       # ∂c_t/∂a_t^g
                output_gate * (1.0 - output_gate) * cell_tanh], axis=1))          # ∂h_t/∂a_t^o
            cell_slope_steps.append(output_gate * (1.0 - cell_tanh * cell_tanh))  # (LS6) e_t
        hiddens = xp.stack(hiddens)
        net_output = self._net_output(blocks, hiddens)                            # (LS5) z_t
        return LSTMCache(hiddens=hiddens, initial=initial, gate_steps=tuple(gate_steps),
                         coefficient_steps=tuple(coefficient_steps),
                         cell_slope_steps=tuple(cell_slope_steps), net_output=net_output,
                         predictions=self.output._predict(xp, net_output))

    def _r_forward(self, params, v, inputs, cache, *, xp, with_pre=False):
        """R-forward pass R{z} = J v, derivations/lstm.md eq. (LS7)-(LS11): the forward pass with
        R{·} applied line by line; v's blocks are R{W_x}, R{W_h}, R{b}, R{W_hy}, R{b_y}, R{h_0},
        R{c_0}. With ``with_pre`` it also returns R{a} [T, B, 4n_h] (for structural damping).
        All but h_t R{W_hy} happens inside the loop, on the step's [B, ·] slices."""
        blocks = self.layout.unflatten(params, xp=xp)
        directions = self.layout.unflatten(v, xp=xp)
        n = self.n_hidden

        def cell_steps():            # (R{h_t}, R{a_t}), t = 1 … T, on the step's [B, ·] slices
            r_hidden = xp.broadcast_to(directions["h_0"], cache.initial.shape)      # R{h_0}
            r_cell = xp.broadcast_to(directions["c_0"], cache.initial.shape)        # R{c_0}
            steps = zip(input_steps(xp, inputs),
                        previous_states(xp, cache.initial, cache.hiddens), cache.gate_steps,
                        cache.coefficient_steps, cache.cell_slope_steps)
            for input_step, previous, gates, coefficients, cell_slope in steps:
                r_pre = (step_product(xp, input_step, directions["W_x"])        # (LS7) R{a_t}
                         + previous @ directions["W_h"]
                         + r_hidden @ blocks["W_h"])
                if self.biases:
                    r_pre = r_pre + directions["b"]
                r_terms = coefficients * r_pre  # D_t ⊙ R{a_t}: (LS8) × its factors in (LS9), (LS10)
                r_cell = (r_terms[:, :n] + r_terms[:, n:2 * n] + r_terms[:, 2 * n:3 * n]
                          + gates[:, n:2 * n] * r_cell)                          # (LS9) R{c_t}
                r_hidden = r_terms[:, 3 * n:] + cell_slope * r_cell              # (LS10) R{h_t}
                yield r_hidden, r_pre

        return self._r_output_layer(xp, blocks, directions, cache.hiddens, cell_steps(),
                                    with_pre)                                    # (LS11) R{z_t}

    def _backprop(self, params, inputs, cache, delta_net_output, *, xp, delta_pre_extra=None):
        """Backpropagation through time Jᵀ δ, derivations/lstm.md eq. (LS12)-(LS17): the forward
        lines in reverse. ``delta_pre_extra`` [T, B, 4n_h] is added to every δa_t (the structural
        damping term's J_aᵀ u, eq. (S3)). The sums over t of (LS15) are taken inside the loop."""
        blocks = self.layout.unflatten(params, xp=xp)
        n = self.n_hidden
        delta_pre = xp.zeros_like(cache.gate_steps[0])                         # δa_{T+1} = 0
        delta_cell_carried = xp.zeros_like(cache.initial)                       # f_{T+1} ⊙ δc_{T+1}
        sums = (0.0, 0.0, 0.0)                                                  # Σ_t of (LS15)
        columns = alphabet(xp, inputs, self.n_inputs)                   # for ids' one-hot rows
        steps = list(zip(input_steps(xp, inputs), previous_states(xp, cache.initial, cache.hiddens),
                         cache.gate_steps, cache.coefficient_steps, cache.cell_slope_steps,
                         time_steps(xp, delta_net_output),
                         extra_steps(xp, delta_pre_extra, len(cache.gate_steps))))
        for input_step, previous, gates, coefficients, cell_slope, delta_output, extra in (
                reversed(steps)):
            delta_hidden = (delta_output @ blocks["W_hy"].T                      # (LS12) δh_t
                            + delta_pre @ blocks["W_h"].T)
            delta_cell = cell_slope * delta_hidden + delta_cell_carried         # (LS13) δc_t
            delta_pre = coefficients * xp.concat([delta_cell, delta_cell, delta_cell,
                                                  delta_hidden], axis=1)        # (LS14) δa_t
            if extra is not None:
                delta_pre = delta_pre + extra
            delta_cell_carried = gates[:, n:2 * n] * delta_cell                 # f_t ⊙ δc_t (LS13)
            sums = self._add_step_gradients(xp, sums, input_step, columns, previous,
                                            delta_pre)                          # (LS15)
        gradient_x, gradient_h, gradient_b = sums
        gradient_blocks = {"W_x": gradient_x, "W_h": gradient_h,
                           "h_0": xp.sum(delta_pre @ blocks["W_h"].T, axis=0),          # (LS17)
                           "c_0": xp.sum(delta_cell_carried, axis=0),                   # (LS17)
                           **self._output_gradients(xp, cache.hiddens, delta_net_output)}  # (LS16)
        if self.biases:
            gradient_blocks["b"] = gradient_b
        return self.layout.flatten(gradient_blocks, xp=xp)
