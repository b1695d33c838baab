"""Gated recurrent unit (Cho et al. 2014, in torch.nn.GRU's form) with hand-derived forward,
R-forward, backpropagation through time and structural damping, on float or character-id inputs.

Time-major sequences: inputs x ``[T, B, n_in]`` (or integer ids ``[T, B]``), mask ``[T, B]``. For
t = 1 … T, with a learned initial state h_0 and gates in torch's order r, ζ, n along the last axis
of every ``[·, 3n_h]`` block (derivations/gru.md, eq. (GR1)-(GR5)):

    p_t = x_t W_x + b_x,   q_t = h_{t−1} W_h + b_h                 input and hidden parts [B, 3n_h]
    r_t = σ(p^r_t + q^r_t),   ζ_t = σ(p^ζ_t + q^ζ_t)                reset and update gates
    n_t = tanh(p^n_t + r_t ⊙ q^n_t)                                  candidate
    h_t = (1 − ζ_t) ⊙ n_t + ζ_t ⊙ h_{t−1},   z_t = h_t W_hy + b_y

The update gate is torch's z; here it is ζ (``update`` in code), so that z stays the net output,
as in every arrayhf model. The three passes mirror each other line by line and never pull a
Python float:

- forward: x W_x + b_x for every t is one batched product (a row gather for ids) before the loop,
  h W_hy + b_y one after it; the loop does the one fused product h_{t−1} W_h ([n_h, 3n_h]) and
  caches the gates and the three partial derivatives α_t, β_t, γ_t (GR6) that R-forward and BPTT
  multiply by, so neither recomputes a nonlinearity;
- R-forward (GR7)-(GR11): four products a step (x_t R{W_x}, h_{t−1} R{W_h}, R{h_{t−1}} W_h,
  R{h_t} W_hy); h_t R{W_hy} is one batched product after the loop;
- BPTT (GR12)-(GR18): four products a step (δz_t W_hyᵀ, δq_t W_hᵀ, x_tᵀ δp_t, h_{t−1}ᵀ δq_t), the
  weight and bias gradients summed inside the loop.

Structural damping (derivations/gru.md, "Structural damping"): the penalty is the matching loss of
every gated unit on its own pre-activation a_t = [a^r_t, a^ζ_t, a^n_t] (logistic gates, tanh
candidate), S v = J_aᵀ Κ J_a v / N with Κ = κ·diag(4σ'(a^r), 4σ'(a^ζ), tanh'(a^n)) (GR19): at the
default κ = 1/4 (tanh's) the gates get their own matching loss's curvature σ'(a) and the candidate
the release's 0.25 (1 − n²). Conversions to and from torch.nn.GRU + torch.nn.Linear are in
``interop/torch_gru.py`` (``from_torch``, ``GRU.to_torch``).
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


@dataclass(frozen=True)
class GRUCache:
    """The forward pass, kept for R-forward and BPTT. Per step, ``[B, ·]`` each (GR6):

    gate_steps: [r_t, ζ_t] side by side, [B, 2n_h]; reset_path_steps: α_t = σ'(a^r_t) ⊙ q^n_t;
    update_path_steps: β_t = σ'(a^ζ_t) ⊙ (h_{t−1} − n_t); candidate_path_steps: γ_t =
    (1 − ζ_t) ⊙ tanh'(a^n_t); candidate_slope_steps: tanh'(a^n_t) = 1 − n_t² (for ``slopes``).
    hiddens: [T, B, n_h] stacked h_1 … h_T (``previous_states`` gives h_0 … h_{T−1}); initial:
    h_0 broadcast over the batch; net_output: z [T, B, n_out]; predictions: g(z).
    """

    gate_steps: tuple
    reset_path_steps: tuple
    update_path_steps: tuple
    candidate_path_steps: tuple
    candidate_slope_steps: tuple
    hiddens: Any
    initial: Any
    net_output: Any
    predictions: Any

    @property
    def slopes(self) -> Any:
        """f'(a_t) of every pre-activation a_t = [a^r_t, a^ζ_t, a^n_t]: [σ'(a^r), σ'(a^ζ),
        tanh'(a^n)], [T, B, 3n_h] (a new stacked array at each access; for structural damping)."""
        xp = array_api_compat.array_namespace(self.hiddens)
        return xp.stack([xp.concat([gates - gates * gates, candidate_slope], axis=1)
                         for gates, candidate_slope in zip(self.gate_steps,
                                                           self.candidate_slope_steps)])


