"""Class counts -> PCU flow: the compiled kernel, or its pure-Python twin when asked for.

``LALIN_NO_EXTENSIONS=1`` selects the twin; otherwise the compiled ``cext._flow`` must load
(an ImportError is raised, not hidden). ``IMPLEMENTATION`` says which one is in use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from cext import flow_py

pcu_flow_veh_h: Callable[..., Any]

if os.environ.get("LALIN_NO_EXTENSIONS") == "1":
    pcu_flow_veh_h = flow_py.pcu_flow_veh_h
    IMPLEMENTATION = "python"
else:
    from cext import _flow  # type: ignore[attr-defined]

    pcu_flow_veh_h = _flow.pcu_flow_veh_h
    IMPLEMENTATION = "cython"
