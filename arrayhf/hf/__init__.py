"""The Hessian-free optimizer: CG, damping, the HF iteration as a function of its state, and the
HF loop."""

from arrayhf.hf.cg import CGResult, CGStep, backtracking_steps, conjugate_gradient
from arrayhf.hf.damping import LevenbergMarquardt, reduction_ratio, structural_damping_coefficient
from arrayhf.hf.state import HFState
from arrayhf.hf.step import StepRecord, hf_step

__all__ = [
    "CGResult",
    "CGStep",
    "HFState",
    "LevenbergMarquardt",
    "StepRecord",
    "backtracking_steps",
    "conjugate_gradient",
    "hf_step",
    "reduction_ratio",
    "structural_damping_coefficient",
]
