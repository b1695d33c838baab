"""arrayhf's benchmark suite, run from the repository root as ``python -m bench.<part>.<name>``:
``micro`` (one product, one iteration, one phase against a baseline in the same run),
``experiments`` (runs to a solution against other methods) and ``tools`` (the README's figures,
the GPU estimate, the backend tour). bench/README.md holds what each measured."""
