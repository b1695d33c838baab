"""Matching losses: dL/dz and H_L u against central differences and torch.func, stability at
large |z|, masks, and H_L positive semi-definite."""

from __future__ import annotations

import numpy as np
import pytest

import arrayhf
from arrayhf import backend
from oracles import core as oracle

from helpers import central_difference, finite_difference_jacobian, host, relative_error

OUTPUTS = ["linear", "logistic", "softmax"]
FD_TOLERANCE = 1e-7
ORACLE_TOLERANCE = 1e-10


def make_case(output, xp, device, *, shape=(5, 3, 4), scale=2.0, masked=True, seed=0):
    """Net outputs, targets, mask and a direction u, as host arrays and on the backend."""
    rng = np.random.default_rng(seed)
    z = scale * rng.standard_normal(shape)
    if output == "linear":
        targets = rng.standard_normal(shape)
    elif output == "logistic":
        targets = rng.uniform(size=shape)
    else:
        targets = np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]
    mask = (rng.uniform(size=shape[:-1]) < 0.6).astype(np.float64) if masked else None
    if mask is not None:
        mask.reshape(-1)[0] = 1.0
    u = rng.standard_normal(shape)
    host_arrays = {"z": z, "targets": targets, "mask": mask, "u": u}

    def to_xp(array):
        return None if array is None else backend.from_host(array, xp, device=device)

    return host_arrays, {key: to_xp(value) for key, value in host_arrays.items()}


def of_host_net_output(method, arrays, xp, device):
    """``method(z, targets, mask)`` of the case as a function of host net outputs z."""
    return lambda z: method(backend.from_host(z, xp, device=device), arrays["targets"],
                            arrays["mask"])


@pytest.fixture(params=[(output, masked) for masked in (False, True) for output in OUTPUTS],
                ids=lambda param: f"{param[0]}{'-masked' if param[1] else ''}")
def case(request, xp, device):
    """(output, its matching loss, host arrays, backend arrays) of a masked or unmasked case."""
    output, masked = request.param
    return (output, arrayhf.losses.get(output),
            *make_case(output, xp, device, masked=masked))


def test_delta_matches_central_differences_of_the_loss(xp, device, case):
    _, loss, on_host, arrays = case
    loss_at = of_host_net_output(loss.loss, arrays, xp, device)
    flat_fd = finite_difference_jacobian(lambda flat: loss_at(flat.reshape(on_host["z"].shape)),
                                         on_host["z"].reshape(-1))[0]
    fd = flat_fd.reshape(on_host["z"].shape)
    delta = loss.delta(arrays["z"], arrays["targets"], arrays["mask"])
    assert relative_error(delta, fd) <= FD_TOLERANCE


def test_hessian_vector_matches_central_differences_of_delta(xp, device, case):
    _, loss, on_host, arrays = case
    delta_at = of_host_net_output(loss.delta, arrays, xp, device)
    fd = central_difference(delta_at, on_host["z"], on_host["u"])
    product = loss.hessian_vector(arrays["z"], arrays["u"], arrays["mask"],
                                  targets=arrays["targets"])
    assert relative_error(product, fd) <= FD_TOLERANCE


def test_loss_delta_and_hessian_vector_match_torch_func(case):
    output, loss, on_host, arrays = case
    z, targets, u = (oracle.tensor(on_host[k]) for k in ("z", "targets", "u"))
    mask = None if on_host["mask"] is None else oracle.tensor(on_host["mask"])
    assert relative_error(loss.loss(arrays["z"], arrays["targets"], arrays["mask"]),
                          oracle.loss_of_net_output(output, z, targets, mask)) <= 1e-12
    assert relative_error(loss.delta(arrays["z"], arrays["targets"], arrays["mask"]),
                          oracle.loss_gradient_wrt_net_output(output, z, targets, mask)
                          ) <= ORACLE_TOLERANCE
    assert relative_error(loss.hessian_vector(arrays["z"], arrays["u"], arrays["mask"]),
                          oracle.loss_hessian_vector(output, z, u, targets, mask)
                          ) <= ORACLE_TOLERANCE


