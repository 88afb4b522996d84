"""Values derived from a plan alone, computed once per plan object.

Plans are frozen pydantic models, so anything computed from a plan and hashable arguments can
be kept while that very object lives. The memo is keyed by the plan's ``id()`` and holds the
plan itself, so a recycled id never returns another plan's value; it is cleared when it grows
past ``MEMO_LIMIT`` entries. Used on the hot paths of the fold, the decisions and the replay
(interstages, lost time, intergreen paths: ~30 us each, asked thousands of times).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import Any, ParamSpec, TypeVar

from controllers.plan import Plan

MEMO_LIMIT = 8192
P = ParamSpec("P")
R = TypeVar("R")

_MEMO: dict[tuple[int, str, tuple[Hashable, ...]], tuple[Plan, Any]] = {}


def per_plan(func: Callable[..., R]) -> Callable[..., R]:
    """Memoize ``func(plan, *args)`` for as long as ``plan`` (a frozen Plan) is the same object.

    The cached value is returned as is: ``func`` must return an immutable value (float, tuple).
    """
    name = func.__qualname__

    @functools.wraps(func)
    def wrapper(plan: Plan, *args: Hashable) -> R:
        key = (id(plan), name, args)
        held = _MEMO.get(key)
        if held is not None and held[0] is plan:
            value: R = held[1]
            return value
        value = func(plan, *args)
        if len(_MEMO) >= MEMO_LIMIT:
            _MEMO.clear()
        _MEMO[key] = (plan, value)
        return value

    return wrapper
