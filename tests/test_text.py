"""Character-level text data: the vocabulary, the split into a training and a held-out part,
next-character targets, warm-up masks, bits per character against an actual model loss, the
zero-one error, determinism on every backend, exact resumes, and the standard-library corpus."""

from __future__ import annotations

import json
import math

import array_api_compat
import numpy as np
import pytest

import arrayhf
from arrayhf import backend
from arrayhf.data.batch import Batch
from arrayhf.data.corpus import bits_per_character, python_stdlib_corpus, unigram_entropy_bits
from arrayhf.data.text import Text, one_hot
from arrayhf.data.vocabulary import UNKNOWN, Vocabulary

from helpers import assert_matches, host, other_backend

# a text long enough for a few sequences in each part, and with a deterministic order
SAMPLE = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(60))
T, BATCH_SIZE, WARMUP = 16, 6, 4


def make(xp, device, text=SAMPLE, **settings):
    settings = {"T": T, "batch_size": BATCH_SIZE, "n_train_batches": 3, "n_test_batches": 2,
                "warmup": WARMUP, "held_out": 0.2, "seed": 0, **settings}
    return Text(text, xp=xp, device=device, **settings)


def ids_of(array) -> np.ndarray:
    return np.asarray(backend.to_numpy(array)).astype(np.int64)


def decoded_columns(data, ids) -> list[str]:
    """Each sequence of a [T, B] id array as text."""
    host_ids = ids_of(ids)
    return [data.vocabulary.decode(host_ids[:, b]) for b in range(host_ids.shape[1])]


def target_columns(data, batch) -> list[str]:
    """Each sequence's targets as text (the argmax of each one-hot row)."""
    return decoded_columns(data, np.argmax(host(batch.targets), axis=-1))


# -- vocabulary --------------------------------------------------------------------------------
def test_vocabulary_is_the_sorted_characters_after_the_unknown_symbol():
    vocabulary = Vocabulary("hello world")
    assert vocabulary.symbols == (UNKNOWN, " ", "d", "e", "h", "l", "o", "r", "w")
    assert vocabulary.size == len(vocabulary) == 9


def test_vocabulary_encode_decode_round_trip():
    vocabulary = Vocabulary(SAMPLE)
    ids = vocabulary.encode(SAMPLE)
    assert ids.dtype == np.int64 and ids.shape == (len(SAMPLE),)
    assert ids.min() >= 1                              # every character is known
    assert vocabulary.decode(ids) == SAMPLE
    assert vocabulary.decode(list(ids[:5])) == SAMPLE[:5]


def test_unseen_characters_encode_as_unknown():
    vocabulary = Vocabulary("abc")
    assert vocabulary.encode("aZc€").tolist() == [1, 0, 3, 0]
    assert vocabulary.decode(vocabulary.encode("aZc")) == f"a{UNKNOWN}c"


def test_vocabulary_json_round_trip():
    vocabulary = Vocabulary("naïve café ∑ 🙂")
    saved = json.loads(json.dumps(vocabulary.to_json()))
    restored = Vocabulary.from_json(saved)
    assert restored == vocabulary
    assert restored.encode("café 🙂").tolist() == vocabulary.encode("café 🙂").tolist()


def test_vocabulary_from_json_rejects_a_list_without_the_unknown_symbol_first():
    with pytest.raises(ValueError, match="unknown symbol"):
        Vocabulary.from_json(["a", "b"])
    with pytest.raises(ValueError, match="increasing order"):
        Vocabulary.from_json([UNKNOWN, "b", "a"])


def test_max_size_keeps_the_most_frequent_characters():
    vocabulary = Vocabulary("aaaa bbb cc d", max_size=3)      # ' ' 3 times, ties go to ' '
    assert vocabulary.symbols == (UNKNOWN, " ", "a", "b")
    assert vocabulary.decode(vocabulary.encode("abcd")) == f"ab{UNKNOWN}{UNKNOWN}"


