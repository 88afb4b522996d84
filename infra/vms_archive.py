"""The automatic VMS as the archive records it: the evaluations with their inputs and commands (for
``lalin replay`` and ``lalin vms explain``), and each board's picture now (``lalin vms status``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg

from controllers.envelope import Envelope, decode_archived
from controllers.payloads import CommandIssued, VmsDisplayReported, VmsEvaluated, VmsFaulted
from controllers.replay import ReplayReport
from controllers.vms_config import BoardSite
from controllers.vms_policy import VmsPolicy
from controllers.vms_replay import check_vms
from infra.vms_catalogue import load_policy, vms_checksum, vms_network
from infra.vms_loop import VMS_SOURCE

ID_CHUNK = 5000  # event ids per query


class VmsRecord(msgspec.Struct):
    """The recorded evaluations, the events they cite and the commands the policy issued."""

    evaluations: list[Envelope]
    inputs: dict[uuid.UUID, Envelope]
    commands: dict[uuid.UUID, CommandIssued]


def _events_by_id(conn: psycopg.Connection[Any], ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Envelope]:
    out: dict[uuid.UUID, Envelope] = {}
    for start in range(0, len(ids), ID_CHUNK):
        for (body,) in conn.execute("SELECT body FROM events WHERE event_id = ANY(%s)", (list(ids[start:start + ID_CHUNK]),)):
            event = decode_archived(body.encode())
            out[event.event_id] = event
    return out


def load_vms_record(conn: psycopg.Connection[Any], until: datetime) -> VmsRecord:
    """The evaluations recorded before ``until``, their cited inputs and the VMS commands."""
    evaluations = [decode_archived(body.encode()) for (body,) in conn.execute(
        "SELECT body FROM events WHERE type = 'VmsEvaluated' AND event_time < %s ORDER BY event_time, position", (until,))]
    cited = sorted({i for e in evaluations if isinstance(e.payload, VmsEvaluated) for i in e.payload.input_event_ids})
    commands = {}
    for (body,) in conn.execute("SELECT body FROM events WHERE type = 'CommandIssued' AND source = %s AND event_time < %s",
                                (VMS_SOURCE, until)):
        payload = decode_archived(body.encode()).payload
        if isinstance(payload, CommandIssued):
            commands[payload.command_id] = payload
    return VmsRecord(evaluations, _events_by_id(conn, cited), commands)


def replay_vms(conn: psycopg.Connection[Any], until: datetime, *, upto: int | None = None) -> tuple[ReplayReport, VmsPolicy]:
    """Re-run the recorded evaluations before ``until`` (up to number ``upto``) on the catalogued policy and network."""
    record = load_vms_record(conn, until)
    policy, network = load_policy(), vms_network()
    return check_vms(record.evaluations, record.inputs, record.commands, policy, network, vms_checksum(policy, network),
                     upto=upto)


def _payload(body: str) -> Any:
    return decode_archived(body.encode()).payload


def _outcomes(conn: psycopg.Connection[Any], board_id: str, command_ids: Sequence[uuid.UUID]) -> dict[str, str]:
    """The outcome of each of ``command_ids`` (commands to ``board_id``) that has one."""
    if not command_ids:
        return {}
    rows = conn.execute("""SELECT body::jsonb -> 'payload' ->> 'command_id', body::jsonb -> 'payload' ->> 'outcome'
                             FROM events WHERE type = 'CommandAcknowledged' AND key = %s
                              AND body::jsonb -> 'payload' ->> 'command_id' = ANY(%s)""",
                        (board_id, [str(i) for i in command_ids])).fetchall()
    return {str(command_id): str(outcome) for command_id, outcome in rows}


def _command_summary(command: CommandIssued, outcome: str | None) -> dict[str, Any]:
    return {"command_id": str(command.command_id), "kind": type(command.command).__name__.removesuffix("Command")
            .replace("Vms", "vms_").lower(), "rule": command.provenance.rule, "reason": command.provenance.reason,
            "operator": command.provenance.operator, "config_checksum": command.provenance.config_checksum,
            "inputs": [str(i) for i in command.provenance.input_event_ids], "body": msgspec.to_builtins(command.command),
            "outcome": outcome}


def board_status(conn: psycopg.Connection[Any], boards: Sequence[BoardSite]) -> list[dict[str, Any]]:
    """Every board as the archive knows it: its last display report, its active faults, the latest evaluation's
    decision for it and the last command lalin's policy sent it (with its outcome)."""
    display = {key: _payload(body) for key, body in conn.execute(
        "SELECT DISTINCT ON (key) key, body FROM events WHERE type = 'VmsDisplayReported' "
        "ORDER BY key, event_time DESC, position DESC")}
    faults: dict[str, list[dict[str, Any]]] = {}
    for key, body in conn.execute(
            "SELECT DISTINCT ON (key, body::jsonb -> 'payload' ->> 'fault') key, body FROM events WHERE type = 'VmsFaulted' "
            "ORDER BY key, body::jsonb -> 'payload' ->> 'fault', event_time DESC, position DESC"):
        fault = _payload(body)
        if isinstance(fault, VmsFaulted) and fault.active:
            faults.setdefault(key, []).append({"fault": fault.fault.value, "severity": fault.severity.value,
                                               "detail": fault.detail})
    row = conn.execute("SELECT body FROM events WHERE type = 'VmsEvaluated' ORDER BY event_time DESC, position DESC "
                       "LIMIT 1").fetchone()
    latest = _payload(row[0]) if row else None
    decisions = {b.board_id: b for b in latest.boards} if isinstance(latest, VmsEvaluated) else {}
    commands = {key: _payload(body) for key, body in conn.execute(
        "SELECT DISTINCT ON (key) key, body FROM events WHERE type = 'CommandIssued' AND source = %s "
        "ORDER BY key, event_time DESC, position DESC", (VMS_SOURCE,))}
    out = []
    for board in boards:
        shown, decision, command = display.get(board.id), decisions.get(board.id), commands.get(board.id)
        outcome = _outcomes(conn, board.id, [command.command_id]) if isinstance(command, CommandIssued) else {}
        out.append({
            "board_id": board.id,
            "display": {"status": shown.status.value, "pages": shown.pages, "message_id": shown.message_id,
                        "priority": shown.priority} if isinstance(shown, VmsDisplayReported) else None,
            "faults": faults.get(board.id, []),
            "decision": {"cause": decision.cause, "category": decision.category, "action": decision.action.value,
                         "why": decision.why, "since": decision.since.isoformat() if decision.since else None}
            if decision is not None else None,
            "evaluated_at": latest.at.isoformat() if isinstance(latest, VmsEvaluated) else None,
            "last_command": _command_summary(command, outcome.get(str(command.command_id)))
            if isinstance(command, CommandIssued) else None})
    return out


