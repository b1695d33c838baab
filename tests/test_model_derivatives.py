"""Every model's hand-derived passes, checked three ways: central finite differences, the torch.func
oracle, and the Gauss-Newton identities; and the dtype and device of everything they return, and
float32 against the oracle. One parametrized suite over tests/problems.py's cases, which cover
every model of the registry (arrayhf/models/registry.py).

Tolerances (float64): relative error ≤ 1e-7 against central differences (step 1e-5, whose own
error is ~1e-10), ≤ 1e-10 against torch.func, ≤ 1e-12 for identities that hold exactly in exact
arithmetic (symmetry, linearity, cached vs fresh forward pass).
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import (
    assert_matches,
    central_difference,
    finite_difference_jacobian,
    host,
    relative_error,
)
from problems import CASES, make

FD_TOLERANCE = 1e-7
ORACLE_TOLERANCE = 1e-10
EXACT_TOLERANCE = 1e-12
STRUCTURAL = 0.7  # λμ in the tests


@pytest.fixture(params=list(CASES))
def problem(request, xp, device):
    return make(request.param, xp, device)


# -- against central finite differences ----------------------------------------------------
def test_gradient_matches_central_differences(problem):
    fd_gradient = finite_difference_jacobian(problem.loss_at, problem.host["params"])[0]
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


def test_gauss_newton_is_positive_semidefinite(problem):
    """vᵀGv ≥ 0 for 20 random v, and vᵀGv = (Jv)ᵀ H_L (Jv) as computed from R-forward."""
    xp, model, batch = problem.xp, problem.model, problem.batch
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
                          model.gauss_newton_product(params, batch, problem.v)) <= EXACT_TOLERANCE


# -- dtypes and devices ---------------------------------------------------------------------
def cache_arrays(xp, cache):
    """Every float array a forward pass's cache holds, in its fields and their per-step tuples."""
    for value in vars(cache).values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if hasattr(item, "dtype") and not xp.isdtype(item.dtype, "integral"):
                yield item


def damping_of(model):
    """λμ for a model with a structural damping term (a recurrent one), else 0."""
    return STRUCTURAL if hasattr(model, "structural_damping_product") else 0.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_outputs_keep_dtype_and_device(xp, device, dtype, case):
    """Every array a model returns, its cache's included, is on the backend, dtype and device of
    θ."""
    problem = make(case, xp, device, dtype=dtype)
    model, params, batch = problem.model, problem.params, problem.batch
    cache = model.forward(params, batch.inputs)
    cached = list(cache_arrays(xp, cache))
    assert len(cached) >= 2   # net_output and predictions at least
    results = [*cached, model.loss(params, batch), model.gradient(params, batch),
               model.r_forward(params, problem.v, batch.inputs, cache),
               model.gauss_newton_product(params, batch, problem.v, cache,
                                          structural_damping=damping_of(model)),
               model.init(3, xp=xp, dtype=dtype, device=device)]
    if damping_of(model):   # a recurrent model: S v, and its cache's slopes f'(a)
        results += [model.structural_damping_product(params, batch, problem.v, cache),
                    cache.slopes]
    for result in results:
        assert_matches(result, xp=xp, dtype=problem.dtype, device=device)


@pytest.mark.parametrize("case", list(CASES))
def test_float32_agrees_with_the_float64_oracle(xp, device, case):
    """float32 runs the same maths: within float32 rounding of the float64 oracle (loss 1e-5,
    the products 1e-4 relative), (G + λμS) v included for a recurrent model."""
    problem = make(case, xp, device, dtype="float32")
    loss, gradient, jacobian_v, gauss_newton_v = problem.oracle()
    model, params, batch = problem.model, problem.params, problem.batch
    cache = model.forward(params, batch.inputs)
    assert relative_error(model.loss(params, batch, cache), loss) <= 1e-5
    assert relative_error(model.gradient(params, batch, cache), gradient) <= 1e-4
    assert relative_error(model.r_forward(params, problem.v, batch.inputs, cache),
                          jacobian_v) <= 1e-4
    assert relative_error(model.gauss_newton_product(params, batch, problem.v, cache),
                          gauss_newton_v) <= 1e-4
    if damping_of(model):
        assert relative_error(model.gauss_newton_product(params, batch, problem.v, cache,
                                                         structural_damping=STRUCTURAL),
                              gauss_newton_v + STRUCTURAL * problem.oracle_structural_product()
                              ) <= 1e-4


# -- the operator CG calls ------------------------------------------------------------------
def test_gauss_newton_operator_is_the_product_with_its_checks_done_once(problem):
    """gauss_newton_operator(θ, batch)(v) = G v of the torch.func oracle, and equals
    gauss_newton_product(θ, batch, v) for every model (and, for recurrent ones, with the
    structural term): the same (G3)/(S4) arithmetic with the checks, H_L's weights and Κ/N
    taken once. It still refuses a v of the wrong length."""
    model, params, batch = problem.model, problem.params, problem.batch
    cache = model.forward(params, batch.inputs)
    *_, oracle_gauss_newton_v = problem.oracle()
    plain = model.gauss_newton_operator(params, batch, cache)
    assert relative_error(plain(problem.v), oracle_gauss_newton_v) <= ORACLE_TOLERANCE
    dampings = [0.0] + ([0.7] if hasattr(model, "structural_damping_product") else [])
    for damping in dampings:
        operator = model.gauss_newton_operator(params, batch, cache, structural_damping=damping)
        for v in (problem.v, problem.u):
            expected = model.gauss_newton_product(params, batch, v, cache,
                                                  structural_damping=damping)
            assert relative_error(operator(v), expected) <= EXACT_TOLERANCE
    with pytest.raises(ValueError, match="expected v of shape"):
        operator(problem.to_xp(problem.host["v"][:-1]))
    if not dampings[1:]:
        with pytest.raises(ValueError, match="no structural damping term"):
            model.gauss_newton_operator(params, batch, cache, structural_damping=0.1)