def test_decode_rejects_ids_out_of_range_and_two_dimensional_ids():
    vocabulary = Vocabulary("abc")
    with pytest.raises(ValueError, match=r"ids in 0 \.\. 3, got values from 0 to 4"):
        vocabulary.decode([0, 4])
    with pytest.raises(ValueError, match=r"1-D sequence of ids, got shape \[2, 2\]"):
        vocabulary.decode(np.zeros((2, 2), dtype=np.int64))


# -- batches -----------------------------------------------------------------------------------
def test_batches_have_the_documented_shapes_dtypes_and_device(xp, device):
    data = make(xp, device)
    V = data.vocabulary.size
    assert data.n_inputs == data.n_outputs == V and data.output == "softmax"
    for batch_id in data.train_batches + data.test_batches:
        batch = data.batch(batch_id)
        assert tuple(batch.inputs.shape) == (T, BATCH_SIZE)
        assert batch.inputs.dtype == xp.int64
        assert array_api_compat.device(batch.inputs) == device
        assert_matches(batch.targets, xp=xp, dtype=xp.float64, device=device)
        assert_matches(batch.mask, xp=xp, dtype=xp.float64, device=device)
        assert tuple(batch.targets.shape) == (T, BATCH_SIZE, V)
        assert tuple(batch.mask.shape) == (T, BATCH_SIZE)


def test_float32_data_has_float32_targets_and_mask(xp, device):
    batch = make(xp, device, dtype="float32", one_hot_inputs=True).batch(("test", 0))
    for array in (batch.inputs, batch.targets, batch.mask):
        assert_matches(array, xp=xp, dtype=xp.float32, device=device)


def test_targets_are_the_next_characters(xp, device):
    data = make(xp, device)
    for batch_id in data.train_batches + data.test_batches:
        batch, offsets = data.batch(batch_id), data.offsets(batch_id)
        inputs, targets = decoded_columns(data, batch.inputs), target_columns(data, batch)
        for b, start in enumerate(offsets):
            assert inputs[b] == SAMPLE[start:start + T]
            assert targets[b] == SAMPLE[start + 1:start + T + 1]


def test_warmup_steps_are_masked(xp, device):
    mask = host(make(xp, device).batch(0).mask)
    assert np.all(mask[:WARMUP] == 0.0) and np.all(mask[WARMUP:] == 1.0)


def test_held_out_part_is_the_end_of_the_text_and_disjoint_from_training(xp, device):
    data = make(xp, device)
    assert data.n_held_out == round(0.2 * len(SAMPLE))
    assert data.n_train + data.n_held_out == len(SAMPLE)
    for batch_id in data.train_batches:
        assert np.all(data.offsets(batch_id) + T + 1 <= data.n_train)
    test_offsets = np.concatenate([data.offsets(i) for i in data.test_batches])
    assert np.all(test_offsets >= data.n_train)
    assert np.all(test_offsets + T + 1 <= len(SAMPLE))
    assert test_offsets.min() == data.n_train                      # evenly spaced, end to end
    assert test_offsets.max() == len(SAMPLE) - (T + 1)
    assert np.all(np.diff(test_offsets) > 0)


def test_forget_changes_training_batches_and_keeps_the_test_batches(xp, device):
    data = make(xp, device)
    train_before = [host(data.batch(i).targets) for i in data.train_batches]
    test_before = [host(data.batch(i).targets) for i in data.test_batches]
    data.forget()
    train_after = [host(data.batch(i).targets) for i in data.train_batches]
    test_after = [host(data.batch(i).targets) for i in data.test_batches]
    assert all(not np.array_equal(a, b) for a, b in zip(train_before, train_after))
    assert all(np.array_equal(a, b) for a, b in zip(test_before, test_after))


