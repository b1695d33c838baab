"""FNN specifics: masks, dtype/device, initialization, reproducibility across backends, bad input,
and the per-case squared gradients of Martens' preconditioner. The derivative checks every model
shares (finite differences, torch.func, identities) are in test_model_derivatives.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import arrayhf
from arrayhf import backend
from oracles import core as oracle

import problems
from helpers import (
    host,
    relative_error,
)

ORACLE_TOLERANCE = 1e-10
N_CASES = problems.N_CASES


def Problem(name, xp, device, dtype="float64", seed=0):  # noqa: N802 (reads as a constructor)
    return problems.fnn_problem(name, xp, device, dtype=dtype, seed=seed)


@pytest.fixture(params=list(problems.FNN_ARCHITECTURES))
def problem(request, xp, device):
    return Problem(request.param, xp, device)


def test_masked_positions_do_not_count(xp, device):
    problem = Problem("tanh-softmax-masked", xp, device)
    mask = problem.host["mask"]
    changed_targets = problem.host["targets"].copy()
    changed_targets[mask == 0] = changed_targets[mask == 0][:, ::-1]
    changed = arrayhf.Batch(problem.batch.inputs, problem.to_xp(changed_targets),
                            problem.batch.mask)
    model = problem.model
    assert relative_error(model.loss(problem.params, changed),
                          model.loss(problem.params, problem.batch)) == 0.0
    assert relative_error(model.gradient(problem.params, changed),
                          model.gradient(problem.params, problem.batch)) == 0.0


# -- initialization and reproducibility ----------------------------------------------------
def test_sparse_init_gives_each_unit_fifteen_incoming_weights(xp, device):
    model = arrayhf.FNN([40, 20, 10], hidden="tanh", output="linear")
    blocks = {k: host(b) for k, b in model.unflatten(model.init(5, xp=xp, device=device)).items()}
    assert (np.count_nonzero(blocks["W_1"], axis=0) == 15).all()
    assert (np.count_nonzero(blocks["W_2"], axis=0) == 15).all()
    assert (blocks["b_1"] == 0.5).all() and (blocks["b_2"] == 0.0).all()  # tanh biases 0.5
    # tanh units get scale 0.5: the sample std of 300 N(0, 0.25) draws is within 0.1 of 0.5
    assert abs(blocks["W_1"][blocks["W_1"] != 0].std() - 0.5) < 0.1
    assert abs(blocks["W_2"][blocks["W_2"] != 0].std() - 1.0) < 0.2


def test_sparse_init_connects_all_inputs_of_a_small_layer(xp, device):
    model = arrayhf.FNN([4, 6, 2], hidden="logistic", output="softmax")
    blocks = {k: host(b) for k, b in model.unflatten(model.init(0, xp=xp, device=device)).items()}
    assert (np.count_nonzero(blocks["W_1"], axis=0) == 4).all()


def test_same_seed_same_parameters_and_loss_on_every_installed_backend(xp, device):
    """The host RNG makes θ and the data identical across backends, so the losses agree to 1e-12."""
    model = arrayhf.FNN([6, 9, 4], hidden="tanh", output="softmax")
    rng = np.random.default_rng(7)
    inputs = rng.standard_normal((11, 6))
    targets = np.eye(4)[rng.integers(0, 4, 11)]
    reference_params = host(model.init(3, xp=backend.namespace("numpy")))
    reference_loss = None
    for name in backend.BACKENDS:
        if name == "cupy":
            continue  # covered by the tests-cupy session itself, where a GPU exists
        try:
            other = backend.namespace(name)
        except backend.BackendError:
            continue  # not installed in this session
        if name == "jax":
            import jax

            if not jax.config.jax_enable_x64:
                continue  # only the jax session enables 64-bit mode
        params = model.init(3, xp=other)
        np.testing.assert_array_equal(host(params), reference_params)
        batch = arrayhf.Batch(backend.from_host(inputs, other), backend.from_host(targets, other))
        loss = float(model.loss(params, batch))
        if reference_loss is None:
            reference_loss = loss
        assert abs(loss - reference_loss) <= 1e-12 * reference_loss, name
    # and the backend under test itself, on its device
    params = model.init(3, xp=xp, device=device)
    batch = arrayhf.Batch(backend.from_host(inputs, xp, device=device),
                          backend.from_host(targets, xp, device=device))
    assert abs(float(model.loss(params, batch)) - reference_loss) <= 1e-12 * reference_loss


def test_flatten_inverts_unflatten(xp, device):
    problem = Problem("autoencoder-linear", xp, device)
    blocks = problem.model.unflatten(problem.params)
    assert list(blocks) == ["W_1", "b_1", "W_2", "b_2", "W_3", "b_3", "W_4", "b_4"]
    assert tuple(blocks["W_2"].shape) == (5, 4)
    assert relative_error(problem.model.flatten(blocks), problem.params) == 0.0


# -- bad input -----------------------------------------------------------------------------
@pytest.fixture
def small(xp, device):
    return Problem("tanh-softmax-masked", xp, device)


def test_wrong_feature_size_is_refused(small):
    wrong = small.to_xp(np.zeros((N_CASES, 5)))
    with pytest.raises(ValueError, match=r"expected inputs of shape \[\*, 4\], got \[7, 5\]"):
        small.model.forward(small.params, wrong)


def test_targets_of_the_wrong_shape_are_refused(small):
    batch = arrayhf.Batch(small.batch.inputs, small.to_xp(np.zeros((N_CASES, 4))))
    with pytest.raises(ValueError, match=r"expected targets of shape \[7, 3\], got \[7, 4\]"):
        small.model.loss(small.params, batch)


def test_mask_of_the_wrong_shape_is_refused(small):
    batch = arrayhf.Batch(small.batch.inputs, small.batch.targets, small.to_xp(np.ones(6)))
    with pytest.raises(ValueError, match=r"expected mask of shape \[7\], got \[6\]"):
        small.model.gradient(small.params, batch)


def test_params_of_the_wrong_length_are_refused(small):
    with pytest.raises(ValueError, match=rf"expected params of shape \[{small.model.n_params}\]"):
        small.model.loss(small.params[1:], small.batch)
    with pytest.raises(ValueError, match=rf"expected v of shape \[{small.model.n_params}\]"):
        cache = small.model.forward(small.params, small.batch.inputs)
        small.model.r_forward(small.params, small.v[1:], small.batch.inputs, cache)


def test_mixed_dtypes_are_refused(small):
    inputs32 = backend.from_host(small.host["inputs"], small.xp, dtype="float32",
                                 device=small.device)
    with pytest.raises(TypeError, match="expected inputs of dtype"):
        small.model.forward(small.params, inputs32)


def test_arrays_from_two_backends_are_refused(small):
    other = torch.zeros(N_CASES, 4, dtype=torch.float64)
    if backend.name_of(small.xp) == "torch":
        other = np.zeros((N_CASES, 4))
    with pytest.raises(TypeError, match="arrays from more than one backend"):
        small.model.forward(small.params, other)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown hidden nonlinearity 'sigmoid'"):
        arrayhf.FNN([2, 3, 1], hidden="sigmoid")
    with pytest.raises(ValueError, match="unknown output 'hinge'"):
        arrayhf.FNN([2, 3, 1], output="hinge")
    with pytest.raises(ValueError, match="expected 2 hidden nonlinearities"):
        arrayhf.FNN([2, 3, 3, 1], hidden=["tanh"])
    with pytest.raises(ValueError, match="layer_sizes"):
        arrayhf.FNN([2])


def test_structural_damping_is_refused_for_a_feedforward_net(small):
    with pytest.raises(ValueError, match="no structural damping term"):
        small.model.gauss_newton_product(small.params, small.batch, small.v,
                                         structural_damping=0.1)


# -- per-case squared gradients (Martens' preconditioner) ----------------------------------
def oracle_per_case_gradients(problem):
    """g_p = ∇ℓ_p of every case p by torch.func's per-case gradients (vmap of grad), [P, n]."""
    from torch.func import grad, vmap

    def case_loss(theta, row, target):
        z = problem.oracle_net_output(theta, row[None, :])
        return oracle.loss_of_net_output(problem.output, z, target[None, :])

    return vmap(grad(case_loss), in_dims=(None, 0, 0))(
        oracle.tensor(problem.host["params"]), oracle.tensor(problem.host["inputs"]),
        oracle.tensor(problem.host["targets"]))


