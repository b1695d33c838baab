"""The Gauss-Newton-vector product G v = Jᵀ H_L J v, assembled from any model's passes.

Any object with ``forward``, ``r_forward``, ``backprop`` and ``output`` (a MatchingLoss) gets its
Gauss-Newton product here (derivations/gauss-newton.md, eq. (G3)): one R-forward pass for J v,
the loss Hessian H_L at the net outputs, one backward pass for Jᵀ(·). The forward pass is passed
in as ``cache`` so that the many products of one CG run share it.
"""

from __future__ import annotations


def gauss_newton_product(model, params, batch, v, *, cache=None, structural_damping=0.0):
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
