"""Feedforward network (and deep autoencoder) with hand-derived forward, R-forward and backprop.

Layers l = 1 … L; layer sizes n_0 (inputs) … n_L (outputs). Rows are cases:

    a_l = h_{l−1} W_l + b_l,   h_l = f_l(a_l)    (l < L),    z = h_{L−1} W_L + b_L

with h_0 = x, hidden nonlinearities f_l, and the output nonlinearity and loss given by a
MatchingLoss. The three passes below mirror each other line by line; their equations are in
derivations/fnn.md, eq. (F1)-(F10). A deep autoencoder (HF10's CURVES net, say) is an FNN whose
layer sizes go down to a code layer and back up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arrayhf import backend, initialization, losses, nonlinearities
from arrayhf.layout import Layout
from arrayhf.losses import MatchingLoss
from arrayhf.models.base import Model
from arrayhf.nonlinearities import Nonlinearity

if TYPE_CHECKING:
    from arrayhf.data.batch import Batch


@dataclass(frozen=True)
class FNNCache:
    """The forward pass, kept for R-forward and backprop.

    hiddens: [h_0, …, h_{L−1}] (h_0 = inputs); slopes: [f_1'(a_1), …, f_{L−1}'(a_{L−1})];
    net_output: z; predictions: g(z).
    """

    hiddens: list
    slopes: list
    net_output: Any
    predictions: Any


class FNN(Model):
    """Feedforward network.

    Parameters
    ----------
    layer_sizes : sequence of int
        [n_0, n_1, …, n_L]: inputs, hidden layers, outputs (at least two entries).
    hidden : str or sequence of str
        The hidden nonlinearity ("tanh", "logistic", "relu", "linear"), one for all hidden
        layers or one per hidden layer.
    output : str or MatchingLoss
        "linear" (squared error), "logistic" (binary cross-entropy) or "softmax" (categorical
        cross-entropy).

    Notes
    -----
    Parameter blocks: ``W_l`` of shape [n_{l−1}, n_l] and ``b_l`` of shape [n_l], l = 1 … L.
    """

    data_axes = 1

    def __init__(self, layer_sizes: Sequence[int],
                 hidden: str | Nonlinearity | Sequence[str | Nonlinearity] = "tanh",
                 output: str | MatchingLoss = "softmax") -> None:
        sizes = list(layer_sizes)
        if len(sizes) < 2 or not all(isinstance(n, int) and n >= 1 for n in sizes):
            raise ValueError(
                f"expected layer_sizes of at least two positive ints, got {layer_sizes!r}")
        n_hidden_layers = len(sizes) - 2
        if isinstance(hidden, str | nonlinearities.Nonlinearity):
            hidden = [hidden] * n_hidden_layers
        if len(hidden) != n_hidden_layers:
            raise ValueError(f"expected {n_hidden_layers} hidden nonlinearities (one per hidden "
                             f"layer), got {len(hidden)}")
        self.layer_sizes = sizes
        self.n_layers = len(sizes) - 1  # L
        self.hidden = [nonlinearities.get(name) for name in hidden]
        self.output = losses.get(output)
        self.n_inputs, self.n_outputs = sizes[0], sizes[-1]
        blocks: list[tuple[str, tuple[int, ...]]] = []
        for layer in range(1, self.n_layers + 1):
            blocks.append((f"W_{layer}", (sizes[layer - 1], sizes[layer])))
            blocks.append((f"b_{layer}", (sizes[layer],)))
        self.layout = Layout(blocks)

    def __repr__(self) -> str:
        return (f"FNN({self.layer_sizes}, hidden={[f.name for f in self.hidden]}, "
                f"output={self.output.name!r})")

    def config(self) -> dict:
        """The constructor arguments, as JSON-ready values."""
        return {"class": "FNN", "layer_sizes": self.layer_sizes,
                "hidden": [f.name for f in self.hidden], "output": self.output.name}

    # -- initialization (host RNG, same numbers on every backend) --------------------------
    def init(self, seed: int, *, xp: Any = None, dtype: Any = None, device: Any = None,
             scheme: str = "sparse", scale: float = 1.0, n_nonzero: int = 15) -> Any:
        """Initial θ drawn on the host from ``seed`` and moved to ``xp`` / ``dtype`` / ``device``.

        ``scheme="sparse"`` (Martens 2010): each unit gets min(``n_nonzero``, fan-in) nonzero
        incoming weights from N(0, scale²), the scale halved for tanh units, whose biases start
        at 0.5 (other biases 0). ``scheme="dense"``: weights N(0, scale²/fan_in), biases 0.
        """
        if scheme not in ("sparse", "dense"):
            raise ValueError(f"expected scheme 'sparse' or 'dense', got {scheme!r}")
        rng = backend.host_rng(seed)
        host_blocks: dict[str, Any] = {}
        unit_kinds = [f.name for f in self.hidden] + [None]  # the output layer: no hidden f
        for layer in range(1, self.n_layers + 1):
            fan_in, fan_out = self.layer_sizes[layer - 1], self.layer_sizes[layer]
            is_tanh = unit_kinds[layer - 1] == "tanh"
            if scheme == "sparse":
                host_blocks[f"W_{layer}"] = initialization.sparse_weights(
                    rng, fan_in, fan_out, n_nonzero=n_nonzero,
                    scale=scale * (0.5 if is_tanh else 1.0))
                host_blocks[f"b_{layer}"] = [0.5 if is_tanh else 0.0] * fan_out
            else:
                host_blocks[f"W_{layer}"] = initialization.dense_weights(
                    rng, fan_in, fan_out, scale=scale)
                host_blocks[f"b_{layer}"] = [0.0] * fan_out
        return initialization.pack(self.layout, host_blocks, xp, dtype=dtype, device=device)

    # -- the three passes, side by side ----------------------------------------------------
    def _forward(self, params, inputs, *, xp):
        """Forward pass, derivations/fnn.md eq. (F1)-(F3)."""
        blocks = self.layout.unflatten(params, xp=xp)
        hidden = inputs                                                   # h_0 = x
        hiddens, slopes = [hidden], []
        for layer, nonlinearity in enumerate(self.hidden, start=1):
            pre = hidden @ blocks[f"W_{layer}"] + blocks[f"b_{layer}"]   # (F1) a_l
            hidden = nonlinearity.value(xp, pre)                          # (F2) h_l = f_l(a_l)
            hiddens.append(hidden)
            slopes.append(nonlinearity.slope(xp, hidden))                 # f_l'(a_l)
        last = self.n_layers
        net_output = hidden @ blocks[f"W_{last}"] + blocks[f"b_{last}"]   # (F3) z
        return FNNCache(hiddens=hiddens, slopes=slopes, net_output=net_output,
                        predictions=self.output._predict(xp, net_output))

    def _r_forward(self, params, v, inputs, cache, *, xp):
        """R-forward pass R{z} = J v, derivations/fnn.md eq. (F4)-(F6): the forward pass with
        R{·} applied line by line; v's blocks are R{W_l}, R{b_l}, and R{h_0} = 0."""
        blocks = self.layout.unflatten(params, xp=xp)
        directions = self.layout.unflatten(v, xp=xp)
        r_hidden = None                                                   # R{h_0} = 0
        for layer in range(1, self.n_layers):
            r_pre = (cache.hiddens[layer - 1] @ directions[f"W_{layer}"]  # (F4) R{a_l}
                     + directions[f"b_{layer}"])
            if r_hidden is not None:
                r_pre = r_pre + r_hidden @ blocks[f"W_{layer}"]
            r_hidden = cache.slopes[layer - 1] * r_pre                    # (F5) R{h_l}
        last = self.n_layers
        r_net_output = (cache.hiddens[last - 1] @ directions[f"W_{last}"]  # (F6) R{z}
                        + directions[f"b_{last}"])
        if r_hidden is not None:
            r_net_output = r_net_output + r_hidden @ blocks[f"W_{last}"]
        return r_net_output

    def _pre_activation_deltas(self, blocks, cache, delta_net_output) -> dict:
        """δa_L, …, δa_1 by the backward recursion, derivations/fnn.md eq. (F9)-(F10)."""
        deltas_by_layer = {}
        delta_pre = delta_net_output                                      # δa_L = δz
        for layer in range(self.n_layers, 0, -1):
            deltas_by_layer[layer] = delta_pre
            if layer > 1:
                delta_hidden = delta_pre @ blocks[f"W_{layer}"].T                    # (F9) δh
                delta_pre = cache.slopes[layer - 2] * delta_hidden                   # (F10) δa
        return deltas_by_layer

    def _backprop(self, params, inputs, cache, delta_net_output, *, xp):
        """Backward pass Jᵀ δ, derivations/fnn.md eq. (F7)-(F10): the forward lines in reverse,
        δa_L = δz."""
        blocks = self.layout.unflatten(params, xp=xp)
        deltas = self._pre_activation_deltas(blocks, cache, delta_net_output)
        gradient_blocks = {}
        for layer, delta_pre in deltas.items():
            gradient_blocks[f"W_{layer}"] = cache.hiddens[layer - 1].T @ delta_pre   # (F7)
            gradient_blocks[f"b_{layer}"] = xp.sum(delta_pre, axis=0)               # (F8)
        return self.layout.flatten(gradient_blocks, xp=xp)

    def per_case_squared_gradient(self, params: Any, batch: Batch, cache: Any = None) -> Any:
        """(1/N) Σ_p m_p g_p ⊙ g_p, g_p the gradient of case p's own loss ℓ_p: the diagonal of the
        empirical Fisher, for Martens' preconditioner (derivations/fnn.md eq. (F11)-(F12)).

        Rows do not interact in an FNN, so squaring (F7)-(F8) case by case gives
        Σ_p (h_p ⊗ δa_p)² = (h ⊙ h)ᵀ(δa ⊙ δa) without forming any per-case gradient. The backward
        recursion starts from √m_p ∂ℓ_p/∂z_p, so that the squares carry m_p (not m_p²): right for
        fractional mask weights as for 0/1 masks.
        """
        xp = self.check_batch(params, batch)
        if cache is None:
            cache = self.forward(params, batch.inputs)
        blocks = self.layout.unflatten(params)
        if batch.mask is None:
            root_mask, root_count = None, float(batch.inputs.shape[0])
            count = root_count
        else:
            weights = xp.astype(batch.mask, params.dtype)
            root_mask, count = xp.sqrt(weights), xp.sum(weights)
            root_count = xp.sum(root_mask)
        # the loss's delta with the mask √m is (√m_p / Σ√m) ∂ℓ_p/∂z_p (losses.md, (L3)/(L6)/(L9));
        # times Σ√m: the per-case deltas √m_p ∂ℓ_p/∂z_p
        normalized = self.output.delta(cache.net_output, batch.targets, root_mask,
                                       predictions=cache.predictions)
        deltas = self._pre_activation_deltas(blocks, cache, root_count * normalized)
        squared_blocks = {}
        for layer, delta_pre in deltas.items():
            hidden = cache.hiddens[layer - 1]
            squared_blocks[f"W_{layer}"] = (hidden * hidden).T @ (delta_pre * delta_pre)  # (F11)
            squared_blocks[f"b_{layer}"] = xp.sum(delta_pre * delta_pre, axis=0)         # (F12)
        return self.layout.flatten(squared_blocks) / count
