"""Recurrent network (the 2011 release's ``opt.m.rnn.rnn``) with hand-derived forward, R-forward,
backpropagation through time and structural damping.

Time-major sequences: inputs x ``[T, B, n_in]`` (float rows) or integer character ids ``[T, B]``,
mask ``[T, B]``. For t = 1 … T, with a learned
initial state h_0 (one row, shared by every sequence):

    a_t = x_t W_xh + h_{t−1} W_hh + b_h,   h_t = f(a_t),   z_t = h_t W_hy + b_y

(derivations/rnn.md, eq. (R1)-(R3)); the output nonlinearity and loss come from a MatchingLoss and
any subset of time steps counts, through the mask. The three passes mirror each other line by
line and never pull a Python float:

- forward: x_t W_xh + b_h for every t is one batched product (one gather for ids) before the
  loop, h_t W_hy + b_y one after it (the recurrent models' output layer); the loop does the one
  product h_{t−1} W_hh and f;
- R-forward (R4)-(R6): everything inside the loop, on [B, ·] slices of one step: four products a
  step (x_t R{W_xh}, h_{t−1} R{W_hh}, R{h_{t−1}} W_hh, R{h_t} W_hy); only h_t R{W_hy} is one
  batched product after the loop;
- BPTT (R7)-(R12): four products a step (δz_t W_hyᵀ, δa_{t+1} W_hhᵀ, x_tᵀ δa_t, h_{t−1}ᵀ δa_t),
  the weight gradients of W_xh, W_hh and b_h summed inside the loop (x_t the one-hot rows of the
  step's ids, for ids); the W_hy and b_y gradients are one batched product after it, and (R12)
  uses the δa_1 that the loop leaves in ``delta_pre``.

Working on per-step slices writes no [T, B, n_h] temporary (bench/README.md measures what that
saves).

Structural damping (Martens & Sutskever 2011, derivations/structural-damping.md): the penalty
λμ·D(h(θ), h(θ_n)) on the hidden states adds λμ S to the curvature, S v = J_aᵀ Κ J_a v / N with
J_a the Jacobian of the pre-activations a_t, Κ = κ·diag(f'(a_t)) (κ by default the hidden
nonlinearity's: 0.25 for tanh, as in the release; 1 otherwise) and N the loss's count of unmasked
outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import array_api_compat

from arrayhf import backend, initialization
from arrayhf.layout import Layout
from arrayhf.losses import MatchingLoss
from arrayhf.models.inputs import alphabet, input_product, input_steps, step_product
from arrayhf.models.recurrent import RecurrentModel, extra_steps, previous_states, time_steps
from arrayhf.nonlinearities import Nonlinearity


@dataclass(frozen=True)
class RNNCache:
    """The forward pass, kept for R-forward and BPTT.

    hiddens: [T, B, n_h] stacked h_1 … h_T (h_{t−1} of every step, with h_0, comes from them:
    ``previous_states``); initial: h_0 broadcast over the batch, [B, n_h]; slope_steps: the T
    slopes f'(a_t), [B, n_h] each, computed in the loop while h_t is in the CPU's caches (the
    passes read them step by step; ``slopes`` stacks them, for structural damping);
    net_output: z [T, B, n_out]; predictions: g(z).
    """

    hiddens: Any
    initial: Any
    slope_steps: tuple
    net_output: Any
    predictions: Any

    @property
    def slopes(self) -> Any:
        """f'(a_t) of every step, [T, B, n_h] (a new stacked array at each access)."""
        return array_api_compat.array_namespace(self.hiddens).stack(self.slope_steps)