def test_one_hot_inputs_option_gives_float_rows_of_the_ids(xp, device):
    ids_data, one_hot_data = make(xp, device), make(xp, device, one_hot_inputs=True)
    inputs = one_hot_data.batch(0).inputs
    assert_matches(inputs, xp=xp, dtype=xp.float64, device=device)
    expected = one_hot(ids_data.batch(0).inputs, ids_data.vocabulary.size)
    assert np.array_equal(host(inputs), host(expected))


def test_batch_ids_accept_json_lists_and_reject_unknown_ids(xp, device):
    data = make(xp, device)
    assert data.batch(["test", 1]) is data.batch(("test", 1))
    with pytest.raises(KeyError, match="unknown batch id 7"):
        data.batch(7)


# -- bits per character and the zero-one error -------------------------------------------------
def test_bits_per_character_of_a_model_loss_is_the_mean_negative_log2_probability(xp, device):
    data = make(xp, device)
    V = data.vocabulary.size
    model = arrayhf.RNN(V, 8, V, output="softmax")
    params = model.init(0, xp=xp, device=device)
    batch = data.batch(0)
    float_batch = Batch(one_hot(batch.inputs, V), batch.targets, batch.mask)
    bits = bits_per_character(model.loss(params, float_batch))

    # independently, on the host: log-softmax of the net outputs at the next characters' ids
    net_output = host(model.forward(params, float_batch.inputs).net_output)
    log_probabilities = net_output - np.log(np.sum(np.exp(net_output), axis=-1, keepdims=True))
    next_ids = np.stack([data.vocabulary.encode(SAMPLE[start + 1:start + T + 1])
                         for start in data.offsets(0)], axis=1)              # [T, B]
    log2_p = np.take_along_axis(log_probabilities, next_ids[..., None], axis=-1)[..., 0]
    log2_p = log2_p / math.log(2.0)
    expected = -np.mean(log2_p[WARMUP:])                                   # counted steps only
    assert bits == pytest.approx(expected, rel=1e-12)
    assert Text.bits_per_character(math.log(2.0)) == pytest.approx(1.0)


def test_zero_one_error_is_zero_for_perfect_predictions(xp, device):
    data = make(xp, device)
    batch = data.batch(0)
    assert data.zero_one_error(batch, batch.targets) == 0.0


def test_zero_one_error_counts_k_wrong_counted_positions(xp, device):
    data = make(xp, device)
    batch = data.batch(0)
    V = data.vocabulary.size
    targets = host(batch.targets)
    wrong_positions = [(WARMUP, 0), (WARMUP + 3, 2), (T - 1, 5)]
    predictions = targets.copy()
    for step, sequence in wrong_positions + [(0, 1)]:                 # (0, 1) is not counted
        predictions[step, sequence] = np.roll(targets[step, sequence], 1)
    predictions = backend.from_host(predictions, xp, device=device)
    assert V > 1
    error = data.zero_one_error(batch, predictions)
    assert error == pytest.approx(len(wrong_positions) / ((T - WARMUP) * BATCH_SIZE))


def test_zero_one_error_rejects_predictions_of_another_shape(xp, device):
    data = make(xp, device)
    batch = data.batch(0)
    with pytest.raises(ValueError, match="expected predictions of the targets' shape"):
        data.zero_one_error(batch, batch.mask)


# -- determinism and resumes -------------------------------------------------------------------
def test_same_seed_gives_the_same_batches_on_another_backend(xp, device):
    """The session's backend against a different one (helpers.other_backend)."""
    other = other_backend(xp)
    assert backend.name_of(other) != backend.name_of(xp)
    on_backend = make(xp, device)
    on_other = make(other, None)
    on_backend.forget()
    on_other.forget()
    for batch_id in on_backend.train_batches + on_backend.test_batches:
        ours, theirs = on_backend.batch(batch_id), on_other.batch(batch_id)
        assert np.array_equal(ids_of(ours.inputs), ids_of(theirs.inputs))
        assert np.array_equal(host(ours.targets), host(theirs.targets))
        assert np.array_equal(host(ours.mask), host(theirs.mask))


