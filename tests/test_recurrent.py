"""What every recurrent model must do, run once over every recurrent model's cases
(problems.RECURRENT_CASES, from the model registry): the structural damping term against
torch.func, central differences and second differences of the penalty itself; the fused
(G + λμS) v; symmetry and semi-definiteness; character ids against their one-hot rows and in any
integer dtype; junk padding; the same seed on another backend; and the refusals every recurrent
model shares (dtype, device and float32 for every model: test_model_derivatives.py). What only one
model does stays in its own test file.

Tolerances (float64) as in test_model_derivatives.py: ≤ 1e-7 against central differences, ≤ 1e-10
against torch.func, ≤ 1e-12 for identities exact in exact arithmetic.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

import arrayhf
from arrayhf import backend
from arrayhf.models import registry

from helpers import finite_difference_jacobian, host, other_backend, relative_error
from problems import ID_CASES, PROBLEMS, RECURRENT_CASES, make

FD_TOLERANCE = 1e-7
ORACLE_TOLERANCE = 1e-10
EXACT_TOLERANCE = 1e-12
STRUCTURAL = 0.7  # λμ in the tests


@pytest.fixture(params=RECURRENT_CASES)
def problem(request, xp, device):
    return make(request.param, xp, device)


# -- structural damping (S1)-(S4) and each model's Κ -----------------------------------------
def logistic(a):
    return 1 / (1 + np.exp(-a))


def structural_weights(problem, pre):
    """Κ / N of (S2): κ_u f_u'(a) per unit over the output count, f_u' of tanh or logistic."""
    kappa, tanh = problem.structural_units()
    slope = np.where(tanh, 1 - np.tanh(pre) ** 2, logistic(pre) * (1 - logistic(pre)))
    return kappa * slope / problem.output_count


def structural_penalty(problem, theta, anchor):
    """D_n(θ) = Σ_u κ_u/N Σ d_u(a(θ); aⁿ), d(a; aⁿ) = ψ(a) − ψ(aⁿ) − f(aⁿ)(a − aⁿ) with ψ' = f:
    log cosh for tanh units, softplus for logistic ones (structural-damping.md, section 2),
    written from its definition on the host, aⁿ = a(θ_n) held fixed."""
    kappa, tanh = problem.structural_units()
    pre = problem.oracle_pre_activations(theta)

    def potential(a):
        return np.where(tanh, np.logaddexp(a, -a), np.logaddexp(0.0, a))

    value_n = np.where(tanh, np.tanh(anchor), logistic(anchor))
    divergence = potential(pre) - potential(anchor) - value_n * (pre - anchor)
    return float((kappa * divergence).sum()) / problem.output_count


def test_structural_damping_product_matches_torch_func(problem):
    product = problem.model.structural_damping_product(problem.params, problem.batch, problem.v)
    assert relative_error(product, problem.oracle_structural_product()) <= ORACLE_TOLERANCE


def test_structural_damping_product_matches_finite_differences(problem):
    """S v = J_aᵀ Κ J_a v / N with J_a by central differences of the oracle's a(θ) and Κ of the
    model's units (problems.structural_units)."""
    theta = problem.host["params"]
    jacobian = finite_difference_jacobian(problem.oracle_pre_activations, theta)
    weights = structural_weights(problem, problem.oracle_pre_activations(theta)).reshape(-1)
    expected = jacobian.T @ (weights * (jacobian @ problem.host["v"]))
    product = problem.model.structural_damping_product(problem.params, problem.batch, problem.v)
    assert relative_error(product, expected) <= FD_TOLERANCE


