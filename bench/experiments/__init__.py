"""Experiments: HF runs to a solution (or a time limit) against Adam, hessianfree and other nets,
and the long-range table and diagnosis."""