def test_another_seed_gives_other_training_batches(xp, device):
    first, second = make(xp, device, seed=0), make(xp, device, seed=1)
    assert not np.array_equal(first.offsets(0), second.offsets(0))
    assert np.array_equal(first.offsets(("test", 0)), second.offsets(("test", 0)))


def test_get_state_set_state_restores_the_training_batches_exactly(xp, device):
    data = make(xp, device)
    data.forget()
    state = json.loads(json.dumps(data.get_state()))
    saved = [ids_of(data.batch(i).inputs) for i in data.train_batches]
    data.forget()
    after_one_more_forget = [ids_of(data.batch(i).inputs) for i in data.train_batches]

    resumed = make(xp, device)
    resumed.set_state(state)
    assert all(np.array_equal(a, ids_of(resumed.batch(i).inputs))
               for a, i in zip(saved, resumed.train_batches))
    resumed.forget()
    assert all(np.array_equal(a, ids_of(resumed.batch(i).inputs))
               for a, i in zip(after_one_more_forget, resumed.train_batches))


def test_set_state_rejects_the_state_of_another_data_set(xp, device):
    state = make(xp, device, T=T + 1).get_state()
    with pytest.raises(ValueError, match="differs in T"):
        make(xp, device).set_state(state)


def test_the_hf_driver_trains_an_rnn_on_text(tmp_path, xp, device):
    data = make(xp, device, one_hot_inputs=True)
    model = arrayhf.RNN(data.n_inputs, 8, data.n_outputs, output=data.output)
    params = model.init(0, xp=xp, device=device)
    optimizer = arrayhf.HF(model, data, params=params, run_dir=tmp_path, progress=False)
    optimizer.run(max_iterations=2)
    test_batch = data.batch(("test", 0))
    before = bits_per_character(model.loss(params, test_batch))
    after = bits_per_character(model.loss(optimizer.params, test_batch))
    assert after < before
    assert 0.0 <= optimizer.history[-1]["test_error"] <= 1.0


# -- reading and errors ------------------------------------------------------------------------
def test_from_file_and_a_path_read_the_text(tmp_path, xp, device):
    path = tmp_path / "corpus.txt"
    path.write_text(SAMPLE, encoding="utf-8")
    for source in (Text.from_file(str(path), T=T, xp=xp, device=device, batch_size=2),
                   Text(path, T=T, xp=xp, device=device, batch_size=2)):
        assert source.text == SAMPLE


def test_too_short_text_raises(xp, device):
    with pytest.raises(ValueError, match=r"held-out part to hold at least T \+ 1 = 17 "
                                         r"characters, got 10"):
        make(xp, device, text="x" * 100, held_out=0.1)
    with pytest.raises(ValueError, match=r"training part to hold at least T \+ 1 = 17"):
        make(xp, device, text="x" * 100, held_out=0.9)


@pytest.mark.parametrize("warmup", [T, T + 5, -1])
def test_bad_warmup_raises(xp, device, warmup):
    with pytest.raises(ValueError, match=rf"warmup to be an integer in 0 \.\. T - 1 = {T - 1}"):
        make(xp, device, warmup=warmup)


# -- baselines and the stdlib corpus -----------------------------------------------------------
def test_unigram_entropy_of_a_known_distribution():
    assert unigram_entropy_bits("aabb") == pytest.approx(1.0)
    assert unigram_entropy_bits("aaaa") == pytest.approx(0.0)
    assert unigram_entropy_bits(np.array([1, 2, 3, 4])) == pytest.approx(2.0)


def test_python_stdlib_corpus_is_python_source_of_the_requested_length():
    corpus = python_stdlib_corpus(max_chars=50_000)
    assert isinstance(corpus, str) and len(corpus) == 50_000
    assert "def " in corpus and "import " in corpus
    assert corpus == python_stdlib_corpus(max_chars=50_000)
