"""The Modbus controller simulator and driver over real TCP on loopback: commands end in exactly
one outcome, nothing is reported done unless read back, faults and connection changes become
events, and crashes in the middle of commands neither lose, double nor falsely acknowledge one.

Simulated controllers run 20x faster than the wall clock (a 130 s cycle takes 6.5 s), so the
driver's heartbeat and polls are scaled the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from pymodbus.client import AsyncModbusTcpClient, AsyncModbusTlsClient
from pymodbus.exceptions import ModbusException

from controllers.payloads import (
    CommandAcknowledged,
    CommandOutcome,
    ControllerFaulted,
    ControlMode,
    DetectorsCounted,
    FaultKind,
    ModeChangeCommand,
    ResetFaultCommand,
    SignalStateReported,
    TimingPlanCommand,
)
from devices.controller_driver import ControllerDriver
from devices.controller_protocol import PreparedCommand, command_registers, plan_checksum32
from devices.controller_sim import ControllerSimulator
from devices.events import RecordingSink
from devices.fleet import ControllerSite, load_fleet
from devices.register_map import decode, load_register_map
from infra.vms_catalogue import vms_network
from infra.web import LiveView

SPEED = 20.0
TUESDAY_NOON = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)  # 12:00 WITA: K01's local schedule runs OFF_PEAK (100 s)
SITE = load_fleet().site("K01")
PLAN = SITE.load_plan()
REGMAP = load_register_map()
AM_PEAK = TimingPlanCommand(plan_id=1, cycle_s=130, offset_s=0, stage_greens_s=[44, 26, 26])
OFF_PEAK = TimingPlanCommand(plan_id=1, cycle_s=100, offset_s=0, stage_greens_s=[30, 12, 24])


@contextlib.asynccontextmanager
async def controller(speed: float = SPEED, site: ControllerSite = SITE,
                     **driver_options: float) -> AsyncIterator[tuple[ControllerSimulator, ControllerDriver, RecordingSink]]:
    sim = ControllerSimulator(site, PLAN, speed=speed, start_at=TUESDAY_NOON)
    await sim.start()
    sink = RecordingSink()
    options = {"poll_s": 0.05, "heartbeat_s": 0.1, "request_timeout_s": 0.5, "reconnect_min_s": 0.05,
               "reconnect_max_s": 0.4, **driver_options}
    driver = ControllerDriver(site, PLAN, "127.0.0.1", sim.port, sink, **options)  # type: ignore[arg-type]
    await driver.start()
    try:
        await asyncio.wait_for(driver.connected.wait(), 5)
        yield sim, driver, sink
    finally:
        await driver.stop()
        await sim.stop()


def outcomes(sink: RecordingSink, command_id: uuid.UUID) -> list[CommandAcknowledged]:
    return [a for a in sink.payloads(CommandAcknowledged) if a.command_id == command_id]


def faults(sink: RecordingSink, kind: FaultKind) -> list[bool]:
    return [f.active for f in sink.payloads(ControllerFaulted) if f.fault == kind]


def assert_streams_are_numbered_without_gaps(sink: RecordingSink) -> None:
    assert all(event.source == "modbus:K01" and event.key == "K01" for event in sink.events)
    for seqs in _streams(sink).values():
        assert seqs == list(range(1, len(seqs) + 1))


def _streams(sink: RecordingSink) -> dict[str, list[int]]:
    from infra.topics import load_catalogue

    topic_of = load_catalogue().topic_of_type
    streams: dict[str, list[int]] = {}
    for event in sink.events:
        streams.setdefault(f"{topic_of[event.type]}/{event.key}/{event.source}", []).append(event.seq)
    return streams


def test_a_timing_waits_for_the_cycle_boundary_and_is_acknowledged_once_read_back() -> None:
    async def scenario() -> None:
        async with controller() as (sim, driver, sink):
            command_id = uuid.uuid4()
            sending = asyncio.create_task(driver.send(command_id, AM_PEAK, deadline_s=15))
            await sink.wait_for(SignalStateReported, timeout_s=5)
            await asyncio.sleep(0.3)
            assert not sending.done() and sim.state.pending_seq > 0  # accepted, not yet running
            assert sim.state.timing.cycle_s == 100
            ack = await sending
            assert ack.outcome == CommandOutcome.ACKNOWLEDGED and "cycle 130 s" in ack.detail
            assert sim.state.timing.cycle_s == 130 and sim.state.mode == "central"
            assert [command for _, command in sim.carried_out] == ["apply_timing"]
            running = await sink.wait_for(SignalStateReported, lambda s: s.cycle_s == 130)
            assert running.mode == ControlMode.CENTRAL and running.plan_checksum == f"{plan_checksum32(PLAN):08x}"
            assert outcomes(sink, command_id) == [ack]
        assert_streams_are_numbered_without_gaps(sink)

    asyncio.run(scenario())


def test_an_unsafe_timing_is_refused_by_the_driver_and_never_sent() -> None:
    async def scenario() -> None:
        async with controller() as (sim, driver, sink):
            unsafe = TimingPlanCommand(plan_id=1, cycle_s=100, offset_s=0, stage_greens_s=[4, 38, 24])
            assert sink.payloads(CommandAcknowledged) == []
            ack = await driver.send(uuid.uuid4(), unsafe)
            assert ack.outcome == CommandOutcome.REJECTED
            assert "refused by lalin before sending" in ack.detail and "green_below_minimum" in ack.detail
            other_plan = await driver.send(uuid.uuid4(), TimingPlanCommand(plan_id=7, cycle_s=100, offset_s=0,
                                                                           stage_greens_s=[30, 12, 24]))
            assert "runs plan 1" in other_plan.detail
            assert sim.carried_out == [] and sim.state.last_seq == 0  # nothing reached the controller
            assert len(sink.payloads(CommandAcknowledged)) == 2

    asyncio.run(scenario())


def test_the_controller_itself_refuses_unsafe_or_foreign_timings_with_exception_3() -> None:
    """The controller's own check, for a central that skipped its: exception 03 and a reason register."""

    async def scenario() -> None:
        sim = ControllerSimulator(SITE, PLAN, speed=SPEED, start_at=TUESDAY_NOON)
        await sim.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=1, retries=0)
        try:
            await client.connect()
            unsafe = PreparedCommand("apply_timing", plan_number=1, plan_checksum=plan_checksum32(PLAN), cycle_ds=1000,
                                     greens_ds=(40, 380, 240))
            foreign = PreparedCommand("apply_timing", plan_number=1, plan_checksum=0xDEADBEEF, cycle_ds=1000,
                                      greens_ds=(300, 120, 240))
            reasons = []
            for seq, command in ((1, unsafe), (2, foreign)):
                response = await client.write_registers(0, command_registers(REGMAP, command, seq), device_id=1)
                assert response.isError() and response.exception_code == 3
                status = await client.read_input_registers(0, count=REGMAP.span("input"), device_id=1)
                fields = decode(REGMAP, "input", status.registers)
                assert fields["rejected_seq"] == seq and fields["applied_seq"] == 0 and fields["pending_seq"] == 0
                reasons.append(fields["reject_reason"])
            assert reasons == ["green_below_minimum", "plan_checksum_mismatch"]
            partial = await client.write_registers(0, [3, 1, 1], device_id=1)  # half a command block
            assert partial.isError() and partial.exception_code == 3
            assert sim.carried_out == [] and sim.state.timing == PLAN.timings["OFF_PEAK"]
        finally:
            client.close()
            await sim.stop()

    asyncio.run(scenario())


