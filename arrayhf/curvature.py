"""The Gauss-Newton-vector product G v = Jᵀ H_L J v (the matrix G of derivations/gauss-newton.md,
eq. (G2)), with the structural damping term λμ S v of the recurrent models riding along
(derivations/structural-damping.md, (S4)).

:func:`damped_gauss_newton` is the one implementation of v ↦ (G + λμS) v: one R-forward pass for
J v (and J_a v), the loss Hessian H_L at the net outputs, one backward pass for Jᵀ(·) with the
structural term injected at the pre-activations. Every route to a product runs it: a model's
``gauss_newton_product`` and ``gauss_newton_operator`` (``arrayhf.Model``, on its own passes),
:func:`gauss_newton_product` (any model: its operator, or the public passes of an object that has
only those), :func:`curvature_operator` (what HF's CG calls) and :func:`linear_operator` (scipy).
The forward pass is passed in as ``cache`` so that the many products of one CG run share it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import array_api_compat

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator

    from arrayhf.data.batch import Batch


def damped_gauss_newton(jacobian_vector: Callable[[Any], Any],
                        transpose_vector: Callable[[Any, Any], Any],
                        loss_hessian: Callable[[Any], Any] | None,
                        structural_weights: Any = None) -> Callable[[Any], Any]:
    """v ↦ (G + λμS) v = Jᵀ H_L J v + J_aᵀ (λμ Κ/N ⊙ J_a v), eq. (G3), (S4).

    ``jacobian_vector(v)`` is J v (G4), or the pair (J v, J_a v) when ``structural_weights``
    (λμ Κ/N, eq. (S2)) is given; ``transpose_vector(δz, u)`` is Jᵀ δz + J_aᵀ u (G5), (S3), with
    u = None for Jᵀ δz alone; ``loss_hessian`` is u ↦ H_L u (derivations/losses.md, eq. (L4),
    (L7), (L10)), or None for the structural term alone (δz = 0: λμ S v, eq. (S3)). G is
    normalized like the loss (1/N over unmasked outputs); λ v is added by the optimizer.
    """
    def product(v):
        r_net_output = jacobian_vector(v)                                  # J v (G4)
        extra = None
        if structural_weights is not None:
            r_net_output, r_pre = r_net_output                             # J_a v
            extra = structural_weights * r_pre                             # λμ Κ/N J_a v (S4)
        if loss_hessian is None:
            delta_net_output = array_api_compat.array_namespace(r_net_output).zeros_like(
                r_net_output)                                              # δz = 0 (S3)
        else:
            delta_net_output = loss_hessian(r_net_output)                  # H_L J v (G3)
        return transpose_vector(delta_net_output, extra)                   # Jᵀ H_L J v (G5)

    return product


def pass_operator(model: Any, params: Any, batch: Batch, cache: Any,
                  structural_damping: float = 0.0) -> Callable[[Any], Any]:
    """v ↦ (G + structural_damping · S) v from a model's public passes only (``r_forward``,
    ``backprop``, ``output``): :func:`damped_gauss_newton` for any object that has them. Its S v,
    when asked for, is the model's own ``structural_damping_product``, added."""
    structural_product = None
    if structural_damping != 0.0:
        structural_product = getattr(model, "structural_damping_product", None)
        if structural_product is None:
            raise ValueError(
                f"{type(model).__name__} has no structural damping term (it penalizes changes of "
                f"recurrent hidden states); expected structural_damping=0, got {structural_damping}"
            )
    hessian = model.output.hessian_operator(cache.net_output, batch.mask, targets=batch.targets,
                                            predictions=cache.predictions)
    gauss_newton = damped_gauss_newton(
        lambda v: model.r_forward(params, v, batch.inputs, cache),
        lambda delta, _: model.backprop(params, batch.inputs, cache, delta), hessian)
    if structural_product is None:
        return gauss_newton
    return lambda v: (gauss_newton(v)
                      + structural_damping * structural_product(params, batch, v, cache))


def gauss_newton_product(model: Any, params: Any, batch: Batch, v: Any, *, cache: Any = None,
                         structural_damping: float = 0.0) -> Any:
    """(G + structural_damping · S) v for any model: the model's ``gauss_newton_operator`` (an
    ``arrayhf.Model``'s one fused pass, eq. (G3), (S4)), or, for an object with only ``forward``,
    ``r_forward``, ``backprop`` and ``output``, :func:`pass_operator` on those."""
    if cache is None:
        cache = model.forward(params, batch.inputs)
    make_operator = getattr(model, "gauss_newton_operator", None)
    if make_operator is not None:
        return make_operator(params, batch, cache, structural_damping=structural_damping)(v)
    return pass_operator(model, params, batch, cache, structural_damping)(v)


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
    θ and the batch are checked once (the model's ``check_batch``, where it has one), the forward
    pass is computed once and every product is :func:`curvature_operator`'s (eq. (G3)).
    """
    try:
        from scipy.sparse.linalg import LinearOperator
    except ImportError as error:
        raise ImportError("linear_operator needs scipy: pip install 'arrayhf[analysis]'") from error

    from arrayhf import backend  # host-side conversions only

    check_batch = getattr(model, "check_batch", None)
    xp = (check_batch(params, batch) if check_batch is not None
          else array_api_compat.array_namespace(params))
    dtype, device = params.dtype, array_api_compat.device(params)
    cache = model.forward(params, batch.inputs)
    product = curvature_operator(model, params, batch, cache, structural_damping)

    def matvec(vector):
        v = backend.from_host(vector.reshape(-1), xp, dtype=dtype, device=device)
        result = product(v)
        if damping:
            result = result + damping * v
        return backend.to_numpy(result).astype("float64")

    size = model.n_params
    return LinearOperator((size, size), matvec=matvec, rmatvec=matvec, dtype="float64")