def test_structural_matrix_is_the_exact_hessian_of_the_penalty(problem):
    """(S1)-(S2): S is the Hessian of D_n at θ_n, not only its Gauss-Newton matrix (the dropped
    term vanishes because ∇_a D_n = 0 there). uᵀSv against central second differences of D_n,
    with Richardson's extrapolation."""
    theta, u, v = (problem.host[name] for name in ("params", "u", "v"))
    anchor = problem.oracle_pre_activations(theta)

    def penalty(point):
        return structural_penalty(problem, point, anchor)

    def second_difference(step):   # uᵀ∇²D v + O(step²)
        return (penalty(theta + step * (u + v)) - penalty(theta + step * (u - v))
                - penalty(theta - step * (u - v)) + penalty(theta - step * (u + v))) / (4 * step**2)

    # Richardson's extrapolation cancels the step² term: the error is O(step⁴) plus rounding
    extrapolated = (4 * second_difference(1e-4) - second_difference(2e-4)) / 3
    product = problem.model.structural_damping_product(problem.params, problem.batch, problem.v)
    u_s_v = float(np.sum(u * host(product)))
    assert abs(u_s_v - extrapolated) <= FD_TOLERANCE * abs(u_s_v)
    assert abs(penalty(theta)) <= 1e-15 and u_s_v != 0.0


def test_damped_product_in_one_pass_equals_the_two_products_and_torch_func(problem):
    model, params, batch = problem.model, problem.params, problem.batch
    cache = model.forward(params, batch.inputs)
    combined = model.gauss_newton_product(params, batch, problem.v, cache,
                                          structural_damping=STRUCTURAL)
    separate = (model.gauss_newton_product(params, batch, problem.v, cache)
                + STRUCTURAL * model.structural_damping_product(params, batch, problem.v, cache))
    assert relative_error(combined, separate) <= EXACT_TOLERANCE
    generic = arrayhf.curvature.gauss_newton_product(model, params, batch, problem.v,
                                                     cache=cache, structural_damping=STRUCTURAL)
    assert relative_error(combined, generic) <= EXACT_TOLERANCE
    *_, gauss_newton_v = problem.oracle()
    expected = gauss_newton_v + STRUCTURAL * problem.oracle_structural_product()
    fresh = model.gauss_newton_product(params, batch, problem.v, structural_damping=STRUCTURAL)
    assert relative_error(fresh, expected) <= ORACLE_TOLERANCE
    assert relative_error(combined, expected) <= ORACLE_TOLERANCE


def test_gauss_newton_and_structural_term_are_symmetric_and_positive_semidefinite(problem):
    """uᵀ(Av) = vᵀ(Au) and vᵀAv ≥ 0 for A = G, S and G + λμS (vᵀGv = (Jv)ᵀ H_L (Jv) for every
    model: test_model_derivatives.py)."""
    xp, model, params, batch = problem.xp, problem.model, problem.params, problem.batch
    cache = model.forward(params, batch.inputs)
    products = {
        "G": lambda w: model.gauss_newton_product(params, batch, w, cache),
        "S": lambda w: model.structural_damping_product(params, batch, w, cache),
        "G + λμS": lambda w: model.gauss_newton_product(params, batch, w, cache,
                                                        structural_damping=STRUCTURAL),
    }
    rng = np.random.default_rng(1)
    directions = [problem.to_xp(rng.standard_normal(model.n_params)) for _ in range(10)]
    for name, product in products.items():
        u_a_v = float(xp.sum(problem.u * product(problem.v)))
        v_a_u = float(xp.sum(problem.v * product(problem.u)))
        assert abs(u_a_v - v_a_u) <= EXACT_TOLERANCE * abs(u_a_v), name
        for v in directions:
            assert float(xp.sum(v * product(v))) >= 0.0, name


def test_zero_structural_curvature_switches_the_term_off(problem):
    config = {key: value for key, value in problem.model.config().items() if key != "class"}
    model = type(problem.model)(**{**config, "structural_curvature": 0.0})
    product = model.structural_damping_product(problem.params, problem.batch, problem.v)
    assert float(problem.xp.max(problem.xp.abs(product))) == 0.0


# -- character ids ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", ID_CASES)
def test_ids_give_exactly_what_their_one_hot_rows_give(xp, device, case):
    """A row gather is the product with a one-hot row, and the backward pass multiplies by the
    same one-hot rows: loss, R-forward, gradient and (G + λμS)v agree bit for bit."""
    ids = make(case, xp, device)
    dense = make(case, xp, device, one_hot=True)
    assert ids.batch.inputs.ndim == 2 and dense.batch.inputs.ndim == 3
    model, params = ids.model, ids.params
    results = []
    for problem in (ids, dense):
        cache = model.forward(params, problem.batch.inputs)
        results.append([
            model.loss(params, problem.batch, cache),
            model.r_forward(params, ids.v, problem.batch.inputs, cache),
            model.gradient(params, problem.batch, cache),
            model.gauss_newton_product(params, problem.batch, ids.v, cache,
                                       structural_damping=STRUCTURAL),
        ])
    for from_ids, from_one_hot in zip(*results):
        np.testing.assert_array_equal(host(from_ids), host(from_one_hot))


