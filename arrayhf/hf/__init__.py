"""The Hessian-free optimizer: CG, damping and the HF loop."""

from arrayhf.hf.cg import CGResult, CGStep, backtracking_steps, conjugate_gradient
from arrayhf.hf.damping import LevenbergMarquardt, reduction_ratio, structural_damping_coefficient

__all__ = [
    "CGResult",
    "CGStep",
    "LevenbergMarquardt",
    "backtracking_steps",
    "conjugate_gradient",
    "reduction_ratio",
    "structural_damping_coefficient",
]