def test_a_lost_heartbeat_falls_back_to_the_local_plan_and_is_reported() -> None:
    async def scenario() -> None:
        sim = ControllerSimulator(SITE, PLAN, speed=SPEED, start_at=TUESDAY_NOON)
        await sim.start()
        sink = RecordingSink()
        options = {"poll_s": 0.05, "heartbeat_s": 0.1, "reconnect_min_s": 0.05}
        driver = ControllerDriver(SITE, PLAN, "127.0.0.1", sim.port, sink, **options)  # type: ignore[arg-type]
        await driver.start()
        try:
            assert (await driver.send(uuid.uuid4(), AM_PEAK, deadline_s=15)).outcome == CommandOutcome.ACKNOWLEDGED
            await driver.stop()  # the central goes quiet: no more heartbeats
            await asyncio.sleep(SITE.backup_time_s / SPEED + 0.2)
            assert sim.state.mode == "local_tod" and "central_heartbeat_lost" in sim.state.faults
            await asyncio.sleep(2 * 130 / SPEED)  # the local plan takes over at a cycle boundary
            assert sim.state.timing.cycle_s != 130
            driver = ControllerDriver(SITE, PLAN, "127.0.0.1", sim.port, sink, **options)  # type: ignore[arg-type]
            await driver.start()
            lost = await sink.wait_for(ControllerFaulted, lambda f: f.fault == FaultKind.WATCHDOG and f.active)
            assert "central_heartbeat_lost" in lost.detail
            await sink.wait_for(ControllerFaulted, lambda f: f.fault == FaultKind.WATCHDOG and not f.active)
            local = await sink.wait_for(SignalStateReported, lambda s: s.mode == ControlMode.TIME_OF_DAY)
            assert local.cycle_s != 130
            ack = await driver.send(uuid.uuid4(), AM_PEAK, deadline_s=15)  # a new command takes control back
            assert ack.outcome == CommandOutcome.ACKNOWLEDGED and sim.state.mode == "central"
        finally:
            await driver.stop()
            await sim.stop()

    asyncio.run(scenario())


