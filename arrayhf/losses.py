"""Output nonlinearities with their matching losses: predictions, loss, dL/dz and H_L u.

A model produces net outputs z (before the output nonlinearity). Each class here pairs an output
nonlinearity y = g(z) with the loss that "matches" it, so that dL/dz = y − t and the loss Hessian
w.r.t. z, H_L, is positive semi-definite (derivations/losses.md). Losses sum over output units and
average over the unmasked positions p (rows, or (time step, sequence) pairs):

    N = Σ_p m_p,   L = (1/N) Σ_p m_p ℓ(z_p, t_p)          (derivations/losses.md, eq. (L1))

Shapes: z and targets ``[..., K]``; mask ``[...]`` (z's shape without the last axis), or None for
"every position counts". A mask may hold any non-negative weights; 0/1 is the usual case.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arrayhf._validate import check_floating, check_shape, namespace_of
from arrayhf.nonlinearities import logistic


def _softplus(xp, z):
    """log(1 + e^z) without overflow: max(z, 0) + log1p(e^{−|z|})."""
    return xp.maximum(z, xp.zeros_like(z)) + xp.log1p(xp.exp(-xp.abs(z)))


def _softmax(xp, z):
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    exponentials = xp.exp(shifted)
    return exponentials / xp.sum(exponentials, axis=-1, keepdims=True)


def _log_sum_exp(xp, z):
    largest = xp.max(z, axis=-1, keepdims=True)
    return largest[..., 0] + xp.log(xp.sum(xp.exp(z - largest), axis=-1))


class MatchingLoss:
    """Output nonlinearity g and its matching loss. Subclasses give the per-position formulas."""

    name: str = ""  # the output nonlinearity's name, as accepted by the model constructors
    loss_name: str = ""

    # -- per-position formulas, on unmasked arrays; subclasses implement these -------------
    def _predict(self, xp, z):
        raise NotImplementedError

    def _position_loss(self, xp, z, targets):
        """ℓ(z_p, t_p) for every position: shape z.shape[:-1]."""
        raise NotImplementedError

    def _position_delta(self, xp, z, targets, predictions):
        """∂ℓ/∂z_p for every position: shape of z."""
        raise NotImplementedError

    def _position_hessian_vector(self, xp, predictions, u, targets):
        """(∂²ℓ/∂z_p²) u_p for every position: shape of z."""
        raise NotImplementedError

    # -- public, mask-aware API -------------------------------------------------------------
    def _check(self, z, other, mask, other_name):
        xp = namespace_of(z, other, mask)
        check_floating(xp, "net outputs z", z)
        if other is not None:
            check_floating(xp, other_name, other, z.dtype)
            check_shape(other_name, other, tuple(z.shape))
        if mask is not None:
            check_shape("mask", mask, tuple(z.shape[:-1]))
        return xp

    @staticmethod
    def _weights(xp, z, mask):
        """m_p / N as an array broadcastable against z (eq. (L1))."""
        if mask is None:
            count = 1
            for size in z.shape[:-1]:
                count *= size
            return xp.ones_like(z[..., :1]) / count
        weights = xp.astype(mask, z.dtype)
        return xp.expand_dims(weights / xp.sum(weights), axis=-1)

    def predict(self, z: Any) -> Any:
        """y = g(z), the predictions."""
        xp = namespace_of(z)
        return self._predict(xp, z)

    def loss(self, z: Any, targets: Any, mask: Any = None) -> Any:
        """L = (1/N) Σ_p m_p ℓ(z_p, t_p): a 0-d array of z's dtype (eq. (L1))."""
        xp = self._check(z, targets, mask, "targets")
        return xp.sum(self._weights(xp, z, mask)[..., 0] * self._position_loss(xp, z, targets))

    def delta(self, z: Any, targets: Any, mask: Any = None, *, predictions: Any = None) -> Any:
        """dL/dz, shape of z: m_p/N · ∂ℓ/∂z_p (eq. (L3), (L6), (L9))."""
        xp = self._check(z, targets, mask, "targets")
        if predictions is None:
            predictions = self._predict(xp, z)
        return self._weights(xp, z, mask) * self._position_delta(xp, z, targets, predictions)

    def hessian_vector(self, z: Any, u: Any, mask: Any = None, *, targets: Any = None,
                       predictions: Any = None) -> Any:
        """H_L u, shape of z: m_p/N · (∂²ℓ/∂z_p²) u_p (eq. (L4), (L7), (L10)).

        ``predictions`` (= g(z)) may be passed to reuse the forward pass. ``targets`` matter only
        for softmax targets that do not sum to one (eq. (L10)).
        """
        self._check(z, u, mask, "vector u")
        return self.hessian_operator(z, mask, targets=targets, predictions=predictions)(u)

    def hessian_operator(self, z: Any, mask: Any = None, *, targets: Any = None,
                         predictions: Any = None) -> Callable[[Any], Any]:
        """u ↦ H_L u at fixed z (eq. (L4), (L7), (L10)), with the checks and the weights m_p/N
        done once: the many products of one CG run share them. ``u`` is not checked (it has
        z's shape, dtype and device: an R-forward pass's output)."""
        xp = self._check(z, None, mask, "")
        if targets is not None:
            check_shape("targets", targets, tuple(z.shape))
        if predictions is None:
            predictions = self._predict(xp, z)
        weights = self._weights(xp, z, mask)

        def product(u):
            return weights * self._position_hessian_vector(xp, predictions, u, targets)

        return product

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SquaredError(MatchingLoss):
    """Linear output y = z with ℓ = ½‖z − t‖² (eq. (L2)-(L4))."""

    name = "linear"
    loss_name = "squared_error"

    def _predict(self, xp, z):
        return z

    def _position_loss(self, xp, z, targets):
        error = z - targets
        return 0.5 * xp.sum(error * error, axis=-1)

    def _position_delta(self, xp, z, targets, predictions):
        return z - targets

    def _position_hessian_vector(self, xp, predictions, u, targets):
        return u


