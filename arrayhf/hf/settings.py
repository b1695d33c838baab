"""The settings of an HF run (``HFConfig``): their defaults, their checks, their JSON form.

A checkpoint stores the settings (``to_json``) and a resume compares them with the optimizer's
(hf/state.py). Where the 2011 release and Martens' code differ, both are settings
(derivations/cg-and-damping.md, section 8).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

from arrayhf._validate import is_integer


@dataclass(frozen=True)
class HFConfig:
    """The settings of an HF run; saved in every checkpoint and compared on resume.

    Where the 2011 release and Martens' code differ, both are available
    (derivations/cg-and-damping.md, "2011 release vs Martens"):
    ``rho_model`` "damped" (release) or "undamped" (Martens); ``line_search`` "armijo" (Martens:
    c = 1e-2, rate 0.8) or "decrease" (release: the first 0.8ⁱ step that lowers the loss), each
    trying at most ``max_line_search`` step lengths; None: the mode's own limit (Armijo 60,
    Martens; decrease 50, the release); ``backtracking`` "martens" (H4: walk back over the
    iterates kept at ⌈5·1.3ʲ⌉ while f decreases) or "release" (H4r: every ``cg_eval_every`` CG
    steps and at the last, f on a held batch, the lowest wins). ``backtrack_batches`` and
    ``line_search_batches`` name the batches whose f scores the iterates and the step lengths
    (the release: one batch each; default the gradient batches, or for (H4r) the held batch).
    """

    damping: float = 1.0                 # initial λ
    structural_damping_mu: float = 0.0   # μ: structural damping weight λμ (recurrent models)
    max_cg_iter: int = 250
    min_cg_iter: int = 1
    cg_epsilon: float = 5e-4             # ε of the relative-progress stop
    cg_decay: float = 0.95               # warm start: previous solution × decay
    grad_batches: tuple | None = None    # batch ids for f and g; None = every training batch
    curvature_batches: tuple | None = None  # cycled, one per iteration; None = training batches
    backtrack_batches: tuple | None = None  # objective for backtracking; None = grad_batches
    line_search_batches: tuple | None = None  # objective of the line search; None = grad_batches
    weight_cost: float = 0.0             # w of ½ w ‖θ‖²
    preconditioner: bool = False         # Martens' (F + λ + w)^0.75, F = (1/N) Σ m_p g_p² (H3)
    rho_model: str = "undamped"
    line_search: str = "armijo"
    armijo_c: float = 1e-2
    line_search_rate: float = 0.8
    max_line_search: int | None = None  # None: LINE_SEARCH_TRIES[line_search]
    damping_boost: float = 1.5
    damping_drop: float = 2.0 / 3.0
    test_every: int = 1
    backtracking: str = "martens"        # "martens" (H4) or "release" (H4r)
    cg_eval_every: int = 10              # "release": score every this many CG steps (H4r)

    def __post_init__(self) -> None:
        if self.rho_model not in ("damped", "undamped"):
            raise ValueError(f"expected rho_model 'damped' or 'undamped', got {self.rho_model!r}")
        if self.line_search not in ("armijo", "decrease"):
            raise ValueError(f"expected line_search 'armijo' or 'decrease', got "
                             f"{self.line_search!r}")
        if self.backtracking not in ("martens", "release"):
            raise ValueError(f"expected backtracking 'martens' or 'release', got "
                             f"{self.backtracking!r}")
        for name, low, high, closed in _RANGES:
            value = getattr(self, name)
            if value is None and name in _OPTIONAL_SETTINGS:
                continue
            integral = name in _INTEGER_SETTINGS
            if not (is_integer(value) if integral else _is_number(value)):
                kind = "an integer" if integral else "a number"
                raise TypeError(f"expected {name} to be {kind}, got {value!r}")
            inside = (low <= value <= high) if closed else (low < value < high)
            if not (math.isfinite(value) and inside):
                interval = f"[{low}, {high}]" if closed else f"({low}, {high})"
                raise ValueError(f"expected {name} in {interval}, got {value}")
            object.__setattr__(self, name, int(value) if integral else float(value))
        if not _is_number(self.damping):
            raise TypeError(f"expected damping to be a number, got {self.damping!r}")
        object.__setattr__(self, "damping", float(self.damping))
        if not (self.damping > 0 and math.isfinite(self.damping)):
            raise ValueError(f"expected a positive finite initial damping, got {self.damping}")
        if self.min_cg_iter > self.max_cg_iter:
            raise ValueError(f"expected min_cg_iter <= max_cg_iter, got {self.min_cg_iter} > "
                             f"{self.max_cg_iter}")
        for name in ("grad_batches", "curvature_batches", "backtrack_batches",
                     "line_search_batches"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, list | tuple) or not value:
                    raise TypeError(f"expected {name} to be a non-empty list of batch ids or "
                                    f"None, got {value!r}")
                object.__setattr__(self, name, tuple(_as_id(i) for i in value))

    @property
    def line_search_tries(self) -> int:
        """The most step lengths the line search tries (H5): ``max_line_search``, or when it is
        None the mode's own limit, ``LINE_SEARCH_TRIES[line_search]``."""
        if self.max_line_search is None:
            return LINE_SEARCH_TRIES[self.line_search]
        return self.max_line_search

    def to_json(self) -> dict:
        """The settings as JSON-ready values (tuples become lists), as checkpoints store them."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# (setting, low, high, closed interval?) checked by HFConfig
_RANGES = (
    ("structural_damping_mu", 0.0, math.inf, True),
    ("max_cg_iter", 1, math.inf, True),
    ("min_cg_iter", 0, math.inf, True),
    ("cg_epsilon", 0.0, 1.0, True),      # 0: no relative-progress stop
    ("cg_decay", 0.0, 1.0, True),
    ("weight_cost", 0.0, math.inf, True),
    ("armijo_c", 0.0, 1.0, False),
    ("line_search_rate", 0.0, 1.0, False),
    ("max_line_search", 1, math.inf, True),
    ("damping_boost", 1.0, math.inf, False),
    ("damping_drop", 0.0, 1.0, False),
    ("test_every", 0, math.inf, True),
    ("cg_eval_every", 1, math.inf, True),
)
_INTEGER_SETTINGS = ("max_cg_iter", "min_cg_iter", "max_line_search", "test_every",
                     "cg_eval_every")
_OPTIONAL_SETTINGS = ("max_line_search",)   # None: the default of the chosen mode

# the line search's tries when max_line_search is None (H5): Martens' 60 Armijo tries (η = 0.8⁰
# … 0.8⁵⁹), the 2011 release's 50 tries of its "first decrease" rule (η = 0.8⁰ … 0.8⁴⁹)
LINE_SEARCH_TRIES = {"armijo": 60, "decrease": 50}


# settings added after checkpoints were first written, with the value every older run had
ADDED_LATER = {"backtracking": "martens", "cg_eval_every": 10, "line_search_batches": None}


def acting_settings(values: Any) -> Any:
    """JSON settings (``to_json``, or a checkpoint's) with ``max_line_search`` None replaced by
    its mode's limit, so that settings which act alike compare equal (a checkpoint from before
    None meant "the mode's default" spells Armijo's 60 out), and the settings of ADDED_LATER
    filled in where an older checkpoint lacks them."""
    if not isinstance(values, dict):
        return values
    values = {**ADDED_LATER, **values}
    mode = values.get("line_search")
    if values.get("max_line_search") is None and mode in LINE_SEARCH_TRIES:
        values = {**values, "max_line_search": LINE_SEARCH_TRIES[mode]}
    return values


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _as_id(batch_id):
    return tuple(batch_id) if isinstance(batch_id, list | tuple) else batch_id