@pytest.mark.parametrize("ids_dtype", ["uint8", "int16", "int32"])
@pytest.mark.parametrize("case", ID_CASES)
def test_any_integer_dtype_of_ids(xp, device, case, ids_dtype):
    reference = make(case, xp, device)
    problem = make(case, xp, device, ids_dtype=ids_dtype)
    assert problem.batch.inputs.dtype == getattr(xp, ids_dtype)
    model, params = problem.model, problem.params
    assert relative_error(model.loss(params, problem.batch),
                          model.loss(params, reference.batch)) == 0.0
    assert relative_error(model.gauss_newton_product(params, problem.batch, problem.v),
                          model.gauss_newton_product(params, reference.batch, problem.v)) == 0.0


@pytest.mark.parametrize("inputs", ["ids", "one-hot"])
@pytest.mark.parametrize("case", [case for case in ID_CASES if "lengths" in case])
def test_junk_ids_in_the_padding_change_nothing(xp, device, case, inputs):
    """Causality (rnn.md, "Masks and variable-length sequences"): other ids after a sequence's
    end change neither L, ∇L nor G v, given as ids or as their one-hot rows."""
    problem = make(case, xp, device, one_hot=inputs == "one-hot")
    padding = problem.host["mask"] == 0
    assert padding.any()
    model, params, batch = problem.model, problem.params, problem.batch
    ids = problem.host["inputs"] if inputs == "ids" else problem.host["inputs"].argmax(axis=-1)
    for shift in (1, 2):
        junk = np.where(padding, (ids + shift) % model.n_inputs, ids)
        if inputs == "one-hot":
            junk = np.eye(model.n_inputs)[junk]
        changed = problem.with_inputs(junk)
        assert relative_error(model.loss(params, changed), model.loss(params, batch)) == 0.0
        assert relative_error(model.gradient(params, changed),
                              model.gradient(params, batch)) <= EXACT_TOLERANCE
        assert relative_error(model.gauss_newton_product(params, changed, problem.v),
                              model.gauss_newton_product(params, batch, problem.v)) \
            <= EXACT_TOLERANCE


# -- dtype, device, other backends -----------------------------------------------------------
@pytest.mark.parametrize("case", RECURRENT_CASES)
def test_same_seed_same_parameters_and_loss_on_another_backend(xp, device, case):
    """The session's backend against a different one (helpers.other_backend): the same seed gives
    the same θ bit for bit, by the default initialization and the dense one where the model has
    schemes, and the same loss to 1e-12."""
    other = other_backend(xp)
    assert backend.name_of(other) != backend.name_of(xp)
    problem, reference = make(case, xp, device), make(case, other, None)
    schemes = inspect.signature(problem.model.init).parameters.get("scheme")
    for options in ({}, {"scheme": "dense"}) if schemes else ({},):
        np.testing.assert_array_equal(host(problem.model.init(4, xp=xp, device=device, **options)),
                                      host(reference.model.init(4, xp=other, **options)))
    expected = float(reference.model.loss(reference.params, reference.batch))
    assert abs(float(problem.model.loss(problem.params, problem.batch)) - expected) \
        <= 1e-12 * expected


