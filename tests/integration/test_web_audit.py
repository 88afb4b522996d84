"""The auditors' views over real HTTP on a real archive: the event log with filters, a command's provenance chain
back to the detector counts, the network state as of two instants, verification (and the map's alarm once the
archive was altered) and an export of a period that `lalin audit verify-export` accepts offline."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import msgspec
import psycopg
import pytest

from controllers.archive_plan import RawRecord
from controllers.envelope import Envelope, encode_event, make_event
from controllers.inbound import Limits
from controllers.payloads import (
    CommandAcknowledged,
    CommandIssued,
    CommandOutcome,
    ControllerFaulted,
    ControlMode,
    DetectorReading,
    DetectorsCounted,
    FaultKind,
    GroupState,
    Payload,
    Provenance,
    Severity,
    SignalInterval,
    SignalStateReported,
    TimingPlanCommand,
    VmsDisplayReported,
    VmsStatus,
    VolumeByClass,
)
from infra.accounts import Accounts
from infra.archive_store import ArchiveWriter
from infra.kafka import provision_topics, start_producer
from infra.plan_service import PlanService
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topics import load_catalogue
from infra.vms_catalogue import vms_network
from infra.web import Dashboard, LiveView
from tests.unit.test_vms_policy import summary

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # 08:00 WITA
PASSWORD = "auditor-of-badung"


class Archive:
    """Events archived through the real writer, each stream numbered."""

    def __init__(self) -> None:
        self.events: list[Envelope] = []
        self.seq: dict[tuple[str, str], int] = {}

    def add(self, payload: Payload, key: str, source: str, at: datetime, causation: uuid.UUID | None = None,
            event_id: uuid.UUID | None = None) -> Envelope:
        n = self.seq[(key, source)] = self.seq.get((key, source), 0) + 1
        event = make_event(payload, event_id=event_id or uuid.uuid4(), event_time=at, ingest_time=at, source=source,
                           key=key, seq=n, causation_id=causation)
        self.events.append(event)
        return event

    def write(self, url: str) -> None:
        catalogue = load_catalogue()
        records = [RawRecord(catalogue.topic_of_type[e.type], 0, i, e.key.encode(), encode_event(e))
                   for i, e in enumerate(self.events)]
        with psycopg.connect(url, autocommit=True) as conn:
            ArchiveWriter(conn, "test", Limits()).write(records, "epoch-1", T0 + timedelta(hours=1))  # the archive's clock


def a_decision_chain(archive: Archive) -> tuple[Envelope, Envelope, Envelope]:
    """Counts -> the minute's summary -> a timing decided from it -> its acknowledgement; reports and a fault."""
    counts = archive.add(DetectorsCounted(controller_id="K03", interval_s=60, readings=[
        DetectorReading(detector_id="K03-N-1", volume=VolumeByClass(motorcycle=30, car=9), occupancy=0.3)]),
        "K03", "modbus:K03", T0 + timedelta(seconds=55))
    measured = archive.add(msgspec.structs.replace(summary("K03", T0 + timedelta(seconds=60)),
                                                   input_event_ids=[counts.event_id]),
                           "K03", "lalin:fold", T0 + timedelta(seconds=61))
    command_id = uuid.uuid4()
    command = archive.add(CommandIssued(
        command_id=command_id, target="K03",
        command=TimingPlanCommand(plan_id=3, cycle_s=100, offset_s=0, stage_greens_s=[32, 12, 22]),
        provenance=Provenance(rule="adaptive_saturation", rule_version="3", config_checksum="a" * 64,
                              input_event_ids=[measured.event_id])), "K03", "lalin:decide", T0 + timedelta(seconds=62),
        event_id=command_id)
    archive.add(CommandAcknowledged(command_id=command_id, target="K03", outcome=CommandOutcome.ACKNOWLEDGED,
                                    detail="read back"), "K03", "modbus:K03", T0 + timedelta(seconds=70), causation=command_id)
    for minute, stage in ((1, 1), (3, 3)):
        archive.add(SignalStateReported(controller_id="K03", mode=ControlMode.CENTRAL, plan_id=3, cycle_s=100, stage=stage,
                                        stage_elapsed_s=2, group_states={"A": GroupState.GREEN},
                                        interval=SignalInterval.GREEN), "K03", "modbus:K03", T0 + timedelta(minutes=minute))
    archive.add(VmsDisplayReported(board_id="vms-sunset-03", status=VmsStatus.DISPLAYING,
                                   pages=[["KENDARAAN MOGOK", "DI SP GATSU BARAT", "HATI-HATI"]]),
                "vms-sunset-03", "opcua:vms-sunset-03", T0 + timedelta(minutes=2))
    for minute, active in ((2, True), (4, False)):
        archive.add(ControllerFaulted(controller_id="K03", fault=FaultKind.LAMP_FAILURE, severity=Severity.WARNING,
                                      active=active), "K03", "modbus:K03", T0 + timedelta(minutes=minute))
    return counts, measured, command