class GRU(RecurrentModel):
    """Gated recurrent unit with a learned initial state, torch.nn.GRU's equations.

    Parameters
    ----------
    n_inputs, n_hidden, n_outputs, output
        As for every recurrent model (``RecurrentModel``).
    biases : bool
        With b_x, b_h and b_y (torch's ``bias=True`` and the head's bias).
    structural_curvature : float, optional
        κ of the tanh candidate in Κ = κ·diag(4σ'(a^r), 4σ'(a^ζ), tanh'(a^n)), eq. (GR19).
        Default 1/4 (tanh's, the 2011 release's): the gates then get logistic's own κ = 1.

    Notes
    -----
    The gates are logistic and the candidate tanh (no ``hidden`` argument: torch.nn.GRU has no
    choice either). Parameter blocks, in order: ``W_x`` [n_in, 3n_h], ``W_h`` [n_h, 3n_h],
    ``b_x`` [3n_h], ``b_h`` [3n_h] (torch's ``weight_ih_l0ᵀ``, ``weight_hh_l0ᵀ``, ``bias_ih_l0``,
    ``bias_hh_l0``; gates r, ζ, n along the last axis), ``W_hy`` [n_h, n_out], ``b_y`` [n_out]
    (the biases only when ``biases``), ``h_0`` [n_h].
    """

    sizes = ("n_inputs", "n_hidden", "n_outputs")
    unit_kinds = ("logistic", "logistic", "tanh")   # r, ζ, n: κ_σ = 4κ and κ of (GR19)

    def __init__(self, n_inputs: int, n_hidden: int, n_outputs: int,
                 output: str | MatchingLoss = "linear", biases: bool = True,
                 structural_curvature: float | None = None) -> None:
        self._set_common({"n_inputs": n_inputs, "n_hidden": n_hidden, "n_outputs": n_outputs},
                         "tanh", output, biases, structural_curvature)
        width = 3 * self.n_hidden
        blocks: list[tuple[str, tuple[int, ...]]] = [("W_x", (self.n_inputs, width)),
                                                     ("W_h", (self.n_hidden, width))]
        if self.biases:
            blocks += [("b_x", (width,)), ("b_h", (width,))]
        # the recurrent models' output blocks and h_0; their b_h [n_h] is the GRU's b_h [3n_h]
        blocks += [block for block in self._hidden_and_output_blocks() if block[0] != "b_h"]
        self.layout = Layout(blocks)

    def _keywords(self) -> dict:
        """The constructor's keywords: the recurrent models' less ``hidden`` (always tanh)."""
        keywords = super()._keywords()
        del keywords["hidden"]
        return keywords

    # -- initialization (host RNG, same numbers on every backend) --------------------------
    def init(self, seed: int, *, xp: Any = None, dtype: Any = None, device: Any = None,
             scale: float | None = None, n_nonzero: int = 15) -> Any:
        """Initial θ drawn on the host from ``seed``, block by block in layout order.

        W_x, W_h, b_x, b_h uniform on [−scale, scale], scale = 1/√n_h by default (torch.nn.GRU's
        ``reset_parameters``); W_hy as the RNN's release scheme (min(``n_nonzero``, n_h) nonzero
        incoming weights per output unit from N(0, 1/15)); b_y and h_0 zero (torch's default).
        """
        if scale is None:
            scale = 1.0 / math.sqrt(self.n_hidden)
        rng = backend.host_rng(seed)
        host_blocks: dict[str, Any] = {}
        for name in ("W_x", "W_h", "b_x", "b_h"):
            if name in self.layout.shapes:
                host_blocks[name] = rng.uniform(-scale, scale, self.layout.shapes[name])
        host_blocks["W_hy"] = initialization.sparse_weights(
            rng, self.n_hidden, self.n_outputs, n_nonzero=n_nonzero, scale=1.0 / math.sqrt(15.0))
        for name in ("b_y", "h_0"):
            if name in self.layout.shapes:
                host_blocks[name] = [0.0] * self.layout.shapes[name][0]
        return initialization.pack(self.layout, host_blocks, xp, dtype=dtype, device=device)

    # -- the three passes, side by side ----------------------------------------------------
    def _forward(self, params, inputs, *, xp):
        """Forward pass, derivations/gru.md eq. (GR1)-(GR6)."""
        blocks = self.layout.unflatten(params, xp=xp)
        n = self.n_hidden
        input_part = input_product(xp, inputs, blocks["W_x"])            # (GR1) x_t W_x, every t
        if self.biases:
            input_part = input_part + blocks["b_x"]                      # (GR1) p_t
        initial = xp.broadcast_to(blocks["h_0"], (input_part.shape[1], n))
        hidden, hiddens = initial, []
        gate_steps, candidate_slopes = [], []
        reset_paths, update_paths, candidate_paths = [], [], []
        for input_step in time_steps(xp, input_part):
            hidden_part = hidden @ blocks["W_h"]                         # (GR1) q_t
            if self.biases:
                hidden_part = hidden_part + blocks["b_h"]
            gate_pres = input_step[:, :2 * n] + hidden_part[:, :2 * n]   # (GR2) [a^r_t, a^ζ_t]
            gates = 0.5 * xp.tanh(0.5 * gate_pres) + 0.5                 # (GR2) σ: [r_t, ζ_t]
            reset, update = gates[:, :n], gates[:, n:]
            reset_hidden = hidden_part[:, 2 * n:]                        # q^n_t
            candidate = xp.tanh(input_step[:, 2 * n:] + reset * reset_hidden)   # (GR3) n_t
            difference = hidden - candidate                              # h_{t−1} − n_t
            hidden = candidate + update * difference                     # (GR4) h_t
            gate_slopes = gates - gates * gates                          # σ'(a^r_t), σ'(a^ζ_t)
            candidate_slope = 1.0 - candidate * candidate                # tanh'(a^n_t)
            reset_paths.append(gate_slopes[:, :n] * reset_hidden)        # (GR6) α_t
            update_paths.append(gate_slopes[:, n:] * difference)         # (GR6) β_t
            candidate_paths.append((1.0 - update) * candidate_slope)     # (GR6) γ_t
            gate_steps.append(gates)
            candidate_slopes.append(candidate_slope)
            hiddens.append(hidden)
        hiddens = xp.stack(hiddens)
        net_output = self._net_output(blocks, hiddens)                   # (GR5) z_t
        return GRUCache(gate_steps=tuple(gate_steps), reset_path_steps=tuple(reset_paths),
                        update_path_steps=tuple(update_paths),
                        candidate_path_steps=tuple(candidate_paths),
                        candidate_slope_steps=tuple(candidate_slopes), hiddens=hiddens,
                        initial=initial, net_output=net_output,
                        predictions=self.output._predict(xp, net_output))

    def _r_forward(self, params, v, inputs, cache, *, xp, with_pre=False):
        """R-forward pass R{z} = J v, derivations/gru.md eq. (GR7)-(GR11): the forward pass with
        R{·} applied line by line, multiplying by the cached α_t, β_t, γ_t. With ``with_pre`` it
        also returns J_a v = R{a} = [R{a^r}, R{a^ζ}, R{a^n}], [T, B, 3n_h], for structural
        damping (GR20)."""
        blocks = self.layout.unflatten(params, xp=xp)
        directions = self.layout.unflatten(v, xp=xp)
        n = self.n_hidden

        def cell_steps():            # (R{h_t}, R{a_t}), t = 1 … T, on the step's [B, ·] slices
            r_hidden = xp.broadcast_to(directions["h_0"], cache.initial.shape)    # (GR7) R{h_0}
            steps = zip(input_steps(xp, inputs),
                        previous_states(xp, cache.initial, cache.hiddens), cache.gate_steps,
                        cache.reset_path_steps, cache.update_path_steps,
                        cache.candidate_path_steps)
            for input_step, previous, gates, reset_path, update_path, candidate_path in steps:
                reset, update = gates[:, :n], gates[:, n:]                      # r_t, ζ_t
                r_input_part = step_product(xp, input_step, directions["W_x"])  # (GR7) R{p_t}
                r_hidden_part = (previous @ directions["W_h"]                      # (GR7) R{q_t}
                                 + r_hidden @ blocks["W_h"])
                if self.biases:
                    r_input_part = r_input_part + directions["b_x"]
                    r_hidden_part = r_hidden_part + directions["b_h"]
                r_gate_pres = (r_input_part[:, :2 * n]                      # (GR8) R{a^r}, R{a^ζ}
                               + r_hidden_part[:, :2 * n])
                r_candidate_pre = (r_input_part[:, 2 * n:]                       # (GR9) R{a^n}
                                   + reset_path * r_gate_pres[:, :n]
                                   + reset * r_hidden_part[:, 2 * n:])
                r_hidden = (candidate_path * r_candidate_pre                     # (GR10) R{h_t}
                            + update_path * r_gate_pres[:, n:]
                            + update * r_hidden)
                yield r_hidden, (xp.concat([r_gate_pres, r_candidate_pre], axis=1)
                                 if with_pre else None)

        return self._r_output_layer(xp, blocks, directions, cache.hiddens, cell_steps(),
                                    with_pre)                                   # (GR11) R{z_t}

    def _backprop(self, params, inputs, cache, delta_net_output, *, xp, delta_pre_extra=None):
        """Backpropagation through time Jᵀ δ, derivations/gru.md eq. (GR12)-(GR18): the R-forward
        lines transposed, in reverse. ``delta_pre_extra`` u [T, B, 3n_h] is added to every
        δa_t = [δa^r_t, δa^ζ_t, δa^n_t], which makes it J_aᵀ u, the structural damping term's
        (S3), (GR20)."""
        blocks = self.layout.unflatten(params, xp=xp)
        n = self.n_hidden
        delta_carry = xp.zeros_like(cache.initial)                       # δh_T from step T + 1: 0
        sums, gradient_bxn = (0.0, 0.0, 0.0), 0.0                       # Σ_t of (GR16)
        columns = alphabet(xp, inputs, self.n_inputs)                    # for ids' one-hot rows
        steps = list(zip(input_steps(xp, inputs),
                         previous_states(xp, cache.initial, cache.hiddens), cache.gate_steps,
                         cache.reset_path_steps, cache.update_path_steps,
                         cache.candidate_path_steps, time_steps(xp, delta_net_output),
                         extra_steps(xp, delta_pre_extra, len(cache.gate_steps))))
        for (input_step, previous, gates, reset_path, update_path, candidate_path, delta_output,
             extra) in reversed(steps):
            reset, update = gates[:, :n], gates[:, n:]                      # r_t, ζ_t
            delta_hidden = delta_output @ blocks["W_hy"].T + delta_carry    # (GR12) δh_t
            delta_update_pre = update_path * delta_hidden                   # (GR13) δa^ζ_t
            delta_candidate_pre = candidate_path * delta_hidden             # (GR13) δa^n_t
            if extra is not None:
                delta_update_pre = delta_update_pre + extra[:, n:2 * n]
                delta_candidate_pre = delta_candidate_pre + extra[:, 2 * n:]
            delta_reset_pre = reset_path * delta_candidate_pre              # (GR14) δa^r_t
            if extra is not None:
                delta_reset_pre = delta_reset_pre + extra[:, :n]
            delta_input_part = xp.concat([delta_reset_pre, delta_update_pre,     # (GR15) δp_t
                                          delta_candidate_pre], axis=1)
            delta_hidden_part = xp.concat([delta_reset_pre, delta_update_pre,    # (GR15) δq_t
                                           reset * delta_candidate_pre], axis=1)
            sums = self._add_step_gradients(xp, sums, input_step, columns, previous,
                                            delta_input_part, delta_hidden_part)  # (GR16)
            if self.biases:
                gradient_bxn = gradient_bxn + xp.sum(delta_candidate_pre, axis=0)        # (GR16)
            delta_carry = (delta_hidden_part @ blocks["W_h"].T                  # (GR12), step t
                           + update * delta_hidden)
        gradient_x, gradient_h, gradient_bh = sums
        gradient_blocks = {"W_x": gradient_x, "W_h": gradient_h,
                           "h_0": xp.sum(delta_carry, axis=0),                          # (GR18)
                           **self._output_gradients(xp, cache.hiddens, delta_net_output)}  # (GR17)
        if self.biases:
            gradient_blocks["b_h"] = gradient_bh
            gradient_blocks["b_x"] = xp.concat([gradient_bh[:2 * n], gradient_bxn])      # (GR16)
        return self.layout.flatten(gradient_blocks, xp=xp)

    # -- conversions to torch (host side, interop/torch_gru.py) ----------------------------
    def to_torch(self, params: Any) -> tuple[Any, Any, Any]:
        """``(gru, head, h_0)``: a torch.nn.GRU, a torch.nn.Linear and h_0 [1, 1, n_h] holding θ
        (derivations/gru.md, "Conversion to and from torch"). See ``torch_gru.to_torch``."""
        self._check_params(params)
        from arrayhf.interop import torch_gru  # host side: the model does not need it

        return torch_gru.to_torch(self, params)


__all__ = ["GRU", "GRUCache"]
