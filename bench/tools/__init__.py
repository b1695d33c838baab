"""Tools: the README's figures (readme_figures), the GPU cost estimate (gpu_estimate) and the
backend tour (tour)."""
