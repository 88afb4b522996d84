"""The dashboard's signal performance view on a real archive (PostgreSQL): batches archived as the drivers
write them, one copy of each entry, a loss turned into a gap, the measures and the PCD; and a real run of the
SUMO twin with the controller simulators and drivers, whose advance loops give arrivals on green."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from controllers.archive_plan import RawRecord
from controllers.envelope import encode_event, make_event
from controllers.errors import ConfigurationError
from controllers.inbound import Limits
from controllers.payloads import ControllerEventsLogged, EventCode, LoggedEvent
from controllers.signal_performance import junction_performance as measure
from controllers.traffic_state import IntersectionLayout
from devices.controller_driver import ControllerDriver
from devices.controller_sim import ControllerSimulator
from devices.events import RecordingSink
from devices.fleet import load_fleet
from devices.twin.build import STEP_LENGTH_S
from devices.twin.process import TwinProcess
from infra.archive_store import ArchiveWriter
from infra.signal_performance_view import junction_performance, merge_batches
from infra.twin_loop import TwinLoop, TwinStats

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
TRAVEL_S = 120 / (50 / 3.6)  # K03's advance loops: 120 m upstream, group B's approach speed 50 km/h: 8.64 s
SIX_WITA = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)  # Tuesday 24 November 2026, 06:00 WITA: the twin's demand begins
GREEN, YELLOW, RED = EventCode.PHASE_BEGIN_GREEN, EventCode.PHASE_BEGIN_YELLOW_CLEARANCE, EventCode.PHASE_BEGIN_RED_CLEARANCE


def cycles_of_b(n: int) -> list[LoggedEvent]:
    """``n`` 60-s cycles of K03's outbound group B (red 20 s, green 37 s, yellow 3 s), one arrival in red and two in
    green each (at 5, 25 and 30 s into the cycle: B's advance loop K03-S_TR-A1 sees them 120 m upstream, 8.64 s
    earlier at 50 km/h), and a standing queue on D's detector E_A-1 over every D green and its red."""
    items: list[tuple[float, int, str]] = []
    for k in range(n + 1):
        t = 60.0 * k
        items += [(t, RED, "B")]
        if k == n:
            break
        items += [(t + 20, GREEN, "B"), (t + 57, YELLOW, "B"), (t + 1, GREEN, "D"), (t + 15, YELLOW, "D"), (t + 18, RED, "D")]
        items += [(t + at - TRAVEL_S + dt, code, "K03-S_TR-A1") for at in (5, 25, 30)
                  for dt, code in ((0.0, EventCode.DETECTOR_ON), (0.5, EventCode.DETECTOR_OFF))]
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
    # the gap runs from the last entry read (381.86 s) to the first after the loss (435 s): B's red at 420 s was lost,
    # so 360-480 s is one cycle over the gap, left out; 8 complete cycles remain
    assert b["cycles"] == 8 and b["incomplete_cycles"] == 1
    assert (b["arrival_detectors"], b["detectors"], b["travel_times_s"]) == ("advance", ["K03-S_TR-A1", "K03-S_TR-A2"],
                                                                             [8.64, 8.64])
    assert b["arrivals"] == 24 and b["arrivals_on_green"] == 16 and b["aog_pct"] == pytest.approx(200 / 3)
    assert b["green_pct"] == pytest.approx(100 * 37 / 60) and b["platoon_ratio"] == pytest.approx((200 / 3) / (100 * 37 / 60))
    assert b["pcd_svg"].count('class="arrival"') == 24 and view["pcd_svg"].startswith("<svg")
    d = next(s for s in view["split_failures"] if s["group"] == "D")
    # the queue never clears; D's green at 421 s was lost, and the one at 361 s has its red window (378-383 s) over the
    # gap's start (381.86 s): 8 greens measured
    assert d["failures"] == d["greens"] == 8 and d["failure_pct"] == 100.0
    b_splits = next(s for s in view["split_failures"] if s["group"] == "B")
    assert b_splits["failures"] == 0


def test_an_unknown_junction_or_a_naive_period_is_refused(database_url: str) -> None:
    with pytest.raises(ConfigurationError, match="K99"):
        asyncio.run(junction_performance(database_url, "K99", T0, T0 + timedelta(hours=1)))
    with pytest.raises(ValueError, match="aware"):
        asyncio.run(junction_performance(database_url, "K03", datetime(2026, 11, 24), datetime(2026, 11, 25)))


class ManualClock:
    """Wall seconds that move only when the test moves them: the controllers and the twin advance in step."""

    def __init__(self) -> None:
        self.wall_s = 0.0

    def __call__(self) -> float:
        return self.wall_s


