"""The documentation names every event type and every payload field that exists."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from controllers.event_types import EVENT_TYPES

EVENTS_DOC = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text(encoding="utf-8")


def section(name: str) -> str:
    start = EVENTS_DOC.index(f"### {name}")
    end = EVENTS_DOC.find("\n### ", start + 1)
    return EVENTS_DOC[start:] if end < 0 else EVENTS_DOC[start:end]


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_event_type_and_field_is_documented(event_type: str) -> None:
    text = section(event_type)
    _, payload = EVENT_TYPES[event_type]
    missing = [f.name for f in msgspec.structs.fields(payload) if f"`{f.name}`" not in text]
    assert missing == [], f"docs/events.md does not describe {event_type} fields {missing}"