# -- refusals --------------------------------------------------------------------------------
def test_bad_batches_and_vectors_are_refused(problem):
    """Targets, mask, θ, δ_z and v of the wrong shape, and v of another dtype, in the plain and
    the fused damped product; ids out of range for a model that reads them."""
    xp, model, params, batch = problem.xp, problem.model, problem.params, problem.batch
    T, B = problem.n_steps, problem.n_cases
    n_out = model.n_outputs
    with pytest.raises(ValueError, match=rf"expected targets of shape \[{T}, {B}, {n_out}\], "
                                         rf"got \[{T}, {B - 1}, {n_out}\]"):
        model.loss(params, arrayhf.Batch(batch.inputs, batch.targets[:, :B - 1, :]))
    with pytest.raises(ValueError, match=rf"expected mask of shape \[{T}, {B}\], "
                                         rf"got \[{T}, {B - 1}\]"):
        model.loss(params, arrayhf.Batch(batch.inputs, batch.targets,
                                         problem.to_xp(np.ones((T, B - 1)))))
    with pytest.raises(ValueError, match=rf"expected params of shape \[{model.n_params}\], "
                                         r"got \[3\]"):
        model.forward(params[:3], batch.inputs)
    cache = model.forward(params, batch.inputs)
    with pytest.raises(ValueError, match=rf"expected delta_net_output of shape \[{T}, {B}, "
                                         rf"{n_out}\]"):
        model.backprop(params, batch.inputs, cache, batch.targets[:, :B - 1, :])
    narrow = backend.from_host(problem.host["v"], xp, dtype="float32", device=problem.device)
    short = problem.to_xp(problem.host["v"][:-1])
    for damping in (0.0, STRUCTURAL):
        with pytest.raises(TypeError, match="v"):
            model.gauss_newton_product(params, batch, narrow, structural_damping=damping)
        with pytest.raises(ValueError, match=r"expected v of shape"):
            model.gauss_newton_product(params, batch, short, structural_damping=damping)
    with pytest.raises(ValueError, match=r"expected v of shape"):
        model.structural_damping_product(params, batch, short)
    ids = problem.host["inputs"]
    if xp.isdtype(batch.inputs.dtype, "integral"):
        n_in = model.n_inputs
        for bad in (ids + n_in, ids - 1):
            with pytest.raises(ValueError, match=rf"expected character ids in \[0, {n_in}\)"):
                model.loss(params, problem.with_inputs(bad))
            with pytest.raises(ValueError, match=rf"expected character ids in \[0, {n_in}\)"):
                model.forward(params, problem.inputs_to_xp(bad))


@pytest.mark.parametrize("case", RECURRENT_CASES)
def test_bad_constructor_arguments_are_refused(case):
    """Every recurrent model's constructor refuses what the shared checks refuse, naming it."""
    model, name = case.split("/")
    arguments = PROBLEMS[model][1][name][0]
    model_class = registry.entry(model).model_class
    refused = [({"n_hidden": 0}, ValueError, "n_hidden"),
               ({"n_inputs": 2.5}, ValueError, "n_inputs"),
               ({"output": "tanh"}, ValueError, "unknown output"),
               ({"biases": 1}, TypeError, "biases a bool"),
               ({"structural_curvature": -1.0}, ValueError, "structural_curvature"),
               ({"structural_curvature": math.nan}, ValueError, "structural_curvature")]
    for change, error, message in refused:
        with pytest.raises(error, match=message):
            model_class(**{**arguments, **change})


@pytest.mark.parametrize("case", ID_CASES)
def test_inputs_neither_ids_nor_rows_of_the_params_dtype_are_refused(xp, device, case):
    """A model that reads ids takes integer ids [T, B] or float rows [T, B, n_in] of θ's dtype;
    float ids, rows of another width and rows of another dtype are refused, naming both forms."""
    problem = make(case, xp, device)
    model, params, ids = problem.model, problem.params, problem.host["inputs"]
    (T, B), n_in = ids.shape, model.n_inputs
    shapes = (r"expected inputs of shape \[\*, \*\] of an integer dtype \(character ids\) or "
              rf"\[\*, \*, {n_in}\] of dtype \S*float64, got ")
    with pytest.raises(TypeError, match=shapes + rf"\[{T}, {B}\] of dtype \S*float64"):
        model.forward(params, problem.to_xp(ids))                           # float ids
    with pytest.raises(ValueError, match=shapes + rf"\[{T}, {B}, {n_in - 1}\]"):
        model.forward(params, problem.to_xp(np.zeros((T, B, n_in - 1))))   # wrong n_inputs
    with pytest.raises(TypeError, match=r"expected inputs of dtype \S*float64 \(that of params\)"):
        model.forward(params, backend.from_host(np.eye(n_in)[ids], xp, dtype="float32",
                                                device=device))
