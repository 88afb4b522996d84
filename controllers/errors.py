"""The exception tree of lalin.

::

    LalinError
    ├── InvalidEvent            an event failed decoding or validation (carries the reason)
    │   ├── MalformedEvent      bytes that are not a JSON object
    │   ├── OversizedEvent      more bytes than the configured cap
    │   ├── UnknownEventType    a type name or schema version lalin does not know
    │   └── EventOutOfBounds    a field outside its bounds, unknown fields, naive or future times
    ├── ConfigurationError      settings or catalogue data that cannot be used
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
    """The bytes are not a UTF-8 JSON object."""

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


class ConfigurationError(LalinError):
    """Settings or declarative data (catalogues, plans) that cannot be used."""


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
