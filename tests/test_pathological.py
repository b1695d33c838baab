"""The pathological problems: shapes, where the masks are, targets recomputed from the inputs,
determinism per seed on every backend, fresh training data with a fixed test set, exact resumes,
and the per-sequence zero-one error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arrayhf import backend
from arrayhf.data.batch import Batch
from arrayhf.data.pathological import Pathological
from arrayhf.data.problems import MINIMUM_T, POSITION_PERCENT, PROBLEMS, generate, layout

from helpers import assert_matches, host, other_backend

# small sizes keep the suite fast; memorization_20bit needs T >= 22
SMALL_T = {"addition": 20, "multiplication": 20, "xor": 24, "temporal_order": 20,
           "temporal_order_3bit": 24, "random_permutation": 20, "memorization": 20,
           "memorization_20bit": 26}
BATCH_SIZE = 24     # not a multiple of 32, so the 5-bit memorization draws random patterns too
VARIABLE_LENGTH = ("addition", "multiplication", "xor", "temporal_order", "temporal_order_3bit")
MEMORY = {"memorization": (5, 2), "memorization_20bit": (10, 5)}    # N symbols, values each


def make(problem, xp, device, **settings):
    settings = {"batch_size": BATCH_SIZE, "n_train_batches": 2, "n_test_batches": 2,
                "seed": 0, **settings}
    return Pathological(problem, SMALL_T[problem], xp=xp, device=device, **settings)


def host_batch(batch):
    return host(batch.inputs), host(batch.targets), host(batch.mask)


def all_batches(data):
    return [data.batch(i) for i in data.train_batches + data.test_batches]


def lengths_of(inputs, problem="addition"):
    """Sequence lengths: one past the last step with any non-zero input (for xor, whose random
    bits may end in zeros: three past its last -1 marker)."""
    if problem == "xor":
        return np.array([np.nonzero(inputs[:, b, 1] == -1)[0].max() + 3
                         for b in range(inputs.shape[1])])
    active = np.any(inputs != 0, axis=-1)
    return np.array([np.nonzero(active[:, b])[0].max() + 1 for b in range(inputs.shape[1])])


# -- arguments ---------------------------------------------------------------------------------
def test_unknown_problem_raises_listing_the_problems(xp, device):
    with pytest.raises(ValueError, match="unknown pathological problem 'adition'.*addition, "
                                         "multiplication"):
        Pathological("adition", 100, xp=xp, device=device)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_T_below_the_minimum_raises_naming_the_minimum(problem, xp, device):
    minimum = MINIMUM_T[problem]
    with pytest.raises(ValueError, match=f"{problem} needs T >= {minimum}, got T={minimum - 1}"):
        Pathological(problem, minimum - 1, batch_size=4, xp=xp, device=device)
    data = Pathological(problem, minimum, batch_size=4, n_train_batches=1, n_test_batches=1,
                        xp=xp, device=device)
    assert data.batch(0).inputs.shape[1] == 4


@pytest.mark.parametrize("problem", VARIABLE_LENGTH)
def test_ranges_are_non_empty_ordered_and_before_the_end_from_the_minimum_T_on(problem):
    end_offset = 1 if problem.startswith("temporal") else 3
    for T in range(MINIMUM_T[problem], 400):
        (length_low, length_high), ranges = layout(problem, T)
        assert length_low >= 10 and length_low < length_high
        assert ranges[0][0] >= 1                                    # step 0 is the start mark
        assert all(low < high for low, high in ranges)
        assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))   # disjoint, ordered
        assert ranges[-1][1] <= length_low - end_offset            # before the end mark


@pytest.mark.parametrize("problem", VARIABLE_LENGTH)
def test_at_T_200_the_ranges_are_the_releases_unclamped_ones(problem):
    (length_low, length_high), ranges = layout(problem, 200)
    expected_length = (100, 110) if problem == "xor" else (200, 220)
    assert (length_low, length_high) == expected_length
    assert ranges == [(2 * low, 2 * high) for low, high in POSITION_PERCENT[problem]]


def test_bad_settings_raise_saying_what_was_expected(xp, device):
    with pytest.raises(ValueError, match="expected batch_size to be a positive integer, got 0"):
        Pathological("addition", 20, batch_size=0, xp=xp, device=device)
    with pytest.raises(ValueError, match="expected addition_target in .*got 'average'"):
        Pathological("addition", 20, addition_target="average", xp=xp, device=device)
    with pytest.raises(ValueError, match="expected T to be an integer, got 20.5"):
        Pathological("addition", 20.5, xp=xp, device=device)


# -- shapes, dtypes, devices, ids --------------------------------------------------------------
@pytest.mark.parametrize("problem", PROBLEMS)
def test_batches_are_time_major_on_the_backend(problem, xp, device):
    data = make(problem, xp, device)
    dtype = backend.resolve_dtype(xp, None)
    for batch in all_batches(data):
        T_max, batch_size, n_inputs = batch.inputs.shape
        assert (batch_size, n_inputs) == (BATCH_SIZE, data.n_inputs)
        assert tuple(batch.targets.shape) == (T_max, BATCH_SIZE, data.n_outputs)
        assert tuple(batch.mask.shape) == (T_max, BATCH_SIZE)
        for array in (batch.inputs, batch.targets, batch.mask):
            assert_matches(array, xp=xp, dtype=dtype, device=device)
        if problem in VARIABLE_LENGTH:
            assert T_max == lengths_of(host(batch.inputs), problem).max()
        else:
            assert T_max == data.T


def test_float32_batches_when_asked(xp, device):
    data = make("temporal_order", xp, device, dtype="float32")
    for array in (data.batch(0).inputs, data.batch(0).targets, data.batch(("test", 1)).mask):
        assert_matches(array, xp=xp, dtype=xp.float32, device=device)


def test_batch_ids_and_the_model_settings(xp, device):
    data = make("xor", xp, device, n_train_batches=3, n_test_batches=2)
    assert data.train_batches == [0, 1, 2]
    assert data.test_batches == [("test", 0), ("test", 1)]
    assert data.batch(["test", 1]) is data.batch(("test", 1))        # a JSON round trip's list
    with pytest.raises(KeyError, match="unknown batch id 3"):
        data.batch(3)
    assert (data.n_inputs, data.n_outputs, data.output) == (2, 1, "logistic")
    assert (data.problem, data.T) == ("xor", 24)


# -- the problems, recomputed from their inputs ------------------------------------------------
@pytest.mark.parametrize("problem, addition_target", [("addition", "sum"),
                                                      ("addition", "mean"),
                                                      ("multiplication", "sum")])
def test_addition_and_multiplication(problem, addition_target, xp, device):
    data = make(problem, xp, device, addition_target=addition_target)
    T = data.T
    for batch in all_batches(data):
        inputs, targets, mask = host_batch(batch)
        values, markers = inputs[..., 0], inputs[..., 1]
        lengths = lengths_of(inputs)
        assert np.all((lengths >= T) & (lengths < T * 110 // 100))
        for b, length in enumerate(lengths):
            assert np.all(inputs[length:, b] == 0)                        # zero padding
            assert np.all((values[:length, b] >= 0) & (values[:length, b] < 1))
            assert markers[0, b] == -1 and markers[length - 3, b] == -1
            first, second = np.nonzero(markers[:, b] == 1)[0]
            assert 1 <= first < T * 10 // 100 <= second < T * 50 // 100
            assert np.count_nonzero(markers[:, b]) == 4
            a, b_value = values[first, b], values[second, b]
            expected = {"addition": a + b_value, "multiplication": a * b_value}[problem]
            if addition_target == "mean":
                expected /= 2
            np.testing.assert_array_equal(np.nonzero(mask[:, b])[0], [length - 1])
            assert targets[length - 1, b, 0] == pytest.approx(expected, rel=1e-14)
            assert np.count_nonzero(targets[:, b]) == 1


def test_xor(xp, device):
    data = make("xor", xp, device)
    T = data.T
    for batch in all_batches(data):
        inputs, targets, mask = host_batch(batch)
        values, markers = inputs[..., 0], inputs[..., 1]
        lengths = lengths_of(inputs, "xor")
        assert np.all((lengths >= T * 50 // 100) & (lengths < T * 55 // 100))
        assert set(np.unique(values)) <= {0.0, 1.0}
        for b, length in enumerate(lengths):
            assert np.all(inputs[length:, b] == 0)                        # zero padding
            first, second = np.nonzero(markers[:, b] == 1)[0]
            assert 1 <= first < T * 10 // 100 and T * 15 // 100 <= second < T * 25 // 100
            assert markers[0, b] == -1 and np.count_nonzero(markers[:, b]) == 4
            expected = float(int(values[first, b]) ^ int(values[second, b]))
            np.testing.assert_array_equal(np.nonzero(mask[:, b])[0], [length - 1])
            assert targets[length - 1, b, 0] == expected


@pytest.mark.parametrize("problem, n_specials", [("temporal_order", 2),
                                                 ("temporal_order_3bit", 3)])
def test_temporal_order(problem, n_specials, xp, device):
    data = make(problem, xp, device)
    _, ranges = layout(problem, data.T)
    for batch in all_batches(data):
        inputs, targets, mask = host_batch(batch)
        lengths = lengths_of(inputs)
        for b, length in enumerate(lengths):
            assert np.all(inputs[:length, b].sum(axis=-1) == 1)          # one-hot inside
            assert np.all(inputs[length:, b] == 0)                       # zero padding
            symbols = inputs[:length, b].argmax(axis=-1)
            assert symbols[0] == 6 and symbols[-1] == 7                  # start and end cue
            positions = np.nonzero((symbols == 4) | (symbols == 5))[0]    # X = 4, Y = 5
            assert [low <= p < high for p, (low, high) in zip(positions, ranges)] \
                == [True] * n_specials
            specials = symbols[positions]
            expected_class = int("".join("1" if s == 5 else "0" for s in specials), 2)
            np.testing.assert_array_equal(np.nonzero(mask[:, b])[0], [length - 1])
            assert targets[length - 1, b].argmax() == expected_class
            assert targets[:, b].sum() == 1


def test_temporal_order_uses_every_class(xp, device):
    inputs, targets, mask = generate("temporal_order_3bit", 30, 400, np.random.default_rng(0))
    classes = targets.sum(axis=0).argmax(axis=-1)
    assert set(classes) == set(range(8))


def test_random_permutation(xp, device):
    data = make("random_permutation", xp, device)
    for batch in all_batches(data):
        inputs, targets, mask = host_batch(batch)
        symbols = inputs.argmax(axis=-1)
        assert np.all(inputs.sum(axis=-1) == 1)
        assert np.sum(symbols[0] == 0) == np.sum(symbols[0] == 1) == BATCH_SIZE // 2
        assert np.all((symbols[1:] >= 2) & (symbols[1:] < 100))
        np.testing.assert_array_equal(targets.argmax(axis=-1)[:-1], symbols[1:])
        np.testing.assert_array_equal(targets.argmax(axis=-1)[-1], symbols[0])
        assert np.all(mask == 1)


@pytest.mark.parametrize("problem", MEMORY)
@pytest.mark.parametrize("only_memory_bits", [False, True])
def test_memorization(problem, only_memory_bits, xp, device):
    n_symbols, char_size = MEMORY[problem]
    blank, trigger = char_size, char_size + 1
    data = make(problem, xp, device, only_memory_bits=only_memory_bits)
    T = data.T
    assert (data.n_inputs, data.n_outputs) == (char_size + 2, char_size + 1)
    for batch in all_batches(data):
        inputs, targets, mask = host_batch(batch)
        assert np.all(inputs.sum(axis=-1) == 1) and np.all(targets.sum(axis=-1) == 1)
        input_channels, target_channels = inputs.argmax(axis=-1), targets.argmax(axis=-1)
        shown = input_channels[:n_symbols]
        assert np.all(shown < char_size)
        assert np.all(input_channels[n_symbols:T - n_symbols - 1] == blank)
        assert np.all(input_channels[T - n_symbols - 1] == trigger)
        assert np.all(input_channels[T - n_symbols:] == blank)
        assert np.all(target_channels[:T - n_symbols] == blank)
        np.testing.assert_array_equal(target_channels[T - n_symbols:], shown)
        expected_mask = np.ones((T, BATCH_SIZE))
        if only_memory_bits:
            expected_mask[:T - n_symbols] = 0
        np.testing.assert_array_equal(mask, expected_mask)


def test_five_bit_memorization_enumerates_all_32_patterns():
    inputs, _, _ = generate("memorization", 20, 64, np.random.default_rng(0))
    patterns = [tuple(row) for row in inputs[:5].argmax(axis=-1).T]
    assert len(set(patterns)) == 32
    assert all(patterns.count(p) == 2 for p in set(patterns))


@pytest.mark.parametrize("problem", MEMORY)
def test_memorization_needs_T_above_2N_plus_1(problem):
    n_symbols, _ = MEMORY[problem]
    assert MINIMUM_T[problem] >= 2 * n_symbols + 2
    with pytest.raises(ValueError, match=f"needs T >= {MINIMUM_T[problem]}"):
        generate(problem, 2 * n_symbols + 1, 4, np.random.default_rng(0))


# -- randomness --------------------------------------------------------------------------------
def assert_same_batches(left, right):
    for a, b in zip(left, right):
        for x, y in zip(host_batch(a), host_batch(b)):
            np.testing.assert_array_equal(x, y)


def differ(left, right):
    return any(x.shape != y.shape or not np.array_equal(x, y)
               for a, b in zip(left, right) for x, y in zip(host_batch(a), host_batch(b)))


@pytest.mark.parametrize("problem", PROBLEMS)
def test_same_seed_same_data_other_seed_other_data(problem, xp, device):
    first, again = make(problem, xp, device, seed=3), make(problem, xp, device, seed=3)
    assert_same_batches(all_batches(first), all_batches(again))
    other = make(problem, xp, device, seed=4)
    assert differ(all_batches(first), all_batches(other))


@pytest.mark.parametrize("problem", PROBLEMS)
def test_another_backend_draws_the_same_data(problem, xp, device):
    """The session's backend against a different one (helpers.other_backend): the same seed gives
    the same batches, bit for bit."""
    other = other_backend(xp)
    assert backend.name_of(other) != backend.name_of(xp)
    on_other = make(problem, other, None)
    assert_same_batches(all_batches(on_other), all_batches(make(problem, xp, device)))


@pytest.mark.parametrize("problem", PROBLEMS)
def test_forget_draws_new_training_data_and_keeps_the_test_set(problem, xp, device):
    data = make(problem, xp, device)
    train = [data.batch(i) for i in data.train_batches]
    test = [data.batch(i) for i in data.test_batches]
    data.forget()
    assert differ(train, [data.batch(i) for i in data.train_batches])
    assert_same_batches(test, [data.batch(i) for i in data.test_batches])
    assert differ(train[:1], train[1:])                  # the batches differ among themselves
    assert differ(train[:1], test[:1])                   # and from the test set


def test_five_bit_memorization_with_whole_pattern_cycles_is_always_the_same_batch(xp, device):
    data = make("memorization", xp, device, batch_size=32)
    train = [data.batch(i) for i in data.train_batches]
    data.forget()
    assert_same_batches(train, [data.batch(i) for i in data.train_batches])


@pytest.mark.parametrize("problem", ["addition", "random_permutation", "memorization_20bit"])
def test_state_round_trip_through_json_reproduces_the_training_batches(problem, xp, device):
    data = make(problem, xp, device)
    data.forget()
    state = json.loads(json.dumps(data.get_state()))
    saved = [data.batch(i) for i in data.train_batches]
    data.forget()
    after_forget = [data.batch(i) for i in data.train_batches]

    resumed = make(problem, xp, device)
    resumed.set_state(state)
    assert_same_batches(saved, [resumed.batch(i) for i in resumed.train_batches])
    resumed.forget()
    assert_same_batches(after_forget, [resumed.batch(i) for i in resumed.train_batches])


def test_set_state_refuses_the_state_of_other_settings(xp, device):
    state = make("addition", xp, device).get_state()
    with pytest.raises(ValueError, match="expected a state of a data set with settings"):
        make("addition", xp, device, batch_size=12).set_state(state)


# -- the zero-one error ------------------------------------------------------------------------
def confident_predictions(data, targets):
    """Predictions that are right wherever there is a target: the target itself for linear
    outputs, 0.9 / 0.1 for logistic, 0.8 on the target's class for softmax."""
    if data.output == "linear":
        return targets.copy()
    if data.output == "logistic":
        return np.where(targets > 0.5, 0.9, 0.1)
    return 0.8 * targets + 0.2 / data.n_outputs


