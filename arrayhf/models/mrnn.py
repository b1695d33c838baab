"""Multiplicative recurrent network (Sutskever, Martens & Hinton 2011) with hand-derived forward,
R-forward and backpropagation through time, structural damping, and character-id inputs.

The input chooses the transition: it gates a factor layer between h_{t−1} and a_t, so that each
character in effect has its own recurrent matrix W_{h→f} diag(g_t) W_{f→h} ([n_h, n_f] [n_f, n_f]
[n_f, n_h], acting on the row h_{t−1} from the right; of rank at most n_f, so low rank when
n_f < n_h). Time-major sequences, rows are cases, t = 1 … T, learned initial state h_0. Every
variant is one set of equations over the *roles* of its blocks (derivations/mrnn.md, eq.
(M1)-(M6)):

    g_t = φ(x_t W_{x→f}) + b_f         gates: what the input contributes to the factors   (M1)
    c_t = h_{t−1} W_{h→f}              the previous state in factor space                 (M2)
    f_t = g_t ⊙ c_t                    factors                                            (M3)
    a_t = f_t W_{f→h} + x_t W_{x→h} + b_h                                                 (M4)
    h_t = f(a_t),   z_t = h_t W_hy + b_y                                                  (M5), (M6)

- ``variant="paper"`` (SMH11): φ = identity and no b_f, i.e. f_t = (x_t W_fx) ⊙ (h_{t−1} W_fh),
  a_t = f_t W_hf + x_t W_hx + b_h. Blocks W_fx, W_fh, W_hf, W_hx play the four roles.
- ``variant="release"`` (the 2011 release's ``opt.m.rnn.mrnn``): B_t = tanh(x_t W_vf),
  A_t = h_{t−1} W_hf, a_t = (A_t ⊙ (B_t + f_bias)) W_fh + x_t W_vh (+ b_h): φ = tanh and
  b_f = ``f_bias``; blocks W_vf, W_hf, W_fh, W_vh play the roles x→f, h→f, f→h, x→h. Mind the
  names: the paper writes "to-from" (W_fh maps h to f), the release "from-to" (W_hf maps h to f).
  The gate nonlinearity makes R-forward and BPTT multiply by φ' = 1 − B_t² on the x→f path.

Inputs are float arrays ``[T, B, n_in]`` (one-hot rows, or any features), or integer character
ids ``[T, B]`` of any integer dtype. With ids, x_t W is a row gather ``take(W, ids)`` (no dense
one-hot on the forward and R-forward paths); the weight gradients Σ_t x_tᵀ D_t are a scatter-add
of the rows of D into the ids' rows, which the array API lacks, so they are computed portably as
one product Eᵀ D with the one-hot matrix E = (ids == arange(n_in)) built from the ids (eq. (M23)).

Everything that does not depend on the previous step (the gates, x_t W_{x→h}, the outputs, the
R-forward's direct terms, all weight gradients) is batched over time; each loop step does two
matrix products (with W_{h→f} and W_{f→h}) and element-wise work, and never pulls a Python float.

Structural damping as for the RNN (derivations/structural-damping.md): S v = J_aᵀ Κ J_a v / N on
the hidden pre-activations a_t, Κ = κ·diag(f'(a_t)), injected into BPTT as an extra δa_t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from arrayhf import backend, initialization
from arrayhf.layout import Layout
from arrayhf.losses import MatchingLoss
from arrayhf.models.inputs import input_product, input_rows
from arrayhf.models.recurrent import RecurrentModel, flatten_time
from arrayhf.nonlinearities import Nonlinearity

VARIANTS = ("paper", "release")
# the blocks in the roles x→f, h→f, f→h, x→h of eq. (M1)-(M4), per variant
ROLE_BLOCKS = {"paper": ("W_fx", "W_fh", "W_hf", "W_hx"),
               "release": ("W_vf", "W_hf", "W_fh", "W_vh")}


@dataclass(frozen=True)
class MRNNCache:
    """The forward pass, kept for R-forward and BPTT (all ``[T, B, ·]``).

    gates: g_t [n_f] (M1); gate_slopes: φ'(x_t W_{x→f}) = 1 − B_t² for the release variant, None
    for the paper's (φ' = 1); hidden_factors: c_t = h_{t−1} W_{h→f} [n_f] (M2); factors: f_t
    (M3); previous_hiddens: h_0 … h_{T−1} [n_h] (h_0 broadcast over the batch); hiddens:
    h_1 … h_T; slopes: f'(a_t); net_output: z [n_out]; predictions: g(z).
    """

    gates: Any
    gate_slopes: Any
    hidden_factors: Any
    factors: Any
    previous_hiddens: Any
    hiddens: Any
    slopes: Any
    net_output: Any
    predictions: Any


class MRNN(RecurrentModel):
    """Multiplicative recurrent network with a learned initial state.

    Parameters
    ----------
    n_inputs, n_hidden, n_factors, n_outputs : int
        n_inputs is the alphabet size for character-id inputs.
    hidden : str
        Hidden nonlinearity f, as for the RNN.
    output : str or MatchingLoss
        By default "softmax" (next-character prediction).
    variant : {"paper", "release"}
        SMH11's equations, or the 2011 release's (tanh gate with a factor bias); see the module
        docstring.
    biases, structural_curvature
        As for every recurrent model (``RecurrentModel``): b_h and b_y (the release had none; its
        ``f_bias`` is always there); κ of Κ = κ·diag(f'(a_t)), eq. (S2), by default f's own.

    Notes
    -----
    Parameter blocks, in order. paper: ``W_fx`` [n_in, n_f], ``W_fh`` [n_h, n_f], ``W_hf``
    [n_f, n_h], ``W_hx`` [n_in, n_h], ``b_h`` [n_h], ``W_hy`` [n_h, n_out], ``b_y`` [n_out],
    ``h_0`` [n_h]. release: ``W_vf`` [n_in, n_f], ``f_bias`` [n_f], ``W_hf`` [n_h, n_f],
    ``W_fh`` [n_f, n_h], ``W_vh`` [n_in, n_h], ``b_h``, ``W_hy``, ``b_y``, ``h_0`` (the release's
    ``W_ho`` and ``h_init`` are ``W_hy`` and ``h_0``). b_h and b_y only when ``biases``. The
    output blocks are named as in every recurrent model (they were ``W_oh`` and ``b_o`` before
    version 0.2; same place in θ, so older checkpoints load unchanged).
    """

    sizes = ("n_inputs", "n_hidden", "n_factors", "n_outputs")
    options = ("variant",)
    n_factors: int

    def __init__(self, n_inputs: int, n_hidden: int, n_factors: int, n_outputs: int,
                 hidden: str | Nonlinearity = "tanh", output: str | MatchingLoss = "softmax",
                 variant: str = "paper", biases: bool = True,
                 structural_curvature: float | None = None) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"expected variant 'paper' or 'release', got {variant!r}")
        self._set_common({"n_inputs": n_inputs, "n_hidden": n_hidden, "n_factors": n_factors,
                          "n_outputs": n_outputs}, hidden, output, biases, structural_curvature)
        self.variant = variant
        self.role_names = ROLE_BLOCKS[variant]
        input_to_factor, hidden_to_factor, factor_to_hidden, input_to_hidden = self.role_names
        blocks: list[tuple[str, tuple[int, ...]]] = [(input_to_factor, (n_inputs, n_factors))]
        if variant == "release":
            blocks.append(("f_bias", (n_factors,)))
        blocks += [(hidden_to_factor, (n_hidden, n_factors)),
                   (factor_to_hidden, (n_factors, n_hidden)),
                   (input_to_hidden, (n_inputs, n_hidden))]
        self.layout = Layout(blocks + self._hidden_and_output_blocks())

    def _roles(self, blocks) -> tuple:
        """(W_{x→f}, W_{h→f}, W_{f→h}, W_{x→h}): this variant's blocks in the roles of (M1)-(M4)."""
        return tuple(blocks[name] for name in self.role_names)

    # -- initialization (host RNG, same numbers on every backend) --------------------------
    def init(self, seed: int, *, xp: Any = None, dtype: Any = None, device: Any = None,
             scheme: str = "sparse", scale: float | None = None, n_nonzero: int = 15) -> Any:
        """Initial θ drawn on the host from ``seed``, block by block in layout order.

        ``scheme="sparse"`` (default): every factor, hidden and output unit gets min(``n_nonzero``
        (15), the block's fan-in) nonzero incoming weights from each weight block, from N(0, scale²)
        with scale 1/√15 (the 2011 release's ``sparsify_strict`` with the demo's scale), and ``h_0``
        (and, for the release variant, ``f_bias``) from N(0, scale²), as the release draws every
        block; b_h and b_y zero. ``"dense"``: N(0, scale²/fan_in) weights (scale 1), h_0, f_bias and
        biases zero. (SMH11 start from small random weights; the sparse scheme is the release's
        choice, derivations/mrnn.md, "Initialization".)
        """
        if scheme not in ("sparse", "dense"):
            raise ValueError(f"expected scheme 'sparse' or 'dense', got {scheme!r}")
        if scale is None:
            scale = 1.0 / math.sqrt(15.0) if scheme == "sparse" else 1.0
        rng = backend.host_rng(seed)
        host_blocks: dict[str, Any] = {}
        for name in self.layout.names:
            shape = self.layout.shapes[name]
            if len(shape) == 2 and scheme == "dense":
                host_blocks[name] = initialization.dense_weights(rng, *shape, scale=scale)
            elif len(shape) == 2:
                host_blocks[name] = initialization.sparse_weights(rng, *shape,
                                                                  n_nonzero=n_nonzero, scale=scale)
            elif name in ("h_0", "f_bias") and scheme == "sparse":
                host_blocks[name] = scale * rng.standard_normal(shape[0])
            else:
                host_blocks[name] = [0.0] * shape[0]
        return initialization.pack(self.layout, host_blocks, xp, dtype=dtype, device=device)

    # -- the three passes, side by side ----------------------------------------------------
    def _forward(self, params, inputs, *, xp):
        """Forward pass, derivations/mrnn.md eq. (M1)-(M6)."""
        blocks = self.layout.unflatten(params, xp=xp)
        input_to_factor, hidden_to_factor, factor_to_hidden, input_to_hidden = self._roles(blocks)
        gate_pre = input_product(xp, inputs, input_to_factor)      # e_t = x_t W_{x→f}
        gates, gate_slopes = gate_pre, None                              # (M1) g_t = e_t (paper)
        if self.variant == "release":
            gate_values = xp.tanh(gate_pre)                              # B_t = tanh(e_t)
            gate_slopes = 1.0 - gate_values * gate_values                # φ'(e_t) = 1 − B_t²
            gates = gate_values + blocks["f_bias"]                       # (M1) g_t = B_t + b_f
        input_part = input_product(xp, inputs, input_to_hidden)    # x_t W_{x→h} + b_h
        if self.biases:
            input_part = input_part + blocks["b_h"]
        hidden = xp.broadcast_to(blocks["h_0"], (inputs.shape[1], self.n_hidden))
        previous, hidden_factors, factors, hiddens = [], [], [], []
        for step in range(inputs.shape[0]):
            previous.append(hidden)
            hidden_factor = hidden @ hidden_to_factor                    # (M2) c_t
            factor = gates[step, ...] * hidden_factor                    # (M3) f_t
            pre = factor @ factor_to_hidden + input_part[step, ...]      # (M4) a_t
            hidden = self.hidden.value(xp, pre)                          # (M5) h_t = f(a_t)
            hidden_factors.append(hidden_factor)
            factors.append(factor)
            hiddens.append(hidden)
        hiddens = xp.stack(hiddens)
        net_output = self._net_output(blocks, hiddens)                   # (M6) z_t
        return MRNNCache(gates=gates, gate_slopes=gate_slopes,
                         hidden_factors=xp.stack(hidden_factors), factors=xp.stack(factors),
                         previous_hiddens=xp.stack(previous), hiddens=hiddens,
                         slopes=self.hidden.slope(xp, hiddens), net_output=net_output,
                         predictions=self.output._predict(xp, net_output))

    def _r_forward(self, params, v, inputs, cache, *, xp, with_pre=False):
        """R-forward pass R{z} = J v, derivations/mrnn.md eq. (M7)-(M12): the forward pass with
        R{·} applied line by line, the product rule through the factors (M9). With ``with_pre``
        it also returns R{a} [T, B, n_h] (for structural damping)."""
        blocks = self.layout.unflatten(params, xp=xp)
        directions = self.layout.unflatten(v, xp=xp)
        _, hidden_to_factor, factor_to_hidden, _ = self._roles(blocks)
        (r_input_to_factor, r_hidden_to_factor, r_factor_to_hidden,
         r_input_to_hidden) = self._roles(directions)
        r_gate_pre = input_product(xp, inputs, r_input_to_factor)  # R{e_t} = x_t R{W_{x→f}}
        r_gates = r_gate_pre                                             # (M7) R{g_t} (paper)
        if self.variant == "release":
            r_gates = cache.gate_slopes * r_gate_pre + directions["f_bias"]  # (M7) R{g_t}
        # the terms of (M8)-(M10) free of R{h_{t−1}}, every t at once
        direct_hidden_factors = cache.previous_hiddens @ r_hidden_to_factor  # h_{t−1} R{W_{h→f}}
        direct_factors = r_gates * cache.hidden_factors                  # R{g_t} ⊙ c_t
        direct_part = (cache.factors @ r_factor_to_hidden                # f_t R{W_{f→h}}
                       + input_product(xp, inputs, r_input_to_hidden))  # + x_t R{W_{x→h}}
        if self.biases:
            direct_part = direct_part + directions["b_h"]                # + R{b_h}
        r_hidden = xp.broadcast_to(directions["h_0"], (inputs.shape[1], self.n_hidden))  # R{h_0}
        r_pres, r_hiddens = [], []
        for step in range(inputs.shape[0]):
            r_hidden_factor = (r_hidden @ hidden_to_factor                # (M8) R{c_t}
                               + direct_hidden_factors[step, ...])
            r_factor = (direct_factors[step, ...]                         # (M9) R{f_t}
                        + cache.gates[step, ...] * r_hidden_factor)
            r_pre = r_factor @ factor_to_hidden + direct_part[step, ...]  # (M10) R{a_t}
            r_hidden = cache.slopes[step, ...] * r_pre                    # (M11) R{h_t}
            r_pres.append(r_pre)
            r_hiddens.append(r_hidden)
        r_net_output = self._r_net_output(directions, cache.hiddens,     # (M12) R{z_t}
                                          xp.stack(r_hiddens) @ blocks["W_hy"])
        return (r_net_output, xp.stack(r_pres)) if with_pre else r_net_output

    def _backprop(self, params, inputs, cache, delta_net_output, *, xp, delta_pre_extra=None):
        """Backpropagation through time Jᵀ δ, derivations/mrnn.md eq. (M13)-(M23): the forward
        lines in reverse. ``delta_pre_extra`` [T, B, n_h] is added to every δa_t (the structural
        damping term's Jᵀ, eq. (S3), (M24))."""
        blocks = self.layout.unflatten(params, xp=xp)
        _, hidden_to_factor, factor_to_hidden, _ = self._roles(blocks)
        delta_from_output = delta_net_output @ blocks["W_hy"].T          # (M13) δz_t W_hyᵀ
        delta_hidden_factor = xp.zeros_like(cache.hidden_factors[0, ...])  # δc_{T+1} = 0
        delta_pres, delta_factors, delta_hidden_factors = [], [], []
        for step in range(inputs.shape[0] - 1, -1, -1):
            delta_hidden = (delta_from_output[step, ...]                  # (M14) δh_t
                            + delta_hidden_factor @ hidden_to_factor.T)
            delta_pre = cache.slopes[step, ...] * delta_hidden            # (M15) δa_t
            if delta_pre_extra is not None:
                delta_pre = delta_pre + delta_pre_extra[step, ...]
            delta_factor = delta_pre @ factor_to_hidden.T                 # (M16) δf_t
            delta_hidden_factor = cache.gates[step, ...] * delta_factor   # (M17) δc_t
            delta_pres.append(delta_pre)
            delta_factors.append(delta_factor)
            delta_hidden_factors.append(delta_hidden_factor)
        delta_pres = xp.stack(delta_pres[::-1])                           # [T, B, n_h]
        delta_factors = xp.stack(delta_factors[::-1])                     # [T, B, n_f]
        delta_hidden_factors = xp.stack(delta_hidden_factors[::-1])       # [T, B, n_f]
        delta_gates = delta_factors * cache.hidden_factors                # (M17) δg_t
        delta_gate_pres = delta_gates                                     # (M20) δe_t (paper)
        if self.variant == "release":
            delta_gate_pres = cache.gate_slopes * delta_gates             # (M20) δe_t
        flat = flatten_time
        rows = input_rows(xp, inputs, self.n_inputs, delta_pres.dtype)   # (M23) flat(x) or E
        role_gradients = (
            rows.T @ flat(xp, delta_gate_pres),                         # (M20) W_{x→f}
            flat(xp, cache.previous_hiddens).T @ flat(xp, delta_hidden_factors),  # (M19) W_{h→f}
            flat(xp, cache.factors).T @ flat(xp, delta_pres),                 # (M18) W_{f→h}
            rows.T @ flat(xp, delta_pres),                              # (M18) W_{x→h}
        )
        gradient_blocks = dict(zip(self.role_names, role_gradients))
        gradient_blocks.update(self._output_gradients(xp, cache.hiddens, delta_net_output))  # (M21)
        gradient_blocks["h_0"] = xp.sum(delta_hidden_factors[0, ...] @ hidden_to_factor.T,
                                        axis=0)                                         # (M22)
        if self.variant == "release":
            gradient_blocks["f_bias"] = xp.sum(delta_gates, axis=(0, 1))                # (M20)
        if self.biases:
            gradient_blocks["b_h"] = xp.sum(delta_pres, axis=(0, 1))                    # (M18)
        return self.layout.flatten(gradient_blocks, xp=xp)
