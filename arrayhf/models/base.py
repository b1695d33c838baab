"""What every arrayhf model shares: flat parameters, argument checks, and loss, gradient and
Gauss-Newton product built from the model's own forward, R-forward and backprop.

A model subclass supplies ``layout`` (its parameter blocks), ``output`` (a MatchingLoss),
``n_inputs``, ``n_outputs``, ``data_axes`` (1 for ``[batch, features]``, 2 for time-major
``[time, batch, features]``), and the three passes ``_forward``, ``_r_forward``, ``_backprop``
(each taking the namespace ``xp`` as a keyword). The public methods check their arguments once and
call them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from arrayhf import curvature
from arrayhf._validate import check_floating, check_shape, namespace_of

if TYPE_CHECKING:
    from arrayhf.data.batch import Batch
    from arrayhf.layout import Layout
    from arrayhf.losses import MatchingLoss


class Model:
    """Base of the arrayhf models: subclasses give ``layout``, ``output``, ``n_inputs``,
    ``n_outputs``, ``data_axes`` and the passes ``_forward``, ``_r_forward``, ``_backprop``."""

    layout: Layout
    output: MatchingLoss
    n_inputs: int = 0
    n_outputs: int = 0
    data_axes: int = 1

    if TYPE_CHECKING:   # what every subclass defines (no runtime default: a missing one fails)
        def init(self, seed: int, *, xp: Any = None, dtype: Any = None,
                 device: Any = None) -> Any: ...

        def config(self) -> dict: ...

        def _forward(self, params: Any, inputs: Any, *, xp: Any) -> Any: ...

        def _r_forward(self, params: Any, v: Any, inputs: Any, cache: Any, *, xp: Any) -> Any: ...

        def _backprop(self, params: Any, inputs: Any, cache: Any, delta_net_output: Any, *,
                      xp: Any) -> Any: ...

    # -- parameters ------------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        """The length of the flat parameter vector θ."""
        return self.layout.n_params

    def unflatten(self, params: Any) -> dict[str, Any]:
        """``{name: block}`` views of the flat vector ``params``."""
        return self.layout.unflatten(params)

    def flatten(self, blocks: Mapping[str, Any]) -> Any:
        """The flat vector of the named ``blocks`` (inverse of :meth:`unflatten`)."""
        return self.layout.flatten(blocks)

    # -- argument checks -------------------------------------------------------------------
    def _check_params(self, params, *others):
        xp = namespace_of(params, *others)
        check_shape("params", params, (self.n_params,))
        check_floating(xp, "params", params)
        return xp

    def _check_inputs(self, xp, params, inputs):
        check_shape("inputs", inputs, (None,) * self.data_axes + (self.n_inputs,))
        check_floating(xp, "inputs", inputs, params.dtype)

    def _positions(self, inputs) -> tuple:
        """The axes of ``inputs`` that index outputs (all but the feature axis)."""
        return tuple(inputs.shape[:-1])

    def _check_direction(self, xp, params, v) -> None:
        """v is a flat vector like θ: same backend, device and dtype, length n_params."""
        self._check_params(params, v)
        check_shape("v", v, (self.n_params,))
        check_floating(xp, "v", v, params.dtype)

    def check_batch(self, params: Any, batch: Batch) -> Any:
        """Check θ and ``batch`` against this model (one backend, device and dtype; the shapes of
        inputs, targets and mask; at least one position) and return their namespace ``xp``.
        Every public method that takes a batch does this first."""
        xp = self._check_params(params, batch.inputs, batch.targets, batch.mask)
        self._check_inputs(xp, params, batch.inputs)
        positions = self._positions(batch.inputs)
        if 0 in positions:
            raise ValueError(f"expected a batch with at least one case and time step, got inputs "
                             f"of shape {list(batch.inputs.shape)}")
        check_shape("targets", batch.targets, positions + (self.n_outputs,))
        check_floating(xp, "targets", batch.targets, params.dtype)
        if batch.mask is not None:
            check_shape("mask", batch.mask, positions)
            if not (batch.mask.dtype == xp.bool or batch.mask.dtype == params.dtype):
                raise TypeError(
                    f"expected a mask of dtype bool or {params.dtype}, got {batch.mask.dtype}")
        return xp

    # -- the protocol ----------------------------------------------------------------------
    def forward(self, params: Any, inputs: Any) -> Any:
        """The forward pass: a cache with ``net_output`` (z), ``predictions`` and what backprop
        needs. See the subclass's ``_forward`` for the equations."""
        xp = self._check_params(params, inputs)
        self._check_inputs(xp, params, inputs)
        return self._forward(params, inputs, xp=xp)

    def r_forward(self, params: Any, v: Any, inputs: Any, cache: Any) -> Any:
        """R{z} = J v, the net outputs' directional derivative along v (Pearlmutter's R-operator).
        See the subclass's ``_r_forward`` for the equations."""
        xp = self._check_params(params, v, inputs)
        check_shape("v", v, (self.n_params,))
        check_floating(xp, "v", v, params.dtype)
        self._check_inputs(xp, params, inputs)
        return self._r_forward(params, v, inputs, cache, xp=xp)

    def backprop(self, params: Any, inputs: Any, cache: Any, delta_net_output: Any) -> Any:
        """Jᵀ δ: the flat vector of ∂/∂θ of Σ δ·z, for δ = ``delta_net_output`` (shape of z).
        See the subclass's ``_backprop`` for the equations."""
        xp = self._check_params(params, inputs, delta_net_output)
        self._check_inputs(xp, params, inputs)
        check_shape("delta_net_output", delta_net_output,
                    self._positions(inputs) + (self.n_outputs,))
        check_floating(xp, "delta_net_output", delta_net_output, params.dtype)
        return self._backprop(params, inputs, cache, delta_net_output, xp=xp)

    def loss(self, params: Any, batch: Batch, cache: Any = None) -> Any:
        """L(θ) on ``batch``: a 0-d array, the mean over unmasked outputs (losses.md, eq. (L1))."""
        xp = self.check_batch(params, batch)
        if cache is None:
            cache = self._forward(params, batch.inputs, xp=xp)
        return self.output.loss(cache.net_output, batch.targets, batch.mask)

    def gradient(self, params: Any, batch: Batch, cache: Any = None) -> Any:
        """∇L(θ) = Jᵀ (dL/dz): backprop of the matching loss's delta (gauss-newton.md, eq. (G1))."""
        xp = self.check_batch(params, batch)
        if cache is None:
            cache = self._forward(params, batch.inputs, xp=xp)
        delta_net_output = self.output.delta(cache.net_output, batch.targets, batch.mask,
                                             predictions=cache.predictions)
        return self._backprop(params, batch.inputs, cache, delta_net_output, xp=xp)

    def gauss_newton_product(self, params: Any, batch: Batch, v: Any, cache: Any = None,
                             structural_damping: float = 0.0) -> Any:
        """(G + structural_damping · S) v: G v = Jᵀ H_L J v (gauss-newton.md, eq. (G3)), plus the
        structural damping term of a recurrent model in the same passes (structural-damping.md,
        (S4)). Pass ``cache`` = ``forward(params, batch.inputs)`` to reuse one forward pass across
        many products."""
        xp = self.check_batch(params, batch)
        self._check_direction(xp, params, v)
        if cache is None:
            cache = self._forward(params, batch.inputs, xp=xp)
        return self._gauss_newton_operator(xp, params, batch, cache, structural_damping)(v)

    def gauss_newton_operator(self, params: Any, batch: Batch, cache: Any = None,
                              structural_damping: float = 0.0) -> Callable[[Any], Any]:
        """v ↦ (G + structural_damping · S) v for one (θ, batch): the product CG calls in its
        loop. θ and the batch are checked once here, the forward pass is done once (or taken
        from ``cache``), and each call does one R-forward and one backward pass (eq. (G3)) with
        no check but v's length; v must have θ's dtype and device (CG's vectors do)."""
        xp = self.check_batch(params, batch)
        if cache is None:
            cache = self._forward(params, batch.inputs, xp=xp)
        product = self._gauss_newton_operator(xp, params, batch, cache, structural_damping)

        def checked_product(v):
            if tuple(v.shape) != (self.n_params,):
                raise ValueError(f"expected v of shape [{self.n_params}], got {list(v.shape)}")
            return product(v)

        return checked_product

    def _gauss_newton_operator(self, xp, params, batch, cache, structural_damping, *,
                               gauss_newton=True):
        """The unchecked v ↦ (G + λμS) v, λμ = ``structural_damping`` (without G: S v alone,
        times λμ, when ``gauss_newton`` is False): ``curvature.damped_gauss_newton`` on this
        model's passes, with H_L's weights and λμ Κ/N (S2) computed once, here."""
        weights = None
        if structural_damping != 0.0:
            structural_weights = self._structural_weights(xp, batch, cache)
            if structural_weights is None:
                raise ValueError(
                    f"{type(self).__name__} has no structural damping term (it penalizes changes "
                    f"of recurrent hidden states); expected structural_damping=0, got "
                    f"{structural_damping}")
            weights = structural_damping * structural_weights
        hessian = None
        if gauss_newton:
            hessian = self.output.hessian_operator(cache.net_output, batch.mask,
                                                   targets=batch.targets,
                                                   predictions=cache.predictions)
        inputs = batch.inputs

        def jacobian_vector(v):            # J v, and J_a v with the structural weights
            if weights is None:
                return self._r_forward(params, v, inputs, cache, xp=xp)
            return self._r_forward(params, v, inputs, cache, xp=xp, with_pre=True)

        def transpose_vector(delta_net_output, delta_pre_extra):   # Jᵀ δz + J_aᵀ u
            if delta_pre_extra is None:
                return self._backprop(params, inputs, cache, delta_net_output, xp=xp)
            return self._backprop(params, inputs, cache, delta_net_output, xp=xp,
                                  delta_pre_extra=delta_pre_extra)

        return curvature.damped_gauss_newton(jacobian_vector, transpose_vector, hessian, weights)

    def _structural_weights(self, xp, batch, cache):
        """S's weights Κ/N (structural-damping.md, (S2)); None here: a model without recurrent
        hidden states has no structural damping term (``RecurrentModel`` gives them)."""
        return None

    def predict(self, params: Any, inputs: Any) -> Any:
        """y = g(z): the model's predictions for ``inputs``."""
        return self.forward(params, inputs).predictions
