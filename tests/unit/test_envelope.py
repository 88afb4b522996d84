"""The envelope: round trips, strict validation, upcasting in one place."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers import upcasting
from controllers.envelope import decode_archived, decode_event, encode_event, make_event
from controllers.errors import EventOutOfBounds, MalformedEvent, OversizedEvent, UnknownEventType
from controllers.event_types import EVENT_TYPES
from controllers.payloads import (
    CameraObserved,
    CommandIssued,
    DetectorCounted,
    Incident,
    IncidentKind,
    Provenance,
    TimeWindow,
    TimingPlanCommand,
    VolumeByClass,
)
from tests.helpers import T0, detector_event

NOW = T0 + timedelta(days=1)

volumes = st.builds(VolumeByClass, motorcycle=st.integers(0, 100_000), car=st.integers(0, 100_000),
                    heavy=st.integers(0, 100_000))
identifiers = st.from_regex(r"[A-Za-z0-9_.:\-]{1,32}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False)
detector_payloads = st.builds(
    DetectorCounted, detector_id=identifiers, interval_s=st.floats(0.001, 3600), volume=volumes,
    occupancy=st.floats(0, 1), mean_speed_kmh=st.none() | st.floats(0, 250), lane=st.none() | identifiers)
camera_payloads = st.builds(
    CameraObserved, camera_id=identifiers, approach=identifiers, interval_s=st.floats(0.001, 3600), counts=volumes,
    queue_length_m=st.floats(0, 10_000),
    incident=st.none() | st.builds(Incident, kind=st.sampled_from(IncidentKind), confidence=st.floats(0, 1)))
times = st.datetimes(min_value=datetime(2026, 11, 18, 12), max_value=datetime(2026, 11, 24),  # within 7 days of NOW
                     timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))]))


@settings(max_examples=300)
@given(payload=st.one_of(detector_payloads, camera_payloads), at=times, seq=st.integers(1, 2**62),
       source=identifiers, key=identifiers)
def test_every_valid_event_survives_the_wire_and_the_archive(payload, at, seq, source, key) -> None:
    event = make_event(payload, event_id=uuid.uuid4(), event_time=at, ingest_time=at, source=source, key=key, seq=seq)
    wire = encode_event(event)
    decoded = decode_event(wire, NOW)
    assert decoded.event == event
    assert decoded.body == wire  # stored byte for byte
    assert decode_archived(decoded.body) == event
    assert encode_event(decoded.event) == wire  # lalin's own encoding is canonical: a fixed point
    assert decoded.event.event_time.tzinfo == UTC


@given(at=times)
def test_records_are_kept_byte_for_byte_whatever_their_layout(at) -> None:
    event = detector_event(1, at=at.astimezone(UTC))
    obj = msgspec.json.decode(encode_event(event))
    reordered = b"{\n " + b",\n ".join(msgspec.json.encode(k) + b": " + msgspec.json.encode(obj[k]) for k in reversed(obj)) + b"}"
    decoded = decode_event(reordered, NOW)
    assert decoded.body == reordered
    assert decoded.event == event


def _wire(**changes: object) -> dict:
    obj = msgspec.json.decode(encode_event(detector_event(1)))
    for path, value in changes.items():
        target = obj
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return obj


@pytest.mark.parametrize(("changes", "needle"), [
    ({"payload__occupancy": 1.7}, "<= 1.0"),
    ({"payload__occupancy": -0.1}, ">= 0.0"),
    ({"payload__volume__car": -1}, ">= 0"),
    ({"payload__mean_speed_kmh": 1e308}, "<= 250"),
    ({"payload__interval_s": 0}, "> 0"),
    ({"payload__colour": "red"}, "unknown field `colour`"),
    ({"extra": 1}, "unknown field `extra`"),
    ({"event_time": "2026-11-24T00:00:00"}, "timezone"),
    ({"seq": 0}, ">= 1"),
    ({"source": "x" * 129}, "length <= 128"),
    ({"source": "bad source!"}, "matching regex"),
    ({"payload__detector_id": "d" * 65}, "length <= 64"),
    ({"event_id": "not-a-uuid"}, "UUID"),
    ({"payload__volume__car": True}, "got `bool`"),
])
def test_out_of_bounds_values_are_refused_with_the_field_named(changes, needle) -> None:
    with pytest.raises(EventOutOfBounds) as err:
        decode_event(msgspec.json.encode(_wire(**changes)), NOW)
    assert needle in str(err.value)
    assert err.value.reason == "schema"


def test_events_from_the_future_are_refused_but_small_clock_skew_is_tolerated() -> None:
    ahead = (NOW + timedelta(seconds=4)).isoformat()
    assert decode_event(msgspec.json.encode(_wire(event_time=ahead, ingest_time=ahead)), NOW)
    too_far = (NOW + timedelta(seconds=30)).isoformat()
    with pytest.raises(EventOutOfBounds, match="30.000 s ahead"):
        decode_event(msgspec.json.encode(_wire(event_time=too_far)), NOW)


@pytest.mark.parametrize("raw", [b"", b"{", b"[1, 2]", b'"text"', b"\xff\xfe", b'{"a": NaN}', b"null"])
def test_malformed_records(raw) -> None:
    with pytest.raises(MalformedEvent) as err:
        decode_event(raw, NOW)
    assert err.value.reason == "malformed"


def test_oversized_records_are_refused_before_parsing() -> None:
    with pytest.raises(OversizedEvent, match="70000 bytes, over the cap of 65536"):
        decode_event(b" " * 70_000, NOW)


def test_unknown_types_and_versions() -> None:
    with pytest.raises(UnknownEventType, match="'Teleported'"):
        decode_event(msgspec.json.encode(_wire(type="Teleported")), NOW)
    with pytest.raises(UnknownEventType, match="version 9"):
        decode_event(msgspec.json.encode(_wire(schema_version=9)), NOW)


def test_commands_carry_provenance_and_validate_it() -> None:
    command = CommandIssued(
        command_id=uuid.uuid4(), target="K01",
        command=TimingPlanCommand(plan_id=3, cycle_s=90.0, offset_s=12.0, stage_greens_s=[30.0, 25.0, 15.0]),
        provenance=Provenance(rule="webster", rule_version="1.0", config_checksum="a" * 64,
                              input_event_ids=[uuid.uuid4()], input_window=TimeWindow(T0, T0 + timedelta(minutes=5)),
                              operator="engineer:made", reason="morning peak"))
    event = make_event(command, event_id=uuid.uuid4(), event_time=T0, ingest_time=T0, source="core:timing", key="K01", seq=1)
    assert decode_event(encode_event(event), NOW).event == event
    wire = msgspec.json.decode(encode_event(event))
    wire["payload"]["provenance"]["config_checksum"] = "not-hex"
    with pytest.raises(EventOutOfBounds, match="config_checksum"):
        decode_event(msgspec.json.encode(wire), NOW)


def test_upcasting_happens_in_one_place_on_read(monkeypatch) -> None:
    """A v1 record archived long ago is read as v2 through the registered step."""
    class DetectorCountedV2(DetectorCounted, frozen=True, forbid_unknown_fields=True):
        direction: str = "unknown"

    v1_record = msgspec.json.encode(_wire())
    monkeypatch.setitem(EVENT_TYPES, "DetectorCounted", (2, DetectorCountedV2))
    monkeypatch.setitem(upcasting.UPCASTERS, ("DetectorCounted", 1), lambda p: {**p, "direction": "northbound"})
    event = decode_archived(v1_record)
    assert event.schema_version == 2
    assert event.payload.direction == "northbound"
    monkeypatch.delitem(upcasting.UPCASTERS, ("DetectorCounted", 1))
    with pytest.raises(UnknownEventType, match="no upcaster for DetectorCounted v1 -> v2"):
        decode_archived(v1_record)


def test_make_event_refuses_naive_times() -> None:
    with pytest.raises(EventOutOfBounds, match="timezone-aware"):
        make_event(detector_event(1).payload, event_id=uuid.uuid4(), event_time=datetime(2026, 1, 1),
                   ingest_time=T0, source="s", key="k", seq=1)
