"""The auditors' views (docs/dashboard.md, "Audit"): the archive's verification status, the event-log explorer,
one event with its provenance chain ("why did this command happen"), the network state as of any instant,
and the export of a period (``events.csv`` + ``manifest.json`` that ``lalin audit verify-export`` checks
offline). Everything is read from the archive; verifying and exporting are logged as events.

Routes: ``/audit`` (status, forms), ``POST /audit/verify``, ``/audit/events`` (filters: ``type``, ``key``,
``source``, ``text``, ``from``, ``to``, ``limit``), ``/audit/events/{event_id}``, ``/audit/state?at=T``,
``POST /audit/export`` (a zip).
"""

from __future__ import annotations

import asyncio
import io
import json
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from aiohttp import web

from controllers.envelope import Envelope, decode_archived
from controllers.payloads import (
    CommandAcknowledged,
    ControllerFaulted,
    SignalStateReported,
    TrafficMeasured,
    VmsDisplayReported,
    VmsFaulted,
)
from controllers.plan import Plan
from controllers.plan_workflow import PlanRegistry
from controllers.provenance import Reference, references, summary
from infra.audit import verify_archive
from infra.audit_export import export_period
from infra.plan_service import WORKFLOW_TYPES
from infra.web_auth import WebAuth, current_user, form_text, page

MAX_ROWS = 500
CHAIN_DEPTH = 3
CHAIN_WIDTH = 12  # references shown per event in the chain (the rest counted)
STATE_LOOKBACK_S = 3600.0  # the state as of T: the latest report of each kind in the hour before T
LATEST_KINDS = ("SignalStateReported", "TrafficMeasured", "VmsDisplayReported")


@dataclass
class AuditStatus:
    """The last verification of the archive: when (wall clock), by whom, and what it found."""

    at: datetime
    by: str
    ok: bool
    streams: int
    records: int
    faults: list[str] = field(default_factory=list)
    since: datetime | None = None  # checked from each stream's last checkpoint before this (None: everything)


def parse_instant(text: str | None, default: datetime) -> datetime:
    """An ISO 8601 instant from a form (a time without zone is taken as WITA, UTC+8), else ``default``."""
    if not text:
        return default
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise web.HTTPBadRequest(text=f"{text!r} is not an ISO 8601 time (e.g. 2026-11-24T07:30+08:00)") from err
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC) - timedelta(hours=8)


