"""What the recurrent models share (arrayhf/models/recurrent.py, arrayhf/models/inputs.py) and the
one (G + λμS) v (arrayhf/curvature.py): one meaning of structural_curvature for every recurrent
model, character ids for the plain RNN as for the others, and every route to a product giving the
same numbers."""

from __future__ import annotations

import numpy as np
import pytest

import arrayhf
from arrayhf import backend, curvature
from arrayhf.data.vocabulary import UNKNOWN, Vocabulary
from oracles import core as oracle

import problems
from helpers import finite_difference_jacobian, host, relative_error

STRUCTURAL = 0.7   # λμ in the tests
ORACLE_TOLERANCE = 1e-10
FD_TOLERANCE = 1e-7


def tanh_models(structural_curvature=None):
    """One recurrent model of every kind with tanh units, at κ = ``structural_curvature``."""
    kappa = {"structural_curvature": structural_curvature}
    return [arrayhf.RNN(4, 3, 4, output="softmax", **kappa),
            arrayhf.MRNN(4, 3, 2, 4, **kappa),
            arrayhf.MRNN(4, 3, 2, 4, variant="release", **kappa),
            arrayhf.LSTM(4, 3, 4, output="softmax", **kappa),
            arrayhf.GRU(4, 3, 4, output="softmax", **kappa)]


def id_batch(xp, device, model, *, seed=0, one_hot=False, ids_dtype="int64"):
    """θ, v, and a batch of character ids [5, 3] (or their one-hot rows) with a mask."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, model.n_inputs, (5, 3))
    targets = np.eye(model.n_outputs)[rng.integers(0, model.n_outputs, (5, 3))]
    mask = (rng.uniform(size=(5, 3)) < 0.7).astype(np.float64)
    mask[-1, 0] = 1.0
    params, v = 0.6 * rng.standard_normal(model.n_params), rng.standard_normal(model.n_params)
    to_xp = lambda array: backend.from_host(array, xp, device=device)  # noqa: E731
    inputs = (to_xp(np.eye(model.n_inputs)[ids]) if one_hot
              else backend.from_host(ids.astype(ids_dtype), xp, device=device))
    host_arrays = {"params": params, "v": v, "ids": ids, "targets": targets, "mask": mask}
    return to_xp(params), to_xp(v), arrayhf.Batch(inputs, to_xp(targets), to_xp(mask)), host_arrays


# -- one meaning of κ ---------------------------------------------------------------------------
def test_structural_curvature_is_the_hidden_units_and_other_kinds_keep_their_ratio():
    """κ is the κ of a unit of the hidden nonlinearity (tanh for the gated models); a logistic
    gate gets κ · 1 / (1/4) = 4κ (structural-damping.md, section 3). config() records κ."""
    assert arrayhf.RNN(2, 3, 1).unit_curvatures() == (0.25,)
    assert arrayhf.RNN(2, 3, 1, hidden="logistic").unit_curvatures() == (1.0,)
    assert arrayhf.MRNN(2, 3, 2, 1, structural_curvature=0.5).unit_curvatures() == (0.5,)
    assert arrayhf.LSTM(2, 3, 1).unit_curvatures() == (1.0, 1.0, 0.25, 1.0)
    assert arrayhf.LSTM(2, 3, 1, structural_curvature=1.0).unit_curvatures() == (4.0, 4.0, 1.0, 4.0)
    assert arrayhf.GRU(2, 3, 1).unit_curvatures() == (1.0, 1.0, 0.25)
    assert arrayhf.GRU(2, 3, 1, structural_curvature=1.0).unit_curvatures() == (4.0, 4.0, 1.0)
    for model in tanh_models():
        assert model.config()["structural_curvature"] == 0.25, type(model).__name__
        assert arrayhf.models.from_config(model.config()).unit_curvatures() == \
            model.unit_curvatures()
    # a checkpoint that recorded the LSTM's old default (None) loads with the same Κ
    old = {**arrayhf.LSTM(2, 3, 1).config(), "structural_curvature": None}
    assert arrayhf.models.from_config(old).unit_curvatures() == (1.0, 1.0, 0.25, 1.0)


def test_structural_curvature_scales_the_whole_term(xp, device):
    """κ = 1 gives 4 times the default's S v in every recurrent model with tanh units, the gated
    ones included ("κ = 1 needs μ/4", structural-damping.md, section 8). Under a κ applied to
    every gate block alike, the LSTM's κ = 1 would scale its candidate alone and fail here."""
    for default, quadrupled in zip(tanh_models(), tanh_models(1.0)):
        params, v, batch, _ = id_batch(xp, device, default)
        expected = 4.0 * host(default.structural_damping_product(params, batch, v))
        product = host(quadrupled.structural_damping_product(params, batch, v))
        assert relative_error(product, expected) <= 1e-14, type(default).__name__
        assert np.abs(expected).max() > 0


# -- character ids for the plain RNN ------------------------------------------------------------
def rnn_products(model, params, v, batch):
    cache = model.forward(params, batch.inputs)
    return [model.loss(params, batch, cache), model.r_forward(params, v, batch.inputs, cache),
            model.gradient(params, batch, cache),
            model.gauss_newton_product(params, batch, v, cache,
                                       structural_damping=STRUCTURAL)]


