"""The two conditions under which padding changes nothing (derivations/rnn.md, "Masks and
variable-length sequences"), on every recurrent model: the padding must come after each
sequence's end, and hold finite values. Finite junk past the end leaves L, ∇L and G v as they
are; an infinite input or a NaN target there makes them NaN (the mask's 0 times ∞ or NaN); the
same sequences padded before their start give another loss."""

from __future__ import annotations

import math

import numpy as np
import pytest

import arrayhf
from arrayhf import backend
from arrayhf.models import registry

from helpers import host

T, B, N_IN, N_OUT = 6, 3, 4, 2
LENGTHS = np.array([6, 4, 3])
# every recurrent model of the registry, as the command line builds it: 5 hidden units (3 factors
# for the MRNN), linear outputs, biases
RECURRENT = [model for model in registry.REGISTRY if model.recurrent and model.build is not None]
NET = registry.NetSettings(N_IN, N_OUT, "linear", hidden=5, factors=3, biases=True)


def results(model, params, v, inputs, targets, mask, xp, device):
    """(L, ∇L, G v) on the host, for host inputs, targets and mask."""
    batch = arrayhf.Batch(*(backend.from_host(array, xp, device=device)
                            for array in (inputs, targets, mask)))
    return (host(model.loss(params, batch)), host(model.gradient(params, batch)),
            host(model.gauss_newton_product(params, batch, v)))


@pytest.mark.parametrize("entry", RECURRENT, ids=lambda entry: entry.name)
def test_padding_needs_finite_values_at_the_end(xp, device, entry):
    model = entry.build(NET)
    rng = np.random.default_rng(0)
    params = model.init(0, xp=xp, device=device)
    v = backend.from_host(rng.standard_normal(model.n_params), xp, device=device)
    inputs, targets = rng.standard_normal((T, B, N_IN)), rng.standard_normal((T, B, N_OUT))
    mask = (np.arange(T)[:, None] < LENGTHS).astype(np.float64)
    padding = mask == 0

    def padded(input_junk, target_junk):
        junk_inputs, junk_targets = inputs.copy(), targets.copy()
        junk_inputs[padding], junk_targets[padding] = input_junk, target_junk
        return results(model, params, v, junk_inputs, junk_targets, mask, xp, device)

    finite = padded(5.0, -3.0)
    for expected, actual in zip(finite, padded(-40.0, 7.0)):
        np.testing.assert_array_equal(actual, expected)
    assert all(np.isfinite(r).all() for r in finite)
    with np.errstate(invalid="ignore", over="ignore"):  # numpy's warnings of what is asserted
        assert not np.isfinite(padded(math.inf, 0.0)[0])   # an infinite input past the end
        assert not np.isfinite(padded(0.0, math.nan)[0])   # a NaN target past the end
    # the same sequences padded before their start (with finite values): another loss
    shift = T - LENGTHS
    left = [np.zeros_like(a) for a in (inputs, targets, mask)]
    for p, s in enumerate(shift):
        for moved, source in zip(left, (inputs, targets, mask)):
            moved[s:, p] = source[:T - s, p]
    loss_left = results(model, params, v, *left, xp, device)[0]
    assert abs(loss_left - finite[0]) > 1e-6 * abs(finite[0])
