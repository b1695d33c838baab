"""Named parameter blocks in one flat 1-D vector: ``unflatten`` gives views, ``flatten`` packs.

HF works on one parameter vector θ (CG directions, damping, line search are all vector
operations); the models think in named matrices (``W_1``, ``b_1``, ``W_hh``, ...). A Layout maps
one to the other, in a fixed order that is part of the checkpoint format.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from arrayhf._validate import check_shape, namespace_of


class Layout:
    """The ordered blocks ``[(name, shape), ...]`` of a flat parameter vector."""

    def __init__(self, blocks: Sequence[tuple[str, tuple[int, ...]]]) -> None:
        self.names = [name for name, _ in blocks]
        self.shapes = {name: tuple(shape) for name, shape in blocks}
        if len(self.shapes) != len(self.names):
            raise ValueError(f"duplicate block names in {self.names}")
        sizes = [math.prod(self.shapes[name]) for name in self.names]
        starts = [sum(sizes[:index]) for index in range(len(sizes))]
        self.offsets = {name: (start, start + size)
                        for name, start, size in zip(self.names, starts, sizes)}
        self.n_params = sum(sizes)

    def unflatten(self, flat: Any, *, xp: Any = None) -> dict[str, Any]:
        """``{name: block}``, each block a reshaped slice (a view where the backend has views).
        A model's passes pass their namespace ``xp``, looked up once per public call."""
        check_shape("params (flat vector)", flat, (self.n_params,))
        if xp is None:
            xp = namespace_of(flat)
        return {
            name: xp.reshape(flat[start:stop], self.shapes[name])
            for name, (start, stop) in self.offsets.items()
        }

    def flatten(self, blocks: Mapping[str, Any], *, xp: Any = None) -> Any:
        """The flat vector of ``blocks`` (every name of the layout, each of its shape); ``xp``
        as for :meth:`unflatten`."""
        missing = [name for name in self.names if name not in blocks]
        extra = [name for name in blocks if name not in self.shapes]
        if missing or extra:
            raise ValueError(f"expected blocks {self.names}, missing {missing}, unexpected {extra}")
        for name in self.names:
            check_shape(f"block {name}", blocks[name], self.shapes[name])
        if xp is None:
            xp = namespace_of(*blocks.values())
        return xp.concat([xp.reshape(blocks[name], (-1,)) for name in self.names])

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}{list(self.shapes[name])}" for name in self.names)
        return f"Layout({inner}; n_params={self.n_params})"
