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

:func:`decode_event` is the single entry point for inbound bytes and a fault barrier: whatever
the bytes, it returns a valid event or raises a subclass of :class:`~controllers.errors.InvalidEvent`
naming the reason, never another exception. It enforces the size cap, UTF-8, unique object
keys and the decoder's nesting limit, parses JSON, upcasts old payloads, validates strictly,
and keeps the envelope's times between ``now - max_past_s`` and ``now + max_future_s`` and
every time in a payload inside :data:`PLAUSIBLE_FROM` .. :data:`PLAUSIBLE_UNTIL`. It needs
``now`` passed in; the core never reads the clock. :mod:`controllers.inbound` adds what a
Kafka record brings besides its value (topic and key).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any

import msgspec
import msgspec.inspect as msgspec_inspect

from controllers.errors import (
    EventOutOfBounds,
    InvalidEvent,
    MalformedEvent,
    OversizedEvent,
    UndecodableEvent,
    UnknownEventType,
)
from controllers.event_types import EVENT_TYPES, TYPE_OF_PAYLOAD
from controllers.payloads import AwareTime, Payload, Sequence
from controllers.upcasting import upcast

#: Records larger than this are dead-lettered (bytes).
DEFAULT_MAX_EVENT_BYTES = 64 * 1024
#: Event and ingest times may lead lalin's clock by at most this much (seconds).
DEFAULT_MAX_FUTURE_S = 5.0
#: Event and ingest times may lag lalin's clock by at most this much (seconds): 7 days, longer
#: than a controller's event log holds; older records are dead-lettered (reason ``schema``).
DEFAULT_MAX_PAST_S = 7 * 86_400.0
#: Every time in an envelope or payload lies in [PLAUSIBLE_FROM, PLAUSIBLE_UNTIL) (UTC), whatever the clock.
PLAUSIBLE_FROM = datetime(2000, 1, 1, tzinfo=UTC)
PLAUSIBLE_UNTIL = datetime(2100, 1, 1, tzinfo=UTC)

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


