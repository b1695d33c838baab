"""Host-side conversions between arrayhf models and other stacks' modules: a one-layer
``torch.nn.LSTM`` or ``torch.nn.GRU`` with its ``torch.nn.Linear`` head (torch_lstm.py,
torch_gru.py; derivations/lstm.md (LS19), derivations/gru.md (GR21)). Like checkpoint I/O, this is
host-side code: it moves parameters across as numpy arrays, and imports torch only inside the
functions that need it, so ``import arrayhf`` never imports torch.
"""

from __future__ import annotations

from typing import Any

from arrayhf.interop import torch_gru, torch_lstm

__all__ = ["from_torch", "torch_gru", "torch_lstm"]


def from_torch(module: Any, head: Any, initial_state: Any = None, **options: Any
               ) -> tuple[Any, Any]:
    """``(model, params)`` of a one-layer ``torch.nn.LSTM`` or ``torch.nn.GRU`` and its
    ``torch.nn.Linear`` head: ``torch_lstm.from_torch`` or ``torch_gru.from_torch``, chosen by
    the module's class (``options``: ``output``, ``structural_curvature``, ``xp``, ``dtype``,
    ``device``). The way back is ``model.to_torch(params)``."""
    kind = type(module).__name__
    if kind == "LSTM":
        return torch_lstm.from_torch(module, head, initial_state, **options)
    if kind == "GRU":
        return torch_gru.from_torch(module, head, initial_state, **options)
    raise TypeError(f"expected a torch.nn.LSTM or torch.nn.GRU, got {kind}")
