"""The Gauss-Newton-vector product G v = Jᵀ H_L J v (the matrix G of derivations/gauss-newton.md,
eq. (G2)), assembled from any model's passes.

Any object with ``forward``, ``r_forward``, ``backprop`` and ``output`` (a MatchingLoss) gets its
Gauss-Newton product here (derivations/gauss-newton.md, eq. (G3)): one R-forward pass for J v,
the loss Hessian H_L at the net outputs, one backward pass for Jᵀ(·). The forward pass is passed
in as ``cache`` so that the many products of one CG run share it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator

    from arrayhf.data.batch import Batch


def gauss_newton_product(model: Any, params: Any, batch: Batch, v: Any, *, cache: Any = None,
                         structural_damping: float = 0.0) -> Any:
    """G v = Jᵀ H_L J v (+ structural_damping · S v for recurrent models).

    Implements derivations/gauss-newton.md, eq. (G3): ``r_net_output`` = J v (eq. (G4)),
    ``curvature_output`` = H_L J v (derivations/losses.md, eq. (L4), (L7), (L10)), and the
    backward pass Jᵀ(·) (eq. (G5)). G is normalized like the loss (1/N over unmasked outputs).
    The damping term λ v is added by the optimizer, not here.
    """
    if cache is None:
        cache = model.forward(params, batch.inputs)
    r_net_output = model.r_forward(params, v, batch.inputs, cache)
    curvature_output = model.output.hessian_vector(
        cache.net_output, r_net_output, batch.mask,
        targets=batch.targets, predictions=cache.predictions,
    )
    product = model.backprop(params, batch.inputs, cache, curvature_output)
    if structural_damping != 0.0:
        structural_product = getattr(model, "structural_damping_product", None)
        if structural_product is None:
            raise ValueError(
                f"{type(model).__name__} has no structural damping term (it penalizes changes of "
                f"recurrent hidden states); expected structural_damping=0, got {structural_damping}"
            )
        product = product + structural_damping * structural_product(params, batch, v, cache)
    return product


def curvature_operator(model: Any, params: Any, batch: Batch, cache: Any,
                       structural_damping: float) -> Callable[[Any], Any]:
    """v ↦ (G + structural_damping · S) v on one batch and its cached forward pass: the model's
    ``gauss_newton_operator`` (its checks done once), or, for a model that has only
    ``gauss_newton_product`` (the protocol's minimum), that product."""
    make_operator = getattr(model, "gauss_newton_operator", None)
    if make_operator is not None:
        return make_operator(params, batch, cache, structural_damping=structural_damping)
    return lambda v: model.gauss_newton_product(params, batch, v, cache,
                                                structural_damping=structural_damping)


def linear_operator(model: Any, params: Any, batch: Batch, damping: float = 0.0, *,
                    structural_damping: float = 0.0) -> LinearOperator:
    """The (damped) Gauss-Newton matrix G + damping·I as a ``scipy.sparse.linalg.LinearOperator``.

    Vectors in and out are float64 host (numpy) arrays whatever backend, dtype and device the
    model runs on, so ``scipy.sparse.linalg.eigsh(operator, k=5)`` gives the top of G's spectrum.
    The forward pass is computed once here and reused by every product (eq. (G3)).
    """
    try:
        from scipy.sparse.linalg import LinearOperator
    except ImportError as error:
        raise ImportError("linear_operator needs scipy: pip install 'arrayhf[analysis]'") from error
    import array_api_compat

    from arrayhf import backend  # host-side conversions only

    xp = model._check_batch(params, batch) if hasattr(model, "_check_batch") else None
    if xp is None:
        xp = array_api_compat.array_namespace(params)
    dtype, device = params.dtype, array_api_compat.device(params)
    cache = model.forward(params, batch.inputs)

    def matvec(vector):
        v = backend.from_host(vector.reshape(-1), xp, dtype=dtype, device=device)
        product = gauss_newton_product(model, params, batch, v, cache=cache,
                                       structural_damping=structural_damping)
        if damping:
            product = product + damping * v
        return backend.to_numpy(product).astype("float64")

    size = model.n_params
    return LinearOperator((size, size), matvec=matvec, rmatvec=matvec, dtype="float64")
