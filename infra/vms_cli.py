"""``lalin vms``: what each board shows and why, and operator messages.

::

    lalin vms status [--json]
    lalin vms send BOARD TEXT --until T --reason R [--operator NAME]
    lalin vms cancel BOARD --reason R [--operator NAME]
    lalin vms explain BOARD [--at T] [--json]

``send`` and ``cancel`` publish an ``OperatorActed`` (who, why, the text and its expiry) to
``lalin.operator``: the policy of the running ``lalin up`` carries it out as the board's
highest priority until it expires (docs/vms.md). ``status`` and ``explain`` read the archive;
``explain`` re-runs the recorded evaluations up to the one it shows and says whether they
reproduce it bit for bit.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import psycopg

from controllers.payloads import IDENTIFIER_PATTERN, OperatorActed
from controllers.vms_config import BoardSite
from controllers.vms_state import CANCEL_ACTION, SEND_ACTION
from controllers.vms_text import operator_pages, order_problem
from infra.cli_common import (
    data_dir_option,
    database_option,
    database_url_for,
    emit,
    parse_duration_s,
    parse_time,
    settings_for,
)
from infra.kafka import start_producer
from infra.publisher import EventPublisher
from infra.runfile import read_info
from infra.simclock import SimClock
from infra.topics import load_catalogue
from infra.vms_archive import board_status, explain_board
from infra.vms_catalogue import board_sites, load_policy

_OPERATOR = re.compile(IDENTIFIER_PATTERN)


@click.group()
def vms() -> None:
    """The automatic VMS: what each board shows and why; operator messages."""


def _board(board_id: str) -> BoardSite:
    boards = {b.id: b for b in board_sites()}
    if board_id not in boards:
        raise click.BadParameter(f"no board {board_id!r}; the boards are {', '.join(sorted(boards))}")
    return boards[board_id]


def _operator(name: str | None) -> str:
    operator = name or os.environ.get("LALIN_OPERATOR") or getpass.getuser()
    if not _OPERATOR.match(operator):
        raise click.BadParameter(f"operator {operator!r}: 1 to 64 letters, digits or _.:-/@")
    return operator


def _reason(text: str) -> str:
    if not 3 <= len(text.strip()) <= 500:
        raise click.BadParameter("a reason of 3 to 500 characters is required (it is logged with the order)")
    return text.strip()


def _runtime_clock(data_dir: Path) -> tuple[datetime, str | None]:
    """Now on the running lalin's clock (its simulated clock in a closed-loop demo), and its broker."""
    info = read_info(data_dir)
    clock = SimClock.from_env(info.get("clock")) if info and info.get("clock") else None
    bootstrap = info["kafka"]["bootstrap"] if info else None
    return (clock() if clock is not None else datetime.now(UTC)), bootstrap


def _until(text: str, now: datetime) -> datetime:
    """``--until``: a duration from now (30m, 2h) or an ISO 8601 time with zone."""
    try:
        return now + timedelta(seconds=parse_duration_s(text))
    except click.BadParameter:
        return parse_time(text)


async def _publish(data_dir: Path | None, payload: OperatorActed, now: datetime, bootstrap: str | None,
                   database_url: str) -> uuid.UUID:
    settings = settings_for(data_dir)
    broker = settings.kafka.bootstrap or bootstrap
    if not broker:
        raise click.ClickException("no broker: start `lalin up`, or set LALIN_KAFKA__BOOTSTRAP")
    producer, _ = await start_producer(settings.kafka, broker)
    try:
        publisher = EventPublisher(producer, load_catalogue())
        source = f"cli:{payload.operator}"
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await publisher.resume_from_archive(conn, source)
        topic, event = publisher.build(payload, source=source, key=payload.target, event_time=now, ingest_time=now,
                                       event_id=uuid.uuid4())
        await (await publisher.send(topic, event))
        return event.event_id
    finally:
        await producer.stop()


@vms.command("send")
@data_dir_option
@database_option
@click.argument("board_id", metavar="BOARD")
@click.argument("text")
@click.option("--until", "until_text", required=True, help="how long: a duration (30m, 2h) or an ISO 8601 time with zone")
@click.option("--reason", required=True, help="why (logged with the order; 3 to 500 characters)")
@click.option("--operator", default=None, help="who [default: LALIN_OPERATOR, else the login name]")
def send(data_dir: Path | None, database_url: str | None, board_id: str, text: str, until_text: str, reason: str,
         operator: str | None) -> None:
    """Show TEXT on BOARD until --until, above every automatic message. TEXT: pages split by |, lines by /
    (e.g. "JALAN DITUTUP/PUTAR BALIK|ROAD CLOSED/TURN BACK")."""
    board = _board(board_id)
    pages = operator_pages(text)
    settings = settings_for(data_dir)
    now, bootstrap = _runtime_clock(settings.runtime.data_dir)
    until = _until(until_text, now)
    problem = order_problem(board, pages, load_policy().display.page_time_s, now, until)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="TEXT" if "does not fit" in problem else "--until")
    payload = OperatorActed(operator=_operator(operator), action=SEND_ACTION, target=board_id, reason=_reason(reason),
                            detail={"text": "|".join("/".join(lines) for lines in pages), "until": until.isoformat()})
    url = database_url_for(settings, database_url)
    order = asyncio.run(_publish(data_dir, payload, now, bootstrap, url))
    click.echo(f"order {order}: {board_id} shows {' | '.join(' / '.join(p) for p in pages)} until {until.isoformat()} "
               f"(operator {payload.operator}); `lalin vms status` shows when the board confirms it")


