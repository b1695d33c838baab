"""Test configuration: the backend under test comes from --backend (or $ARRAYHF_BACKEND).

    pytest --backend torch                     # torch on its default device
    pytest --backend array_api_strict --device device1
    pytest --backend cupy                      # skips, with the reason, where CUDA is absent

Every test takes ``xp`` and ``device`` from the fixtures below and creates its arrays with
``backend.from_host(..., xp, device=device)``, so a test that forgets ``device=`` fails on
array_api_strict's device1, as it would on CUDA.
"""

from __future__ import annotations

import os

import pytest

from arrayhf import backend


def pytest_addoption(parser):
    parser.addoption("--backend", default=os.environ.get("ARRAYHF_BACKEND", "numpy"),
                     help="array backend under test: " + ", ".join(backend.BACKENDS))
    parser.addoption("--device", default=os.environ.get("ARRAYHF_DEVICE") or None,
                     help="device for the backend (torch 'cuda', array_api_strict 'device1', ...)")


_SKIP_REASON = None


def pytest_configure(config):
    global _SKIP_REASON
    config.addinivalue_line("markers", "only_backend(*names): run only in these backends' sessions")
    name = backend.backend_name(config.getoption("--backend"))
    if name == "jax":
        import jax

        # float64 tests need JAX's 64-bit mode; without it JAX silently computes in float32.
        jax.config.update("jax_enable_x64", True)
    if name == "cupy":
        try:
            import cupy
        except ImportError:
            _SKIP_REASON = "cupy is not installed"
        else:
            if not cupy.is_available():
                _SKIP_REASON = "cupy: no CUDA device on this machine (cupy.is_available() is False)"


def pytest_report_header(config):
    name = backend.backend_name(config.getoption("--backend"))
    lines = [f"arrayhf backend: {name}, device: {config.getoption('--device') or 'default'}"]
    if _SKIP_REASON:
        lines.append(f"SKIPPING EVERY TEST: {_SKIP_REASON}")
    return lines


def pytest_collection_modifyitems(config, items):
    """Tests marked ``only_backend(name)`` belong to that backend's session: elsewhere they are
    deselected (not skipped: they are not part of that session's suite)."""
    name = backend.backend_name(config.getoption("--backend"))
    kept, deselected = [], []
    for item in items:
        marker = item.get_closest_marker("only_backend")
        (kept if marker is None or name in marker.args else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
    if _SKIP_REASON:
        marker = pytest.mark.skip(reason=_SKIP_REASON)
        for item in items:
            item.add_marker(marker)


@pytest.fixture(scope="session")
def xp(request):
    """The array namespace under test."""
    return backend.namespace(request.config.getoption("--backend"))


@pytest.fixture(scope="session")
def device(request, xp):
    """The device under test (a device object of ``xp``)."""
    return backend.resolve_device(xp, request.config.getoption("--device"))
