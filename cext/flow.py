"""Class counts -> PCU flow: the compiled kernel, or its pure-Python twin when asked for.

``LALIN_NO_EXTENSIONS=1`` selects the twin; otherwise the compiled ``cext._flow`` must load
(an ImportError is raised, not hidden). ``IMPLEMENTATION`` says which one is in use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cext import flow_py
from cext._select import choose

_module, IMPLEMENTATION = choose("cext._flow", flow_py)
pcu_flow_veh_h: Callable[..., Any] = _module.pcu_flow_veh_h
