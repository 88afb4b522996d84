"""The plan workflow's shell: folds the workflow's events from the archive at start, publishes each step as an
event (and the deployment's timing as a command on ``lalin.command``, which the executor hands to the
controller's driver), and logs what people do in the web surfaces (logins, refusals) as ``OperatorActed``.

One :class:`PlanService` lives in the runtime that serves the web pages; its registry (the pure
:class:`controllers.plan_workflow.PlanRegistry`) answers the pages and the executor's hold check. A step is
applied to the registry only after the broker acknowledged its event, under one lock, so two people acting
at once see each other's steps in order.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import psycopg

from controllers.envelope import Envelope, decode_archived
from controllers.payloads import CommandIssued, OperatorActed, Payload, PlanReviewed, ReviewDecision
from controllers.plan import Plan
from controllers.plan_replay import PLANS_SOURCE, check_plan_workflow
from controllers.plan_workflow import PlanRegistry, deployment, propose, release, review, schedule_step
from controllers.replay import ReplayReport
from infra.publisher import EventPublisher

log = logging.getLogger(__name__)
WORKFLOW_TYPES = ("PlanProposed", "PlanReviewed", "PlanDeployed", "PlanHoldReleased", "PlanTimingScheduled")
#: How often (wall s) the held junctions' schedules are looked at; a schedule entry starts on the minute.
SCHEDULE_CHECK_S = 1.0
SOURCE_PREFIX = "web:"
WEB_KEY = "web"


def replay_plans(conn: psycopg.Connection[Any], until: datetime, plans: Mapping[str, Plan],
                 plan_numbers: Mapping[str, int]) -> ReplayReport:
    """The plan workflow's check of ``lalin replay`` (:mod:`controllers.plan_replay`) on the archive before ``until``."""
    rows = conn.execute("""SELECT body FROM events WHERE event_time < %s
                             AND (type = ANY(%s) OR (type = 'CommandIssued' AND source = %s)
                                  OR (type = 'CommandAcknowledged' AND body::jsonb -> 'payload' ->> 'command_id' IN (
                                        SELECT event_id::text FROM events WHERE type = 'CommandIssued' AND source = %s)))
                           ORDER BY event_time, position""",
                        (until, list(WORKFLOW_TYPES), PLANS_SOURCE, PLANS_SOURCE)).fetchall()
    return check_plan_workflow((decode_archived(body.encode()) for (body,) in rows), plans, plan_numbers)


