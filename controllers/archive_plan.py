"""Planning one archive batch (pure): raw Kafka records in, rows to write out.

The archiver shell reads a batch of records, looks up which event ids are already archived
and the heads of the streams involved, and calls :func:`plan_batch`. The plan says which
rows to append (each linked into its stream's hash chain), which records to dead-letter and
why, which sequence anomalies to record as events, and the new stream heads. The shell
writes all of it, with the consumer offsets, in one database transaction.

Nothing here reads a clock or makes a random id: ``now`` is passed in and the ids of
anomaly events are UUIDv5 of their cause, so re-planning the same batch gives the same plan.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Set
from datetime import datetime

import msgspec

from controllers.envelope import Decoded, Envelope, encode_event, make_event, stream_id
from controllers.errors import InvalidEvent
from controllers.hashchain import link
from controllers.inbound import DEFAULT_LIMITS, Limits, decode_record
from controllers.payloads import SequenceAnomalyDetected, SequenceAnomalyKind
from controllers.sequence import Gap, SequenceCheck, check_sequence

#: Namespace of the deterministic ids lalin gives the events it derives itself.
LALIN_NAMESPACE = uuid.UUID("6c616c69-6e00-4000-8000-617263686976")
#: Source name of events the archiver derives (sequence anomalies).
ARCHIVER_SOURCE = "lalin:archiver"


class RawRecord(msgspec.Struct, frozen=True, gc=False):
    """One record as consumed from Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class StreamHead(msgspec.Struct, frozen=True, gc=False):
    """A stream's last archived record (position, hash), highest sequence number and open gaps."""

    position: int
    hash: bytes
    last_seq: int
    open_gaps: tuple[Gap, ...] = ()


class ArchiveRow(msgspec.Struct, frozen=True, gc=False):
    """One event to append to the archive, already linked into its stream's chain."""

    stream: str
    position: int
    event: Envelope
    body: bytes
    prev_hash: bytes
    hash: bytes
    topic: str
    partition: int
    offset: int