def spoil(data, predictions, step, sequence):
    """Make the prediction at (step, sequence) wrong."""
    if data.output == "linear":
        predictions[step, sequence] += 0.05
    elif data.output == "logistic":
        predictions[step, sequence] = 1.0 - predictions[step, sequence]
    else:
        predictions[step, sequence] = np.roll(predictions[step, sequence], 1)


def scored_step(data, mask, sequence):
    if data.problem in VARIABLE_LENGTH:
        return int(np.nonzero(mask[:, sequence])[0][0])
    return data.T - 1 - sequence % 3 if data.problem in MEMORY else data.T - 1


def unscored_step(data, mask, sequence):
    if data.problem in VARIABLE_LENGTH:
        return scored_step(data, mask, sequence) - 1
    return data.T - MEMORY[data.problem][0] - 1 if data.problem in MEMORY else 0


def on_device(array, xp, device):
    return backend.from_host(array, xp, device=device)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_zero_one_error_counts_wrong_sequences_at_their_scored_steps(problem, xp, device):
    data = make(problem, xp, device)
    batch = data.batch(("test", 0))
    _, targets, mask = host_batch(batch)
    right = confident_predictions(data, targets)
    assert data.zero_one_error(batch, on_device(right, xp, device)) == 0.0

    wrong_sequences = [1, 4, 5, 17]
    predictions = right.copy()
    for sequence in wrong_sequences:
        spoil(data, predictions, scored_step(data, mask, sequence), sequence)
    error = data.zero_one_error(batch, on_device(predictions, xp, device))
    assert isinstance(error, float)
    assert error == len(wrong_sequences) / BATCH_SIZE

    unscored = right.copy()
    for sequence in range(BATCH_SIZE):
        spoil(data, unscored, unscored_step(data, mask, sequence), sequence)
    assert data.zero_one_error(batch, on_device(unscored, xp, device)) == 0.0