def weighted_squares_of_row_gradients(problem, weights):
    """Σ_p w_p g_p² with g_p this model's own gradient on the one-row batch of case p."""
    total = np.zeros(problem.model.n_params)
    for row in np.flatnonzero(weights):
        one = arrayhf.Batch(problem.to_xp(problem.host["inputs"][row:row + 1]),
                            problem.to_xp(problem.host["targets"][row:row + 1]))
        total += weights[row] * host(problem.model.gradient(problem.params, one)) ** 2
    return total


def test_per_case_squared_gradient_matches_per_case_oracle_gradients(problem):
    """(1/N) Σ_p m_p g_p², g_p = ∇ℓ_p: against torch.func's per-case gradients (vmap of grad),
    and against this model's own gradient on one-row batches (itself checked by central
    differences above)."""
    squared = problem.model.per_case_squared_gradient(problem.params, problem.batch)
    mask = (np.ones(N_CASES) if problem.host["mask"] is None else problem.host["mask"])
    per_case = oracle_per_case_gradients(problem)
    expected = (oracle.tensor(mask)[:, None] * per_case**2).sum(0) / mask.sum()
    assert relative_error(squared, expected) <= ORACLE_TOLERANCE
    by_rows = weighted_squares_of_row_gradients(problem, mask)
    assert relative_error(squared, by_rows / mask.sum()) <= ORACLE_TOLERANCE


def test_per_case_squared_gradient_weighs_fractional_masks_once(problem):
    """F = (1/N) Σ_p m_p g_p² for any mask weights (H3), not Σ m_p² g_p²: mask weights 0, ½, 1, 2
    against torch.func's per-case gradients and this model's own gradient on one-row batches."""
    weights = np.resize([0.0, 0.5, 1.0, 2.0, 0.25], N_CASES)
    batch = arrayhf.Batch(problem.batch.inputs, problem.batch.targets, problem.to_xp(weights))
    squared = problem.model.per_case_squared_gradient(problem.params, batch)
    per_case = oracle_per_case_gradients(problem)
    oracle_squared = (oracle.tensor(weights)[:, None] * per_case**2).sum(0) / weights.sum()
    assert relative_error(squared, oracle_squared) <= ORACLE_TOLERANCE
    expected = weighted_squares_of_row_gradients(problem, weights)
    assert relative_error(squared, expected / weights.sum()) <= ORACLE_TOLERANCE
