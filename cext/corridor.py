"""Green-wave offsets: the compiled kernel, or its pure-Python twin under LALIN_NO_EXTENSIONS=1.

The compiled ``cext._corridor`` must load otherwise (an ImportError is raised, not hidden).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cext import corridor_py
from cext._select import choose

_module, IMPLEMENTATION = choose("cext._corridor", corridor_py)
corridor_offsets: Callable[..., Any] = _module.corridor_offsets
MAX_INTERSECTIONS = corridor_py.MAX_INTERSECTIONS
