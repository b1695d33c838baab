"""The LSTM to and from torch modules: a one-layer ``torch.nn.LSTM`` with a ``torch.nn.Linear``
head (derivations/lstm.md, "Conversion to and from torch", eq. (LS19)).

Host-side code, like checkpoint I/O: torch is imported only inside these functions (arrayhf needs
it only when they are called), and the arrays cross on the host as numpy arrays. torch stores
``weight_ih_l0`` [4n_h, n_in] and ``weight_hh_l0`` [4n_h, n_h] for column vectors, with the gate
blocks i, f, g, o stacked along the first axis, and two biases; arrayhf multiplies rows from the
right, so

    W_x = weight_ih_l0ᵀ,  W_h = weight_hh_l0ᵀ,  b = bias_ih_l0 + bias_hh_l0,
    W_hy = head.weightᵀ,  b_y = head.bias                                         (LS19)

with the gate order unchanged along W's last axis. The two biases always enter torch's gates as
their sum, so only the sum is a parameter here; ``to_torch`` puts b in ``bias_ih_l0`` and zeros in
``bias_hh_l0``, and ``from_torch(*to_torch(θ))`` gives θ back exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from arrayhf import backend, initialization
from arrayhf.losses import MatchingLoss

if TYPE_CHECKING:
    from arrayhf.models.lstm import LSTM


def _host(tensor: Any) -> np.ndarray:
    """A float64 numpy copy of a torch tensor (parameters need no gradient here)."""
    return tensor.detach().cpu().double().numpy()


def _check_modules(lstm: Any, head: Any) -> bool:
    """The modules are a one-layer, one-direction LSTM without projections and a Linear head on
    its n_h outputs, both with biases or both without; returns whether they have biases."""
    import torch

    if not isinstance(lstm, torch.nn.LSTM):
        raise TypeError(f"expected lstm a torch.nn.LSTM, got {type(lstm).__name__}")
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(f"expected head a torch.nn.Linear, got {type(head).__name__}")
    refusals = [(lstm.num_layers != 1, f"num_layers=1, got {lstm.num_layers}"),
                (lstm.bidirectional, "bidirectional=False, got True"),
                (lstm.proj_size != 0, f"proj_size=0, got {lstm.proj_size}"),
                (head.in_features != lstm.hidden_size,
                 f"a head with in_features = hidden_size = {lstm.hidden_size}, got "
                 f"{head.in_features}"),
                ((head.bias is not None) != lstm.bias,
                 f"biases in both modules or in neither, got bias={lstm.bias} in the LSTM and "
                 f"bias={head.bias is not None} in the head")]
    for refused, expected in refusals:
        if refused:
            raise ValueError(f"from_torch converts a one-layer, one-direction torch.nn.LSTM "
                             f"without projections: expected {expected}")
    return bool(lstm.bias)


def _initial_rows(initial_state: Any, n_hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """(h_0, c_0) as host rows [n_h]: zeros for None, else two tensors of n_h entries each (shape
    [1, 1, n_h], [1, n_h] or [n_h]: one state shared by every sequence, as arrayhf learns it)."""
    if initial_state is None:
        return np.zeros(n_hidden), np.zeros(n_hidden)
    if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 2:
        raise TypeError(f"expected initial_state None or a pair (h_0, c_0), got "
                        f"{type(initial_state).__name__}")
    rows = []
    for name, state in zip(("h_0", "c_0"), initial_state):
        shape = tuple(state.shape)
        if shape not in ((1, 1, n_hidden), (1, n_hidden), (n_hidden,)):
            raise ValueError(f"expected initial_state's {name} of shape [1, 1, {n_hidden}], "
                             f"[1, {n_hidden}] or [{n_hidden}] (one state for every sequence), "
                             f"got {list(shape)}")
        rows.append(np.reshape(_host(state), -1))
    return rows[0], rows[1]


def from_torch(lstm: Any, head: Any, initial_state: Any = None, *,
               output: str | MatchingLoss = "linear", structural_curvature: float | None = None,
               xp: Any = None, dtype: Any = None, device: Any = None) -> tuple[LSTM, Any]:
    """``(model, params)``: the :class:`arrayhf.LSTM` computing what ``head(lstm(x)[0])`` does,
    and its θ, eq. (LS19).

    Parameters
    ----------
    lstm : torch.nn.LSTM
        One layer, one direction, no projection (``proj_size=0``). ``batch_first`` changes only
        torch's data layout, not the weights (arrayhf's data are always time-major).
    head : torch.nn.Linear
        The output layer on the hidden states: ``in_features = lstm.hidden_size``; biases in both
        modules or in neither (``biases`` of the model).
    initial_state : (h_0, c_0), optional
        Tensors of n_h entries each (shape [1, 1, n_h], [1, n_h] or [n_h]); default zeros, torch's
        default when no state is passed.
    output, structural_curvature
        As for :class:`arrayhf.LSTM` (the torch modules carry no loss).
    xp, dtype, device
        Where θ goes, as for ``init``: default the ``$ARRAYHF_BACKEND`` namespace (numpy), the
        modules' dtype ("float64" for float64 modules, else "float32"), the default device.
    """
    from arrayhf.models.lstm import LSTM

    biases = _check_modules(lstm, head)
    n_hidden = lstm.hidden_size
    model = LSTM(lstm.input_size, n_hidden, head.out_features, output=output, biases=biases,
                 structural_curvature=structural_curvature)
    h_0, c_0 = _initial_rows(initial_state, n_hidden)
    host_blocks = {"W_x": _host(lstm.weight_ih_l0).T, "W_h": _host(lstm.weight_hh_l0).T,  # (LS19)
                   "W_hy": _host(head.weight).T, "h_0": h_0, "c_0": c_0}
    if biases:
        host_blocks["b"] = _host(lstm.bias_ih_l0) + _host(lstm.bias_hh_l0)                # (LS19)
        host_blocks["b_y"] = _host(head.bias)
    if dtype is None:
        dtype = "float64" if str(lstm.weight_ih_l0.dtype) == "torch.float64" else "float32"
    params = initialization.pack(model.layout, host_blocks, xp, dtype=dtype, device=device)
    return model, params


def to_torch(model: LSTM, params: Any) -> tuple[Any, Any, tuple[Any, Any]]:
    """``(lstm, head, (h_0, c_0))`` for ``model`` at ``params`` (see ``LSTM.to_torch``): CPU
    modules in θ's dtype, b in ``bias_ih_l0`` and zeros in ``bias_hh_l0`` (eq. (LS19)). The
    modules are built without drawing from torch's random generator."""
    import torch

    flat = np.asarray(backend.to_numpy(params))
    blocks = model.layout.unflatten(flat)
    dtype = torch.float64 if flat.dtype == np.float64 else torch.float32
    # built on the meta device, then given CPU memory: torch's random generator is not drawn from
    lstm = torch.nn.LSTM(model.n_inputs, model.n_hidden, bias=model.biases, device="meta",
                         dtype=dtype).to_empty(device="cpu")
    head = torch.nn.Linear(model.n_hidden, model.n_outputs, bias=model.biases, device="meta",
                           dtype=dtype).to_empty(device="cpu")

    def tensor(array: np.ndarray) -> Any:
        return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype)

    with torch.no_grad():
        lstm.weight_ih_l0.copy_(tensor(blocks["W_x"].T))                                # (LS19)
        lstm.weight_hh_l0.copy_(tensor(blocks["W_h"].T))
        head.weight.copy_(tensor(blocks["W_hy"].T))
        if model.biases:
            lstm.bias_ih_l0.copy_(tensor(blocks["b"]))                                   # (LS19)
            lstm.bias_hh_l0.zero_()
            head.bias.copy_(tensor(blocks["b_y"]))
    initial = tuple(tensor(blocks[name]).reshape(1, 1, model.n_hidden) for name in ("h_0", "c_0"))
    return lstm, head, (initial[0], initial[1])
