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
design_timings: Callable[..., Any] = _module.design_timings
OVERSATURATED, CYCLE_CLAMPED, AT_MAXIMA, INFEASIBLE, OVER_CAPACITY = (
    timing_py.OVERSATURATED, timing_py.CYCLE_CLAMPED, timing_py.AT_MAXIMA, timing_py.INFEASIBLE, timing_py.OVER_CAPACITY)
MAX_MOVEMENTS = timing_py.MAX_MOVEMENTS
