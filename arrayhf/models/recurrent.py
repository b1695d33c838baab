"""What every recurrent arrayhf model shares: sizes and description, structural damping, the fused
(G + λμS) v, time flattening.

A recurrent model (RNN, MRNN, and the gated models to come) is a :class:`Model` on time-major
data (``[T, B, n_in]`` inputs, ``[T, B]`` masks) with hidden pre-activations a_t and hidden states
h_t = f(a_t). Its subclass gives the three passes; the R-forward pass takes ``with_pre`` (then it
also returns R{a} = J_a v, ``[T, B, n_h]``) and the backward pass ``delta_pre_extra`` (an extra
δa_t, the structural term's J_aᵀ u). From those two hooks this base builds, once for every
recurrent model:

- the structural damping weights Κ/N = κ f'(a_t)/N (derivations/structural-damping.md, (S2)),
- S v = J_aᵀ Κ J_a v / N (S1)-(S3), and (G + λμS) v in one R-forward and one BPTT pass (S4),
- the argument checks of both (v included), ``config()`` and ``__repr__`` from one description.

Output blocks are ``W_hy`` [n_h, n_out] and ``b_y`` [n_out] in every recurrent model, and the
constructors take the sizes first, then ``hidden``, ``output``, the model's own options,
``biases`` and ``structural_curvature``.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import TYPE_CHECKING, Any

from arrayhf import losses, nonlinearities
from arrayhf._validate import check_floating, check_shape, is_integer
from arrayhf.models.base import Model

if TYPE_CHECKING:
    from arrayhf.data.batch import Batch


class RecurrentModel(Model):
    """Base of the recurrent models. A subclass sets ``sizes`` (the names of its positional size
    arguments, in order) and ``options`` (its own keyword arguments), calls
    :meth:`_set_common` in ``__init__``, and gives the three passes with the ``with_pre`` and
    ``delta_pre_extra`` hooks and a cache with ``slopes`` = f'(a_t)."""

    data_axes = 2
    sizes: tuple[str, ...] = ("n_inputs", "n_hidden", "n_outputs")
    options: tuple[str, ...] = ()
    n_hidden: int
    hidden: nonlinearities.Nonlinearity
    biases: bool
    structural_curvature: float

    if TYPE_CHECKING:   # a recurrent model's passes also give and take the pre-activations
        def _r_forward(self, params: Any, v: Any, inputs: Any, cache: Any, *, xp: Any,
                       with_pre: bool = False) -> Any: ...

        def _backprop(self, params: Any, inputs: Any, cache: Any, delta_net_output: Any, *,
                      xp: Any, delta_pre_extra: Any = None) -> Any: ...

    def _set_common(self, sizes: dict, hidden: str | nonlinearities.Nonlinearity,
                    output: str | losses.MatchingLoss, biases: bool,
                    structural_curvature: float | None) -> None:
        """Check and keep the sizes, the nonlinearity, the loss, ``biases`` and κ (S2): by
        default the hidden nonlinearity's own (``Nonlinearity.structural_curvature``)."""
        for name in self.sizes:
            value = sizes[name]
            if not is_integer(value) or value < 1:
                raise ValueError(f"expected {name} a positive int, got {value!r}")
            setattr(self, name, int(value))
        if not isinstance(biases, bool):
            raise TypeError(f"expected biases a bool, got {biases!r}")
        self.hidden = nonlinearities.get(hidden)
        self.output = losses.get(output)
        self.biases = biases
        if structural_curvature is None:
            structural_curvature = self.hidden.structural_curvature
        if (isinstance(structural_curvature, bool)
                or not isinstance(structural_curvature, Real)
                or not structural_curvature >= 0 or not math.isfinite(structural_curvature)):
            raise ValueError(f"expected structural_curvature a finite number >= 0, got "
                             f"{structural_curvature!r}")
        self.structural_curvature = float(structural_curvature)

    def _hidden_and_output_blocks(self) -> list[tuple[str, tuple[int, ...]]]:
        """The blocks every recurrent model ends its layout with: ``b_h`` [n_h] (with biases),
        ``W_hy`` [n_h, n_out], ``b_y`` [n_out] (with biases), ``h_0`` [n_h]."""
        blocks: list[tuple[str, tuple[int, ...]]] = []
        if self.biases:
            blocks.append(("b_h", (self.n_hidden,)))
        blocks.append(("W_hy", (self.n_hidden, self.n_outputs)))
        if self.biases:
            blocks.append(("b_y", (self.n_outputs,)))
        blocks.append(("h_0", (self.n_hidden,)))
        return blocks

    # -- description -----------------------------------------------------------------------
    def _keywords(self) -> dict:
        """The keyword arguments of the constructor, in its order, as JSON-ready values."""
        keywords: dict[str, Any] = {"hidden": self.hidden.name, "output": self.output.name}
        keywords.update({name: getattr(self, name) for name in self.options})
        keywords.update(biases=self.biases, structural_curvature=self.structural_curvature)
        return keywords

    def config(self) -> dict:
        """The constructor arguments, as JSON-ready values (``models.from_config`` inverts it)."""
        return {"class": type(self).__name__,
                **{name: getattr(self, name) for name in self.sizes}, **self._keywords()}

    def __repr__(self) -> str:
        sizes = ", ".join(str(getattr(self, name)) for name in self.sizes)
        keywords = ", ".join(f"{name}={value!r}" for name, value in self._keywords().items())
        return f"{type(self).__name__}({sizes}, {keywords})"

    # -- checks ----------------------------------------------------------------------------
    def _check_direction(self, xp, params, v) -> None:
        """v is a flat vector like θ: same backend, device and dtype, length n_params."""
        self._check_params(params, v)
        check_shape("v", v, (self.n_params,))
        check_floating(xp, "v", v, params.dtype)

    # -- structural damping ----------------------------------------------------------------
    def _structural_weights(self, xp, batch, cache):
        """Κ/N: κ f'(a_t) over N, the loss's count of unmasked outputs, eq. (S2)."""
        if batch.mask is None:
            count = math.prod(batch.targets.shape[:-1])
        else:
            count = xp.sum(xp.astype(batch.mask, cache.slopes.dtype))
        return (self.structural_curvature / count) * cache.slopes

    def structural_damping_product(self, params: Any, batch: Batch, v: Any,
                                   cache: Any = None) -> Any:
        """S v = J_aᵀ Κ J_a v / N, the structural damping matrix times v (eq. (S1)-(S3))."""
        xp = self._check_batch(params, batch)
        self._check_direction(xp, params, v)
        if cache is None:
            cache = self._forward(params, batch.inputs, xp=xp)
        _, r_pre = self._r_forward(params, v, batch.inputs, cache, xp=xp, with_pre=True)  # J_a v
        zero_output = xp.zeros_like(cache.net_output)
        return self._backprop(params, batch.inputs, cache, zero_output, xp=xp,
                              delta_pre_extra=self._structural_weights(xp, batch, cache) * r_pre)

    def gauss_newton_product(self, params: Any, batch: Batch, v: Any, cache: Any = None,
                             structural_damping: float = 0.0) -> Any:
        """(G + structural_damping · S) v in one R-forward and one BPTT pass (eq. (G3), (S4)):
        the structural term enters BPTT as an extra δa_t, so it costs no extra pass."""
        xp = self._check_batch(params, batch)
        self._check_direction(xp, params, v)
        if cache is None:
            cache = self._forward(params, batch.inputs, xp=xp)
        return self._gauss_newton_operator(xp, params, batch, cache, structural_damping)(v)

    def _gauss_newton_operator(self, xp, params, batch, cache, structural_damping):
        """The unchecked v ↦ (G + λμS) v, λμ = ``structural_damping``, eq. (S4): the weights
        λμ Κ/N (S2) and H_L's weights are computed once; each product is one R-forward pass
        (J v, and J_a v when λμ ≠ 0), H_L at the outputs (G3), and one BPTT pass with the extra
        δa_t = λμ Κ/N ⊙ J_a v (S3)."""
        weights = None
        if structural_damping != 0.0:
            weights = structural_damping * self._structural_weights(xp, batch, cache)
        hessian = self.output.hessian_operator(cache.net_output, batch.mask,
                                               targets=batch.targets,
                                               predictions=cache.predictions)

        def product(v):
            r_net_output = self._r_forward(params, v, batch.inputs, cache, xp=xp,
                                           with_pre=weights is not None)
            extra = None
            if weights is not None:
                r_net_output, r_pre = r_net_output
                extra = weights * r_pre
            return self._backprop(params, batch.inputs, cache, hessian(r_net_output), xp=xp,
                                  delta_pre_extra=extra)

        return product


def flatten_time(xp: Any, array: Any) -> Any:
    """[T, B, n] -> [T·B, n]: a sum over time and batch of outer products becomes one matrix
    product (row (t, p) of the result is row p of step t)."""
    return xp.reshape(array, (array.shape[0] * array.shape[1], array.shape[2]))


def time_steps(xp: Any, array: Any) -> tuple:
    """The T slices ``[B, n]`` of a time-major ``[T, B, n]`` array, for the per-step loops: one
    ``unstack`` (views on numpy and torch; on JAX one compiled operation, where indexing
    ``array[step]`` would compile a slice for every step index)."""
    return xp.unstack(array, axis=0)


def previous_states(xp: Any, initial: Any, hiddens: Any) -> list:
    """[h_0, h_1, …, h_{T−1}] as ``[B, n_h]`` slices: ``initial`` (h_0 broadcast over the batch)
    and all but the last step of ``hiddens`` [T, B, n_h]. Built from the cached h_t, so the cache
    need not keep a shifted copy of them."""
    return [initial, *time_steps(xp, hiddens)[:-1]]
