"""Conversions between arrayhf's GRU and a one-layer ``torch.nn.GRU`` with a ``torch.nn.Linear``
head (derivations/gru.md, "Conversion to and from torch", eq. (GR21)).

Host-side code: it computes on no model array. It reads the modules' weights to the host and packs
θ with ``initialization.pack`` (on any backend), or unpacks θ on the host into new modules. torch is
loaded only when a conversion is called (``_torch``), so arrayhf runs without torch installed.

The blocks map one to one: W_x = ``weight_ih_l0``ᵀ, W_h = ``weight_hh_l0``ᵀ, b_x = ``bias_ih_l0``,
b_h = ``bias_hh_l0`` (gates r, z, n in torch's order on both sides), W_hy = ``head.weight``ᵀ,
b_y = ``head.bias``, and h_0 is the initial state torch takes as an input, ``[1, 1, n_h]``
((num_layers, batch, n_h), one row that the caller expands over the batch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arrayhf import backend, initialization
from arrayhf.losses import MatchingLoss

if TYPE_CHECKING:
    from arrayhf.models.gru import GRU


def _torch() -> Any:
    """The torch package, loaded on demand: only the conversions need it."""
    try:
        import torch
    except ImportError as error:
        raise backend.BackendError("converting a GRU to or from torch needs the package torch "
                                   f"(pip install 'arrayhf[torch]'), which is not installed "
                                   f"({error})") from error
    return torch


def _check_modules(torch: Any, gru: Any, head: Any) -> None:
    """A one-layer, one-direction, time-major torch.nn.GRU and a Linear head that reads its state,
    with biases on both or on neither (arrayhf's ``biases`` covers b_x, b_h and b_y)."""
    if not isinstance(gru, torch.nn.GRU):
        raise TypeError(f"expected gru a torch.nn.GRU, got {type(gru).__name__}")
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(f"expected head a torch.nn.Linear, got {type(head).__name__}")
    if gru.num_layers != 1:
        raise ValueError(f"expected a GRU with num_layers=1 (arrayhf's GRU has one layer), got "
                         f"num_layers={gru.num_layers}")
    if gru.bidirectional:
        raise ValueError("expected a GRU with bidirectional=False (arrayhf's GRU runs forward in "
                         "time only), got bidirectional=True")
    if gru.batch_first:
        raise ValueError("expected a GRU with batch_first=False (arrayhf's sequences are "
                         "time-major [T, B, n_in]), got batch_first=True")
    if head.in_features != gru.hidden_size:
        raise ValueError(f"expected head.in_features = gru.hidden_size = {gru.hidden_size}, got "
                         f"{head.in_features}")
    if (head.bias is not None) != bool(gru.bias):
        head_bias = "present" if head.bias is not None else "None"
        raise ValueError(f"expected biases on both the GRU and the head or on neither, got "
                         f"gru.bias={gru.bias}, head.bias {head_bias}")


def _host(torch: Any, tensor: Any) -> Any:
    """A float64 host (numpy) copy of a torch tensor."""
    return tensor.detach().to(device="cpu", dtype=torch.float64).numpy()


def _initial_state(torch: Any, initial_state: Any, n_hidden: int) -> Any:
    """h_0 [n_h] on the host from torch's initial state: None (torch's zeros), or n_h numbers
    shaped [n_h], [1, n_h] or [1, 1, n_h]: a float tensor, or anything else torch reads as
    numbers (an array, a list), read in float64."""
    if initial_state is None:
        return [0.0] * n_hidden
    state = (initial_state if isinstance(initial_state, torch.Tensor)
             else torch.as_tensor(initial_state, dtype=torch.float64))
    allowed = [(n_hidden,), (1, n_hidden), (1, 1, n_hidden)]
    if tuple(state.shape) not in allowed or not state.is_floating_point():
        raise ValueError(f"expected initial_state a float array of shape [{n_hidden}], "
                         f"[1, {n_hidden}] or [1, 1, {n_hidden}] (one state shared by every "
                         f"sequence, which arrayhf learns as h_0), got {list(state.shape)} of "
                         f"dtype {state.dtype}")
    return _host(torch, state).reshape(-1)


def from_torch(gru: Any, head: Any, initial_state: Any = None, *,
               output: str | MatchingLoss = "linear", structural_curvature: float | None = None,
               xp: Any = None, dtype: Any = None, device: Any = None) -> tuple[GRU, Any]:
    """The arrayhf GRU and θ of a one-layer ``torch.nn.GRU`` and its ``torch.nn.Linear`` head.

    Parameters
    ----------
    gru : torch.nn.GRU
        One layer, ``bidirectional=False``, ``batch_first=False``; with or without biases.
    head : torch.nn.Linear
        ``in_features = gru.hidden_size``; a bias exactly when the GRU has biases.
    initial_state : tensor or array, optional
        torch's h_0, one state for every sequence: ``[n_h]``, ``[1, n_h]`` or ``[1, 1, n_h]``;
        default zeros (torch's default).
    output, structural_curvature
        As for :class:`GRU` (torch's head gives z; the output nonlinearity and loss are arrayhf's).
    xp, dtype, device
        Where θ goes, as for ``GRU.init``: by default the default backend (numpy unless
        ``$ARRAYHF_BACKEND`` says otherwise) in float64, whatever the modules' dtype.

    Returns
    -------
    (model, params) : the :class:`GRU` and its flat θ, eq. (GR21).
    """
    from arrayhf.models.gru import GRU

    torch = _torch()
    _check_modules(torch, gru, head)
    model = GRU(gru.input_size, gru.hidden_size, head.out_features, output=output,
                biases=bool(gru.bias), structural_curvature=structural_curvature)
    host_blocks = {"W_x": _host(torch, gru.weight_ih_l0).T,                      # (GR21)
                   "W_h": _host(torch, gru.weight_hh_l0).T,
                   "W_hy": _host(torch, head.weight).T,
                   "h_0": _initial_state(torch, initial_state, gru.hidden_size)}
    if model.biases:
        host_blocks.update(b_x=_host(torch, gru.bias_ih_l0), b_h=_host(torch, gru.bias_hh_l0),
                           b_y=_host(torch, head.bias))
    return model, initialization.pack(model.layout, host_blocks, xp, dtype=dtype, device=device)


def to_torch(model: GRU, params: Any) -> tuple[Any, Any, Any]:
    """``(gru, head, h_0)`` holding θ: a new one-layer ``torch.nn.GRU`` (time-major) and
    ``torch.nn.Linear`` on the CPU, in θ's dtype (float32 or float64), and h_0 as a tensor
    ``[1, 1, n_h]``, torch's (num_layers, batch, n_h): expand it over the batch,
    ``h_0.expand(1, B, n_h)``, to run ``gru(x, h_0)``. The head gives z; the predictions are
    ``model.output``'s g(z). Inverse of :func:`from_torch`, eq. (GR21). θ is checked by
    ``GRU.to_torch``, the way in."""
    torch = _torch()
    host_params = backend.to_numpy(params)
    blocks = {name: torch.from_numpy(block.copy())
              for name, block in model.layout.unflatten(host_params).items()}
    dtype = blocks["W_x"].dtype
    # built on the meta device and then given memory: torch's random initialization (and its
    # global RNG state) is left alone, since every weight is overwritten below
    gru = torch.nn.GRU(model.n_inputs, model.n_hidden, bias=model.biases, dtype=dtype,
                       device="meta").to_empty(device="cpu")
    head = torch.nn.Linear(model.n_hidden, model.n_outputs, bias=model.biases, dtype=dtype,
                           device="meta").to_empty(device="cpu")
    with torch.no_grad():
        gru.weight_ih_l0.copy_(blocks["W_x"].T)                                 # (GR21)
        gru.weight_hh_l0.copy_(blocks["W_h"].T)
        head.weight.copy_(blocks["W_hy"].T)
        if model.biases:
            gru.bias_ih_l0.copy_(blocks["b_x"])
            gru.bias_hh_l0.copy_(blocks["b_h"])
            head.bias.copy_(blocks["b_y"])
    return gru, head, blocks["h_0"].reshape(1, 1, model.n_hidden)
