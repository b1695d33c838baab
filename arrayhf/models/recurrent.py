"""What every recurrent arrayhf model shares: sizes and description, inputs (float rows or
character ids), the output layer, structural damping with per-unit κ, and the time helpers.

A recurrent model (RNN, MRNN, LSTM, GRU) is a :class:`Model` on time-major data (``[T, B, n_in]``
float rows or ``[T, B]`` integer character ids, ``[T, B]`` masks) whose hidden units apply their
nonlinearities f_u to pre-activations a_t ``[T, B, width]``: width = n_h for the RNN and the
MRNN (h_t = f(a_t)), 4n_h for the LSTM's gate units, 3n_h for the GRU's. Its subclass gives the
three passes, each showing only its own cell's equations; the R-forward pass takes ``with_pre``
(then it also returns R{a} = J_a v ``[T, B, width]``) and the backward pass ``delta_pre_extra``
(an extra δa_t, the structural term's J_aᵀ u). From those two hooks, the cache's ``slopes``
f_u'(a_t) and :meth:`RecurrentModel.unit_curvatures` (the per-unit κ), this base and
:class:`Model` build, once for every recurrent model:

- the structural damping weights Κ/N = κ_u f_u'(a_t)/N (derivations/structural-damping.md, (S2)),
- S v = J_aᵀ Κ J_a v / N (S1)-(S3), and (G + λμS) v in one R-forward and one BPTT pass (S4),
  both through :meth:`Model._gauss_newton_operator`,
- the argument checks, character-id inputs (``arrayhf.models.inputs``), ``config()`` and
  ``__repr__`` from one description.

The output layer z_t = h_t W_hy + b_y is the same in every recurrent model: blocks ``W_hy``
[n_h, n_out] and ``b_y`` [n_out], and its parts of the three passes here (``_net_output``,
``_r_net_output``, ``_output_gradients``). The constructors take the sizes first, then
``hidden`` (the RNN and the MRNN), ``output``, the model's own options, ``biases`` and
``structural_curvature``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

from arrayhf import losses, nonlinearities
from arrayhf._validate import is_integer
from arrayhf.models.base import Model
from arrayhf.models.inputs import check_inputs, positions, step_rows

if TYPE_CHECKING:
    from arrayhf.data.batch import Batch


class RecurrentModel(Model):
    """Base of the recurrent models. A subclass sets ``sizes`` (the names of its positional size
    arguments, in order), ``options`` (its own keyword arguments) and, when its pre-activations
    are units of several kinds, ``unit_kinds``; it calls :meth:`_set_common` in ``__init__`` and
    gives the three passes with the ``with_pre`` and ``delta_pre_extra`` hooks and a cache with
    ``slopes`` = f_u'(a_t).

    Parameters shared by every recurrent model's constructor:

    n_inputs : int
        The width of float input rows, or the alphabet size of character ids.
    output : str or MatchingLoss
        "linear" (squared error), "logistic" (binary cross-entropy), "softmax".
    biases : bool
        With the model's biases and the output bias b_y.
    structural_curvature : float, optional
        κ of structural damping's Κ (eq. (S2)) for the units of the hidden nonlinearity ``hidden``
        (tanh for the gated models); units of another kind get κ times the ratio of their
        defaults (:meth:`unit_curvatures`). By default the hidden nonlinearity's own
        (``Nonlinearity.structural_curvature``): 1/4 for tanh, the 2011 release's value; 1 for
        logistic, relu and linear units (the matching loss's curvature f'(a)).
    """

    data_axes = 2
    sizes: tuple[str, ...] = ("n_inputs", "n_hidden", "n_outputs")
    options: tuple[str, ...] = ()
    # the nonlinearities of a_t's blocks of n_h columns, in order; () is one block of ``hidden``
    unit_kinds: tuple[str, ...] = ()
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

    # -- inputs: float rows or character ids (derivations/mrnn.md, "Character ids") ---------
    def _check_inputs(self, xp, params, inputs):
        """Float rows ``[T, B, n_in]`` of θ's dtype, or integer character ids ``[T, B]`` in
        [0, n_in) (``inputs.check_inputs``)."""
        check_inputs(xp, inputs, self.n_inputs, params.dtype)

    def _positions(self, inputs) -> tuple:
        """The output positions (T, B): all of ``[T, B]`` ids, or ``[T, B, n_in]`` less its last
        axis (eq. (M23))."""
        return positions(inputs)

    def _add_step_gradients(self, xp, sums, input_step, columns, previous, delta_input,
                            delta_hidden=None):
        """``sums`` (Σ x_tᵀ δ_x, Σ h_{t−1}ᵀ δ_h, Σ_rows δ_h over the steps so far, from 0.0) with
        step t's terms added: the weight gradients of pre-activations x_t W_x + h_{t−1} W_h + b
        in a BPTT loop ((R10), (LS15), (GR16)), δ_h = δ_x unless given; the bias sum only with
        biases. For ids, x_t is the step's one-hot rows E_t (``step_rows``, eq. (M23))."""
        delta_hidden = delta_input if delta_hidden is None else delta_hidden
        gradient_x, gradient_h, gradient_b = sums
        rows = step_rows(xp, input_step, columns, delta_input.dtype)      # x_t, or E_t (M23)
        gradient_x = gradient_x + rows.T @ delta_input
        gradient_h = gradient_h + previous.T @ delta_hidden
        if self.biases:
            gradient_b = gradient_b + xp.sum(delta_hidden, axis=0)
        return gradient_x, gradient_h, gradient_b

    # -- the output layer z_t = h_t W_hy + b_y, shared by the three passes -----------------
    def _net_output(self, blocks, hiddens):
        """z = h W_hy + b_y for every step at once, ``[T, B, n_out]`` ((R3), (M6), (LS5), (GR5))."""
        net_output = hiddens @ blocks["W_hy"]
        return net_output + blocks["b_y"] if self.biases else net_output

    def _r_net_output(self, directions, hiddens, r_hidden_part):
        """R{z} = R{h} W_hy + h R{W_hy} + R{b_y} ((R6), (M12), (LS11), (GR11)), given its first
        term ``r_hidden_part`` = R{h} W_hy ``[T, B, n_out]`` (the passes compute it per step, or
        batched, as they compute R{h})."""
        r_net_output = r_hidden_part + hiddens @ directions["W_hy"]
        return r_net_output + directions["b_y"] if self.biases else r_net_output

    def _r_output_layer(self, xp, blocks, directions, hiddens, cell_steps, with_pre):
        """What an R-forward pass returns, from its loop ``cell_steps``, which yields
        (R{h_t}, R{a_t}) step by step: R{h_t} W_hy while R{h_t} is fresh (the first term of (R6),
        (LS11), (GR11)), then R{z} = ``_r_net_output``; with ``with_pre`` also R{a} = J_a v
        ``[T, B, width]``, the steps' R{a_t} stacked (R{a_t} may be None without it)."""
        r_outputs, r_pres = [], []
        for r_hidden, r_pre in cell_steps:
            r_outputs.append(r_hidden @ blocks["W_hy"])
            if with_pre:
                r_pres.append(r_pre)
        r_net_output = self._r_net_output(directions, hiddens, xp.stack(r_outputs))
        return (r_net_output, xp.stack(r_pres)) if with_pre else r_net_output

    def _output_gradients(self, xp, hiddens, delta_net_output) -> dict:
        """The W_hy and b_y blocks of Jᵀ δ: Σ_t h_tᵀ δz_t, one product of the time-flattened
        arrays, and Σ_t Σ_p δz_t ((R11), (M21), (LS16), (GR17))."""
        gradients = {"W_hy": flatten_time(xp, hiddens).T @ flatten_time(xp, delta_net_output)}
        if self.biases:
            gradients["b_y"] = xp.sum(delta_net_output, axis=(0, 1))
        return gradients

    # -- structural damping ----------------------------------------------------------------
    def unit_curvatures(self) -> tuple[float, ...]:
        """κ_u of every block of n_h pre-activation units, in the order of a_t's columns (S2):
        ``structural_curvature`` κ for a unit of the hidden nonlinearity, κ times the ratio of
        the defaults (``Nonlinearity.structural_curvature``) for another kind: the gated models'
        logistic gates get κ · 1 / (1/4) = 4κ beside their tanh units' κ
        (derivations/structural-damping.md, section 3). One block for the RNN and the MRNN."""
        reference = self.hidden.structural_curvature
        curvatures = []
        for name in self.unit_kinds or (self.hidden.name,):
            default = nonlinearities.get(name).structural_curvature
            ratio = 1.0 if default == reference else default / reference
            curvatures.append(self.structural_curvature * ratio)
        return tuple(curvatures)

    def _structural_weights(self, xp, batch, cache):
        """Κ/N: κ_u f_u'(a_t) over N, the loss's count of unmasked outputs, eq. (S2), with the
        slopes f_u'(a_t) of ``cache.slopes`` and the κ_u of :meth:`unit_curvatures`."""
        if batch.mask is None:
            count = math.prod(batch.targets.shape[:-1])
        else:
            count = xp.sum(xp.astype(batch.mask, cache.slopes.dtype))
        slopes, curvatures, n = cache.slopes, self.unit_curvatures(), self.n_hidden
        if len(set(curvatures)) == 1:
            return (curvatures[0] / count) * slopes
        return xp.concat([(kappa / count) * slopes[..., block * n:(block + 1) * n]
                          for block, kappa in enumerate(curvatures)], axis=-1)

    def structural_damping_product(self, params: Any, batch: Batch, v: Any,
                                   cache: Any = None) -> Any:
        """S v = J_aᵀ Κ J_a v / N, the structural damping matrix times v (eq. (S1)-(S3)): the
        fused product of :meth:`Model.gauss_newton_product` without its G term."""
        xp = self.check_batch(params, batch)
        self._check_direction(xp, params, v)
        if cache is None:
            cache = self._forward(params, batch.inputs, xp=xp)
        return self._gauss_newton_operator(xp, params, batch, cache, 1.0, gauss_newton=False)(v)


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


def extra_steps(xp: Any, delta_pre_extra: Any, n_steps: int) -> Sequence:
    """The T slices ``[B, width]`` of BPTT's extra δa_t (``delta_pre_extra``, the structural
    term's u of (S3)), or T ``None`` when there is none."""
    if delta_pre_extra is None:
        return [None] * n_steps
    return time_steps(xp, delta_pre_extra)
