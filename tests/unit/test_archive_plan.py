"""Planning archive batches: every record is archived, dead-lettered or recognised as a duplicate."""

from __future__ import annotations

import uuid
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.archive_plan import RawRecord, StreamHead, classify, plan_batch, streams_touched
from controllers.envelope import encode_event, stream_id
from controllers.hashchain import GENESIS, ChainRecord, verify_stream
from controllers.payloads import SequenceAnomalyDetected
from tests.helpers import T0, detector_event

NOW = T0 + timedelta(days=1)
TOPIC = "lalin.detector"


def records(values: list[bytes]) -> list[RawRecord]:
    return [RawRecord(TOPIC, 0, offset, b"K01", value) for offset, value in enumerate(values)]


def plan(values: list[bytes], heads=None, archived=frozenset()):
    batch = classify(records(values), NOW)
    return plan_batch(batch, NOW, heads or {}, set(archived))


BAD = [b"{", b'{"event_id": 1}', b"[]", b" " * 70_000]


@settings(max_examples=100)
@given(st.lists(st.sampled_from(["good", "bad", "dup"]), min_size=1, max_size=60), st.data())
def test_records_in_equal_archived_plus_dead_lettered_plus_duplicates(kinds, data) -> None:
    values, sent, seq = [], [], 0
    for kind in kinds:
        if kind == "good" or (kind == "dup" and not sent):
            seq += 1
            sent.append(encode_event(detector_event(seq)))
            values.append(sent[-1])
        elif kind == "dup":
            values.append(data.draw(st.sampled_from(sent)))
        else:
            values.append(data.draw(st.sampled_from(BAD)))
    result = plan(values)
    archived = [r for r in result.rows if r.event.source != "lalin:archiver"]
    assert len(archived) + len(result.dead_letters) + result.duplicates == len(values)
    assert result.next_offsets == {(TOPIC, 0): len(values)}
    assert not [r for r in result.rows if r.event.source == "lalin:archiver"]  # no gaps: no anomalies


def test_the_plan_chains_each_stream_and_verifies() -> None:
    values = [encode_event(detector_event(s, source=src)) for s in range(1, 6) for src in ("det:a", "det:b")]
    result = plan(values)
    for src in ("det:a", "det:b"):
        stream = stream_id(TOPIC, "K01", src)
        rows = [r for r in result.rows if r.stream == stream]
        chain = [ChainRecord(r.position, str(r.event.event_id), r.body, r.prev_hash, r.hash) for r in rows]
        fault, checked = verify_stream(stream, chain, head_position=5, head_hash=result.heads[stream].hash)
        assert fault is None and checked == 5
        assert result.heads[stream].last_seq == 5


def test_a_batch_continues_the_chain_from_the_stored_head() -> None:
    first = plan([encode_event(detector_event(1))])
    stream = stream_id(TOPIC, "K01", "det:K01-N")
    second = plan([encode_event(detector_event(2))], heads=first.heads)
    assert second.rows[0].position == 2
    assert second.rows[0].prev_hash == first.heads[stream].hash
    assert first.rows[0].prev_hash == GENESIS


def test_already_archived_ids_are_skipped_as_duplicates() -> None:
    event = detector_event(1)
    result = plan([encode_event(event)], archived={event.event_id})
    assert result.rows == [] and result.duplicates == 1


def test_a_gap_becomes_a_sequence_anomaly_event_in_the_same_batch() -> None:
    result = plan([encode_event(detector_event(1)), encode_event(detector_event(4))])
    anomalies = [r for r in result.rows if r.event.type == "SequenceAnomalyDetected"]
    assert len(anomalies) == 1
    payload = anomalies[0].event.payload
    assert isinstance(payload, SequenceAnomalyDetected)
    assert (payload.kind.value, payload.expected_seq, payload.received_seq, payload.missing_count) == ("gap", 2, 4, 2)
    assert payload.stream == stream_id(TOPIC, "K01", "det:K01-N")
    assert anomalies[0].event.causation_id == result.rows[-1].event.event_id


def test_planning_is_deterministic() -> None:
    values = [encode_event(detector_event(1)), encode_event(detector_event(3)), b"{"]
    batch = classify(records(values), NOW)
    first, second = plan_batch(batch, NOW, {}, set()), plan_batch(batch, NOW, {}, set())
    assert first == second
    assert [r.hash for r in first.rows] == [r.hash for r in second.rows]
    assert [r.event.event_id for r in first.rows] == [r.event.event_id for r in second.rows]


def test_dead_letters_keep_reason_raw_bytes_and_offset() -> None:
    result = plan([b"{", encode_event(detector_event(1))])
    [dead] = result.dead_letters
    assert (dead.reason, dead.raw, dead.offset, dead.topic) == ("malformed", b"{", 0, TOPIC)


def test_streams_touched_includes_the_archivers_anomaly_stream() -> None:
    batch = classify(records([encode_event(detector_event(1))]), NOW)
    assert streams_touched(batch) == {stream_id(TOPIC, "K01", "det:K01-N"), stream_id(TOPIC, "K01", "lalin:archiver")}


def test_a_head_with_a_later_sequence_marks_a_regression() -> None:
    stream = stream_id(TOPIC, "K01", "det:K01-N")
    result = plan([encode_event(detector_event(3))], heads={stream: StreamHead(9, b"h" * 32, 7)})
    anomaly = next(r for r in result.rows if r.event.type == "SequenceAnomalyDetected")
    assert anomaly.event.payload.kind.value == "regression"
    assert uuid.UUID(str(anomaly.event.event_id)).version == 5


def test_only_events_numbered_at_or_below_their_head_may_be_archived_already() -> None:
    from controllers.archive_plan import possibly_archived

    stream = stream_id(TOPIC, "K01", "det:K01-N")
    batch = classify(records([encode_event(detector_event(s)) for s in (3, 4, 5, 6)] + [b"{"]), NOW)
    assert [e.seq for e in possibly_archived(batch, {stream: StreamHead(4, b"h" * 32, 4)})] == [3, 4]
    assert possibly_archived(batch, {}) == []
