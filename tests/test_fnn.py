"""FNN: gradient, R-forward and Gauss-Newton product against central finite differences and the
torch.func oracle, the Gauss-Newton identities, dtype/device, initialization and bad input.

Tolerances (float64): relative error ≤ 1e-7 against central differences (step 1e-5, whose own
error is ~1e-10), ≤ 1e-10 against torch.func, ≤ 1e-12 for identities that hold exactly in exact
arithmetic (symmetry, linearity).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import arrayhf
from arrayhf import backend

import oracle
from helpers import (
    assert_matches,
    central_difference,
    finite_difference_jacobian,
    host,
    relative_error,
)

FD_TOLERANCE = 1e-7
ORACLE_TOLERANCE = 1e-10
EXACT_TOLERANCE = 1e-12

# (layer sizes, hidden nonlinearities, output, masked)
ARCHITECTURES = {
    "tanh-softmax": ([4, 6, 3], ["tanh"], "softmax", False),
    "tanh-softmax-masked": ([4, 6, 3], ["tanh"], "softmax", True),
    "logistic-relu-logistic-masked": ([5, 7, 6, 2], ["logistic", "relu"], "logistic", True),
    "autoencoder-linear": ([3, 5, 4, 5, 3], ["tanh", "linear", "logistic"], "linear", False),
    "autoencoder-linear-masked": ([3, 5, 4, 5, 3], ["tanh", "linear", "logistic"], "linear", True),
    "no-hidden-layer-softmax": ([6, 4], [], "softmax", True),
}
N_CASES = 7


def host_targets(rng, output, n_cases, n_outputs):
    if output == "linear":
        return rng.standard_normal((n_cases, n_outputs))
    if output == "logistic":
        return rng.uniform(size=(n_cases, n_outputs))  # soft targets in [0, 1]
    return np.eye(n_outputs)[rng.integers(0, n_outputs, n_cases)]


def host_mask(rng, n_cases):
    mask = (rng.uniform(size=n_cases) < 0.6).astype(np.float64)
    mask[0] = 1.0  # at least one output counts
    return mask


class Problem:
    """A model, parameters, a batch and two directions, on the backend and on the host."""

    def __init__(self, name, xp, device, dtype="float64", seed=0):
        sizes, hidden, output, masked = ARCHITECTURES[name]
        self.sizes, self.hidden_names, self.output = sizes, hidden, output
        self.xp, self.device = xp, device
        self.dtype = backend.resolve_dtype(xp, dtype)
        self.model = arrayhf.FNN(sizes, hidden=hidden, output=output)
        rng = np.random.default_rng(seed)
        self.host = {
            # dense init: weights of every size, so no unit sits in a flat region by accident
            "params": host(self.model.init(seed, scheme="dense", scale=1.5)),
            "inputs": rng.standard_normal((N_CASES, sizes[0])),
            "targets": host_targets(rng, output, N_CASES, sizes[-1]),
            "mask": host_mask(rng, N_CASES) if masked else None,
            "v": rng.standard_normal(self.model.n_params),
            "u": rng.standard_normal(self.model.n_params),
        }
        self.params, self.v, self.u = (self.to_xp(self.host[k]) for k in ("params", "v", "u"))
        self.batch = arrayhf.Batch(self.to_xp(self.host["inputs"]),
                                   self.to_xp(self.host["targets"]),
                                   None if self.host["mask"] is None else self.to_xp(
                                       self.host["mask"]))

    def to_xp(self, array):
        return backend.from_host(array, self.xp, dtype=self.dtype, device=self.device)

    # host functions of a host parameter vector, for finite differences
    def loss_at(self, params):
        return self.model.loss(self.to_xp(params), self.batch)

    def net_output_at(self, params):
        return self.model.forward(self.to_xp(params), self.batch.inputs).net_output

    def oracle(self):
        as_tensor = oracle.tensor
        inputs = as_tensor(self.host["inputs"])
        mask = None if self.host["mask"] is None else as_tensor(self.host["mask"])

        def net_output_fn(params):
            return oracle.fnn_net_output(self.sizes, self.hidden_names, params, inputs)

        return oracle.oracle_products(net_output_fn, self.output, as_tensor(self.host["params"]),
                                      as_tensor(self.host["v"]), as_tensor(self.host["targets"]),
                                      mask)


@pytest.fixture(params=list(ARCHITECTURES))
def problem(request, xp, device):
    return Problem(request.param, xp, device)


# -- against central finite differences ----------------------------------------------------
def test_gradient_matches_central_differences(problem):
    theta = problem.host["params"]
    fd_gradient = finite_difference_jacobian(problem.loss_at, theta)[0]
    gradient = problem.model.gradient(problem.params, problem.batch)
    assert relative_error(gradient, fd_gradient) <= FD_TOLERANCE


def test_r_forward_matches_central_differences(problem):
    cache = problem.model.forward(problem.params, problem.batch.inputs)
    r_net_output = problem.model.r_forward(problem.params, problem.v, problem.batch.inputs, cache)
    fd = central_difference(problem.net_output_at, problem.host["params"], problem.host["v"])
    assert relative_error(r_net_output, fd) <= FD_TOLERANCE


def test_gauss_newton_product_matches_finite_difference_factors(problem):
    """G v against J_fdᵀ H_fd J_fd v: J by central differences of z(θ), H_L by central
    differences of dL/dz (itself checked against the loss in test_losses.py)."""
    model, batch = problem.model, problem.batch
    z = host(model.forward(problem.params, batch.inputs).net_output)
    jacobian = finite_difference_jacobian(problem.net_output_at, problem.host["params"])
    jacobian_v = (jacobian @ problem.host["v"]).reshape(z.shape)

    def delta_at(net_output):
        return model.output.delta(problem.to_xp(net_output), batch.targets, batch.mask)

    curvature_output = central_difference(delta_at, z, jacobian_v)
    fd_product = jacobian.T @ curvature_output.reshape(-1)
    product = model.gauss_newton_product(problem.params, batch, problem.v)
    assert relative_error(product, fd_product) <= FD_TOLERANCE


# -- against the torch.func oracle (float64) -----------------------------------------------
def test_loss_gradient_jvp_and_gv_match_torch_func(problem):
    loss, gradient, jacobian_v, gauss_newton_v = problem.oracle()
    model, params, batch = problem.model, problem.params, problem.batch
    cache = model.forward(params, batch.inputs)
    assert relative_error(model.loss(params, batch, cache), loss) <= EXACT_TOLERANCE
    assert relative_error(model.gradient(params, batch, cache), gradient) <= ORACLE_TOLERANCE
    assert relative_error(model.r_forward(params, problem.v, batch.inputs, cache),
                          jacobian_v) <= ORACLE_TOLERANCE
    assert relative_error(model.gauss_newton_product(params, batch, problem.v, cache),
                          gauss_newton_v) <= ORACLE_TOLERANCE


# -- identities ----------------------------------------------------------------------------
def test_gauss_newton_is_symmetric(problem):
    xp, model = problem.xp, problem.model
    cache = model.forward(problem.params, problem.batch.inputs)
    u_g_v = float(xp.sum(problem.u * model.gauss_newton_product(problem.params, problem.batch,
                                                                 problem.v, cache)))
    v_g_u = float(xp.sum(problem.v * model.gauss_newton_product(problem.params, problem.batch,
                                                                 problem.u, cache)))
    assert abs(u_g_v - v_g_u) <= EXACT_TOLERANCE * max(abs(u_g_v), 1e-300)


def test_gauss_newton_is_positive_semidefinite(problem, xp):
    """vᵀGv ≥ 0 for 20 random v, and vᵀGv = (Jv)ᵀ H_L (Jv) as computed from R-forward."""
    model, batch = problem.model, problem.batch
    cache = model.forward(problem.params, batch.inputs)
    rng = np.random.default_rng(1)
    for _ in range(20):
        v = problem.to_xp(rng.standard_normal(model.n_params))
        curvature = float(xp.sum(v * model.gauss_newton_product(problem.params, batch, v, cache)))
        assert curvature >= 0.0
        jacobian_v = model.r_forward(problem.params, v, batch.inputs, cache)
        weighted = float(xp.sum(jacobian_v * model.output.hessian_vector(
            cache.net_output, jacobian_v, batch.mask, targets=batch.targets)))
        assert abs(curvature - weighted) <= EXACT_TOLERANCE * max(abs(weighted), 1e-300)


def test_gauss_newton_is_linear_in_v(problem):
    model, params, batch = problem.model, problem.params, problem.batch
    cache = model.forward(params, batch.inputs)
    combined = model.gauss_newton_product(params, batch, 2.5 * problem.u - 0.75 * problem.v, cache)
    separate = (2.5 * model.gauss_newton_product(params, batch, problem.u, cache)
                - 0.75 * model.gauss_newton_product(params, batch, problem.v, cache))
    assert relative_error(combined, separate) <= EXACT_TOLERANCE


def test_cached_forward_pass_gives_the_same_products(problem):
    model, params, batch = problem.model, problem.params, problem.batch
    cache = model.forward(params, batch.inputs)
    assert relative_error(model.gauss_newton_product(params, batch, problem.v, cache),
                          model.gauss_newton_product(params, batch, problem.v)) == 0.0


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


# -- dtype and device ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_outputs_keep_dtype_and_device(xp, device, dtype):
    problem = Problem("logistic-relu-logistic-masked", xp, device, dtype=dtype)
    model, params, batch = problem.model, problem.params, problem.batch
    expected = {"xp": xp, "dtype": problem.dtype, "device": device}
    cache = model.forward(params, batch.inputs)
    for result in (cache.net_output, cache.predictions, model.loss(params, batch),
                   model.gradient(params, batch),
                   model.r_forward(params, problem.v, batch.inputs, cache),
                   model.gauss_newton_product(params, batch, problem.v, cache),
                   model.init(3, xp=xp, dtype=dtype, device=device)):
        assert_matches(result, **expected)


def test_float32_agrees_with_the_float64_oracle(xp, device):
    """float32 runs the same maths: within float32 rounding (1e-4 relative) of the oracle."""
    problem = Problem("tanh-softmax-masked", xp, device, dtype="float32")
    loss, gradient, _, gauss_newton_v = problem.oracle()
    model, params, batch = problem.model, problem.params, problem.batch
    assert relative_error(model.loss(params, batch), loss) <= 1e-5
    assert relative_error(model.gradient(params, batch), gradient) <= 1e-4
    assert relative_error(model.gauss_newton_product(params, batch, problem.v),
                          gauss_newton_v) <= 1e-4


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
def test_per_case_squared_gradient_matches_per_case_oracle_gradients(problem):
    """(1/N) Σ_p m_p g_p², g_p = ∇ℓ_p: against torch.func's per-case gradients (vmap of grad),
    and against this model's own gradient on one-row batches (itself checked by central
    differences above)."""
    from torch.func import grad, vmap

    model, params, batch = problem.model, problem.params, problem.batch
    squared = model.per_case_squared_gradient(params, batch)
    inputs, targets = oracle.tensor(problem.host["inputs"]), oracle.tensor(problem.host["targets"])
    mask = (np.ones(N_CASES) if problem.host["mask"] is None else problem.host["mask"])

    def case_loss(theta, row, target):
        z = oracle.fnn_net_output(problem.sizes, problem.hidden_names, theta, row[None, :])
        return oracle.loss_of_net_output(problem.output, z, target[None, :])

    per_case = vmap(grad(case_loss), in_dims=(None, 0, 0))(
        oracle.tensor(problem.host["params"]), inputs, targets)
    expected = (oracle.tensor(mask)[:, None] * per_case**2).sum(0) / mask.sum()
    assert relative_error(squared, expected) <= ORACLE_TOLERANCE

    by_rows = np.zeros(model.n_params)
    for row in np.flatnonzero(mask):
        one = arrayhf.Batch(problem.to_xp(problem.host["inputs"][row:row + 1]),
                            problem.to_xp(problem.host["targets"][row:row + 1]))
        by_rows += host(model.gradient(params, one)) ** 2
    assert relative_error(squared, by_rows / mask.sum()) <= ORACLE_TOLERANCE
