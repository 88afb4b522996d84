"""The one place that chooses between a compiled kernel and its pure-Python twin."""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def choose(compiled: str, twin: ModuleType) -> tuple[ModuleType, str]:
    """The twin under ``LALIN_NO_EXTENSIONS=1``, else the compiled module ``compiled`` (ImportError if missing)."""
    if os.environ.get("LALIN_NO_EXTENSIONS") == "1":
        return twin, "python"
    return importlib.import_module(compiled), "cython"
