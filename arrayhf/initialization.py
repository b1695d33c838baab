"""Initial weights drawn on the host (numpy), so the same seed gives the same θ on every backend.

Host-side code: the models call it from ``init`` and move the packed vector to their backend once.
Two schemes (Martens 2010; the 2011 release):

- sparse (Martens 2010): every unit gets min(``n_nonzero``, fan_in) nonzero incoming weights
  (``n_nonzero`` = 15 by default), drawn from N(0, scale²): all of them when it has fewer inputs.
- dense: every incoming weight drawn from N(0, scale² / fan_in).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from arrayhf import backend
from arrayhf.layout import Layout


def sparse_weights(rng: np.random.Generator, fan_in: int, fan_out: int, *, n_nonzero: int = 15,
                   scale: float = 1.0) -> np.ndarray:
    """A ``[fan_in, fan_out]`` matrix whose every column has min(n_nonzero, fan_in) nonzeros."""
    connections = min(n_nonzero, fan_in)
    weights = np.zeros((fan_in, fan_out))
    for unit in range(fan_out):
        sources = rng.choice(fan_in, size=connections, replace=False)
        weights[sources, unit] = scale * rng.standard_normal(connections)
    return weights


def dense_weights(rng: np.random.Generator, fan_in: int, fan_out: int, *,
                  scale: float = 1.0) -> np.ndarray:
    """A ``[fan_in, fan_out]`` matrix of N(0, scale² / fan_in) entries."""
    return (scale / np.sqrt(fan_in)) * rng.standard_normal((fan_in, fan_out))


def pack(layout: Layout, host_blocks: dict, xp: Any = None, *, dtype: Any = None,
         device: Any = None) -> Any:
    """Concatenate host blocks in ``layout`` order and move the flat vector to the backend."""
    if xp is None:
        xp = backend.namespace()
    flat = np.concatenate([np.reshape(host_blocks[name], -1) for name in layout.names])
    return backend.from_host(flat, xp, dtype=dtype, device=device)