def _utc(name: str, value: datetime) -> datetime:
    """``value`` in UTC, inside the plausible range; EventOutOfBounds naming ``name`` otherwise."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError as err:  # year 1 at +14:00 has no UTC representation
        raise EventOutOfBounds(f"{name} {value.isoformat()} cannot be expressed in UTC") from err
    if not PLAUSIBLE_FROM <= utc < PLAUSIBLE_UNTIL:
        raise EventOutOfBounds(f"{name} {value.isoformat()} is outside {PLAUSIBLE_FROM.year}-{PLAUSIBLE_UNTIL.year - 1}")
    return utc


def _check_envelope_time(name: str, value: datetime, now: datetime | None, max_future_s: float,
                         max_past_s: float) -> datetime:
    utc = _utc(name, value)
    if now is None:
        return utc
    lead_s = (utc - now).total_seconds()
    if lead_s > max_future_s:
        raise EventOutOfBounds(f"{name} {value.isoformat()} is {lead_s:.3f} s ahead of now (limit {max_future_s} s)")
    if -lead_s > max_past_s:
        raise EventOutOfBounds(f"{name} {value.isoformat()} is {-lead_s:.3f} s behind now (limit {max_past_s} s)")
    return utc


@cache
def _carries_times(payload_type: type[Payload]) -> bool:
    """True when a payload type has a datetime anywhere inside (its times are then range-checked)."""
    def walk(info: Any, seen: set[type]) -> bool:
        if isinstance(info, msgspec_inspect.DateTimeType):
            return True
        if isinstance(info, msgspec_inspect.StructType):
            if info.cls in seen:
                return False
            seen.add(info.cls)
            return any(walk(f.type, seen) for f in info.fields)
        if isinstance(info, msgspec_inspect.Metadata):
            return walk(info.type, seen)
        if isinstance(info, msgspec_inspect.UnionType):
            return any(walk(t, seen) for t in info.types)
        if isinstance(info, msgspec_inspect.TupleType):
            return any(walk(t, seen) for t in info.item_types)
        return any(walk(getattr(info, a), seen) for a in ("item_type", "key_type", "value_type") if hasattr(info, a))
    return walk(msgspec_inspect.type_info(payload_type), set())


def _check_payload_times(value: Any, path: str) -> None:
    """Every datetime inside a decoded payload lies in the plausible range (EventOutOfBounds naming its path)."""
    if isinstance(value, datetime):
        _utc(path, value)
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            _check_payload_times(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for k, item in enumerate(value):
            _check_payload_times(item, f"{path}[{k}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            _check_payload_times(item, f"{path}[{k!r}]")


def _envelope(header: _RawHeader, now: datetime | None, max_future_s: float, max_past_s: float) -> Envelope:
    """The validated envelope; ``now=None`` skips the bounds relative to the clock (archived events)."""
    event_time = _check_envelope_time("event_time", header.event_time, now, max_future_s, max_past_s)
    ingest_time = _check_envelope_time("ingest_time", header.ingest_time, now, max_future_s, max_past_s)
    payload = _decode_payload(header)
    if _carries_times(type(payload)):
        _check_payload_times(payload, "payload")
    return Envelope(
        event_id=header.event_id,
        type=header.type,
        schema_version=EVENT_TYPES[header.type][0],
        event_time=event_time,
        ingest_time=ingest_time,
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


def _refuse_duplicate_keys(raw: bytes) -> None:
    """MalformedEvent when a JSON object in ``raw`` (valid JSON) names a key twice.

    Fast path: lalin's own producers write canonical JSON, which re-encodes to itself and so
    cannot hold a duplicate (a decoded object keeps one value per key). Other layouts are
    parsed again keeping every pair.
    """
    if canonical_bytes(msgspec.json.decode(raw)) == raw:
        return

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for name, value in pairs:
            if name in obj:
                raise MalformedEvent(f"the JSON object key {name[:64]!r} appears more than once")
            obj[name] = value
        return obj

    json.loads(raw, object_pairs_hook=unique)


def _validate_bytes(raw: bytes, now: datetime | None, max_future_s: float, max_past_s: float) -> Envelope:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MalformedEvent(f"not UTF-8: byte {err.start} ({raw[err.start:err.start + 1]!r})") from err
    try:
        header = _RAW_HEADER_DECODER.decode(raw)
    except msgspec.ValidationError as err:
        _raise_if_malformed(raw)  # only on the error path: schema errors can surface before syntax errors
        if str(err).startswith("Expected `object`, got") and " - at `$" not in str(err):
            raise MalformedEvent(f"expected a JSON object: {err}") from err
        raise EventOutOfBounds(f"envelope: {err}") from err
    except msgspec.DecodeError as err:
        raise MalformedEvent(f"not valid JSON: {err}") from err
    _refuse_duplicate_keys(raw)
    return _envelope(header, now, max_future_s, max_past_s)


def _barrier(raw: bytes, now: datetime | None, max_future_s: float, max_past_s: float) -> Envelope:
    """:func:`_validate_bytes`, whose every failure becomes an InvalidEvent (the fault barrier)."""
    try:
        return _validate_bytes(raw, now, max_future_s, max_past_s)
    except InvalidEvent:
        raise
    except RecursionError as err:
        raise MalformedEvent("JSON nested deeper than the decoder allows") from err
    except ValueError as err:  # json's own limits on the slow path (e.g. integers of over 4,300 digits)
        raise MalformedEvent(f"not decodable JSON: {err}") from err
    except Exception as err:  # the barrier: no input may escape as another exception
        raise UndecodableEvent(f"{type(err).__name__}: {str(err)[:200]}") from err


def decode_event(
    raw: bytes,
    now: datetime,
    *,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    max_future_s: float = DEFAULT_MAX_FUTURE_S,
    max_past_s: float = DEFAULT_MAX_PAST_S,
) -> Decoded:
    """Decode and validate one inbound record at wall time ``now`` (aware datetime).

    Raises :class:`~controllers.errors.InvalidEvent` (a subclass naming the reason), and no
    other exception, when the record is oversized (``max_bytes``), not UTF-8, malformed (a
    duplicate key, too deeply nested), of an unknown type or version, out of bounds, or has an
    event or ingest time more than ``max_future_s`` seconds after or ``max_past_s`` seconds
    before ``now``.
    """
    if len(raw) > max_bytes:
        raise OversizedEvent(f"record is {len(raw)} bytes, over the cap of {max_bytes} bytes")
    return Decoded(event=_barrier(raw, now, max_future_s, max_past_s), body=raw)


def decode_archived(body: bytes) -> Envelope:
    """Decode an archived record (already validated at ingest) and upcast it; no bound relative to a clock."""
    return _barrier(body, None, 0.0, 0.0)


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
