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


class _RawHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """The envelope decoded straight from JSON bytes, its payload left undecoded (the fast path)."""

    event_id: uuid.UUID
    type: TypeName
    schema_version: Annotated[int, msgspec.Meta(ge=1, le=1000)]
    event_time: AwareTime
    ingest_time: AwareTime
    source: Source
    key: Key
    seq: Sequence
    payload: msgspec.Raw
    causation_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None


_RAW_HEADER_DECODER = msgspec.json.Decoder(_RawHeader)
_PAYLOAD_DECODERS: dict[type[Payload], msgspec.json.Decoder[Any]] = {}


def _payload_decoder(payload_type: type[Payload]) -> msgspec.json.Decoder[Any]:
    decoder = _PAYLOAD_DECODERS.get(payload_type)
    if decoder is None:
        decoder = _PAYLOAD_DECODERS[payload_type] = msgspec.json.Decoder(payload_type)
    return decoder


class Envelope(msgspec.Struct, frozen=True, gc=False):
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


class Decoded(msgspec.Struct, frozen=True, gc=False):
    """An inbound record that passed validation.

    ``body`` is the record byte for byte as received (at its own schema version): what the
    archive stores and hash-chains. lalin's own producers write canonical JSON (sorted keys,
    UTC times, see :func:`encode_event`), so their records are canonical as received.
    """

    event: Envelope
    body: bytes


def stream_id(topic: str, key: str, source: str) -> str:
    """The stream an event belongs to: ``topic/key/source`` (sequence numbers count per stream)."""
    return f"{topic}/{key}/{source}"


def canonical_bytes(obj: Any) -> bytes:
    """Deterministic JSON bytes of a JSON-like value: sorted keys, no whitespace, UTF-8."""
    return msgspec.json.encode(obj, order="sorted")


def _decode_payload(header: _RawHeader) -> Payload:
    """The payload at its type's current version: decoded from bytes, or upcast first when older."""
    if header.type not in EVENT_TYPES:
        raise UnknownEventType(f"unknown event type {header.type!r}")
    version, payload_type = EVENT_TYPES[header.type]
    try:
        if header.schema_version == version:
            payload: Payload = _payload_decoder(payload_type).decode(header.payload)
            return payload
        raw_payload = msgspec.json.decode(header.payload)
        if not isinstance(raw_payload, dict):
            raise EventOutOfBounds(f"payload of {header.type}: expected an object")
        return msgspec.convert(upcast(header.type, header.schema_version, raw_payload), payload_type)
    except msgspec.ValidationError as err:
        raise EventOutOfBounds(f"payload of {header.type}: {err}") from err


def _envelope(header: _RawHeader, now: datetime | None, max_future_s: float) -> Envelope:
    """The validated envelope; ``now=None`` skips the future-time bound (archived events)."""
    payload = _decode_payload(header)
    limit = None if now is None else now + timedelta(seconds=max_future_s)
    for name in ("event_time", "ingest_time"):
        value: datetime = getattr(header, name)
        if limit is not None and now is not None and value > limit:
            lead_s = (value - now).total_seconds()
            raise EventOutOfBounds(f"{name} {value.isoformat()} is {lead_s:.3f} s ahead of now (limit {max_future_s} s)")
    return Envelope(
        event_id=header.event_id,
        type=header.type,
        schema_version=EVENT_TYPES[header.type][0],
        event_time=header.event_time.astimezone(UTC),
        ingest_time=header.ingest_time.astimezone(UTC),
        source=header.source,
        key=header.key,
        seq=header.seq,
        payload=payload,
        causation_id=header.causation_id,
        correlation_id=header.correlation_id,
    )


def _raise_if_malformed(raw: bytes) -> None:
    try:
        msgspec.json.decode(raw)
    except msgspec.DecodeError as err:
        raise MalformedEvent(f"not valid JSON: {err}") from err


def _validate_bytes(raw: bytes, now: datetime | None, max_future_s: float) -> Envelope:
    try:
        header = _RAW_HEADER_DECODER.decode(raw)
    except msgspec.ValidationError as err:
        _raise_if_malformed(raw)  # only on the error path: schema errors can surface before syntax errors
        if str(err).startswith("Expected `object`, got") and " - at `$" not in str(err):
            raise MalformedEvent(f"expected a JSON object: {err}") from err
        raise EventOutOfBounds(f"envelope: {err}") from err
    except msgspec.DecodeError as err:
        raise MalformedEvent(f"not valid JSON: {err}") from err
    return _envelope(header, now, max_future_s)


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
    if len(raw) > max_bytes:
        raise OversizedEvent(f"record is {len(raw)} bytes, over the cap of {max_bytes} bytes")
    return Decoded(event=_validate_bytes(raw, now, max_future_s), body=raw)


def decode_archived(body: bytes) -> Envelope:
    """Decode an archived record (already validated at ingest) and upcast it; no time bound."""
    return _validate_bytes(body, now=None, max_future_s=0.0)


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