@vms.command("cancel")
@data_dir_option
@database_option
@click.argument("board_id", metavar="BOARD")
@click.option("--reason", required=True, help="why (logged; 3 to 500 characters)")
@click.option("--operator", default=None, help="who [default: LALIN_OPERATOR, else the login name]")
def cancel(data_dir: Path | None, database_url: str | None, board_id: str, reason: str, operator: str | None) -> None:
    """End the operator messages on BOARD: the automatic ones take over."""
    _board(board_id)
    settings = settings_for(data_dir)
    now, bootstrap = _runtime_clock(settings.runtime.data_dir)
    payload = OperatorActed(operator=_operator(operator), action=CANCEL_ACTION, target=board_id, reason=_reason(reason))
    order = asyncio.run(_publish(data_dir, payload, now, bootstrap, database_url_for(settings, database_url)))
    click.echo(f"order {order}: operator messages on {board_id} cancelled (operator {payload.operator})")


@vms.command("status")
@data_dir_option
@database_option
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(data_dir: Path | None, database_url: str | None, as_json: bool) -> None:
    """Every board: what it reports showing, its active faults, what lalin keeps on it and why, the last command."""
    url = database_url_for(settings_for(data_dir), database_url)
    with psycopg.connect(url) as conn:
        rows = board_status(conn, board_sites())
    lines = []
    for row in rows:
        shown = " | ".join(" / ".join(p) for p in row["display"]["pages"]) if row["display"] else "no report yet"
        lines.append(f"{row['board_id']}: {row['display']['status'] if row['display'] else 'unknown'} — {shown}")
        if row["faults"]:
            lines.append(f"  ALARM faults: {', '.join(f['fault'] + ' (' + f['detail'] + ')' for f in row['faults'])}")
        decision = row["decision"]
        if decision is not None:
            lines.append(f"  lalin: {decision['cause'] or 'nothing'} — {decision['action']}: {decision['why']}")
        command = row["last_command"]
        if command is not None:
            lines.append(f"  last command {command['command_id']} ({command['kind']}, {command['rule']}): "
                         f"{command['outcome'] or 'no outcome yet'}")
    emit(rows, as_json, "\n".join(lines) or "no boards")


@vms.command("explain")
@data_dir_option
@database_option
@click.argument("board_id", metavar="BOARD")
@click.option("--at", "at_text", default=None, help="as of this instant (ISO 8601 with zone) [default: the latest]")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def explain(data_dir: Path | None, database_url: str | None, board_id: str, at_text: str | None, as_json: bool) -> None:
    """Why BOARD shows (or showed, --at) its message: the cause, its evidence and inputs, the rule, the other
    candidates, the commands and their outcomes — rebuilt from the event log and re-run to check it."""
    _board(board_id)
    at = parse_time(at_text) if at_text else None
    url = database_url_for(settings_for(data_dir), database_url)
    with psycopg.connect(url) as conn:
        body: dict[str, Any] | None = explain_board(conn, board_id, at)
    if body is None:
        raise click.ClickException(f"no VMS evaluation recorded{' before ' + at.isoformat() if at else ''}")
    emit(body, as_json, _explain_text(body))


def _explain_text(body: dict[str, Any]) -> str:
    d = body["decision"]
    lines = [f"{body['board_id']} as of {body['at']} (evaluation {body['evaluation']}):"]
    if d["cause"]:
        pages = " | ".join(" / ".join(p) for p in d["pages"])
        lines.append(f"  shows     {pages}")
        lines.append(f"            priority {d['priority']} ({d['category']}), up since {d['since']}, message {d['message_id']}")
    else:
        lines.append("  shows     nothing from lalin")
    lines.append(f"  decision  {d['action']}: {d['why']}")
    cause = body["cause"]
    if cause is not None:
        evidence = ", ".join(f"{k} {v}" for k, v in cause["evidence"].items())
        lines.append(f"  because   {cause['cause']} (rule {cause['rule']}, live since {cause['since']}): {evidence}")
        lines.append(f"  inputs    {', '.join(str(i) for i in cause['input_event_ids']) or 'none'}")
    for c in d["candidates"]:
        lines.append(f"  candidate {c['cause']} (priority {c['priority']}, {c['category']}): {c['note']}")
    for c in body["commands"]:
        lines.append(f"  command   {c['command_id']} {c['kind']} (rule {c['rule']}, config {c['config_checksum'][:12]}, "
                     f"operator {c['operator'] or '-'}): {c['outcome'] or 'no outcome yet'}")
    for p in body["problems"]:
        lines.append(f"  ALARM     {p}")
    lines.append(f"  verified  {body['verified']}")
    return "\n".join(lines)
