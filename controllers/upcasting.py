"""Upcasting: the one place where older payload shapes become the current shape.

Events are immutable and archived as they arrived, in the schema version they were written
with. Whenever an event is read — from the wire or from the archive — its payload passes
through :func:`upcast`, which applies the registered steps ``v -> v+1`` in order until the
current version. A step is a pure function of a JSON-like ``dict``.

Example of a future step (kept here as the pattern to follow)::

    def _detector_counted_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "lane": payload.get("lane")}

    UPCASTERS[("DetectorCounted", 1)] = _detector_counted_v1_v2
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from controllers.errors import UnknownEventType
from controllers.event_types import EVENT_TYPES

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

#: (event type, from version) -> step to from version + 1.
UPCASTERS: Final[dict[tuple[str, int], Upcaster]] = {}


def upcast(event_type: str, schema_version: int, payload: dict[str, Any]) -> dict[str, Any]:
    """Bring ``payload`` written at ``schema_version`` up to the current version of its type.

    Raises :class:`UnknownEventType` for an unknown type, a version newer than lalin knows,
    or a missing step.
    """
    if event_type not in EVENT_TYPES:
        raise UnknownEventType(f"unknown event type {event_type!r}")
    current = EVENT_TYPES[event_type][0]
    if schema_version > current or schema_version < 1:
        raise UnknownEventType(f"{event_type} schema version {schema_version} is not known (current is {current})")
    for version in range(schema_version, current):
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise UnknownEventType(f"no upcaster for {event_type} v{version} -> v{version + 1}")
        payload = step(payload)
    return payload
