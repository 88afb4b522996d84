"""Suite-wide checks: the compiled kernels really loaded (unless LALIN_NO_EXTENSIONS=1)."""

from __future__ import annotations

import os

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fail the whole run if a compiled kernel silently fell back to Python."""
    from cext import corridor, flow, timing

    for kernel in (corridor, flow, timing):
        if os.environ.get("LALIN_NO_EXTENSIONS") != "1" and kernel.IMPLEMENTATION != "cython":
            raise pytest.UsageError(f"{kernel.__name__} loaded {kernel.IMPLEMENTATION!r}, not the compiled kernel")
