"""Bounded green splits: the compiled kernel, or its pure-Python twin under LALIN_NO_EXTENSIONS=1.

The compiled ``cext._timing`` must load otherwise (an ImportError is raised, not hidden).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cext import timing_py
from cext._select import choose

_module, IMPLEMENTATION = choose("cext._timing", timing_py)
split_greens: Callable[..., Any] = _module.split_greens