def test_detector_pulses_become_counts_and_occupancy_per_interval() -> None:
    async def scenario() -> None:
        async with controller(speed=1.0, count_interval_s=1.0) as (sim, _, sink):
            first = await sink.wait_for(DetectorsCounted, timeout_s=5)
            assert [r.volume.total_veh for r in first.readings] == [0] * len(SITE.detector_list())
            start = len(sink.events)
            for _ in range(6):
                sim.detector_pulse(0, occupied_s=0.1)
            sim.detector_pulse(3, occupied_s=0.4)
            counted = await sink.wait_for(DetectorsCounted, lambda d: sum(r.volume.total_veh for r in d.readings) > 0,
                                          after=start)
            assert counted.controller_id == "K01"
            by_id = {r.detector_id: r for r in counted.readings}
            assert [r.detector_id for r in counted.readings] == [d.id for d in SITE.detector_list()]  # register order
            assert by_id["K01-N_T-1"].volume.unclassified == 6 and by_id["K01-S_TR-1"].volume.unclassified == 1
            assert by_id["K01-N_T-1"].lane == "N_T/1"
            assert abs(by_id["K01-N_T-1"].occupancy - 0.6 / counted.interval_s) < 0.11
            assert sum(r.volume.total_veh for r in counted.readings) == 7

    asyncio.run(scenario())


def test_device_faults_conflict_latch_and_reset_are_events() -> None:
    async def scenario() -> None:
        async with controller() as (sim, driver, sink):
            sim.set_fault("lamp_failure", True)
            await sink.wait_for(ControllerFaulted, lambda f: f.fault == FaultKind.LAMP_FAILURE and f.active)
            sim.set_fault("lamp_failure", False)
            await sink.wait_for(ControllerFaulted, lambda f: f.fault == FaultKind.LAMP_FAILURE and not f.active)
            sim.inject_conflict()
            conflict = await sink.wait_for(ControllerFaulted, lambda f: f.fault == FaultKind.CONFLICT and f.active)
            assert conflict.severity == "critical"
            await sink.wait_for(SignalStateReported, lambda s: s.mode == ControlMode.FLASH)
            refused = await driver.send(uuid.uuid4(), AM_PEAK, deadline_s=5)
            assert refused.outcome == CommandOutcome.REJECTED and "fault_latched" in refused.detail
            reset = await driver.send(uuid.uuid4(), ResetFaultCommand(), deadline_s=5)
            assert reset.outcome == CommandOutcome.ACKNOWLEDGED
            await sink.wait_for(ControllerFaulted, lambda f: f.fault == FaultKind.CONFLICT and not f.active)
            flash = await driver.send(uuid.uuid4(), ModeChangeCommand(mode=ControlMode.FLASH), deadline_s=15)
            assert flash.outcome == CommandOutcome.ACKNOWLEDGED, flash.detail  # at the cycle boundary
            assert sim.state.interval == "flash"
            back = await driver.send(uuid.uuid4(), ModeChangeCommand(mode=ControlMode.TIME_OF_DAY), deadline_s=5)
            assert back.outcome == CommandOutcome.ACKNOWLEDGED and sim.state.interval == "startup"
            assert faults(sink, FaultKind.CONFLICT) == [True, False]

    asyncio.run(scenario())


