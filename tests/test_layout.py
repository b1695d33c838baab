"""Layout: named blocks in one flat vector."""

from __future__ import annotations

import numpy as np
import pytest

from arrayhf import backend
from arrayhf.layout import Layout

from helpers import host


def test_blocks_round_trip_in_order(xp, device):
    layout = Layout([("W", (2, 3)), ("b", (3,)), ("h_0", (4,))])
    assert layout.n_params == 13
    flat = backend.from_host(np.arange(13.0), xp, device=device)
    blocks = layout.unflatten(flat)
    np.testing.assert_array_equal(host(blocks["W"]), np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(host(blocks["h_0"]), np.arange(9.0, 13.0))
    np.testing.assert_array_equal(host(layout.flatten(blocks)), np.arange(13.0))


def test_wrong_blocks_are_refused(xp, device):
    layout = Layout([("W", (2, 3)), ("b", (3,))])
    blocks = layout.unflatten(backend.from_host(np.zeros(9), xp, device=device))
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        layout.flatten({"W": blocks["W"]})
    with pytest.raises(ValueError, match=r"expected block W of shape \[2, 3\], got \[3\]"):
        layout.flatten({"W": blocks["b"], "b": blocks["b"]})
    with pytest.raises(ValueError, match=r"expected params \(flat vector\) of shape \[9\]"):
        layout.unflatten(backend.from_host(np.zeros(8), xp, device=device))
    with pytest.raises(ValueError, match="duplicate"):
        Layout([("W", (1,)), ("W", (2,))])
