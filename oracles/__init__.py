"""The torch.func oracles: every model and loss written again in torch from its definition and
differentiated by ``torch.func`` in float64, the independent check of the hand-derived passes.

Test- and benchmark-only (tests/, bench/); arrayhf never imports it. ``core`` holds the losses,
the products by autodiff and the FNN, RNN and MRNN; ``lstm`` and ``gru`` the gated models. Run
from the repository root (pytest's ``pythonpath = ["."]``, ``python -m bench...``)."""
