"""What changed between two versions of a plan, field by field (pure).

Lists of objects with an ``id`` (signal groups, stages, approaches, movements) are matched by
id, conflicts are compared as unordered pairs, exception days by date; everything else by
value. Paths read like ``signal_groups[A].max_green_s`` or ``intergreens_s.P2.A``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from controllers.plan import Plan


class Change(msgspec.Struct, frozen=True):
    """One difference: ``added``, ``removed`` or ``changed``, where, and the values before and after."""

    kind: str
    path: str
    before: Any = None
    after: Any = None


def diff_plans(before: Plan, after: Plan) -> list[Change]:
    """Every difference between two plans (empty when they are equal)."""
    return _diff("", before.model_dump(mode="json"), after.model_dump(mode="json"))


def _diff(path: str, a: Any, b: Any) -> list[Change]:
    if isinstance(a, dict) and isinstance(b, dict):
        return _diff_mappings(a, b, lambda key: f"{path}.{key}" if path else str(key))
    if isinstance(a, list) and isinstance(b, list):
        key = _list_key(a + b)
        if path.endswith("conflicts"):
            pairs_a, pairs_b = ({tuple(sorted(p)) for p in x} for x in (a, b))
            return ([Change("removed", f"{path}[{p[0]}-{p[1]}]", list(p), None) for p in sorted(pairs_a - pairs_b)]
                    + [Change("added", f"{path}[{p[0]}-{p[1]}]", None, list(p)) for p in sorted(pairs_b - pairs_a)])
        if key is not None:
            return _diff_keyed(path, key, a, b)
    return [] if a == b else [Change("changed", path, a, b)]


def _list_key(items: list[Any]) -> str | None:
    for key in ("id", "date"):
        if items and all(isinstance(i, dict) and key in i for i in items):
            return key
    return None


def _diff_mappings(a: dict[Any, Any], b: dict[Any, Any], where: Callable[[Any], str]) -> list[Change]:
    """Entries removed from ``a``, added in ``b``, and the differences of those in both (``where`` names the path)."""
    out: list[Change] = []
    for k in [*a, *(k for k in b if k not in a)]:
        if k not in b:
            out.append(Change("removed", where(k), a[k], None))
        elif k not in a:
            out.append(Change("added", where(k), None, b[k]))
        else:
            out += _diff(where(k), a[k], b[k])
    return out


def _diff_keyed(path: str, key: str, a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[Change]:
    by_a, by_b = {i[key]: i for i in a}, {i[key]: i for i in b}
    out = _diff_mappings(by_a, by_b, lambda k: f"{path}[{k}]")
    if [i[key] for i in a if i[key] in by_b] != [i[key] for i in b if i[key] in by_a]:
        out.append(Change("changed", f"{path} (order)", [i[key] for i in a], [i[key] for i in b]))
    return out