class RNN(RecurrentModel):
    """Recurrent network with a learned initial state.

    Parameters
    ----------
    n_inputs, n_hidden, n_outputs : int
    hidden : str
        Hidden nonlinearity f ("tanh", "logistic", "relu", "linear").
    output, biases, structural_curvature
        As for every recurrent model (``RecurrentModel``): biases b_h and b_y (the 2011 release
        had none); κ of Κ = κ·diag(f'(a_t)), eq. (S2), by default f's own.

    Notes
    -----
    Parameter blocks, in order: ``W_xh`` [n_in, n_h], ``W_hh`` [n_h, n_h], ``b_h`` [n_h],
    ``W_hy`` [n_h, n_out], ``b_y`` [n_out] (the biases only when ``biases``), ``h_0`` [n_h].
    Inputs are float rows ``[T, B, n_in]`` or integer character ids ``[T, B]`` in [0, n_in)
    (``arrayhf.models.inputs``; derivations/rnn.md, "Character ids").
    """

    sizes = ("n_inputs", "n_hidden", "n_outputs")

    def __init__(self, n_inputs: int, n_hidden: int, n_outputs: int,
                 hidden: str | Nonlinearity = "tanh", output: str | MatchingLoss = "linear",
                 biases: bool = True, structural_curvature: float | None = None) -> None:
        self._set_common({"n_inputs": n_inputs, "n_hidden": n_hidden, "n_outputs": n_outputs},
                         hidden, output, biases, structural_curvature)
        blocks: list[tuple[str, tuple[int, ...]]] = [("W_xh", (n_inputs, n_hidden)),
                                                     ("W_hh", (n_hidden, n_hidden))]
        self.layout = Layout(blocks + self._hidden_and_output_blocks())

    # -- initialization (host RNG, same numbers on every backend) --------------------------
    def init(self, seed: int, *, xp: Any = None, dtype: Any = None, device: Any = None,
             scheme: str = "release", scale: float | None = None, n_nonzero: int = 15,
             input_scale: float = 0.25) -> Any:
        """Initial θ drawn on the host from ``seed``.

        ``scheme="release"`` (the 2011 demo): every unit gets min(``n_nonzero``, fan-in) nonzero
        incoming weights from N(0, scale²) with scale 1/√15, then W_xh × ``input_scale`` (0.25);
        h_0 from N(0, scale²); biases zero. ``"sparse"``: the same weights with scale 1 and no input
        scaling (Martens), h_0 and biases zero. ``"dense"``: N(0, scale²/fan_in) weights (scale
        1), h_0 and biases zero.
        """
        if scheme not in ("release", "sparse", "dense"):
            raise ValueError(f"expected scheme 'release', 'sparse' or 'dense', got {scheme!r}")
        if scale is None:
            scale = 1.0 / math.sqrt(15.0) if scheme == "release" else 1.0
        rng = backend.host_rng(seed)
        host_blocks: dict[str, Any] = {}
        for name in ("W_xh", "W_hh", "W_hy"):
            fan_in, fan_out = self.layout.shapes[name]
            if scheme == "dense":
                host_blocks[name] = initialization.dense_weights(rng, fan_in, fan_out,
                                                                 scale=scale)
            else:
                host_blocks[name] = initialization.sparse_weights(
                    rng, fan_in, fan_out, n_nonzero=n_nonzero, scale=scale)
        for name in ("b_h", "b_y", "h_0"):
            if name in self.layout.shapes:
                host_blocks[name] = [0.0] * self.layout.shapes[name][0]
        if scheme == "release":
            host_blocks["W_xh"] = input_scale * host_blocks["W_xh"]
            host_blocks["h_0"] = scale * rng.standard_normal(self.n_hidden)
        return initialization.pack(self.layout, host_blocks, xp, dtype=dtype, device=device)

    # -- the three passes, side by side ----------------------------------------------------
    def _forward(self, params, inputs, *, xp):
        """Forward pass, derivations/rnn.md eq. (R1)-(R3)."""
        blocks = self.layout.unflatten(params, xp=xp)
        input_part = input_product(xp, inputs, blocks["W_xh"])            # x_t W_xh, every t
        if self.biases:
            input_part = input_part + blocks["b_h"]
        initial = xp.broadcast_to(blocks["h_0"], (inputs.shape[1], self.n_hidden))
        hidden, hiddens, slopes = initial, [], []
        for input_step in time_steps(xp, input_part):
            pre = input_step + hidden @ blocks["W_hh"]                    # (R1) a_t
            hidden = self.hidden.value(xp, pre)                           # (R2) h_t = f(a_t)
            hiddens.append(hidden)
            slopes.append(self.hidden.slope(xp, hidden))                  # f'(a_t), for (R5), (R9)
        hiddens = xp.stack(hiddens)
        net_output = self._net_output(blocks, hiddens)                    # (R3) z_t
        return RNNCache(hiddens=hiddens, initial=initial, slope_steps=tuple(slopes),
                        net_output=net_output,
                        predictions=self.output._predict(xp, net_output))

    def _r_forward(self, params, v, inputs, cache, *, xp, with_pre=False):
        """R-forward pass R{z} = J v, derivations/rnn.md eq. (R4)-(R6): the forward pass with
        R{·} applied line by line; v's blocks are R{W_xh}, R{W_hh}, R{b_h}, R{W_hy}, R{b_y},
        R{h_0}. With ``with_pre`` it also returns R{a} [T, B, n_h] (for structural damping).

        All but h_t R{W_hy} happens inside the loop over steps, on [B, ·] slices that stay in the
        CPU's caches: no [T, B, n_h] temporary is written and read back."""
        blocks = self.layout.unflatten(params, xp=xp)
        directions = self.layout.unflatten(v, xp=xp)

        def cell_steps():            # (R{h_t}, R{a_t}), t = 1 … T, on the step's [B, ·] slices
            r_hidden = xp.broadcast_to(directions["h_0"], cache.initial.shape)   # R{h_0}
            steps = zip(input_steps(xp, inputs),
                        previous_states(xp, cache.initial, cache.hiddens), cache.slope_steps)
            for input_step, previous, slope in steps:
                r_pre = (step_product(xp, input_step, directions["W_xh"])  # (R4) R{a_t}
                         + previous @ directions["W_hh"]
                         + r_hidden @ blocks["W_hh"])
                if self.biases:
                    r_pre = r_pre + directions["b_h"]
                r_hidden = slope * r_pre                                  # (R5) R{h_t}
                yield r_hidden, r_pre

        return self._r_output_layer(xp, blocks, directions, cache.hiddens, cell_steps(),
                                    with_pre)                             # (R6) R{z_t}

    def _backprop(self, params, inputs, cache, delta_net_output, *, xp, delta_pre_extra=None):
        """Backpropagation through time Jᵀ δ, derivations/rnn.md eq. (R7)-(R12): the forward
        lines in reverse. ``delta_pre_extra`` [T, B, n_h] is added to every δa_t (the structural
        damping term's Jᵀ, eq. (S3)). The sums over t of (R10) are accumulated inside the loop,
        on slices that stay in the CPU's caches."""
        blocks = self.layout.unflatten(params, xp=xp)
        delta_pre = xp.zeros_like(cache.initial)                          # δa_{T+1} = 0
        sums = (0.0, 0.0, 0.0)                                            # Σ_t of (R10)
        columns = alphabet(xp, inputs, self.n_inputs)                     # for ids' one-hot rows
        steps = list(zip(input_steps(xp, inputs), previous_states(xp, cache.initial, cache.hiddens),
                         cache.slope_steps, time_steps(xp, delta_net_output),
                         extra_steps(xp, delta_pre_extra, len(cache.slope_steps))))
        for input_step, previous, slope, delta_output, extra in reversed(steps):
            delta_hidden = (delta_output @ blocks["W_hy"].T               # (R7), (R8) δh_t
                            + delta_pre @ blocks["W_hh"].T)
            delta_pre = slope * delta_hidden                              # (R9) δa_t
            if extra is not None:
                delta_pre = delta_pre + extra
            sums = self._add_step_gradients(xp, sums, input_step, columns, previous,
                                            delta_pre)                    # (R10)
        gradient_xh, gradient_hh, gradient_bh = sums
        gradient_blocks = {"W_xh": gradient_xh, "W_hh": gradient_hh,
                           "h_0": xp.sum(delta_pre @ blocks["W_hh"].T, axis=0),         # (R12)
                           **self._output_gradients(xp, cache.hiddens, delta_net_output)}  # (R11)
        if self.biases:
            gradient_blocks["b_h"] = gradient_bh
        return self.layout.flatten(gradient_blocks, xp=xp)