def test_a_sequence_with_several_wrong_steps_counts_once(xp, device):
    data = make("memorization_20bit", xp, device)
    batch = data.batch(0)
    _, targets, _ = host_batch(batch)
    predictions = confident_predictions(data, targets)
    for step in range(data.T - 10, data.T):
        spoil(data, predictions, step, 2)
    assert data.zero_one_error(batch, on_device(predictions, xp, device)) == 1 / BATCH_SIZE


def test_addition_answers_within_the_tolerance_are_right(xp, device):
    data = make("addition", xp, device)
    batch = data.batch(0)
    _, targets, mask = host_batch(batch)
    close = targets + 0.03 * mask[..., None]
    assert data.zero_one_error(batch, on_device(close, xp, device)) == 0.0
    far = targets - 0.05 * mask[..., None]
    assert data.zero_one_error(batch, on_device(far, xp, device)) == 1.0


def test_zero_one_error_wants_predictions_of_the_targets_shape(xp, device):
    data = make("xor", xp, device)
    batch = data.batch(0)
    short = on_device(host(batch.targets)[:-1], xp, device)
    with pytest.raises(ValueError, match="expected predictions of the targets' shape"):
        data.zero_one_error(batch, short)
    unmasked = Batch(batch.inputs, batch.targets)
    with pytest.raises(ValueError, match="needs the batch's mask"):
        data.zero_one_error(unmasked, batch.targets)



