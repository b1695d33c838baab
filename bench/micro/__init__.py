"""Micro-benchmarks: G v, one HF iteration, one phase, each against its baseline in the same run
(torch.func, hessianfree, BLAS, an older tree, other thread or process counts)."""