class CrossEntropy(MatchingLoss):
    """Logistic output y = σ(z) with binary cross-entropy, ℓ = Σ_k softplus(z_k) − t_k z_k
    (eq. (L5)-(L7)); targets in [0, 1]."""

    name = "logistic"
    loss_name = "cross_entropy"

    def _predict(self, xp, z):
        return logistic(xp, z)

    def _position_loss(self, xp, z, targets):
        return xp.sum(_softplus(xp, z) - targets * z, axis=-1)

    def _position_delta(self, xp, z, targets, predictions):
        return predictions - targets

    def _position_hessian_vector(self, xp, predictions, u, targets):
        return predictions * (1.0 - predictions) * u


class SoftmaxCrossEntropy(MatchingLoss):
    """Softmax output y = softmax(z) with categorical cross-entropy,
    ℓ = Σ_k t_k (logsumexp(z) − z_k) (eq. (L8)-(L10)); targets one-hot or probability rows."""

    name = "softmax"
    loss_name = "categorical_cross_entropy"

    def _predict(self, xp, z):
        return _softmax(xp, z)

    def _position_loss(self, xp, z, targets):
        return xp.sum(targets * (xp.expand_dims(_log_sum_exp(xp, z), axis=-1) - z), axis=-1)

    def _position_delta(self, xp, z, targets, predictions):
        target_mass = xp.sum(targets, axis=-1, keepdims=True)  # s_p = 1 for one-hot rows
        return target_mass * predictions - targets

    def _position_hessian_vector(self, xp, predictions, u, targets):
        projected = predictions * u - predictions * xp.sum(predictions * u, axis=-1, keepdims=True)
        if targets is None:
            return projected
        return xp.sum(targets, axis=-1, keepdims=True) * projected


LOSSES = {cls.name: cls for cls in (SquaredError, CrossEntropy, SoftmaxCrossEntropy)}
_LOSS_ALIASES = {cls.loss_name: cls for cls in LOSSES.values()}


def get(output: str | MatchingLoss) -> MatchingLoss:
    """A matching loss from an output name (``"linear"``, ``"logistic"``, ``"softmax"``, or a loss
    name such as ``"squared_error"``), or a MatchingLoss passed through."""
    if isinstance(output, MatchingLoss):
        return output
    cls = LOSSES.get(output) or _LOSS_ALIASES.get(output)
    if cls is None:
        raise ValueError(
            f"unknown output {output!r}: expected one of {', '.join(LOSSES)} "
            f"(or {', '.join(_LOSS_ALIASES)}) or a MatchingLoss"
        )
    return cls()
