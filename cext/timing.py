"""Bounded green splits: the compiled kernel, or its pure-Python twin under LALIN_NO_EXTENSIONS=1.

The compiled ``cext._timing`` must load otherwise (an ImportError is raised, not hidden).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from cext import timing_py

split_greens: Callable[..., Any]

if os.environ.get("LALIN_NO_EXTENSIONS") == "1":
    split_greens = timing_py.split_greens
    IMPLEMENTATION = "python"
else:
    from cext import _timing  # type: ignore[attr-defined]

    split_greens = _timing.split_greens
    IMPLEMENTATION = "cython"