async def _twin_run(minutes: int) -> tuple[dict[str, list[ControllerEventsLogged]], TwinStats]:
    """The real twin from 06:00 WITA for ``minutes`` simulated minutes, every junction on its controller simulator
    (the time-of-day plans) fed by the twin's loops as in ``lalin up`` (infra.twin_loop), each read by its driver over
    Modbus TCP: the event-log batches each driver emitted, by junction."""
    clock = ManualClock()
    fleet = load_fleet()
    sims = {site.id: ControllerSimulator(site, site.load_plan(), start_at=SIX_WITA, clock=clock, log_hold_s=2.0)
            for site in fleet.controllers}
    sink = RecordingSink()
    drivers = []
    for sim in sims.values():
        await sim.start()
        driver = ControllerDriver(sim.site, sim.plan, "127.0.0.1", sim.port, sink, poll_s=0.005, heartbeat_s=0.005,
                                  clock=sim.local_time)
        await driver.start()
        drivers.append(driver)
    loop = TwinLoop(TwinProcess(seed=42, begin_s=21600.0, end_s=21600.0 + 60 * minutes + 600), sims, sink,
                    sims["K01"].local_time, step_s=STEP_LENGTH_S)
    try:
        await asyncio.wait_for(asyncio.gather(*(d.connected.wait() for d in drivers)), 10)
        await loop.start()
        for k in range(round(60 * minutes / STEP_LENGTH_S)):
            clock.wall_s += STEP_LENGTH_S  # controllers at speed 1 on this clock: one twin step per simulated second
            await loop.catch_up()
            if k % 5 == 0:
                await asyncio.sleep(0.01)  # the drivers poll and read the logs
        for _ in range(10):  # the last entries are committed 2 s after they happen and read at the next poll
            clock.wall_s += 1.0
            await asyncio.sleep(0.05)
    finally:
        await loop.stop()
        for driver in drivers:
            await driver.stop()
        for sim in sims.values():
            await sim.stop()
    by_junction: dict[str, list[ControllerEventsLogged]] = {}
    for batch in sink.payloads(ControllerEventsLogged):
        by_junction.setdefault(batch.controller_id, []).append(batch)
    return by_junction, loop.stats


def test_a_real_twin_run_measures_arrivals_on_the_advance_loops_not_the_stop_line_discharge(database_url: str) -> None:
    """20 simulated minutes of the twin under the time-of-day plans (06:00-06:20 WITA, AM peak, 130-s cycles). At the
    stop line vehicles cross only in green or yellow, so a stop-line AoG is ~100 % whatever the progression; the
    advance loops 120 m upstream see the arrivals, vehicles queued in red among them."""
    batches, stats = asyncio.run(_twin_run(20))
    assert stats.pulses > 5000 and set(batches) == {"K01", "K02", "K03", "K04", "K05"}
    start, end = SIX_WITA + timedelta(minutes=4), SIX_WITA + timedelta(minutes=17)
    measured = []
    for site in load_fleet().controllers:
        entries, gaps, lost = merge_batches(batches[site.id], SIX_WITA)
        assert lost == 0 and gaps == []
        advance_ids = {d.id for d in site.detector_list() if d.kind == "advance"}
        assert advance_ids <= {e.param for e in entries if e.code == EventCode.DETECTOR_ON}  # every advance loop pulsed
        stop_line_only = IntersectionLayout.of(site.id, site.load_plan(), [
            (d.id, d.movement, d.lane) for d in site.detector_list() if d.kind == "stop_line"])
        with_advance = measure(site.layout(), entries, start, end)
        at_stop_line = measure(stop_line_only, entries, start, end)
        for adv, line in zip(with_advance.coordinated, at_stop_line.coordinated, strict=True):
            assert (adv.arrival_detectors, line.arrival_detectors) == ("advance", "stop_line")
            assert len(adv.cycles) >= 4 and adv.arrivals > 50 and line.arrivals > 50
            measured.append((site.id, adv.group, line.aog_pct, adv.aog_pct))
    print("\nAoG % (stop line -> advance):", ", ".join(f"{j}/{g} {a:.1f} -> {b:.1f}" for j, g, a, b in measured))
    # the stop-line "arrivals" are the discharge: practically all in green or yellow's first seconds
    assert all(line_aog is not None and line_aog > 95.0 for *_, line_aog, _ in measured)
    # the advance loops see vehicles arriving in red too, for every coordinated group
    assert all(adv_aog is not None and adv_aog < 90.0 for *_, adv_aog in measured)
    # the dashboard's call, from the archive, says where K01's arrivals came from and the shift applied
    archive_junction(database_url, "K01", batches["K01"])
    view = asyncio.run(junction_performance(database_url, "K01", start, end))
    assert [(g["group"], g["arrival_detectors"], g["detectors"], g["travel_times_s"]) for g in view["coordinated"]] == [
        ("B", "advance", ["K01-S_TR-A1", "K01-S_TR-A2"], [8.64, 8.64]),
        ("A", "advance", ["K01-N_T-A1", "K01-N_T-A2"], [8.64, 8.64])]
    k01 = [m for m in measured if m[0] == "K01"]
    assert [round(g["aog_pct"], 6) for g in view["coordinated"]] == [round(m[3], 6) for m in k01]


def archive_junction(url: str, junction: str, batches: list[ControllerEventsLogged]) -> None:
    records = []
    for k, batch in enumerate(batches):
        at = batch.entries[-1].at + timedelta(seconds=1) if batch.entries else SIX_WITA
        event = make_event(batch, event_id=uuid.uuid4(), event_time=at, ingest_time=at, source=f"modbus:{junction}",
                           key=junction, seq=k + 1)
        records.append(RawRecord("lalin.hires", 0, k, junction.encode(), encode_event(event)))
    with psycopg.connect(url, autocommit=True) as conn:
        ArchiveWriter(conn, "test", Limits()).write(records, "epoch-1", SIX_WITA + timedelta(hours=2))
