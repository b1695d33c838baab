"""curvature.linear_operator: a scipy LinearOperator of G (+ λI) on host float64 vectors, checked
against the dense Gauss-Newton matrix Jᵀ H_L J built by torch.func on a tiny model."""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg
from torch.func import hessian, jacrev

import arrayhf
from arrayhf import backend
from oracles import core as oracle


def test_operator_matches_the_dense_gauss_newton_matrix(xp, device):
    sizes, hidden = [3, 4, 3], ["tanh"]
    model = arrayhf.FNN(sizes, hidden=hidden, output="softmax")
    rng = np.random.default_rng(0)
    inputs, labels = rng.standard_normal((6, 3)), rng.integers(0, 3, 6)
    targets = np.eye(3)[labels]
    params_host = rng.standard_normal(model.n_params)
    to_xp = lambda a: backend.from_host(a, xp, device=device)  # noqa: E731
    batch = arrayhf.Batch(to_xp(inputs), to_xp(targets))
    operator = arrayhf.curvature.linear_operator(model, to_xp(params_host), batch, damping=0.5)

    dense = operator @ np.eye(model.n_params)
    theta = oracle.tensor(params_host)

    def net_output(p):
        return oracle.fnn_net_output(sizes, hidden, p, oracle.tensor(inputs))

    jacobian = jacrev(net_output)(theta).reshape(-1, model.n_params)
    z = net_output(theta)
    loss_hessian = hessian(lambda out: oracle.loss_of_net_output(
        "softmax", out.reshape(z.shape), oracle.tensor(targets)))(z.reshape(-1))
    expected = (jacobian.T @ loss_hessian @ jacobian).numpy() + 0.5 * np.eye(model.n_params)
    assert np.linalg.norm(dense - expected) <= 1e-10 * np.linalg.norm(expected)
    assert np.allclose(dense, dense.T, rtol=0, atol=1e-14 * np.abs(dense).max())

    top = scipy.sparse.linalg.eigsh(operator, k=3, which="LA", return_eigenvectors=False)
    exact = np.linalg.eigvalsh(expected)[-3:]
    assert np.allclose(np.sort(top), exact, rtol=1e-10)
    assert np.linalg.eigvalsh(expected).min() >= 0.5 - 1e-12   # G PSD, shifted by λ
