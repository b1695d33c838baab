"""Backtracking over CG's kept iterates: which of them HF takes as its step p
(derivations/cg-and-damping.md, (H4) and (H4r)).

Both rules score an iterate x_i by the objective f_K(θ + x_i) on the backtracking batches K and
differ in which iterates they score and which one they take:

- Martens' (H4), ``backtracking="martens"``: the iterates of steps ⌈5·1.3ʲ⌉ and the last, walked
  back from the last while f_K keeps decreasing; K is by default the gradient batches;
- the 2011 release's (H4r), ``backtracking="release"``: the iterates of steps 1, 1 + k, 1 + 2k, …
  (k = ``cg_eval_every``, 10) and the last, all scored, the lowest taken; K is by default a held
  batch, the first training batch other than the iteration's curvature batch.

Host-side bookkeeping: the values are Python floats from the optimizer's objective.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence


def walk_back(value: Callable[[int], float], count: int) -> tuple[int, float]:
    """(H4): (index s, f_K at s), walking back from the last of ``count`` iterates while
    ``value(index)`` strictly decreases; m − s + 2 evaluations at most."""
    chosen = count - 1
    chosen_value = value(chosen)
    for index in range(count - 2, -1, -1):
        candidate = value(index)
        if candidate >= chosen_value:
            break
        chosen, chosen_value = index, candidate
    return chosen, chosen_value


def lowest(value: Callable[[int], float], count: int) -> tuple[int, float]:
    """(H4r): (index s, f_K at s) of the lowest value of all ``count`` iterates, the earliest
    on a tie (the release's strict ``BT_cur < BT_best``)."""
    values = [value(index) for index in range(count)]
    chosen = min(range(count), key=values.__getitem__)
    return chosen, values[chosen]


RULES = {"martens": walk_back, "release": lowest}


def scoring_batches(mode: str, backtrack_batches: Sequence[Hashable] | None,
                    grad_ids: list, train_ids: Sequence[Hashable],
                    curvature_id: Hashable) -> list:
    """K, the batches that score the iterates: ``backtrack_batches`` when given; otherwise the
    gradient batches for (H4), and for (H4r) the release's held batch, the first training batch
    other than the curvature batch (the curvature batch when it is the only one)."""
    if backtrack_batches is not None:
        return list(backtrack_batches)
    if mode != "release":
        return grad_ids
    held = [i for i in train_ids if repr(i) != repr(curvature_id)]
    return held[:1] or [curvature_id]
