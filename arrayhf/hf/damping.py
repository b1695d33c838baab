"""Levenberg-Marquardt damping: the reduction ratio ρ and the rule that moves λ with it.

HF minimizes the damped quadratic model of the objective f(θ) = L(θ) + ½w‖θ‖² (weight cost w,
eq. (H1)), q(p) = f(θ) + gᵀp + ½ pᵀ(G + λμS + (λ + w)I)p with g = ∇L + wθ (eq. (H2)). The ratio
of the objective's actual change to a model's predicted change,

    ρ = (f(θ + p) − f(θ)) / (q_B(p) − q_B(0)),   q_B(p) − q_B(0) = gᵀp + ½ pᵀBp
                                                         (derivations/cg-and-damping.md, (D1))

with B the damped matrix above (``rho_model="damped"``) or G + wI (``"undamped"``), says how far
the model can be trusted: ρ < 1/4 → λ ← λ·3/2 (trust it less); ρ > 3/4 →
λ ← λ·2/3 (trust it more) (eq. (D2)). A loss that rose or is not finite gives ρ = −∞. The
structural damping coefficient of recurrent models moves with λ: λμ, μ fixed (eq. (D3)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple


def reduction_ratio(old_loss: float, new_loss: float, predicted_reduction: float) -> float:
    """ρ of eq. (D1). −∞ when the new loss is not finite or rose; 0 when the model predicted no
    decrease (both raise λ)."""
    if not math.isfinite(new_loss) or new_loss > old_loss:
        return -math.inf
    if not math.isfinite(predicted_reduction) or predicted_reduction >= 0.0:
        return 0.0
    return (new_loss - old_loss) / predicted_reduction


class Ratio(NamedTuple):
    """ρ of (D1) with its two parts, the slope gᵀp the line search (H5) needs, and λ' (D2)."""

    rho: float
    numerator: float      # f(θ + p) − f(θ)
    denominator: float    # q(p) − q(0), the predicted change
    slope: float          # gᵀp
    next_damping: float   # λ' before the line search (a rejected step raises it further)


@dataclass(frozen=True)
class LevenbergMarquardt:
    """The damping rule of eq. (D2); the constants are Martens' and the 2011 release's."""

    boost: float = 1.5
    drop: float = 2.0 / 3.0
    lower_ratio: float = 0.25
    upper_ratio: float = 0.75

    def update(self, damping: float, rho: float) -> float:
        """The next λ given the current λ and ρ (a NaN ρ counts as −∞)."""
        if math.isnan(rho) or rho < self.lower_ratio:
            return damping * self.boost
        if rho > self.upper_ratio:
            return damping * self.drop
        return damping


def structural_damping_coefficient(damping: float, mu: float) -> float:
    """λμ, the weight of the structural damping term (eq. (D3))."""
    return damping * mu
