"""The exception tree of lalin.

::

    LalinError
    ├── InvalidEvent            an event failed decoding or validation (carries the reason)
    │   ├── MalformedEvent      bytes that are not a JSON object
    │   ├── OversizedEvent      more bytes than the configured cap
    │   ├── UnknownEventType    a type name or schema version lalin does not know
    │   ├── EventOutOfBounds    a field outside its bounds, unknown fields, naive, future or too old times
    │   ├── WrongTopic          an event type on a topic that does not carry it
    │   ├── KeyMismatch         a Kafka record key other than the envelope's key
    │   └── UndecodableEvent    anything else the decoder could not handle (a defect: names the exception)
    ├── ConfigurationError      settings or catalogue data that cannot be used
    ├── InvalidDuration         a duration typed without its unit, negative, zero or absurdly long
    ├── TimingInfeasible        no safe timing exists for a plan within its bounds
    ├── RuntimeConflict         another lalin runtime owns the data directory
    ├── ServiceStartError       an embedded broker or database did not come up
    └── StorageError            the archive database refused an operation

Every exception carries the offending value (and its unit where it has one) in its message.
"""

from __future__ import annotations


class LalinError(Exception):
    """Root of every error lalin raises on purpose."""


class InvalidEvent(LalinError):
    """An inbound record cannot become an event; ``reason`` is a short machine-readable code."""

    reason = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedEvent(InvalidEvent):
    """The bytes are not a UTF-8 JSON object with unique keys, nested at most as deep as the decoder allows."""

    reason = "malformed"


class OversizedEvent(InvalidEvent):
    """The record is larger than the configured cap (bytes)."""

    reason = "oversized"


class UnknownEventType(InvalidEvent):
    """The event type or its schema version is not registered."""

    reason = "unknown_type"


class EventOutOfBounds(InvalidEvent):
    """A field violates its schema: bounds, type, unknown field, naive or future time."""

    reason = "schema"


class WrongTopic(InvalidEvent):
    """A valid event on a topic that does not carry its type (the catalogue says which one does)."""

    reason = "wrong_topic"


class KeyMismatch(InvalidEvent):
    """The Kafka record's key is not the envelope's key (or the record has none)."""

    reason = "key_mismatch"


class UndecodableEvent(InvalidEvent):
    """The decoder failed in a way it does not classify: the last line of the fault barrier."""

    reason = "undecodable"


class ConfigurationError(LalinError):
    """Settings or declarative data (catalogues, plans) that cannot be used."""


class InvalidDuration(LalinError, ValueError):
    """A duration that cannot be used: a bare number (seconds or minutes?), a negative, zero or absurdly long one,
    or not a duration at all. ``text`` is what was typed; the message names the expected form (90s, 15m, 2h30m)."""

    def __init__(self, text: str, message: str) -> None:
        super().__init__(message)
        self.text = text


class TimingInfeasible(LalinError):
    """No timing satisfies the plan's minimum greens, maximum greens and cycle bounds together."""


class RuntimeConflict(LalinError):
    """Another lalin runtime already owns the data directory."""


class ServiceStartError(LalinError):
    """An embedded service (broker, database) failed to start or to become ready."""


class StorageError(LalinError):
    """The archive database refused or failed an operation."""


class InvalidDemand(LalinError, ValueError):
    """Traffic counts that cannot be used: a negative or non-numeric flow, an unknown unit, a missing
    or unknown movement. The message names the row, the field, the value and the unit."""


class UnsafeTiming(LalinError):
    """A computed timing failed the safety check: a defect, never sent anywhere. Carries the violations."""