@pytest.mark.parametrize("hidden", ["tanh", "logistic"])
def test_rnn_ids_give_exactly_what_their_one_hot_rows_give(xp, device, hidden):
    """The RNN takes ids as the others do: a row gather forward and R-forward, the one-hot rows
    of each step in BPTT; loss, J v, gradient and (G + λμS) v agree with one-hot rows bit for bit
    (any integer dtype of ids too)."""
    model = arrayhf.RNN(4, 5, 3, hidden=hidden, output="softmax")
    params, v, ids_batch, _ = id_batch(xp, device, model)
    _, _, dense_batch, _ = id_batch(xp, device, model, one_hot=True)
    _, _, small_batch, _ = id_batch(xp, device, model, ids_dtype="uint8")
    from_ids = rnn_products(model, params, v, ids_batch)
    for other in (dense_batch, small_batch):
        for a, b in zip(from_ids, rnn_products(model, params, v, other)):
            np.testing.assert_array_equal(host(a), host(b))


def test_rnn_ids_match_the_torch_oracle_and_finite_differences(xp, device):
    model = arrayhf.RNN(4, 5, 3, output="softmax", biases=False)
    params, v, batch, host_arrays = id_batch(xp, device, model, seed=1)
    config = model.config()
    inputs = oracle.dense_inputs(config, oracle.inputs_tensor(host_arrays["ids"]))
    expected = oracle.oracle_products(
        lambda p: oracle.rnn_net_output(config, p, inputs), "softmax",
        oracle.tensor(host_arrays["params"]), oracle.tensor(host_arrays["v"]),
        oracle.tensor(host_arrays["targets"]), oracle.tensor(host_arrays["mask"]))
    cache = model.forward(params, batch.inputs)
    actual = (model.loss(params, batch, cache), model.gradient(params, batch, cache),
              model.r_forward(params, v, batch.inputs, cache),
              model.gauss_newton_product(params, batch, v, cache))
    for name, a, b in zip(("loss", "gradient", "J v", "G v"), actual, expected):
        assert relative_error(a, b.numpy()) <= ORACLE_TOLERANCE, name
    to_xp = lambda array: backend.from_host(array, xp, device=device)  # noqa: E731
    jacobian = finite_difference_jacobian(
        lambda p: model.loss(to_xp(p), batch), host_arrays["params"])
    assert relative_error(actual[1], jacobian.reshape(-1)) <= FD_TOLERANCE


def test_rnn_refuses_ids_out_of_range_and_float_ids(xp, device):
    model = arrayhf.RNN(4, 5, 3, output="softmax")
    params, _, batch, host_arrays = id_batch(xp, device, model)
    too_large = backend.from_host(host_arrays["ids"] + 4, xp, device=device)
    with pytest.raises(ValueError, match=r"expected character ids in \[0, 4\)"):
        model.forward(params, too_large)
    float_ids = backend.from_host(host_arrays["ids"].astype(np.float64), xp, device=device)
    with pytest.raises(TypeError, match="of an integer dtype"):
        model.loss(params, arrayhf.Batch(float_ids, batch.targets, batch.mask))


# -- one (G + λμS) v -----------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["rnn/tanh-softmax-no-biases", "mrnn/paper-ids-softmax-lengths",
                                  "lstm/ids-softmax-lengths", "gru/float-linear-random-no-biases",
                                  "fnn/tanh-softmax-masked"])
def test_every_route_to_the_product_gives_the_same_numbers(xp, device, case):
    """The model's product, its operator, curvature.gauss_newton_product and curvature_operator
    are one function (curvature.damped_gauss_newton): equal bit for bit, with and without the
    structural term; an object with only the public passes gets the same G v (pass_operator)."""
    problem = problems.make(case, xp, device)
    model, params, batch, v = problem.model, problem.params, problem.batch, problem.v
    cache = model.forward(params, batch.inputs)
    plain = model.gauss_newton_product(params, batch, v, cache)
    dampings = (0.0,) if case.startswith("fnn") else (0.0, STRUCTURAL)
    for damping in dampings:
        routes = [model.gauss_newton_product(params, batch, v, cache, structural_damping=damping),
                  model.gauss_newton_operator(params, batch, cache,
                                              structural_damping=damping)(v),
                  curvature.gauss_newton_product(model, params, batch, v, cache=cache,
                                                 structural_damping=damping),
                  curvature.curvature_operator(model, params, batch, cache, damping)(v)]
        for route in routes[1:]:
            np.testing.assert_array_equal(host(route), host(routes[0]))

    class PassesOnly:       # the README's "your own model": public passes and an output loss
        output, n_params = model.output, model.n_params
        forward, r_forward, backprop = model.forward, model.r_forward, model.backprop

    passes = curvature.gauss_newton_product(PassesOnly(), params, batch, v, cache=cache)
    np.testing.assert_array_equal(host(passes), host(plain))


def test_linear_operator_checks_the_batch_where_it_is_made(xp, device):
    problem = problems.make("gru/ids-softmax-lengths", xp, device)
    wrong = arrayhf.Batch(problem.batch.inputs, problem.batch.targets[:, :, :2],
                          problem.batch.mask)
    with pytest.raises(ValueError, match="expected targets of shape"):
        curvature.linear_operator(problem.model, problem.params, wrong)


# -- vocabulary ------------------------------------------------------------------------------------
def test_vocabulary_from_json_refuses_the_unknown_symbol_among_the_characters():
    vocabulary = Vocabulary("hello world")
    assert Vocabulary.from_json(vocabulary.to_json()) == vocabulary
    with pytest.raises(ValueError, match="unknown symbol"):
        Vocabulary.from_json([UNKNOWN, "a", UNKNOWN])
