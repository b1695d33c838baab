"""Hidden-unit nonlinearities h = f(a) and the slope f'(a) that R-forward and backprop need.

The slope is written as a function of the unit's output h (and, for relu, of its sign), so the
forward pass can compute it once and every Gauss-Newton product of a CG run reuses it
(derivations/fnn.md, eq. (F2) and (F5)). Each routine takes the namespace ``xp`` explicitly: the
models look it up once per call and pass it down.

Each nonlinearity also names the default κ of structural damping's Κ = κ·diag(f'(a)) (eq. (S2),
derivations/structural-damping.md, section 3): the 2011 release's 1/4 for tanh, and the matching
loss's own curvature (κ = 1) for the others.
"""

from __future__ import annotations

from typing import Any


class Nonlinearity:
    """A hidden nonlinearity: ``value(xp, a) = f(a)`` and ``slope(xp, h) = f'(a)`` from h = f(a)."""

    name: str = ""
    # κ of eq. (S2) when a recurrent model is given none: 1, the curvature f'(a) of the matching
    # loss whose gradient is f (structural-damping.md, section 3)
    structural_curvature: float = 1.0

    def value(self, xp: Any, pre: Any) -> Any:
        """h = f(a) for the pre-activations ``pre``."""
        raise NotImplementedError

    def slope(self, xp: Any, hidden: Any) -> Any:
        """f'(a), written as a function of h = f(a)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Tanh(Nonlinearity):
    """f(a) = tanh(a), f'(a) = 1 − h². Structural κ = 1/4: the release's ``0.25 * (1 - H*H)``,
    the curvature of tanh's matching loss with respect to the logit 2a (S2)."""

    name = "tanh"
    structural_curvature = 0.25

    def value(self, xp: Any, pre: Any) -> Any:
        return xp.tanh(pre)

    def slope(self, xp: Any, hidden: Any) -> Any:
        return 1.0 - hidden * hidden


def logistic(xp: Any, pre: Any) -> Any:
    """σ(a) = 1 / (1 + e^{−a}) without overflow: e^{−|a|} is always ≤ 1."""
    decay = xp.exp(-xp.abs(pre))
    return xp.where(pre >= 0, 1.0 / (1.0 + decay), decay / (1.0 + decay))


class Logistic(Nonlinearity):
    """f(a) = σ(a), f'(a) = h (1 − h). Structural κ = 1: the release's logistic ``H_prod``."""

    name = "logistic"

    def value(self, xp: Any, pre: Any) -> Any:
        return logistic(xp, pre)

    def slope(self, xp: Any, hidden: Any) -> Any:
        return hidden * (1.0 - hidden)


class Relu(Nonlinearity):
    """f(a) = max(a, 0), f'(a) = 1 where h > 0 else 0 (the subgradient 0 is taken at a = 0).
    Structural κ = 1: the penalty ½ max(a, 0)² − hⁿ a, the pre-activations of active units."""

    name = "relu"

    def value(self, xp: Any, pre: Any) -> Any:
        return xp.maximum(pre, xp.zeros_like(pre))

    def slope(self, xp: Any, hidden: Any) -> Any:
        return xp.astype(hidden > 0, hidden.dtype)


class Linear(Nonlinearity):
    """f(a) = a, f'(a) = 1. Structural κ = 1: the penalty ½ (a − aⁿ)², on pre-activations."""

    name = "linear"

    def value(self, xp: Any, pre: Any) -> Any:
        return pre

    def slope(self, xp: Any, hidden: Any) -> Any:
        return xp.ones_like(hidden)


NONLINEARITIES = {cls.name: cls for cls in (Tanh, Logistic, Relu, Linear)}


def get(nonlinearity: str | Nonlinearity) -> Nonlinearity:
    """A Nonlinearity from its name ("tanh", "logistic", "relu", "linear"), or itself."""
    if isinstance(nonlinearity, Nonlinearity):
        return nonlinearity
    try:
        return NONLINEARITIES[nonlinearity]()
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown hidden nonlinearity {nonlinearity!r}: expected one of "
            f"{', '.join(NONLINEARITIES)} or a Nonlinearity"
        ) from None