def explain_board(conn: psycopg.Connection[Any], board_id: str, at: datetime | None) -> dict[str, Any] | None:
    """Why ``board_id`` shows (or showed at ``at``) what it shows: the evaluation in force then, the board's decision,
    its cause with evidence and inputs, the commands and their outcomes, and whether re-running every evaluation up to
    it reproduces it (None: no evaluation recorded by then)."""
    until = at + timedelta(microseconds=1) if at is not None else datetime(9999, 1, 1, tzinfo=UTC)
    record = load_vms_record(conn, until)
    numbered = [e for e in record.evaluations if isinstance(e.payload, VmsEvaluated)]
    if not numbered:
        return None
    last = max(numbered, key=lambda e: (e.payload.evaluation if isinstance(e.payload, VmsEvaluated) else 0, -e.seq))
    evaluation = last.payload
    assert isinstance(evaluation, VmsEvaluated)
    policy, network = load_policy(), vms_network()
    report, _ = check_vms(record.evaluations, record.inputs, record.commands, policy, network,
                          vms_checksum(policy, network), upto=evaluation.evaluation)
    decision = next((b for b in evaluation.boards if b.board_id == board_id), None)
    if decision is None:
        return None
    cause = next((c for c in evaluation.causes if c.cause == decision.cause), None)
    ids = [i for i in evaluation.commands if (c := record.commands.get(i)) is not None and c.target == board_id]
    if decision.message_id is not None and decision.message_id not in ids:
        ids.insert(0, decision.message_id)
    outcomes = _outcomes(conn, board_id, ids)
    commands = [_command_summary(record.commands[i], outcomes.get(str(i))) for i in ids if i in record.commands]
    verified = (f"re-running the {report.vms_evaluations_checked} recorded evaluations up to this one reproduces them "
                "and their commands bit for bit") if report.ok else \
        f"NOT reproduced: {report.differences[0].detail}"
    return {"board_id": board_id, "at": evaluation.at.isoformat(), "evaluation": evaluation.evaluation,
            "config_checksum": evaluation.config_checksum, "decision": msgspec.to_builtins(decision),
            "cause": msgspec.to_builtins(cause) if cause is not None else None, "commands": commands,
            "problems": [p for p in evaluation.problems if p.startswith(board_id)], "verified": verified,
            "reproduced": report.ok}