class DeadLetter(msgspec.Struct, frozen=True, gc=False):
    """A record that could not become an event, with the reason and its raw bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes
    reason: str
    detail: str


class BatchPlan(msgspec.Struct, frozen=True):
    """Everything one batch writes; ``heads`` holds only the streams the batch changed."""

    rows: list[ArchiveRow]
    dead_letters: list[DeadLetter]
    duplicates: int
    heads: dict[str, StreamHead]
    next_offsets: dict[tuple[str, int], int]


class Classified(msgspec.Struct, frozen=True, gc=False):
    """A raw record with its decoding, or the reason (code and message) it could not be decoded.

    Only strings are kept of an error: an exception's traceback would tie this struct into a
    reference cycle that, with ``gc=False``, could never be collected.
    """

    record: RawRecord
    decoded: Decoded | None = None
    reason: str = ""
    detail: str = ""


def classify(records: Iterable[RawRecord], now: datetime, limits: Limits = DEFAULT_LIMITS) -> list[Classified]:
    """Decode and validate every record at wall time ``now`` (:func:`~controllers.inbound.decode_record`:
    its value, topic and key); invalid ones keep their error."""
    out: list[Classified] = []
    for record in records:
        try:
            decoded = decode_record(record.topic, record.key, record.value, now, limits)
        except InvalidEvent as err:
            out.append(Classified(record, reason=err.reason, detail=err.message))
            continue
        out.append(Classified(record, decoded=decoded))
    return out


def streams_touched(batch: Iterable[Classified]) -> set[str]:
    """Every stream the batch may append to (the events' own and the archiver's anomaly streams)."""
    streams: set[str] = set()
    for item in batch:
        if item.decoded is not None:
            event = item.decoded.event
            streams.add(stream_id(item.record.topic, event.key, event.source))
            streams.add(stream_id(item.record.topic, event.key, ARCHIVER_SOURCE))
    return streams


def possibly_archived(batch: Iterable[Classified], heads: Mapping[str, StreamHead]) -> list[Envelope]:
    """The events of the batch that may already be in the archive (so must be looked up by id).

    A re-delivered event was archived with the same stream and sequence number, so its
    number is at or below its stream's highest archived one; an event numbered above it
    cannot have been archived. (Event ids reused across streams would defeat this shortcut:
    the archive's primary key still refuses them, and the writer then looks up every id.)
    """
    out: list[Envelope] = []
    for item in batch:
        if item.decoded is None:
            continue
        event = item.decoded.event
        head = heads.get(stream_id(item.record.topic, event.key, event.source))
        if head is not None and event.seq <= head.last_seq:
            out.append(event)
    return out


def plan_batch(
    batch: Iterable[Classified],
    now: datetime,
    heads: Mapping[str, StreamHead],
    archived_ids: Set[uuid.UUID],
) -> BatchPlan:
    """Plan the archiving of a classified batch (offset order per partition) at wall time ``now``.

    ``heads`` must hold the current head of every stream in :func:`streams_touched` (absent
    means a new stream); ``archived_ids`` the ids among the events that are already archived.
    """
    builder = _PlanBuilder(now, dict(heads), set(archived_ids))
    for item in batch:
        builder.add(item)
    return builder.plan()


class _PlanBuilder:
    def __init__(self, now: datetime, heads: dict[str, StreamHead], seen: set[uuid.UUID]) -> None:
        self.now, self.heads, self.seen = now, heads, seen
        self.rows: list[ArchiveRow] = []
        self.dead: list[DeadLetter] = []
        self.changed: set[str] = set()
        self.duplicates = 0
        self.next_offsets: dict[tuple[str, int], int] = {}

    def add(self, item: Classified) -> None:
        record, decoded = item.record, item.decoded
        self.next_offsets[(record.topic, record.partition)] = record.offset + 1
        if decoded is None:
            self.dead.append(DeadLetter(record.topic, record.partition, record.offset, record.key,
                                        record.value, item.reason or "invalid", item.detail))
            return
        if decoded.event.event_id in self.seen:
            self.duplicates += 1
            return
        self.seen.add(decoded.event.event_id)
        self._append(record, decoded)

    def _append(self, record: RawRecord, decoded: Decoded) -> None:
        event = decoded.event
        stream = stream_id(record.topic, event.key, event.source)
        head = self.heads.get(stream)
        check = check_sequence(head.last_seq if head else None, event.seq, head.open_gaps if head else ())
        if check.is_anomaly:
            self._record_anomaly(record, stream, event, check)
        self._link(record, stream, event, decoded.body, check)

    def _link(self, record: RawRecord, stream: str, event: Envelope, body: bytes, check: SequenceCheck) -> None:
        head = self.heads.get(stream)
        position = head.position + 1 if head else 1
        prev = head.hash if head else bytes(32)
        digest = link(prev, position, body)
        self.rows.append(ArchiveRow(stream, position, event, body, prev, digest,
                                    record.topic, record.partition, record.offset))
        self.heads[stream] = StreamHead(position, digest, check.last_seq, check.open_gaps)
        self.changed.add(stream)

    def _record_anomaly(self, record: RawRecord, stream: str, cause: Envelope, check: SequenceCheck) -> None:
        system_stream = stream_id(record.topic, cause.key, ARCHIVER_SOURCE)
        system_head = self.heads.get(system_stream)
        anomaly = make_event(
            SequenceAnomalyDetected(stream=stream, kind=SequenceAnomalyKind(check.verdict.value),
                                    expected_seq=check.expected_seq, received_seq=cause.seq,
                                    missing_count=check.missing_count),
            event_id=uuid.uuid5(LALIN_NAMESPACE, f"seq-anomaly/{stream}/{check.expected_seq}/{cause.event_id}"),
            event_time=cause.event_time,
            ingest_time=self.now,
            source=ARCHIVER_SOURCE,
            key=cause.key,
            seq=system_head.last_seq + 1 if system_head else 1,
            causation_id=cause.event_id,
            correlation_id=cause.correlation_id,
        )
        self.seen.add(anomaly.event_id)
        own = check_sequence(system_head.last_seq if system_head else None, anomaly.seq)
        self._link(record, system_stream, anomaly, encode_event(anomaly), own)

    def plan(self) -> BatchPlan:
        return BatchPlan(self.rows, self.dead, self.duplicates,
                         {s: self.heads[s] for s in self.changed}, self.next_offsets)