def test_an_acknowledgement_with_something_else_running_is_a_mismatch_not_a_success() -> None:
    async def scenario() -> None:
        async with controller() as (sim, driver, sink):
            sim.faulty_apply = True  # a firmware bug: sets applied_seq, keeps the old timing
            ack = await driver.send(uuid.uuid4(), AM_PEAK, deadline_s=15)
            assert ack.outcome == CommandOutcome.REJECTED and "read-back mismatch" in ack.detail
            assert faults(sink, FaultKind.READBACK_MISMATCH) == [True]
            # the map's alarm list shows lalin's own finding (no fault bit of the controller reports it) while active
            view = LiveView(vms_network(), lambda: SimpleNamespace(drivers=[driver], board_drivers=[]), lambda: None,
                            driver.clock)
            assert any(a.startswith(f"{driver.site.id}: readback_mismatch: ") for a in view.state()["alarms"])
            sim.faulty_apply = False
            assert (await driver.send(uuid.uuid4(), AM_PEAK, deadline_s=15)).outcome == CommandOutcome.ACKNOWLEDGED
            assert faults(sink, FaultKind.READBACK_MISMATCH) == [True, False]
            assert not any("readback_mismatch" in a for a in view.state()["alarms"])

    asyncio.run(scenario())


def test_a_write_answered_too_late_is_applied_once_and_acknowledged_from_the_read_back() -> None:
    """The case that made lalin set retries=0: a slow controller acts, then answers after the timeout."""

    async def scenario() -> None:
        async with controller(request_timeout_s=0.3) as (sim, driver, sink):
            sim.response_delay_s = 0.6
            command_id = uuid.uuid4()
            sending = asyncio.create_task(driver.send(command_id, OFF_PEAK, deadline_s=20))
            await asyncio.sleep(1.0)
            sim.response_delay_s = 0.0
            ack = await sending
            assert ack.outcome == CommandOutcome.ACKNOWLEDGED
            assert sim.command_writes == 1 and len(sim.carried_out) == 1  # written once, never re-sent
            assert outcomes(sink, command_id) == [ack]

    asyncio.run(scenario())


def test_a_controller_crash_and_power_cycle_mid_command_neither_loses_nor_doubles_it() -> None:
    async def scenario() -> None:
        async with controller() as (sim, driver, sink):
            command_id = uuid.uuid4()
            sending = asyncio.create_task(driver.send(command_id, AM_PEAK, deadline_s=20))
            await asyncio.sleep(0.3)
            assert sim.state.pending_seq > 0  # accepted, pending the cycle boundary
            await sim.stop()  # crash ...
            await asyncio.sleep(0.5)
            sim.carried_out.clear()
            await sim.start(power_cycle=True)  # ... and a cold start: the pending timing is gone
            ack = await sending
            assert ack.outcome == CommandOutcome.ACKNOWLEDGED, ack.detail
            assert sim.state.timing.cycle_s == 130
            assert [command for _, command in sim.carried_out] == ["apply_timing"]  # sent again once, taken once
            assert outcomes(sink, command_id) == [ack]
            assert faults(sink, FaultKind.COMMS_LOST) == [True, False]
            assert sim.command_writes == 2  # once before the crash, once more into the controller that forgot it
            restart = [f for f in sink.payloads(ControllerFaulted) if f.fault == FaultKind.RESTARTED]
            assert len(restart) == 1 and "restarted" in restart[0].detail
        assert_streams_are_numbered_without_gaps(sink)

    asyncio.run(scenario())


def test_a_communications_restart_mid_command_keeps_the_pending_timing_and_acknowledges_once() -> None:
    patient = SITE.model_copy(update={"backup_time_s": 120})  # the outage must not trip the heartbeat fallback

    async def scenario() -> None:
        async with controller(site=patient) as (sim, driver, sink):
            command_id = uuid.uuid4()
            sending = asyncio.create_task(driver.send(command_id, AM_PEAK, deadline_s=20))
            await asyncio.sleep(0.3)
            await sim.stop()  # the comms card restarts; the controller keeps running
            await asyncio.sleep(0.5)
            await sim.start()
            ack = await sending
            assert ack.outcome == CommandOutcome.ACKNOWLEDGED, ack.detail
            assert [command for _, command in sim.carried_out] == ["apply_timing"] and sim.command_writes == 1
            assert outcomes(sink, command_id) == [ack]

    asyncio.run(scenario())


