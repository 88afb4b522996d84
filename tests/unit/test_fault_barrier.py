"""The fault barrier: whatever bytes arrive, a record becomes a valid event or an InvalidEvent with its reason.

Each finding of issue 16 ("poison records stop everything") has its case here; the property
tests throw arbitrary bytes, arbitrary JSON and mutated valid records at the decoder.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controllers.envelope import decode_archived, decode_event, encode_event, make_event
from controllers.errors import EventOutOfBounds, InvalidEvent, KeyMismatch, MalformedEvent, WrongTopic
from controllers.inbound import Limits, decode_record
from controllers.payloads import BrokerRestartDetected
from infra.topics import load_catalogue
from tests.helpers import T0, detector_event

NOW = T0 + timedelta(hours=1)
WIRE = encode_event(detector_event(1))
TOPICS = Limits(topic_of_type=load_catalogue().topic_of_type)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)


def outcome(raw: bytes, now: datetime = NOW) -> str:
    """'ok', or the reason of the InvalidEvent the decoder raised (any other exception fails the test)."""
    try:
        decode_event(raw, now)
    except InvalidEvent as err:
        return err.reason
    return "ok"


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_are_an_event_or_a_named_refusal(raw: bytes) -> None:
    assert outcome(raw) in {"ok", "malformed", "schema", "unknown_type", "oversized"}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_arbitrary_json_is_an_event_or_a_named_refusal(value: object) -> None:
    assert outcome(msgspec.json.encode(value)) in {"malformed", "schema", "unknown_type"}


FIELDS = ["event_id", "type", "schema_version", "event_time", "ingest_time", "source", "key", "seq", "payload",
          "causation_id", "correlation_id"]
PAYLOAD_FIELDS = ["detector_id", "interval_s", "lane", "mean_speed_kmh", "occupancy", "volume"]


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), inner=st.sampled_from(PAYLOAD_FIELDS), value=json_values,
       text=st.text(max_size=40), in_payload=st.booleans())
def test_valid_records_with_any_field_replaced_never_escape_the_barrier(field: str, inner: str, value: object,
                                                                        text: str, in_payload: bool) -> None:
    obj = msgspec.json.decode(WIRE)
    target = obj["payload"] if in_payload else obj
    target[inner if in_payload else field] = value if text == "" else text
    result = outcome(msgspec.json.encode(obj))
    assert result in {"ok", "malformed", "schema", "unknown_type"}


@settings(max_examples=300)
@given(position=st.integers(0, len(WIRE) - 1), byte=st.integers(0, 255))
def test_any_single_byte_changed_never_escapes_the_barrier(position: int, byte: int) -> None:
    raw = WIRE[:position] + bytes([byte]) + WIRE[position + 1:]
    assert outcome(raw) in {"ok", "malformed", "schema", "unknown_type"}


def _with(**changes: object) -> bytes:
    obj = msgspec.json.decode(WIRE)
    obj.update(changes)
    return msgspec.json.encode(obj)


@pytest.mark.parametrize(("raw", "needle"), [
    (_with(event_time="0001-01-01T00:00:00+14:00"), "cannot be expressed in UTC"),  # was OverflowError
    (_with(event_time="1970-01-01T00:00:00Z"), "outside 2000-2099"),
    (_with(ingest_time="0001-01-01T00:00:00Z"), "outside 2000-2099"),
    (_with(event_time="9999-12-31T23:59:59-14:00"), "cannot be expressed in UTC"),
    (_with(event_time=(NOW - timedelta(days=8)).isoformat()), "behind now (limit 604800.0 s)"),
])
def test_times_out_of_bounds_are_refused_with_the_value(raw: bytes, needle: str) -> None:
    with pytest.raises(EventOutOfBounds, match=re.escape(needle)):
        decode_event(raw, NOW)


def test_the_past_bound_is_configurable() -> None:
    old = _with(event_time=(NOW - timedelta(days=8)).isoformat())
    assert decode_event(old, NOW, max_past_s=9 * 86_400.0).event.event_time == NOW - timedelta(days=8)


def test_times_inside_a_payload_are_bounded_too() -> None:
    alarm = BrokerRestartDetected(old_epoch="a", new_epoch="b", last_confirmed_at=T0, detected_at=T0, at_risk_from=T0)
    obj = msgspec.json.decode(encode_event(make_event(alarm, event_id=uuid.uuid4(), event_time=T0, ingest_time=T0,
                                                      source="lalin:runtime", key="broker", seq=1)))
    obj["payload"]["detected_at"] = "0001-01-01T00:00:00+14:00"
    with pytest.raises(EventOutOfBounds, match=r"payload\.detected_at"):
        decode_event(msgspec.json.encode(obj), NOW)
    obj["payload"]["detected_at"] = "1970-01-01T00:00:00Z"
    with pytest.raises(EventOutOfBounds, match=r"payload\.detected_at 1970"):
        decode_archived(msgspec.json.encode(obj))


def test_invalid_utf8_inside_a_string_is_malformed_not_a_crash() -> None:  # was UnicodeDecodeError
    with pytest.raises(MalformedEvent, match="not UTF-8: byte"):
        decode_event(WIRE.replace(b'"N1"', b'"N\xff"'), NOW)


def test_deep_nesting_is_malformed_not_a_crash() -> None:  # was RecursionError
    deep = WIRE.replace(b'"lane":"N1"', b'"lane":' + b"[" * 5000 + b"]" * 5000)
    with pytest.raises(MalformedEvent, match="nested deeper"):
        decode_event(deep, NOW)


@pytest.mark.parametrize("raw", [
    WIRE[:-1] + b',"key":"K02"}',  # the envelope's key twice: which intersection is it about?
    WIRE.replace(b'"lane":"N1"', b'"lane":"N1","lane":"N2"'),  # inside the payload
    WIRE.replace(b'"key":"K01"', b'"key" : "K01", "key":"K01"'),  # even with the same value, in another layout
])
def test_duplicate_keys_are_refused(raw: bytes) -> None:
    with pytest.raises(MalformedEvent, match="appears more than once"):
        decode_event(raw, NOW)


def test_non_canonical_layouts_without_duplicates_still_pass() -> None:
    spaced = msgspec.json.format(WIRE, indent=2)
    assert decode_event(spaced, NOW).event == decode_event(WIRE, NOW).event


def test_the_kafka_key_must_be_the_envelopes_key() -> None:
    assert decode_record("lalin.detector", b"K01", WIRE, NOW, TOPICS).event.key == "K01"
    with pytest.raises(KeyMismatch, match="key b'K02' but the envelope's key is 'K01'"):
        decode_record("lalin.detector", b"K02", WIRE, NOW, TOPICS)
    with pytest.raises(KeyMismatch, match="no key"):
        decode_record("lalin.detector", None, WIRE, NOW, TOPICS)


def test_an_event_type_must_arrive_on_its_topic() -> None:
    with pytest.raises(WrongTopic, match="DetectorCounted arrived on 'lalin.command'; its topic is 'lalin.detector'") as err:
        decode_record("lalin.command", b"K01", WIRE, NOW, TOPICS)
    assert err.value.reason == "wrong_topic"
    assert decode_record("lalin.command", b"K01", WIRE, NOW, Limits()).event.type == "DetectorCounted"  # unchecked


def test_lalins_own_canonical_records_take_the_fast_path_unchanged() -> None:
    decoded = decode_event(WIRE, NOW)
    assert decoded.body == WIRE and encode_event(decoded.event) == WIRE
    assert decoded.event.event_time.tzinfo == UTC
    assert decode_event(WIRE, datetime(2026, 11, 24, 0, 0, 3, tzinfo=UTC)).event.seq == 1