def test_an_auditor_explores_the_log_follows_a_command_back_sees_past_states_verifies_and_exports(
        settings: Settings, database_url: str, tmp_path: Path) -> None:
    archive = Archive()
    counts, measured, command = a_decision_chain(archive)
    archive.write(database_url)
    Accounts(database_url).add("audit.sri", "auditor", PASSWORD)
    asyncio.run(audit_session(settings, database_url, tmp_path, counts, measured, command))


async def audit_session(settings: Settings, database_url: str, tmp_path: Path, counts: Envelope, measured: Envelope,
                        command: Envelope) -> None:
    await provision_topics(settings.kafka, settings.kafka.bootstrap or "", load_catalogue())
    producer, _ = await start_producer(settings.kafka, settings.kafka.bootstrap or "")
    network = vms_network()
    clock = lambda: T0 + timedelta(minutes=10)  # noqa: E731 - the runtime's clock, passed in
    plans = PlanService(database_url, EventPublisher(producer, load_catalogue()), network.plans, {"K03": 3}, clock)
    dashboard = Dashboard(LiveView(network, lambda: None, lambda: None, clock), accounts=Accounts(database_url),
                          plans=plans, database_url=database_url)
    await dashboard.start()
    try:
        url = dashboard.url.rstrip("/")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await http.post(url + "/login", data={"username": "audit.sri", "password": PASSWORD})

            async def get(path: str, **params: str) -> str:
                async with http.get(url + path, params=params) as answer:
                    assert answer.status == 200, (path, answer.status, await answer.text())
                    return await answer.text()

            log = await get("/audit/events", type="CommandIssued", key="K03", **{"from": "2026-11-24T07:00+08:00"})
            assert f"/audit/events/{command.event_id}" in log and "adaptive_saturation" in log
            assert str(counts.event_id)[:8] not in log  # filtered out by type
            found = await get("/audit/events", text="KENDARAAN MOGOK", **{"from": "2026-11-24T07:00+08:00"})
            assert "VmsDisplayReported" in found and "CommandIssued" not in found

            why = await get(f"/audit/events/{command.event_id}")
            chain = why.split('<div id="chain">', 1)[1].split("</div>", 1)[0]
            assert f"/audit/events/{measured.event_id}" in chain and f"/audit/events/{counts.event_id}" in chain
            assert chain.index(str(measured.event_id)) < chain.index(str(counts.event_id))  # the summary, then its inputs
            assert 'id="outcome"' in why and "acknowledged by K03" in why

            early = await get("/audit/state", at="2026-11-24T08:02:30+08:00")
            late = await get("/audit/state", at="2026-11-24T08:05:00+08:00")
            assert "stage 1" in row(early, "state-K03") and "stage 3" in row(late, "state-K03")
            assert "lamp_failure" in early.split('id="faults"')[1] and "lamp_failure" not in late.split('id="faults"')[1]
            assert "KENDARAAN MOGOK / DI SP GATSU BARAT" in late

            async with http.post(url + "/audit/verify", headers={"Origin": url}) as answer:
                assert answer.status == 200 and "intact" in (await answer.text()).split('id="verification"')[1][:200]

            async with http.post(url + "/audit/export", headers={"Origin": url}, data={
                    "from": "2026-11-24T08:00+08:00", "to": "2026-11-24T08:10+08:00", "reason": "quarterly audit"}) as answer:
                assert answer.status == 200 and answer.content_type == "application/zip"
                zipfile.ZipFile(io.BytesIO(await answer.read())).extractall(tmp_path)
            checked = subprocess.run([sys.executable, "-m", "infra", "audit", "verify-export", str(tmp_path / "lalin-export")],
                                     capture_output=True, text=True, check=False)
            assert checked.returncode == 0, checked.stdout + checked.stderr

            with psycopg.connect(database_url, autocommit=True) as conn:  # altered behind the triggers' back
                conn.execute("SET session_replication_role = replica")
                altered = conn.execute("UPDATE events SET body = replace(body, 'adaptive_saturation', 'operator_override') "
                                       "WHERE event_id = %s", (command.event_id,)).rowcount
            assert altered == 1
            async with http.post(url + "/audit/verify", headers={"Origin": url}) as answer:
                assert "NOT INTACT" in await answer.text()
            async with http.get(url + "/api/state") as answer:
                alarms = (await answer.json())["alarms"]
            assert any(a.startswith("AUDIT: archive not intact") for a in alarms), alarms
    finally:
        await dashboard.stop()
        await producer.stop()


def row(html: str, row_id: str) -> str:
    return html.split(f'id="{row_id}"', 1)[1].split("</tr>", 1)[0]