class PlanService:
    """The workflow's registry and the publishing of its steps (see the module docstring)."""

    def __init__(self, database_url: str, publisher: EventPublisher, plans: Mapping[str, Plan],
                 plan_numbers: Mapping[str, int], clock: Callable[[], datetime]) -> None:
        """``plans``: the catalogued plan of every junction; ``plan_numbers``: each controller's number of it."""
        self.database_url, self.publisher, self.clock = database_url, publisher, clock
        self.plan_numbers = dict(plan_numbers)
        self.registry = PlanRegistry(plans=dict(plans))
        self._lock = asyncio.Lock()

    async def load(self) -> int:
        """Fold the workflow's archived events (and continue the web sources' numbering); returns the events folded."""
        async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
            await self.publisher.resume_from_archive(conn, SOURCE_PREFIX + "%")
            await self.publisher.resume_from_archive(conn, PLANS_SOURCE)
            cur = await conn.execute("SELECT body FROM events WHERE type = ANY(%s) ORDER BY event_time, position",
                                     (list(WORKFLOW_TYPES),))
            rows = await cur.fetchall()
        folded = 0
        for (body,) in rows:
            folded += self.registry.apply(decode_archived(body.encode()))
        return folded

    async def _publish(self, payload: Payload, *, key: str, source: str, event_id: uuid.UUID | None = None,
                       causation_id: uuid.UUID | None = None, at: datetime | None = None) -> Envelope:
        """Publish one step (event time ``at``: the instant it was computed for, default now) and fold it."""
        now = at or self.clock()
        topic, event = self.publisher.build(payload, source=source, key=key, event_time=now, ingest_time=now,
                                            event_id=event_id or uuid.uuid4(), causation_id=causation_id)
        await (await self.publisher.send(topic, event))  # acknowledged by the broker before it counts
        self.registry.apply(event)
        return event

    async def act(self, operator: str, action: str, target: str, reason: str, **detail: str) -> Envelope:
        """Log what a person did (or was refused) as an ``OperatorActed`` event."""
        payload = OperatorActed(operator=operator, action=action, target=target[:64] or "-", reason=reason[:500],
                                detail={k: v[:500] for k, v in detail.items()})
        return await self._publish(payload, key=WEB_KEY, source=SOURCE_PREFIX + operator)

    async def propose(self, plan_id: str, candidate: Plan, *, base_version: int, author: str, reason: str) -> Envelope:
        """Publish a proposal (ProposalRefused naming every problem: nothing is published then)."""
        async with self._lock:
            payload = propose(self.registry, plan_id, candidate, base_version=base_version, author=author, reason=reason,
                              proposal_id=uuid.uuid4())
            return await self._publish(payload, key=plan_id, source=SOURCE_PREFIX + author)

    async def review(self, proposal_id: uuid.UUID, *, reviewer: str, approve: bool, reason: str,
                     hold: bool = True) -> tuple[Envelope, Envelope | None]:
        """A second engineer's decision; an approval deploys at once: the review and the deployment events."""
        async with self._lock:
            decision = ReviewDecision.APPROVED if approve else ReviewDecision.REJECTED
            payload: PlanReviewed = review(self.registry, proposal_id, reviewer=reviewer, decision=decision, reason=reason)
            reviewed = await self._publish(payload, key=payload.plan_id, source=SOURCE_PREFIX + reviewer)
            deployed = await self._deploy(proposal_id, hold) if approve else None
            return reviewed, deployed

    async def deploy(self, proposal_id: uuid.UUID, *, hold: bool = True) -> Envelope:
        """Deploy an approved proposal whose deployment was not recorded (the runtime stopped in between)."""
        async with self._lock:
            return await self._deploy(proposal_id, hold)

    async def _publish_step(self, payload: Payload, command: CommandIssued | None, *, key: str, source: str,
                            at: datetime) -> Envelope:
        """Publish a workflow step computed for instant ``at`` and then the command it caused (source
        ``lalin:plans``, its event id the command id, caused by the step's event); returns the step's event."""
        event = await self._publish(payload, key=key, source=source, at=at)
        if command is not None:
            await self._publish(command, key=key, source=PLANS_SOURCE, event_id=command.command_id,
                                causation_id=event.event_id, at=at)
        return event

    async def _deploy(self, proposal_id: uuid.UUID, hold: bool) -> Envelope:
        plan_id = self.registry.proposals[proposal_id].proposed.plan_id
        at = self.clock()  # one instant for the step and its events: a replay re-computes it at the event time
        payload, command = deployment(self.registry, proposal_id, at=at,
                                      plan_number=self.plan_numbers.get(plan_id, 1), command_id=uuid.uuid4(), hold=hold)
        return await self._publish_step(payload, command, key=plan_id, source=PLANS_SOURCE, at=at)

    async def follow_schedules(self) -> list[Envelope]:
        """Each held junction runs its deployed version's schedule: where the timing the schedule runs now is not
        the one last sent, or the last command timed out (its acknowledgement read from the archive first),
        publish ``PlanTimingScheduled`` and its command (provenance: the deployment, and the acknowledgement of
        a command sent again). Returns the ``PlanTimingScheduled`` events published."""
        published = []
        async with self._lock:
            await self._fold_outcomes()
            for plan_id in sorted(self.registry.holds):
                at = self.clock()
                step = schedule_step(self.registry, plan_id, at=at, plan_number=self.plan_numbers.get(plan_id, 1),
                                     command_id=uuid.uuid4())
                if step is None:
                    continue
                scheduled, command = step
                event = await self._publish_step(scheduled, command, key=plan_id, source=PLANS_SOURCE, at=at)
                log.info("junction %s (held on version %d): its schedule runs %s now", plan_id, scheduled.version,
                         scheduled.timing)
                published.append(event)
        return published

    async def _fold_outcomes(self) -> None:
        """Fold the archived acknowledgement of each hold's last command not known to have ended yet."""
        waiting = {hold.command_id: plan_id for plan_id, hold in self.registry.holds.items()
                   if hold.command_id is not None and hold.outcome is None}
        if not waiting:
            return
        async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
            cur = await conn.execute(
                """SELECT body FROM events WHERE type = 'CommandAcknowledged' AND key = ANY(%s)
                     AND body::jsonb -> 'payload' ->> 'command_id' = ANY(%s)""",
                (sorted(set(waiting.values())), [str(c) for c in waiting]))
            rows = await cur.fetchall()
        for (body,) in rows:
            self.registry.apply(decode_archived(body.encode()))

    async def release(self, plan_id: str, *, operator: str, reason: str) -> Envelope:
        """End the hold on ``plan_id`` and hand the controller back to its own time-of-day plan (ProposalRefused
        when it is not held)."""
        async with self._lock:
            at = self.clock()
            payload, command = release(self.registry, plan_id, operator=operator, reason=reason, command_id=uuid.uuid4())
            return await self._publish_step(payload, command, key=plan_id, source=SOURCE_PREFIX + operator, at=at)

    async def outcome(self, command_id: uuid.UUID) -> dict[str, Any] | None:
        """What became of a deployment's command: the executor's record (outcome, detail) or None if unseen."""
        async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
            cur = await conn.execute("SELECT outcome, detail, finished_at FROM command_executions WHERE command_id = %s",
                                     (command_id,))
            row = await cur.fetchone()
        if row is None:
            return None
        return {"outcome": row[0] or "under way", "detail": row[1], "finished_at": row[2].isoformat() if row[2] else None}