@pytest.mark.parametrize("output", OUTPUTS)
def test_predictions_match_torch(xp, device, output):
    import torch

    loss = arrayhf.losses.get(output)
    on_host, arrays = make_case(output, xp, device, scale=30.0)
    z = oracle.tensor(on_host["z"])
    expected = {"linear": z, "logistic": torch.sigmoid(z), "softmax": torch.softmax(z, -1)}
    assert relative_error(loss.predict(arrays["z"]), expected[output]) <= 1e-15


@pytest.mark.parametrize("output", ["logistic", "softmax"])
def test_cross_entropies_are_finite_and_exact_at_extreme_net_outputs(xp, device, output):
    """|z| up to 800: exp(800) overflows float64, log-sum-exp and softplus must not."""
    loss = arrayhf.losses.get(output)
    on_host, arrays = make_case(output, xp, device, scale=400.0)
    z, targets = oracle.tensor(on_host["z"]), oracle.tensor(on_host["targets"])
    mask = oracle.tensor(on_host["mask"])
    value = loss.loss(arrays["z"], arrays["targets"], arrays["mask"])
    assert np.isfinite(host(value))
    assert relative_error(value, oracle.loss_of_net_output(output, z, targets, mask)) <= 1e-12
    delta = host(loss.delta(arrays["z"], arrays["targets"], arrays["mask"]))
    assert np.isfinite(delta).all()


@pytest.mark.parametrize("output", OUTPUTS)
def test_loss_hessian_is_positive_semidefinite(xp, device, output):
    loss = arrayhf.losses.get(output)
    for seed in range(10):
        _, arrays = make_case(output, xp, device, seed=seed)
        product = loss.hessian_vector(arrays["z"], arrays["u"], arrays["mask"])
        assert float(xp.sum(arrays["u"] * product)) >= 0.0


@pytest.mark.parametrize("output", OUTPUTS)
def test_loss_is_the_mean_over_unmasked_positions(xp, device, output):
    """Masking positions out equals dropping them; a mask of ones equals no mask."""
    loss = arrayhf.losses.get(output)
    on_host, arrays = make_case(output, xp, device, shape=(9, 4))
    keep = on_host["mask"] == 1

    def to_xp(array):
        return backend.from_host(array, xp, device=device)

    dropped = loss.loss(to_xp(on_host["z"][keep]), to_xp(on_host["targets"][keep]))
    masked = loss.loss(arrays["z"], arrays["targets"], arrays["mask"])
    assert relative_error(masked, dropped) <= 1e-14
    unmasked = loss.loss(arrays["z"], arrays["targets"])
    ones = loss.loss(arrays["z"], arrays["targets"], to_xp(np.ones(9)))
    assert relative_error(ones, unmasked) <= 1e-14


def test_softmax_delta_is_predictions_minus_targets_for_one_hot_rows(xp, device):
    loss = arrayhf.losses.get("softmax")
    _, arrays = make_case("softmax", xp, device, masked=False, shape=(6, 5))
    expected = (loss.predict(arrays["z"]) - arrays["targets"]) / 6
    assert relative_error(loss.delta(arrays["z"], arrays["targets"]), expected) <= 1e-15


def test_loss_arguments_are_checked(xp, device):
    loss = arrayhf.losses.get("linear")
    _, arrays = make_case("linear", xp, device, shape=(4, 3))
    with pytest.raises(ValueError, match=r"expected targets of shape \[4, 3\], got \[4, 2\]"):
        loss.loss(arrays["z"], arrays["targets"][:, :2])
    with pytest.raises(ValueError, match=r"expected mask of shape \[4\], got \[3\]"):
        loss.delta(arrays["z"], arrays["targets"], arrays["mask"][:3])
    with pytest.raises(ValueError, match="unknown output"):
        arrayhf.losses.get("hinge")