def test_ten_wrong_of_a_thousand_is_one_percent_exactly_in_float32(xp, device):
    """The zero-one error is a count over a number: 10 wrong sequences of 1,000 give 0.01 in
    float32 too (a float32 mean gives 0.0099999998, "fewer than 1%"), and the test error the
    optimizer reports over 10 batches of 100 is 0.01 as well, so that MS11's "fewer than 1%"
    refuses it."""
    import arrayhf
    from arrayhf.hf.objective import BatchObjective

    dataset = Pathological("addition", 20, batch_size=100, n_train_batches=1, n_test_batches=10,
                           xp=xp, dtype="float32", device=device)
    model = arrayhf.RNN(2, 4, 1, biases=False)
    rows = []
    for index, batch_id in enumerate(dataset.test_batches):
        batch = dataset.batch(batch_id)
        wrong = np.zeros(host(batch.targets).shape, dtype=np.float32)
        wrong[..., index: index + 1, :] = 1.0            # one wrong sequence in each batch
        predictions = batch.targets + backend.from_host(wrong, xp, device=device)
        error = dataset.zero_one_error(batch, predictions)
        assert error == 0.01 and isinstance(error, float)
        rows.append(error)

    class Fixed:
        """A model whose predictions are the targets with one sequence wrong per batch."""

        output = model.output

        def forward(self, params, inputs):
            index = next(i for i, b in enumerate(dataset.test_batches)
                         if dataset.batch(b).inputs is inputs)
            batch = dataset.batch(dataset.test_batches[index])
            wrong = np.zeros(host(batch.targets).shape, dtype=np.float32)
            wrong[..., index: index + 1, :] = 1.0
            return type("Cache", (), {"predictions": batch.targets + backend.from_host(
                wrong, xp, device=device)})()

        def loss(self, params, batch, cache):
            return xp.asarray(0.0)

    objective = BatchObjective(Fixed(), dataset, xp, weight_cost=0.0)
    _, error = objective.test_loss_and_error(None, dataset.test_batches)
    assert error == 0.01 and not error < 0.01