class AuditPages:
    """The handlers of the auditors' views (see the module docstring)."""

    def __init__(self, database_url: str, auth: WebAuth, plans: dict[str, Plan], clock: Callable[[], datetime]) -> None:
        """``plans``: the catalogued plans (the state as of T folds the plan workflow onto them); ``clock``: the
        runtime's clock (the default instants)."""
        self.database_url, self.auth, self.plans, self.clock = database_url, auth, plans, clock
        self.status: AuditStatus | None = None
        self._verified_since: datetime | None = None  # the runtime-clock start of the last intact verification
        self._verifying = asyncio.Lock()

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the application."""
        return [web.get("/audit", self.index), web.post("/audit/verify", self.verify),
                web.get("/audit/events", self.events), web.get("/audit/events/{event_id}", self.event),
                web.get("/audit/state", self.state), web.post("/audit/export", self.export)]

    async def verify_now(self, by: str, *, incremental: bool = False) -> AuditStatus:
        """Recompute every stream's hash chain (``lalin audit verify``) and keep the result. ``incremental``: from
        each stream's last checkpoint before the previous verification began (the periodic check), else all."""
        async with self._verifying:
            begun = self.clock()
            since = self._verified_since if incremental else None
            report = await asyncio.to_thread(verify_archive, self.database_url, since)
            self.status = AuditStatus(datetime.now(UTC), by, report.ok, report.streams_checked, report.records_checked,
                                      [f"{f.stream} #{f.position}: {f.kind.value} {f.detail}" for f in report.faults[:10]],
                                      since)
            if report.ok:
                self._verified_since = begun
            return self.status

    def alarm(self) -> str | None:
        """The map's alarm when the last verification found the archive altered."""
        s = self.status
        return None if s is None or s.ok else f"AUDIT: archive not intact ({len(s.faults)} stream(s)): {s.faults[0]}"

    async def _rows(self, query: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            cur = await conn.execute(query, args)
            return list(await cur.fetchall())

    # --- status -------------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        """The verification status, the last checkpoints and the forms of the other views."""
        s, now = self.status, self.clock()
        verdict = ("never verified since lalin started" if s is None else
                   f'<span class="{"ok" if s.ok else "refused"}">{"intact" if s.ok else "NOT INTACT"}</span>: '
                   f"{s.records:,} records in {s.streams} streams"
                   f"{' (from the checkpoints before ' + s.since.isoformat() + ')' if s.since else ''}, "
                   f"{s.at:%Y-%m-%d %H:%M:%S} UTC by {escape(s.by)}"
                   + "".join(f"<br>{escape(f)}" for f in (s.faults if s else [])))
        checkpoints = await self._rows("SELECT created_at, streams, records, root_hash FROM archive_checkpoints "
                                       "ORDER BY created_at DESC LIMIT 5", ())
        cps = "".join(f"<tr><td>{t:%Y-%m-%d %H:%M:%S}</td><td>{n}</td><td>{r:,}</td><td><code>{bytes(h).hex()}</code></td>"
                      f"</tr>" for t, n, r, h in checkpoints)
        hour_ago = (now - timedelta(hours=1)).isoformat(timespec="seconds")
        export = ("" if not self.auth.policy.allows(current_user(request).role, "audit.export") else
                  f'<h2>Export a period</h2><form method="post" action="/audit/export"><label>From <input name="from" '
                  f'value="{hour_ago}" size="30"></label><label>To <input name="to" value="{now.isoformat(timespec="seconds")}"'
                  ' size="30"></label><label>Reason <input name="reason" size="60" required minlength="3"></label>'
                  '<button id="export">Export (zip: events.csv + manifest.json)</button></form>'
                  "<p>Check it offline: <code>lalin audit verify-export DIR</code>.</p>")
        body = (f'<h1>Audit</h1><h2>Archive verification</h2><p id="verification">{verdict}</p>'
                '<form method="post" action="/audit/verify"><button id="verify">Verify the archive now</button></form>'
                f"<h2>Checkpoints (root hashes to note down)</h2><table><tr><th>at (UTC)</th><th>streams</th><th>records</th>"
                f"<th>root</th></tr>{cps}</table>"
                f'<h2>Views</h2><ul><li><a href="/audit/events">the event log</a></li>'
                f'<li><form method="get" action="/audit/state">the network as of <input name="at" '
                f'value="{now.isoformat(timespec="seconds")}" size="30"> <button id="state">show</button></form></li></ul>'
                f"{export}")
        return web.Response(text=page("audit", current_user(request), body), content_type="text/html")

    async def verify(self, request: web.Request) -> web.StreamResponse:
        """Verify the archive now (logged with the user)."""
        user = current_user(request)
        status = await self.verify_now(user.username)
        await self.auth.log_action(user.username, "audit.verify", "archive", "verification asked from the audit page",
                                   ok=str(status.ok), records=str(status.records))
        raise web.HTTPSeeOther("/audit")

    # --- the event log --------------------------------------------------------------------------------
    async def events(self, request: web.Request) -> web.Response:
        """The event log, newest first, filtered by type, key, source, text and period."""
        q, now = request.query, self.clock()
        start = parse_instant(q.get("from"), now - timedelta(hours=1))
        end = parse_instant(q.get("to"), now + timedelta(minutes=1))
        limit = min(MAX_ROWS, int(q["limit"])) if q.get("limit", "").isdigit() else 100
        where, args = ["event_time >= %s", "event_time < %s"], list[Any]([start, end])
        for name, column, op in (("type", "type", "="), ("key", "key", "="), ("source", "source", "LIKE"),
                                 ("text", "body", "LIKE")):
            value = q.get(name, "").strip()
            if value:
                where.append(f"{column} {op} %s")
                args.append(value if op == "=" else f"%{value}%")
        rows = await self._rows(f"SELECT event_id, event_time, type, key, source, seq, body FROM events WHERE "
                                f"{' AND '.join(where)} ORDER BY event_time DESC, position DESC LIMIT %s", (*args, limit))
        lines = "".join(f'<tr><td>{t:%Y-%m-%d %H:%M:%S}</td><td>{escape(ty)}</td><td>{escape(k)}</td><td>{escape(src)}'
                        f'</td><td>{seq}</td><td><a href="/audit/events/{i}">{str(i)[:8]}</a></td>'
                        f"<td>{escape(summary(decode_archived(b.encode())))}</td></tr>"
                        for i, t, ty, k, src, seq, b in rows)

        def field_(name: str, size: int = 16) -> str:
            return f'<label>{name} <input name="{name}" size="{size}" value="{escape(q.get(name, ""))}"></label>'

        body = (f'<h1>Event log</h1><form method="get" action="/audit/events" id="filters" style="display:flex;gap:8px;'
                f'flex-wrap:wrap">{field_("type")}{field_("key", 10)}{field_("source")}{field_("text")}'
                f'{field_("from", 26)}{field_("to", 26)}{field_("limit", 4)}<button id="filter">Filter</button></form>'
                f"<p>{len(rows)} events from {start.isoformat()} to {end.isoformat()} (newest first; times UTC)</p>"
                f'<table id="event-log"><tr><th>time</th><th>type</th><th>key</th><th>source</th><th>seq</th><th>id</th>'
                f"<th>what</th></tr>{lines}</table>")
        return web.Response(text=page("event log", current_user(request), body), content_type="text/html")

    async def _event(self, event_id: uuid.UUID) -> Envelope | None:
        rows = await self._rows("SELECT body FROM events WHERE event_id = %s LIMIT 1", (event_id,))
        return decode_archived(rows[0][0].encode()) if rows else None

    async def _resolve(self, ref: Reference) -> Envelope | None:
        if ref.kind == "event":
            return await self._event(ref.id)
        kind = "PlanProposed" if ref.kind == "proposal" else "CommandIssued"
        field_name = "proposal_id" if ref.kind == "proposal" else "command_id"
        rows = await self._rows(f"SELECT body FROM events WHERE type = %s AND body LIKE %s AND "
                                f"body::jsonb -> 'payload' ->> '{field_name}' = %s LIMIT 1",
                                (kind, f"%{ref.id}%", str(ref.id)))
        return decode_archived(rows[0][0].encode()) if rows else None

    async def _chain(self, event: Envelope, depth: int) -> str:
        """The references of ``event`` as a nested list, ``depth`` levels down."""
        refs = references(event)
        if not refs or depth == 0:
            return f"<p>{len(refs)} more reference(s) below</p>" if refs else ""
        items = []
        for ref in refs[:CHAIN_WIDTH]:
            found = await self._resolve(ref)
            if found is None:
                items.append(f"<li>{escape(ref.role)}: {ref.kind} {ref.id} — not in the archive</li>")
                continue
            items.append(f'<li>{escape(ref.role)}: <a href="/audit/events/{found.event_id}">{found.type}</a> '
                         f"{found.event_time:%Y-%m-%d %H:%M:%S} {escape(found.key)} — {escape(summary(found))}"
                         f"{await self._chain(found, depth - 1)}</li>")
        more = f"<li>... and {len(refs) - CHAIN_WIDTH} more</li>" if len(refs) > CHAIN_WIDTH else ""
        return f"<ul>{''.join(items)}{more}</ul>"

    async def _outcomes(self, event: Envelope) -> list[Envelope]:
        """What followed a command: its acknowledgement(s)."""
        p = event.payload
        command_id = getattr(p, "command_id", None)
        if event.type != "CommandIssued" or command_id is None:
            return []
        rows = await self._rows("SELECT body FROM events WHERE key = %s AND type = 'CommandAcknowledged' AND "
                                "event_time >= %s AND body LIKE %s", (event.key, event.event_time - timedelta(seconds=5),
                                                                      f"%{command_id}%"))
        return [e for (b,) in rows if isinstance((e := decode_archived(b.encode())).payload, CommandAcknowledged)
                and e.payload.command_id == command_id]

    async def event(self, request: web.Request) -> web.Response:
        """One event: its envelope and payload, what followed it (a command's outcome) and why it happened (its
        references, three levels back)."""
        try:
            event_id = uuid.UUID(request.match_info["event_id"])
        except ValueError as err:
            raise web.HTTPNotFound(text="not an event id") from err
        event = await self._event(event_id)
        if event is None:
            raise web.HTTPNotFound(text=f"no event {event_id} in the archive")
        outcomes = "".join(f'<li><a href="/audit/events/{o.event_id}">{o.type}</a> {o.event_time:%H:%M:%S} — '
                           f"{escape(summary(o))}</li>" for o in await self._outcomes(event))
        pretty = json.dumps(msgspec.to_builtins(event), indent=2, ensure_ascii=False)
        chain = await self._chain(event, CHAIN_DEPTH) or "<p>nothing: an input from the field</p>"
        body = (f'<h1>{event.type} <small>{event.event_id}</small></h1><p id="event-summary">{escape(summary(event))}</p>'
                + (f'<h2>Outcome</h2><ul id="outcome">{outcomes}</ul>' if outcomes else "")
                + f'<h2>Why: what it rests on</h2><div id="chain">{chain}</div><h2>The event</h2>'
                f'<pre style="white-space:pre-wrap">{escape(pretty)}</pre>')
        return web.Response(text=page(f"event {str(event_id)[:8]}", current_user(request), body), content_type="text/html")

    # --- the state as of an instant -----------------------------------------------------------------
    async def state(self, request: web.Request) -> web.Response:
        """The network as of ``at``: each controller's last report, each junction's last summary, each board's last
        report, the active faults, and the deployed plans and holds (the workflow's events folded up to ``at``)."""
        at = parse_instant(request.query.get("at"), self.clock())
        since = at - timedelta(seconds=STATE_LOOKBACK_S)
        latest = await self._rows("SELECT DISTINCT ON (type, key) type, key, body FROM events WHERE event_time <= %s AND "
                                  "event_time > %s AND type = ANY(%s) ORDER BY type, key, event_time DESC, position DESC",
                                  (at, since, list(LATEST_KINDS)))
        by_kind: dict[str, dict[str, Envelope]] = {}
        for kind, key, body in latest:
            by_kind.setdefault(kind, {})[key] = decode_archived(body.encode())
        fault_rows = await self._rows("SELECT body FROM events WHERE event_time <= %s AND type IN ('ControllerFaulted', "
                                      "'VmsFaulted') ORDER BY event_time, position", (at,))
        active: dict[tuple[str, str], Envelope] = {}
        for (body,) in fault_rows:
            e = decode_archived(body.encode())
            p = e.payload
            if isinstance(p, (ControllerFaulted, VmsFaulted)):
                device = p.controller_id if isinstance(p, ControllerFaulted) else p.board_id
                if p.active:
                    active[(device, p.fault.value)] = e
                else:
                    active.pop((device, p.fault.value), None)
        registry = PlanRegistry(plans=dict(self.plans))
        for (body,) in await self._rows("SELECT body FROM events WHERE event_time <= %s AND type = ANY(%s) "
                                        "ORDER BY event_time, position", (at, list(WORKFLOW_TYPES))):
            registry.apply(decode_archived(body.encode()))
        body = (f'<h1>The network as of {at.isoformat()}</h1><form method="get" action="/audit/state"><input name="at" '
                f'value="{at.isoformat(timespec="seconds")}" size="30"> <button>show</button></form>'
                + self._junctions_html(registry, by_kind) + self._boards_html(by_kind.get("VmsDisplayReported", {}))
                + "<h2>Active faults</h2><ul id=\"faults\">"
                + ("".join(f'<li>{escape(d)}: {escape(f)} since <a href="/audit/events/{e.event_id}">'
                           f"{e.event_time:%H:%M:%S}</a></li>" for (d, f), e in sorted(active.items())) or "<li>none</li>")
                + "</ul>")
        return web.Response(text=page("state as of", current_user(request), body), content_type="text/html")

    def _junctions_html(self, registry: PlanRegistry, by_kind: dict[str, dict[str, Envelope]]) -> str:
        rows = []
        for junction, plan in sorted(registry.plans.items()):
            signal = by_kind.get("SignalStateReported", {}).get(junction)
            measured = by_kind.get("TrafficMeasured", {}).get(junction)
            s = signal.payload if signal is not None and isinstance(signal.payload, SignalStateReported) else None
            m = measured.payload if measured is not None and isinstance(measured.payload, TrafficMeasured) else None
            hold = registry.holds.get(junction)
            xs = [x.degree_of_saturation for x in m.stages if x.degree_of_saturation is not None] if m else []
            report = (f'<a href="/audit/events/{signal.event_id}">{s.mode.value}, stage {s.stage} {s.interval or ""}, '
                      f"cycle {s.cycle_s:g} s</a>" if s is not None and signal is not None else "no report in the hour before")
            summary_cell = (f'<a href="/audit/events/{measured.event_id}">window to {m.window.end:%H:%M} UTC, max X '
                            f"{max(xs):.2f}</a>" if m is not None and measured is not None and xs else "-")
            rows.append(f'<tr id="state-{escape(junction)}"><td>{escape(junction)}</td><td>v{plan.version}'
                        f"{', held by ' + escape(hold.operator) if hold else ''}</td><td>{report}</td><td>{summary_cell}</td>"
                        "</tr>")
        return ("<h2>Junctions</h2><table><tr><th>junction</th><th>plan</th><th>controller reported</th>"
                f"<th>traffic summary</th></tr>{''.join(rows)}</table>")

    @staticmethod
    def _boards_html(boards: dict[str, Envelope]) -> str:
        rows = "".join(f'<tr><td>{escape(b)}</td><td>{p.status.value}</td>'
                       f'<td>{escape(" | ".join(" / ".join(lines) for lines in p.pages))}</td>'
                       f'<td><a href="/audit/events/{e.event_id}">{e.event_time:%H:%M:%S}</a></td></tr>'
                       for b, e in sorted(boards.items()) if isinstance((p := e.payload), VmsDisplayReported))
        return ("<h2>Boards</h2><table id=\"state-boards\"><tr><th>board</th><th>status</th><th>showing</th><th>reported</th>"
                f"</tr>{rows}</table>")

    # --- export ---------------------------------------------------------------------------------------
    async def export(self, request: web.Request) -> web.StreamResponse:
        """A period of the archive as a zip of ``events.csv`` and ``manifest.json`` (logged with the reason)."""
        user, form = current_user(request), await request.post()
        start, end = parse_instant(form_text(form, "from", 64), self.clock()), parse_instant(form_text(form, "to", 64),
                                                                                              self.clock())
        reason = form_text(form, "reason")
        if end <= start or len(reason) < 3:
            raise web.HTTPUnprocessableEntity(text="the period must end after it starts, and a reason is required")
        with tempfile.TemporaryDirectory(prefix="lalin-export-") as tmp:
            out = Path(tmp) / "export"
            manifest = await asyncio.to_thread(export_period, self.database_url, start, end, out, datetime.now(UTC))
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(out.iterdir()):
                    archive.write(path, f"lalin-export/{path.name}")
        await self.auth.log_action(user.username, "audit.export", "archive", reason, start=start.isoformat(),
                                   end=end.isoformat(), rows=str(manifest.csv.rows), sha256=manifest.csv.sha256)
        name = f"lalin-export-{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}.zip"
        return web.Response(body=buffer.getvalue(), content_type="application/zip",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})