def test_a_controller_that_stays_down_times_the_command_out_once_and_never_acknowledges_it_later() -> None:
    async def scenario() -> None:
        async with controller() as (sim, driver, sink):
            await sim.stop()
            command_id = uuid.uuid4()
            ack = await driver.send(command_id, AM_PEAK, deadline_s=1.5)
            assert ack.outcome == CommandOutcome.TIMED_OUT
            await sim.start(power_cycle=True)
            await sink.wait_for(ControllerFaulted, lambda f: f.fault == FaultKind.COMMS_LOST and not f.active)
            await asyncio.sleep(0.5)
            assert outcomes(sink, command_id) == [ack] and sim.carried_out == [] and sim.command_writes == 0

    asyncio.run(scenario())


def test_a_command_that_landed_before_the_link_died_is_timed_out_once_and_its_late_application_reported() -> None:
    """The write reached the controller (pending), then the link stayed down past the deadline: the
    outcome is timed_out, never a late acknowledgement; when the controller is seen running it, an
    alarm says so, naming the command."""
    patient = SITE.model_copy(update={"backup_time_s": 600})

    async def scenario() -> None:
        async with controller(site=patient) as (sim, driver, sink):
            command_id = uuid.uuid4()
            sending = asyncio.create_task(driver.send(command_id, AM_PEAK, deadline_s=1.0))
            while sim.state.pending_seq == 0:
                await asyncio.sleep(0.01)
            await sim.stop()  # the link dies; the controller keeps running and applies it at the boundary
            ack = await sending
            assert ack.outcome == CommandOutcome.TIMED_OUT
            await asyncio.sleep(130 / SPEED)
            await sim.start()
            late = await sink.wait_for(ControllerFaulted, lambda f: f.fault == FaultKind.LATE_APPLICATION)
            assert str(command_id) in late.detail and "cycle 130 s" in late.detail
            assert outcomes(sink, command_id) == [ack] and sim.command_writes == 1

    asyncio.run(scenario())


def test_stopping_the_driver_ends_a_command_in_flight_at_once() -> None:
    async def scenario() -> None:
        async with controller() as (sim, driver, sink):
            await sim.stop()
            command_id = uuid.uuid4()
            sending = asyncio.create_task(driver.send(command_id, AM_PEAK, deadline_s=300))
            await asyncio.sleep(0.3)
            started = asyncio.get_running_loop().time()
            await driver.stop()
            ack = await asyncio.wait_for(sending, 2)
            assert ack.outcome == CommandOutcome.TIMED_OUT and "stopped" in ack.detail
            assert asyncio.get_running_loop().time() - started < 2
            assert outcomes(sink, command_id) == [ack]

    asyncio.run(scenario())


def test_a_latched_conflict_survives_a_power_cycle() -> None:
    async def scenario() -> None:
        async with controller() as (sim, driver, sink):
            sim.inject_conflict()
            await sink.wait_for(ControllerFaulted, lambda f: f.fault == FaultKind.CONFLICT and f.active)
            await sim.stop()
            await sim.start(power_cycle=True)
            await sink.wait_for(ControllerFaulted, lambda f: f.fault == FaultKind.RESTARTED)
            assert sim.state.interval == "flash" and "conflict_monitor" in sim.state.faults
            assert [f.active for f in sink.payloads(ControllerFaulted) if f.fault == FaultKind.CONFLICT] == [True]
            refused = await driver.send(uuid.uuid4(), AM_PEAK, deadline_s=5)
            assert refused.outcome == CommandOutcome.REJECTED and "fault_latched" in refused.detail

    asyncio.run(scenario())


