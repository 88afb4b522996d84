"""The dashboard's signal performance view on a real archive (PostgreSQL): batches archived as the drivers
write them, one copy of each entry, a loss turned into a gap, the measures and the PCD."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from controllers.archive_plan import Limits, RawRecord
from controllers.envelope import encode_event, make_event
from controllers.errors import ConfigurationError
from controllers.payloads import ControllerEventsLogged, EventCode, LoggedEvent
from infra.archive_store import ArchiveWriter
from infra.signal_performance_view import junction_performance

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
GREEN, YELLOW, RED = EventCode.PHASE_BEGIN_GREEN, EventCode.PHASE_BEGIN_YELLOW_CLEARANCE, EventCode.PHASE_BEGIN_RED_CLEARANCE


def cycles_of_b(n: int) -> list[LoggedEvent]:
    """``n`` 60-s cycles of K03's outbound group B (red 20 s, green 37 s, yellow 3 s), one arrival in red and two in
    green each on K03-S_TR-1, and a standing queue on D's detector E_A-1 over every D green and its red."""
    items: list[tuple[float, int, str]] = []
    for k in range(n + 1):
        t = 60.0 * k
        items += [(t, RED, "B")]
        if k == n:
            break
        items += [(t + 20, GREEN, "B"), (t + 57, YELLOW, "B"), (t + 5, EventCode.DETECTOR_ON, "K03-S_TR-1"),
                  (t + 5.5, EventCode.DETECTOR_OFF, "K03-S_TR-1"), (t + 25, EventCode.DETECTOR_ON, "K03-S_TR-1"),
                  (t + 25.5, EventCode.DETECTOR_OFF, "K03-S_TR-1"), (t + 30, EventCode.DETECTOR_ON, "K03-S_TR-1"),
                  (t + 30.5, EventCode.DETECTOR_OFF, "K03-S_TR-1"),
                  (t + 1, GREEN, "D"), (t + 15, YELLOW, "D"), (t + 18, RED, "D")]
    items += [(0.5, EventCode.DETECTOR_ON, "K03-E_A-1"), (60.0 * n + 30, EventCode.DETECTOR_OFF, "K03-E_A-1")]
    return [LoggedEvent(seq=k + 1, code=c, param=p, at=T0 + timedelta(seconds=t)) for k, (t, c, p) in enumerate(sorted(items))]


def archive(url: str, batches: list[ControllerEventsLogged]) -> None:
    records = []
    for k, batch in enumerate(batches):
        at = batch.entries[-1].at + timedelta(seconds=1)
        event = make_event(batch, event_id=uuid.uuid4(), event_time=at, ingest_time=at, source="modbus:K03", key="K03",
                           seq=k + 1)
        records.append(RawRecord("lalin.hires", 0, k, b"K03", encode_event(event)))
    with psycopg.connect(url, autocommit=True) as conn:
        ArchiveWriter(conn, "test", Limits()).write(records, "epoch-1", T0 + timedelta(hours=2))


def test_the_view_reads_the_archive_keeps_one_copy_and_leaves_out_cycles_over_a_loss(database_url: str) -> None:
    entries = cycles_of_b(10)  # 10 cycles from T0
    cut = next(k for k, e in enumerate(entries) if e.at >= T0 + timedelta(seconds=400))
    resumed = next(k for k, e in enumerate(entries) if e.at >= T0 + timedelta(seconds=430))
    archive(database_url, [
        ControllerEventsLogged("K03", 1, entries[:cut]),
        ControllerEventsLogged("K03", 1, entries[:cut]),  # a restarted driver read the ring again
        ControllerEventsLogged("K03", 1, entries[resumed:], lost=resumed - cut),  # the ring overflowed meanwhile
    ])
    view = asyncio.run(junction_performance(database_url, "K03", T0, T0 + timedelta(minutes=10)))
    b = view["coordinated"][0]
    assert b["group"] == "B" and view["lost_entries"] == resumed - cut
    assert view["entries"] == len(entries) - (resumed - cut)  # the duplicate batch counted once
    # the gap runs from the last entry read (390.5 s) to the first after the loss (430 s): B's red at 420 s was lost,
    # so 360-480 s is one cycle over the gap, left out; 8 complete cycles remain
    assert b["cycles"] == 8 and b["incomplete_cycles"] == 1
    assert b["arrivals"] == 24 and b["arrivals_on_green"] == 16 and b["aog_pct"] == pytest.approx(200 / 3)
    assert b["green_pct"] == pytest.approx(100 * 37 / 60) and b["platoon_ratio"] == pytest.approx((200 / 3) / (100 * 37 / 60))
    assert b["pcd_svg"].count('class="arrival"') == 24 and view["pcd_svg"].startswith("<svg")
    d = next(s for s in view["split_failures"] if s["group"] == "D")
    assert d["failures"] == d["greens"] == 9 and d["failure_pct"] == 100.0  # the queue never clears (421 s: lost)
    b_splits = next(s for s in view["split_failures"] if s["group"] == "B")
    assert b_splits["failures"] == 0


def test_an_unknown_junction_or_a_naive_period_is_refused(database_url: str) -> None:
    with pytest.raises(ConfigurationError, match="K99"):
        asyncio.run(junction_performance(database_url, "K99", T0, T0 + timedelta(hours=1)))
    with pytest.raises(ValueError, match="aware"):
        asyncio.run(junction_performance(database_url, "K03", datetime(2026, 11, 24), datetime(2026, 11, 25)))
