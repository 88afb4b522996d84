"""A held junction runs its deployed version's schedule, on real parts: a Tansu broker, PostgreSQL, lalin's
controller simulator (Modbus TCP) and driver, the command executor with the hold check, and the plan service.
Two engineers deploy a retimed AM peak for K01 held shortly before its schedule's 09:30 entry (OFF_PEAK); at
09:30 the service publishes ``PlanTimingScheduled`` and the OFF_PEAK timing with provenance back to the
deployment, the hold lets it through, and the controller reports it; an adaptive timing published like the
decision loop's ends rejected at the executor; the release hands the controller back to its own plan."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from controllers.payloads import CommandIssued, PlanTimingScheduled, Provenance, TimingPlanCommand
from controllers.plan_workflow import hold_refusal
from devices.controller_driver import ControllerDriver
from devices.controller_sim import ControllerSimulator
from devices.events import PublisherSink
from devices.fleet import load_fleet
from infra.broker_epoch import EpochWatch
from infra.commands import CommandExecutor
from infra.kafka import start_producer
from infra.plan_service import PlanService
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.simclock import SimClock
from infra.topics import load_catalogue
from tests.helpers import wait_until

pytestmark = pytest.mark.integration
SPEED = 20.0  # simulated (and controller) seconds per wall second
START = datetime(2026, 11, 24, 1, 28, 0, tzinfo=UTC)  # Tuesday 09:28:00 WITA: K01's schedule runs AM_PEAK until 09:30
SITE = load_fleet().site("K01")
PLAN = SITE.load_plan()


def test_a_held_junction_runs_its_deployed_schedule_and_the_controller_applies_each_entry(settings: Settings) -> None:
    bootstrap, database_url = settings.kafka.bootstrap, settings.database.url
    assert bootstrap is not None and database_url is not None

    async def scenario() -> None:
        producer, _ = await start_producer(settings.kafka, bootstrap)
        clocks = [SimClock.starting(START, SPEED)]  # started again at 09:28:00 once everything runs

        def clock() -> datetime:
            return clocks[0]()

        watch = EpochWatch(settings.kafka, bootstrap, load_catalogue(), owner="test")
        await watch.start()
        epoch = await watch.establish(producer, clock())
        await watch.stop()
        publisher = EventPublisher(producer, load_catalogue())
        sim = ControllerSimulator(SITE, PLAN, speed=SPEED, start_at=START)
        await sim.start()
        driver = ControllerDriver(SITE, PLAN, "127.0.0.1", sim.port, PublisherSink(publisher), poll_s=0.1,
                                  heartbeat_s=0.2, clock=clock)
        plans = PlanService(database_url, publisher, {"K01": PLAN}, {"K01": SITE.plan_number}, clock)
        executor = CommandExecutor(settings, bootstrap, database_url, epoch, {"K01": driver}, clock,
                                   refuse=lambda command: hold_refusal(plans.registry.holds, command))
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            await driver.start()
            await executor.start()
            tasks.append(asyncio.create_task(executor.run(stop)))
            clocks[0] = SimClock.starting(START, SPEED)
            am = PLAN.timings["AM_PEAK"]
            candidate = PLAN.model_copy(update={"timings": {**PLAN.timings, "AM_PEAK": am.model_copy(update={
                "stage_greens_s": {**am.stage_greens_s, "S1": am.stage_greens_s["S1"] + 4,
                                   "S3": am.stage_greens_s["S3"] - 4}})}})
            proposal = await plans.propose("K01", candidate, base_version=PLAN.version, author="eng.ayu",
                                           reason="AM peak: 4 s more for Sunset Road")
            proposal_id = proposal.payload.proposal_id  # type: ignore[attr-defined]
            _, deployed = await plans.review(proposal_id, reviewer="eng.made", approve=True, reason="checked")
            assert deployed is not None and deployed.payload.timing == "AM_PEAK"  # type: ignore[attr-defined]
            assert clock() < START.replace(minute=30), "deployed after 09:30: the machine is too slow for this test"
            assert await plans.follow_schedules() == []  # nothing changes before 09:30

            scheduled: list[PlanTimingScheduled] = []

            async def off_peak_scheduled() -> bool:
                scheduled.extend(e.payload for e in await plans.follow_schedules())  # type: ignore[misc]
                return bool(scheduled)

            await wait_until(off_peak_scheduled, 120 / SPEED + 10, "the 09:30 schedule entry at the held junction")
            assert clock() >= START.replace(minute=30) and [s.timing for s in scheduled] == ["OFF_PEAK"]
            assert scheduled[0].version == 2 and scheduled[0].command_id is not None
            off = PLAN.timings["OFF_PEAK"]

            async def controller_runs_off_peak() -> bool:
                status = driver.status
                return status is not None and status.control_mode == "central" and status.cycle_ds == off.cycle_s * 10 and [
                    g / 10 for g in status.greens_ds[:status.n_stages]] == [off.stage_greens_s[s] for s in PLAN.sequence]

            await wait_until(controller_runs_off_peak, 2 * am.cycle_s / SPEED + 20, "K01 reporting OFF_PEAK")
            # the adaptive strategy's timing, published like the decision loop's, ends rejected at the executor
            adaptive = CommandIssued(command_id=uuid.uuid4(), target="K01", command=TimingPlanCommand(
                plan_id=SITE.plan_number, cycle_s=off.cycle_s, offset_s=0, stage_greens_s=[40, 20, 20]),
                provenance=Provenance(rule="adaptive_saturation", rule_version="3", config_checksum="0" * 64))
            topic, event = publisher.build(adaptive, source="lalin:decide", key="K01", event_time=clock(),
                                           ingest_time=clock(), event_id=adaptive.command_id)
            await (await publisher.send(topic, event))

            def ended(command_id: uuid.UUID, outcome: str) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    record = await plans.outcome(command_id)
                    return record is not None and record["outcome"] == outcome
                return check

            await wait_until(ended(adaptive.command_id, "rejected"), 20, "the adaptive timing refused at the held K01")
            refusal = await plans.outcome(adaptive.command_id)
            assert refusal is not None and "held: junction K01 runs plan version 2" in refusal["detail"]
            # both commands ended acknowledged in the executor's record: the deployment's and the schedule's
            deployment_command = deployed.payload.command_id  # type: ignore[attr-defined]
            for command_id in (deployment_command, scheduled[0].command_id):
                await wait_until(ended(command_id, "acknowledged"), 20, f"command {command_id} acknowledged")
            # the release hands the controller back to its own time-of-day plan
            released = await plans.release("K01", operator="op.wayan", reason="AM peak over")
            handback = released.payload.command_id  # type: ignore[attr-defined]
            await wait_until(ended(handback, "acknowledged"), 20, "the release's hand-back acknowledged")
            assert "K01" not in plans.registry.holds

            async def local_plan() -> bool:
                return driver.status is not None and driver.status.control_mode == "local_tod"

            await wait_until(local_plan, 10, "K01 on its own time-of-day plan")
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await executor.stop()
            await driver.stop()
            await sim.stop()
            await producer.stop()

    asyncio.run(scenario())
