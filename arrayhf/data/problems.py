"""The pathological long-range problems of Hochreiter & Schmidhuber (1997), as used by MS11:
the generators of their batches, on the host (the data object is :mod:`arrayhf.data.pathological`).

Each problem hides a small piece of information early in a long sequence and asks for it (or a
function of it) much later; everything in between is noise. A recurrent net solves it only if it
carries the information across the whole time lag, which is what made these problems the test of
Hessian-free training for RNNs (Martens & Sutskever 2011).

=======================  =====  ======  ========  =============================================
problem                  in     out     output    what the net must report
=======================  =====  ======  ========  =============================================
addition                 2      1       linear    A + B of the two marked values (at the end)
multiplication           2      1       linear    A · B of the two marked values
xor                      2      1       logistic  XOR of the two marked bits
temporal_order           8      4       softmax   the order of two X/Y symbols (XX, XY, YX, YY)
temporal_order_3bit      8      8       softmax   the order of three X/Y symbols
random_permutation       100    100     softmax   the next symbol; at the end, the first symbol
memorization             4      3       softmax   5 binary symbols, reproduced after a long gap
memorization_20bit       7      6       softmax   10 five-valued symbols, reproduced likewise
=======================  =====  ======  ========  =============================================

Arrays are time-major, as everywhere in arrayhf: inputs ``[T_max, B, n_in]``, targets
``[T_max, B, n_out]``, mask ``[T_max, B]``.

Why masks exist
---------------
Most of these problems have an answer at one step only, and the addition, multiplication, xor and
temporal-order sequences have random lengths. Both facts go into the mask, one number per (step,
sequence): 1 where the output counts in the loss, 0 where it does not. A batch of sequences of
different lengths shares one array of the longest length; the shorter sequences are zero-padded
and their mask is 0 past their end. A problem whose answer comes at the last step masks every
other step, so the net is free to output anything while it waits.

Lengths and positions
---------------------
The release scales every length and position with T (it uses T = 200): a bound written
``[0.01T, 0.1T)`` is drawn uniformly with the upper bound exclusive, each bound being
``floor(fraction · T)`` (the release's ``int(x * factor)``; computed here exactly in integer
percent arithmetic, ``T * percent // 100``, so 0.55 · 20 does not round to 10.999...). For small T
these ranges can become empty or collide with the markers, so they are clamped:

- the first special position is at least 1 (step 0 holds the start marker or cue);
- each later special range starts at or after the end of the previous one (specials are ordered
  and never share a step);
- every range is made non-empty: ``high = max(high, low + 1)``.

What clamping cannot fix (the last special reaching the end marker or cue) raises ValueError; so
does any T below :data:`MINIMUM_T`, which also keeps the sequences at least 10 steps long. At
T = 200 no clamp is active and the ranges are the release's.

Randomness is drawn on the host with a seeded ``numpy.random.Generator`` and moved to the backend
with :func:`arrayhf.backend.from_host`, so the same seed gives the same data on every backend.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from arrayhf._validate import is_integer
from arrayhf.data.batch import check_positive_int

# what every generator returns: (inputs [T_max, B, n_in], targets [T_max, B, n_out], mask
# [T_max, B]), float64 host arrays
HostBatch = tuple[np.ndarray, np.ndarray, np.ndarray]

PROBLEMS = ("addition", "multiplication", "xor", "temporal_order", "temporal_order_3bit",
            "random_permutation", "memorization", "memorization_20bit")

# The smallest T each problem accepts (checked against the layout rules in the tests):
# sequences of at least 10 steps; xor's sequences are only half as long as T; memorization needs
# its N symbols, at least one blank, the trigger and the N answers.
MINIMUM_T = {"addition": 10, "multiplication": 10, "xor": 20, "temporal_order": 10,
             "temporal_order_3bit": 10, "random_permutation": 10, "memorization": 12,
             "memorization_20bit": 22}

# Input and output widths, and the output nonlinearity (with its matching loss) of each problem.
N_INPUTS = {"addition": 2, "multiplication": 2, "xor": 2, "temporal_order": 8,
            "temporal_order_3bit": 8, "random_permutation": 100, "memorization": 4,
            "memorization_20bit": 7}
N_OUTPUTS = {"addition": 1, "multiplication": 1, "xor": 1, "temporal_order": 4,
             "temporal_order_3bit": 8, "random_permutation": 100, "memorization": 3,
             "memorization_20bit": 6}
OUTPUTS = {"addition": "linear", "multiplication": "linear", "xor": "logistic",
           "temporal_order": "softmax", "temporal_order_3bit": "softmax",
           "random_permutation": "softmax", "memorization": "softmax",
           "memorization_20bit": "softmax"}

# Sequence lengths and special positions, in percent of T: (low, high), high exclusive.
LENGTH_PERCENT = {"addition": (100, 110), "multiplication": (100, 110), "xor": (50, 55),
                  "temporal_order": (100, 110), "temporal_order_3bit": (100, 110)}
POSITION_PERCENT = {"addition": ((1, 10), (10, 50)),
                    "multiplication": ((1, 10), (10, 50)),
                    "xor": ((1, 10), (15, 25)),
                    "temporal_order": ((1, 10), (40, 50)),
                    "temporal_order_3bit": ((1, 10), (30, 40), (50, 60))}

# A +1 marks an operand of addition, multiplication and xor; a -1 marks the first step and the
# step ``length - 3`` (the release's "end is near" signal).
OPERAND_MARK, BOUNDARY_MARK = 1.0, -1.0

# Temporal order's 8 input symbols.
N_DISTRACTORS = 4                 # symbols 0-3: random noise
SYMBOL_X, SYMBOL_Y = 4, 5         # the specials whose order is the answer (X = bit 0, Y = bit 1)
START_CUE, END_CUE = 6, 7         # first step and last step

# Random permutation: the first symbol is one of these two; the rest come from 2 .. 99.
N_PERMUTATION_SYMBOLS, N_FIRST_SYMBOLS = 100, 2

# Memorization: (number of symbols N, values per symbol).
MEMORIZATION_SIZES = {"memorization": (5, 2), "memorization_20bit": (10, 5)}

ADDITION_TARGETS = ("sum", "mean")


# -- checks and layout ------------------------------------------------------------------------
def check_problem(problem: str) -> None:
    """Raise ValueError unless ``problem`` is one of :data:`PROBLEMS`."""
    if problem not in PROBLEMS:
        raise ValueError(f"unknown pathological problem {problem!r}: expected one of "
                         f"{', '.join(PROBLEMS)}")


def check_T(problem: str, T: int) -> None:
    """Raise ValueError unless the problem is defined for sequences of scale ``T``."""
    check_problem(problem)
    if not is_integer(T):
        raise ValueError(f"expected T to be an integer, got {T!r}")
    if T < MINIMUM_T[problem]:
        raise ValueError(f"{problem} needs T >= {MINIMUM_T[problem]}, got T={T}")


def _scaled_range(percent_low: int, percent_high: int, T: int, at_least: int = 0):
    """``[floor(low% · T), floor(high% · T))``, the low end raised to ``at_least`` and the
    range made non-empty (see the module docstring)."""
    low = max(T * percent_low // 100, at_least)
    high = max(T * percent_high // 100, low + 1)
    return low, high


def layout(problem: str, T: int) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """The length range and the special-position ranges of a variable-length problem.

    Returns ``((length_low, length_high), [(position_low, position_high), ...])``, every range
    half-open and non-empty. Raises ValueError when the specials would reach the end marker (step
    ``length - 3``) of addition, multiplication or xor, or the end cue (step ``length - 1``) of
    the temporal-order problems.
    """
    check_T(problem, T)
    length_range = _scaled_range(*LENGTH_PERCENT[problem], T)
    position_ranges = []
    first_free = 1                                  # step 0 holds the start marker or cue
    for percent_low, percent_high in POSITION_PERCENT[problem]:
        low, high = _scaled_range(percent_low, percent_high, T, at_least=first_free)
        position_ranges.append((low, high))
        first_free = high
    end_step = length_range[0] - (3 if problem in ("addition", "multiplication", "xor") else 1)
    if position_ranges[-1][1] > end_step:
        raise ValueError(f"{problem} at T={T}: the special positions reach step "
                         f"{position_ranges[-1][1] - 1}, past the end marker at step {end_step} "
                         f"of the shortest sequence; use a larger T")
    return length_range, position_ranges


def _one_hot(indices, size: int) -> np.ndarray:
    return np.eye(size)[indices]


def _draw_lengths_and_positions(problem, T, batch_size, rng):
    """Lengths [B], special positions [n_specials, B], and ``inside`` [T_max, B]: 1 at the
    steps of each sequence, 0 in its padding."""
    (length_low, length_high), position_ranges = layout(problem, T)
    lengths = rng.integers(length_low, length_high, size=batch_size)
    positions = np.stack([rng.integers(low, high, size=batch_size)
                          for low, high in position_ranges])
    steps = np.arange(lengths.max())[:, None]
    inside = (steps < lengths[None, :]).astype(np.float64)
    return lengths, positions, inside


def _last_step_mask(lengths, T_max: int) -> np.ndarray:
    mask = np.zeros((T_max, lengths.size))
    mask[lengths - 1, np.arange(lengths.size)] = 1.0
    return mask


# -- the generators: one batch each, on the host, float64 -------------------------------------
def _marked_operands(problem, T, batch_size, rng, values_of_shape, operation):
    """Addition, multiplication and xor: a value channel and a marker channel; the answer,
    ``operation(A, B)`` of the two marked values, is the target at the last step."""
    lengths, (first, second), inside = _draw_lengths_and_positions(problem, T, batch_size, rng)
    T_max, columns = inside.shape[0], np.arange(batch_size)
    values = values_of_shape(inside.shape) * inside
    markers = np.zeros_like(values)
    markers[0, :] = BOUNDARY_MARK
    markers[lengths - 3, columns] = BOUNDARY_MARK
    markers[first, columns] = OPERAND_MARK
    markers[second, columns] = OPERAND_MARK
    inputs = np.stack([values, markers], axis=-1)
    answers = operation(values[first, columns], values[second, columns])
    mask = _last_step_mask(lengths, T_max)
    targets = (mask * answers[None, :])[..., None]
    return inputs, targets, mask


def addition(T: int, batch_size: int, rng: np.random.Generator, *,
             target: str = "sum") -> HostBatch:
    """One batch of the addition problem: the target is A + B (``target="sum"``, the release) or
    (A + B) / 2 (``"mean"``, MS11), at the last step only. Values ~ U[0, 1); length in
    [T, 1.1T); operands at I in [0.01T, 0.1T), J in [0.1T, 0.5T)."""
    if target not in ADDITION_TARGETS:
        raise ValueError(f"expected addition_target in {ADDITION_TARGETS}, got {target!r}")
    scale = 1.0 if target == "sum" else 0.5
    return _marked_operands("addition", T, batch_size, rng, rng.random,
                            lambda a, b: scale * (a + b))


def multiplication(T: int, batch_size: int, rng: np.random.Generator) -> HostBatch:
    """One batch of the multiplication problem: as :func:`addition`, the target is A · B."""
    return _marked_operands("multiplication", T, batch_size, rng, rng.random,
                            lambda a, b: a * b)


def xor(T: int, batch_size: int, rng: np.random.Generator) -> HostBatch:
    """One batch of the xor problem: random bits in the value channel, length in [0.5T, 0.55T),
    marked bits at I in [0.01T, 0.1T), J in [0.15T, 0.25T); the target is their XOR."""
    def random_bits(shape):
        return rng.integers(0, 2, size=shape).astype(np.float64)

    return _marked_operands("xor", T, batch_size, rng, random_bits,
                            lambda a, b: np.logical_xor(a > 0.5, b > 0.5).astype(np.float64))


def _temporal_order(problem, T, batch_size, rng):
    """Random distractors with X/Y specials at the problem's positions, a start cue at step 0
    and an end cue at the last step. The target class reads the specials as bits, first
    special most significant (X = 0, Y = 1: XX = 0, XY = 1, YX = 2, YY = 3)."""
    lengths, positions, inside = _draw_lengths_and_positions(problem, T, batch_size, rng)
    n_specials, columns = positions.shape[0], np.arange(batch_size)
    is_y = rng.integers(0, 2, size=positions.shape)
    symbols = rng.integers(0, N_DISTRACTORS, size=inside.shape)
    symbols[0, :] = START_CUE
    symbols[lengths - 1, columns] = END_CUE
    for position, bit in zip(positions, is_y):
        symbols[position, columns] = np.where(bit == 1, SYMBOL_Y, SYMBOL_X)
    inputs = _one_hot(symbols, N_INPUTS[problem]) * inside[..., None]
    classes = sum(bit << (n_specials - 1 - k) for k, bit in enumerate(is_y))
    mask = _last_step_mask(lengths, inside.shape[0])
    targets = _one_hot(classes, 2 ** n_specials)[None, :, :] * mask[..., None]
    return inputs, targets, mask


def temporal_order(T: int, batch_size: int, rng: np.random.Generator) -> HostBatch:
    """One batch of the 2-bit temporal order problem: X/Y at I in [0.01T, 0.1T) and
    J in [0.4T, 0.5T), length in [T, 1.1T); 4-way one-hot target at the last step."""
    return _temporal_order("temporal_order", T, batch_size, rng)


def temporal_order_3bit(T: int, batch_size: int, rng: np.random.Generator) -> HostBatch:
    """One batch of the 3-bit temporal order problem: specials at [0.01T, 0.1T),
    [0.3T, 0.4T), [0.5T, 0.6T); 8-way one-hot target at the last step."""
    return _temporal_order("temporal_order_3bit", T, batch_size, rng)


def random_permutation(T: int, batch_size: int, rng: np.random.Generator) -> HostBatch:
    """One batch of the random permutation problem: length exactly T; the first symbol is 0 or
    1 (half the batch each, shuffled), the other T - 1 are uniform over 2 .. 99. The target at
    every step is the next input symbol, at the last step the first symbol; the mask counts
    every step."""
    check_T("random_permutation", T)
    first = rng.permutation(np.arange(batch_size) % N_FIRST_SYMBOLS)
    rest = rng.integers(N_FIRST_SYMBOLS, N_PERMUTATION_SYMBOLS, size=(T - 1, batch_size))
    symbols = np.concatenate([first[None, :], rest])
    inputs = _one_hot(symbols, N_PERMUTATION_SYMBOLS)
    targets = _one_hot(np.roll(symbols, -1, axis=0), N_PERMUTATION_SYMBOLS)
    return inputs, targets, np.ones((T, batch_size))


def _memorization(problem, T, batch_size, rng, only_memory_bits):
    """N symbols, blanks, a trigger at step T - N - 1, then N blank steps during which the
    symbols are the targets. Input channels: the symbols one-hot, then blank, then trigger;
    output channels: the symbols, then blank (the target at every step outside the last N)."""
    check_T(problem, T)
    n_symbols, char_size = MEMORIZATION_SIZES[problem]
    if problem == "memorization":
        # every pattern of 5 bits once per 32 sequences; the rest of the batch is distinct
        # patterns drawn at random
        n_patterns = char_size ** n_symbols
        patterns = np.concatenate([np.tile(np.arange(n_patterns), batch_size // n_patterns),
                                   rng.choice(n_patterns, batch_size % n_patterns,
                                              replace=False)])
        digits = char_size ** np.arange(n_symbols - 1, -1, -1)
        symbols = (patterns[None, :] // digits[:, None]) % char_size      # [N, B], MSB first
    else:
        symbols = rng.integers(0, char_size, size=(n_symbols, batch_size))
    blank, trigger = char_size, char_size + 1
    trigger_step, answer_start = T - n_symbols - 1, T - n_symbols

    input_channels = np.full((T, batch_size), blank)
    input_channels[:n_symbols] = symbols
    input_channels[trigger_step] = trigger
    inputs = _one_hot(input_channels, char_size + 2)

    target_channels = np.full((T, batch_size), blank)
    target_channels[answer_start:] = symbols
    targets = _one_hot(target_channels, char_size + 1)

    mask = np.ones((T, batch_size))
    if only_memory_bits:
        mask[:answer_start] = 0.0
    return inputs, targets, mask


def memorization(T: int, batch_size: int, rng: np.random.Generator, *,
                 only_memory_bits: bool = False) -> HostBatch:
    """One batch of the 5-bit noiseless memorization problem (5 symbols of 2 values).

    The batch enumerates all 32 patterns in order, repeated ``batch_size // 32`` times, and
    fills the remaining ``batch_size % 32`` sequences with distinct patterns drawn at random. A
    batch size that is a multiple of 32 therefore draws nothing: every batch is the same."""
    return _memorization("memorization", T, batch_size, rng, only_memory_bits)


def memorization_20bit(T: int, batch_size: int, rng: np.random.Generator, *,
                       only_memory_bits: bool = False) -> HostBatch:
    """One batch of the 20-bit memorization problem: 10 symbols of 5 values, drawn uniformly."""
    return _memorization("memorization_20bit", T, batch_size, rng, only_memory_bits)


# the memorization generators also take only_memory_bits
GENERATORS: dict[str, Callable[..., HostBatch]] = {
    "addition": addition, "multiplication": multiplication, "xor": xor,
    "temporal_order": temporal_order, "temporal_order_3bit": temporal_order_3bit,
    "random_permutation": random_permutation, "memorization": memorization,
    "memorization_20bit": memorization_20bit}


def generate(problem: str, T: int, batch_size: int, rng: np.random.Generator, *,
             only_memory_bits: bool = False, addition_target: str = "sum") -> HostBatch:
    """One batch of ``problem`` on the host.

    Parameters
    ----------
    problem : one of :data:`PROBLEMS`
    T : int
        The problem's time scale (at least :data:`MINIMUM_T` of the problem).
    batch_size : int
    rng : numpy.random.Generator
    only_memory_bits : bool
        Memorization only: the loss mask counts only the last N steps instead of every step.
    addition_target : {"sum", "mean"}
        Addition only: A + B (the release) or (A + B) / 2 (MS11).

    Returns
    -------
    (inputs [T_max, B, n_in], targets [T_max, B, n_out], mask [T_max, B]), float64 numpy arrays;
    ``T_max`` is the longest sequence of the batch.
    """
    check_T(problem, T)
    check_positive_int("batch_size", batch_size)
    if addition_target not in ADDITION_TARGETS:
        raise ValueError(f"expected addition_target in {ADDITION_TARGETS}, "
                         f"got {addition_target!r}")
    if problem == "addition":
        return addition(T, batch_size, rng, target=addition_target)
    if problem in MEMORIZATION_SIZES:
        return GENERATORS[problem](T, batch_size, rng, only_memory_bits=only_memory_bits)
    return GENERATORS[problem](T, batch_size, rng)
