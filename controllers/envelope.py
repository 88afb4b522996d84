"""The event envelope: identity, time, origin and ordering around every payload.

Wire form (JSON object, UTF-8)::

    {"event_id": "<uuid>", "type": "DetectorCounted", "schema_version": 1,
     "event_time": "2026-11-24T08:00:00+08:00", "ingest_time": "...",
     "source": "det:K01-N", "key": "K01", "seq": 42,
     "causation_id": null, "correlation_id": null, "payload": {...}}

* ``source`` is the device or process that emitted the event, ``key`` the site or
  intersection it is about (the Kafka record key: all of a key's events share a partition).
* ``seq`` counts from 1 per *stream*, a stream being one source's events about one key on
  one topic (see :func:`stream_id`), so a missing event shows up as a gap.
* ``event_time`` is when it happened, ``ingest_time`` when lalin's edge received it.

:func:`decode_event` is the single entry point for inbound bytes: it enforces the size cap,
parses JSON, upcasts old payloads and validates strictly, or raises a subclass of
:class:`~controllers.errors.InvalidEvent` naming the reason. It needs ``now`` passed in to
refuse events from the future; the core never reads the clock.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec

from controllers.errors import EventOutOfBounds, MalformedEvent, OversizedEvent, UnknownEventType
from controllers.event_types import EVENT_TYPES, TYPE_OF_PAYLOAD
from controllers.payloads import AwareTime, Payload, Sequence
from controllers.upcasting import upcast

#: Records larger than this are dead-lettered (bytes).
DEFAULT_MAX_EVENT_BYTES = 64 * 1024
#: Event and ingest times may lead lalin's clock by at most this much (seconds).
DEFAULT_MAX_FUTURE_S = 5.0

Source = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-/@]+$")]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-/@]+$")]
TypeName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _Header(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The envelope with its payload still a plain mapping (first decoding stage)."""

    event_id: uuid.UUID
    type: TypeName
    schema_version: Annotated[int, msgspec.Meta(ge=1, le=1000)]
    event_time: AwareTime
    ingest_time: AwareTime
    source: Source
    key: Key
    seq: Sequence
    payload: dict[str, Any]
    causation_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None


class Envelope(msgspec.Struct, frozen=True):
    """A validated event at the current schema version of its type; times are in UTC."""

    event_id: uuid.UUID
    type: str
    schema_version: int
    event_time: datetime
    ingest_time: datetime
    source: str
    key: str
    seq: int
    payload: Payload
    causation_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None


class Decoded(msgspec.Struct, frozen=True):
    """An inbound record that passed validation.

    ``canonical`` is the record exactly as received (its own schema version) re-encoded with
    sorted keys and no whitespace: the bytes the archive stores and hash-chains.
    """

    event: Envelope
    canonical: bytes


def stream_id(topic: str, key: str, source: str) -> str:
    """The stream an event belongs to: ``topic/key/source`` (sequence numbers count per stream)."""
    return f"{topic}/{key}/{source}"


def canonical_bytes(obj: Any) -> bytes:
    """Deterministic JSON bytes of a JSON-like value: sorted keys, no whitespace, UTF-8."""
    return msgspec.json.encode(obj, order="sorted")


def _parse_json(raw: bytes, max_bytes: int) -> dict[str, Any]:
    if len(raw) > max_bytes:
        raise OversizedEvent(f"record is {len(raw)} bytes, over the cap of {max_bytes} bytes")
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        raise MalformedEvent(f"not valid JSON: {err}") from err
    if not isinstance(obj, dict):
        raise MalformedEvent(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _validate_wire(wire: dict[str, Any], now: datetime, max_future_s: float) -> Envelope:
    try:
        header = msgspec.convert(wire, _Header)
    except msgspec.ValidationError as err:
        raise EventOutOfBounds(f"envelope: {err}") from err
    if header.type not in EVENT_TYPES:
        raise UnknownEventType(f"unknown event type {header.type!r}")
    payload_dict = upcast(header.type, header.schema_version, header.payload)
    version, payload_type = EVENT_TYPES[header.type]
    try:
        payload = msgspec.convert(payload_dict, payload_type)
    except msgspec.ValidationError as err:
        raise EventOutOfBounds(f"payload of {header.type}: {err}") from err
    limit = now + timedelta(seconds=max_future_s)
    for name in ("event_time", "ingest_time"):
        value: datetime = getattr(header, name)
        if value > limit:
            lead_s = (value - now).total_seconds()
            raise EventOutOfBounds(f"{name} {value.isoformat()} is {lead_s:.3f} s ahead of now (limit {max_future_s} s)")
    return Envelope(
        event_id=header.event_id,
        type=header.type,
        schema_version=version,
        event_time=header.event_time.astimezone(UTC),
        ingest_time=header.ingest_time.astimezone(UTC),
        source=header.source,
        key=header.key,
        seq=header.seq,
        payload=payload,
        causation_id=header.causation_id,
        correlation_id=header.correlation_id,
    )


def decode_event(
    raw: bytes,
    now: datetime,
    *,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    max_future_s: float = DEFAULT_MAX_FUTURE_S,
) -> Decoded:
    """Decode and validate one inbound record at wall time ``now`` (aware datetime).

    Raises :class:`~controllers.errors.InvalidEvent` (a subclass naming the reason) when the
    record is oversized (``max_bytes``), malformed, of an unknown type or version, out of
    bounds, or has an event or ingest time more than ``max_future_s`` seconds after ``now``.
    """
    wire = _parse_json(raw, max_bytes)
    event = _validate_wire(wire, now, max_future_s)
    return Decoded(event=event, canonical=canonical_bytes(wire))


def decode_archived(canonical: bytes) -> Envelope:
    """Decode an archived record (already validated at ingest) and upcast it; no time bound."""
    wire = _parse_json(canonical, max_bytes=2**31)
    return _validate_wire(wire, now=datetime.max.replace(tzinfo=UTC) - timedelta(days=1), max_future_s=0.0)


def make_event(
    payload: Payload,
    *,
    event_id: uuid.UUID,
    event_time: datetime,
    ingest_time: datetime,
    source: str,
    key: str,
    seq: int,
    causation_id: uuid.UUID | None = None,
    correlation_id: uuid.UUID | None = None,
) -> Envelope:
    """Wrap ``payload`` in an envelope at its type's current schema version (times must be aware)."""
    if event_time.tzinfo is None or ingest_time.tzinfo is None:
        raise EventOutOfBounds(f"event_time {event_time!r} and ingest_time {ingest_time!r} must be timezone-aware")
    event_type = TYPE_OF_PAYLOAD[type(payload)]
    return Envelope(
        event_id=event_id,
        type=event_type,
        schema_version=EVENT_TYPES[event_type][0],
        event_time=event_time.astimezone(UTC),
        ingest_time=ingest_time.astimezone(UTC),
        source=source,
        key=key,
        seq=seq,
        payload=payload,
        causation_id=causation_id,
        correlation_id=correlation_id,
    )


def encode_event(event: Envelope) -> bytes:
    """Wire bytes of ``event`` (canonical: sorted keys, UTC times)."""
    return canonical_bytes(msgspec.to_builtins(event))