def test_on_nyepi_the_local_schedule_flashes_and_the_driver_reports_it() -> None:
    async def scenario() -> None:
        nyepi_morning = datetime(2027, 3, 9, 0, 0, tzinfo=UTC)  # 08:00 WITA on Nyepi, Saka 1949
        sim = ControllerSimulator(SITE, PLAN, speed=SPEED, start_at=nyepi_morning)
        await sim.start()
        sink = RecordingSink()
        driver = ControllerDriver(SITE, PLAN, "127.0.0.1", sim.port, sink, poll_s=0.05, heartbeat_s=0.1)
        await driver.start()
        try:
            state = await sink.wait_for(SignalStateReported)
            assert state.mode == ControlMode.TIME_OF_DAY and state.interval == "flash"
            assert set(state.group_states.values()) == {"flashing_amber", "dark"}  # pedestrian signals dark
        finally:
            await driver.stop()
            await sim.stop()

    asyncio.run(scenario())


def test_modbus_tcp_security_accepts_the_site_client_and_refuses_rogue_expired_and_anonymous_ones(tmp_path: Path) -> None:
    """Modbus/TCP Security (TLS, mutual certificates from `lalin pki init`): only the site's client gets an answer."""
    from devices.pki import (
        Profile,
        client_ssl_context,
        init_pki,
        issue_expired_certificate,
        issue_rogue_certificate,
        server_ssl_context,
    )

    pki = tmp_path / "pki"
    init_pki(pki, board_ids=[])
    rogue = issue_rogue_certificate(tmp_path, Profile.MODBUS_CLIENT)
    expired = issue_expired_certificate(pki, tmp_path, Profile.MODBUS_CLIENT)
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.load_verify_locations(cafile=str(pki / "ca" / "ca.pem"))

    async def answered(port: int, context: ssl.SSLContext) -> bool:
        client = AsyncModbusTlsClient("127.0.0.1", port=port, sslctx=context, timeout=1, retries=0, reconnect_delay=0)
        try:
            if not await client.connect():
                return False
            response = await client.read_input_registers(0, count=10, device_id=1)
            return not response.isError()
        except ModbusException:
            return False
        finally:
            client.close()

    async def scenario() -> None:
        sim = ControllerSimulator(SITE, PLAN, speed=SPEED, start_at=TUESDAY_NOON, sslctx=server_ssl_context(pki))
        await sim.start()
        sink = RecordingSink()
        driver = ControllerDriver(SITE, PLAN, "127.0.0.1", sim.port, sink, sslctx=client_ssl_context(pki), poll_s=0.05,
                                  heartbeat_s=0.1)
        await driver.start()
        try:
            ack = await driver.send(uuid.uuid4(), AM_PEAK, deadline_s=15)
            assert ack.outcome == CommandOutcome.ACKNOWLEDGED
            for name, context in (("rogue", client_ssl_context(pki, rogue)), ("expired", client_ssl_context(pki, expired)),
                                  ("no certificate", anonymous)):
                assert not await answered(sim.port, context), f"a {name} client got an answer"
            assert await answered(sim.port, client_ssl_context(pki))
            assert len(sim.carried_out) == 1
        finally:
            await driver.stop()
            await sim.stop()

    asyncio.run(scenario())


class FlakySink(RecordingSink):
    """A sink that fails once, as a broker client can: the driver must go on."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    async def emit(self, payload, **kwargs):  # type: ignore[no-untyped-def, override]
        if isinstance(payload, SignalStateReported) and self.failures == 0:
            self.failures += 1
            raise RuntimeError("the sink failed once")
        return await super().emit(payload, **kwargs)


def test_the_poller_outlives_a_failing_sink() -> None:
    async def scenario() -> None:
        sim = ControllerSimulator(SITE, PLAN, speed=SPEED, start_at=TUESDAY_NOON)
        await sim.start()
        sink = FlakySink()
        driver = ControllerDriver(SITE, PLAN, "127.0.0.1", sim.port, sink, poll_s=0.05, heartbeat_s=0.1,
                                  reconnect_min_s=0.05)
        await driver.start()
        try:
            await sink.wait_for(SignalStateReported, timeout_s=5)  # reported after the failure
            assert sink.failures == 1
            ack = await driver.send(uuid.uuid4(), AM_PEAK, deadline_s=15)
            assert ack.outcome == CommandOutcome.ACKNOWLEDGED
        finally:
            await driver.stop()
            await sim.stop()

    asyncio.run(scenario())
