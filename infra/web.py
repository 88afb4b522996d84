"""The live dashboard ``lalin up`` serves (aiohttp, on the runtime's event loop): a schematic map of the
network drawn from the network data (:mod:`controllers.network_map`), each junction coloured by its
level of service with its running stage, each board showing what it reports displaying, and the alarms;
updated over server-sent events.

Routes: ``/`` the page (the SVG inline, a small script that applies ``/events``), ``/map.svg``,
``/api/state`` (JSON), ``/events`` (``text/event-stream``: the state every ``interval_s``).
The state is read from the runtime's live objects — the controller drivers (mode, stage,
faults, link), the board drivers (what each board reports, its faults), the automatic VMS's
folded traffic state (degree of saturation, HCM delay, detector health) and its alarms — never
from a cache of its own.

Every route needs a login and a permission (:mod:`infra.web_auth`); the plan workflow's pages are
:mod:`infra.web_plans`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from html import escape
from typing import Any

import psycopg
from aiohttp import web

from controllers.envelope import decode_archived
from controllers.errors import ConfigurationError, StorageError
from controllers.junction_charts import chart_series, line_chart_svg
from controllers.network_map import LOS_COLOURS, los_of, network_svg
from controllers.payloads import TrafficMeasured
from controllers.vms_evidence import measure_direction
from controllers.vms_state import VmsNetwork, VmsState
from infra.accounts import Accounts, load_access
from infra.field import FieldDevices
from infra.plan_service import PlanService
from infra.signal_performance_view import junction_performance
from infra.simclock import WITA
from infra.vms_loop import VmsLoop
from infra.web_audit import AuditPages
from infra.web_auth import COOKIE, WebAuth, current_user, nav, page
from infra.web_boards import BoardPages
from infra.web_plans import PlanPages
from infra.web_users import UserPages

log = logging.getLogger(__name__)
HISTORY_S = 3600.0  # the junction page's charts: the last hour (s)
SESSION_RECHECK_S = 60.0  # a live event stream re-checks its session this often (wall s)
NOTICE_SHOWN_S = 900.0  # a controller's notice (restart, lost log entries, late application) stays listed (s)
ALARM_DETAIL_CHARS = 160  # an alarm's detail on the map, at most
CHARTS = (("flows_veh_h", "Flows by class", "veh/h"), ("occupancy", "Occupancy", "fraction"),
          ("speed_kmh", "Speed", "km/h"), ("queue_m", "Longest camera queue", "m"))


class LiveView:
    """The network's state now, from the runtime's live objects (see the module docstring)."""

    def __init__(self, network: VmsNetwork, field: Callable[[], FieldDevices | None], vms: Callable[[], VmsLoop | None],
                 clock: Callable[[], datetime]) -> None:
        self.network, self.field, self.vms, self.clock = network, field, vms, clock
        self.extra_alarms: Callable[[], str | None] = lambda: None  # the audit status (set by the dashboard)

    def state(self) -> dict[str, Any]:
        """Junctions, boards and alarms as JSON-ready data."""
        field, vms, now = self.field(), self.vms(), self.clock()
        alarms: list[str] = []
        junctions: dict[str, dict[str, Any]] = {j: {"name": p.name, "connected": None, "mode": None, "stage": None,
                                                    "interval": None, "faults": [], "degree_of_saturation": None,
                                                    "delay_s": None, "los": "?", "window_end": None,
                                                    "detectors_unhealthy": []} for j, p in self.network.plans.items()}
        for driver in field.drivers if field is not None else []:
            row = junctions.setdefault(driver.site.id, {})
            status = driver.status
            row["connected"] = driver.connected.is_set()
            if not row["connected"]:
                alarms.append(f"{driver.site.id}: controller unreachable")
            if status is not None:
                row.update(mode=status.control_mode, stage=status.current_stage, interval=status.interval,
                           faults=sorted(status.faults), cycle_s=status.cycle_ds / 10, offset_s=status.offset_ds / 10,
                           stage_greens_s=[g / 10 for g in status.greens_ds[:status.n_stages]])
                alarms += [f"{driver.site.id}: {fault}" for fault in sorted(status.faults)]
            alarms += [f"{driver.site.id}: {kind.value}: {finding.detail[:ALARM_DETAIL_CHARS]}"
                       for kind, finding in sorted(driver.findings.items())]
            alarms += [f"{driver.site.id}: {notice.fault.value} at {at.astimezone(WITA):%H:%M:%S}: "
                       f"{notice.detail[:ALARM_DETAIL_CHARS]}"
                       for at, notice in driver.notices if (now - at).total_seconds() <= NOTICE_SHOWN_S]
        policy_state = vms.policy.state if vms is not None else VmsState()
        for junction, summary in policy_state.summaries.items():
            plan, measured = self.network.plans.get(junction), junctions.get(junction)
            if plan is None or measured is None:
                continue
            xs = [s.degree_of_saturation for s in summary.stages if s.degree_of_saturation is not None]
            delays = [m.control_delay_s for f in ("outbound", "inbound")
                      if (m := measure_direction(plan, self.network.detectors.get(junction, {}), summary,
                                                 policy_state.summary_ids[junction], f)).control_delay_s is not None]
            x, delay = (max(xs) if xs else None), (max(delays) if delays else None)
            measured.update(degree_of_saturation=round(x, 3) if x is not None else None,
                       delay_s=round(delay, 1) if delay is not None else None, los=los_of(delay, x),
                       window_end=summary.window.end.isoformat(),
                       detectors_unhealthy=[f"{d.detector_id} {d.health.value}" for d in summary.detectors_unhealthy])
            alarms += [f"{junction}: detector {d.detector_id} {d.health.value}" for d in summary.detectors_unhealthy]
        boards: dict[str, dict[str, Any]] = {b.id: {"connected": None, "status": None, "pages": [], "priority": None,
                                                    "faults": []} for b in self.network.boards}
        for board in field.board_drivers if field is not None else []:
            snap = board.snapshot
            faults = board.active_faults()
            boards[board.spec.id] = {"connected": board.connected, "status": snap.status,
                                     "pages": [page.split("\n") for page in snap.pages], "priority": snap.priority or None,
                                     "faults": faults}
            alarms += [f"{board.spec.id}: {fault}" for fault in faults]
        if vms is not None and vms.latest is not None:
            alarms += [f"VMS: {p}" for p in vms.latest.problems]
        audit = self.extra_alarms()
        if audit is not None:
            alarms.append(audit)
        return {"at": now.isoformat(), "junctions": junctions, "boards": boards, "alarms": alarms,
                "los_colours": dict(LOS_COLOURS)}


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lalin — live network</title>
<style>
body{{font-family:sans-serif;margin:0;background:#f4f4f4}}
nav{{background:#1d3557;color:#fff;padding:6px 12px;display:flex;gap:16px;align-items:center}}
nav a{{color:#fff}} nav form{{margin-left:auto}}
main{{flex:1;padding:12px}}
aside{{width:340px;padding:12px;background:#fff;border-left:1px solid #ccc;height:100vh;overflow:auto}}
#alarms li{{color:#b00020}} #alarms li.ok{{color:#1a7f37}} svg{{width:100%;height:auto;background:#fff;border:1px solid #ccc}}
</style></head>
<body>{nav}<div style="display:flex"><main><h1>lalin — live network <small id="at"></small></h1>{svg}</main>
<aside><h2>Alarms <span id="alarm-count">0</span></h2><ul id="alarms"><li class="ok">none</li></ul>
<h2>Level of service</h2><p>{legend}</p></aside></div>
<script>
const source = new EventSource("events");
source.addEventListener("session-ended", () => {{ source.close(); window.location = "/login?next=/"; }});
source.onmessage = (message) => {{
  const state = JSON.parse(message.data);
  document.getElementById("at").textContent = state.at;
  for (const [id, j] of Object.entries(state.junctions)) {{
    const g = document.getElementById("junction-" + id);
    if (!g) continue;
    g.querySelector(".los").setAttribute("fill", state.los_colours[j.los] || state.los_colours["?"]);
    g.querySelector(".stage").textContent =
      j.stage === null ? "-" : `stage ${{j.stage}} ${{j.interval || ""}} (${{j.mode || "?"}})`;
    g.querySelector(".measure").textContent = j.degree_of_saturation === null ? "" :
      `X ${{j.degree_of_saturation.toFixed(2)}} LOS ${{j.los}}`;
    g.dataset.los = j.los;
  }}
  for (const [id, b] of Object.entries(state.boards)) {{
    const g = document.getElementById("board-" + id);
    if (!g) continue;
    const page = b.pages.length ? b.pages[Math.floor(Date.now() / 3000) % b.pages.length] : [];
    g.querySelectorAll(".board-text").forEach((line, n) => {{ line.textContent = page[n] || ""; }});
    g.dataset.status = b.status || "unknown";
  }}
  const list = document.getElementById("alarms");
  list.innerHTML = "";
  for (const alarm of state.alarms) {{
    const li = document.createElement("li"); li.textContent = alarm; list.appendChild(li);
  }}
  if (!state.alarms.length) {{
    const li = document.createElement("li"); li.className = "ok"; li.textContent = "none"; list.appendChild(li);
  }}
  document.getElementById("alarm-count").textContent = state.alarms.length;
}};
</script></body></html>
"""


class Dashboard:
    """The aiohttp server of the web surfaces on ``host``:``port`` (0: a free port): every request authorised
    against ``accounts`` (:mod:`infra.web_auth`), the workflow's steps published by ``plans``."""

    def __init__(self, view: LiveView, *, accounts: Accounts, plans: PlanService, database_url: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, interval_s: float = 1.0, share_updates: bool = True,
                 session_recheck_s: float = SESSION_RECHECK_S) -> None:
        """``share_updates``: build the live state once per interval for every event-stream client (False: once per
        client, the baseline of bench/dashboard.py)."""
        self.view, self.database_url, self.host, self.port, self.interval_s = view, database_url, host, port, interval_s
        self.share_updates, self.session_recheck_s = share_updates, session_recheck_s
        self._update: tuple[float, bytes] | None = None  # (monotonic time built, the encoded message)
        self.svg = network_svg(view.network.plans, view.network.boards)
        self._runner: web.AppRunner | None = None
        self.auth = WebAuth(accounts, load_access(), plans)
        self.plans = PlanPages(plans, self._history, view.clock, lambda j: self.view.state()["junctions"].get(j, {}))
        self.app = web.Application(middlewares=[self.auth.middleware])
        self.app.add_routes([web.get("/", self.page), web.get("/map.svg", self.map), web.get("/api/state", self.api_state),
                             web.get("/events", self.events), web.get("/junction/{junction}", self.junction),
                             web.get("/login", self.auth.login_page), web.post("/login", self.auth.login),
                             web.post("/logout", self.auth.logout), *self.plans.routes(),
                             *UserPages(accounts, self.auth).routes()])
        boards = BoardPages(view.network.board_by_id, plans, self.auth, lambda: self.view.state()["boards"], view.clock)
        self.app.add_routes(boards.routes())
        self.audit = AuditPages(database_url or "", self.auth, dict(view.network.plans), view.clock)
        self.app.add_routes(self.audit.routes())
        view.extra_alarms = self.audit.alarm

    @property
    def url(self) -> str:
        """Where the dashboard listens (after :meth:`start`)."""
        return f"http://{self.host}:{self.port}/"

    async def start(self) -> None:
        """Listen (a free port when ``port`` is 0)."""
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])

    async def stop(self) -> None:
        """Close every connection (live event streams included) and stop listening."""
        await self.plans.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def page(self, request: web.Request) -> web.Response:
        """The page: the map inline and the script that applies the live state."""
        legend = " ".join(f'<span style="background:{c};padding:2px 6px">{k}</span>' for k, c in LOS_COLOURS.items())
        return web.Response(text=PAGE.format(svg=self.svg, legend=legend, nav=nav(current_user(request))),
                            content_type="text/html")

    async def junction(self, request: web.Request) -> web.Response:
        """One junction: what it runs now (mode, stage, timing, measures) and its last hour as charts (from the
        archive's summaries)."""
        junction = request.match_info["junction"]
        plan = self.view.network.plans.get(junction)
        if plan is None:
            raise web.HTTPNotFound(text=f"no junction {junction!r}")
        now = self.view.state()["junctions"][junction]
        history = await self._history(junction, HISTORY_S)
        latest = history[-1] if history else None
        running = latest.running if latest is not None else None
        timing = (f"cycle {running.cycle_s:g} s, offset {running.offset_s or 0:g} s, greens "
                  + ", ".join(f"{s} {g:g} s" for s, g in zip(plan.sequence, running.stage_greens_s or [], strict=False))
                  if running is not None else "not reported yet")
        stages = ", ".join(f"{s.stage} X {s.degree_of_saturation:.2f}" for s in latest.stages
                           if s.degree_of_saturation is not None) if latest is not None else ""
        series = chart_series(history)
        charts = "".join(line_chart_svg(f"chart-{key}", title, unit, series[key]) for key, title, unit in CHARTS)
        registry = self.plans.service.registry
        deployed, hold = registry.plans.get(junction, plan), registry.holds.get(junction)
        reported = (f'cycle {now["cycle_s"]:g} s, offset {now["offset_s"]:g} s, greens '
                    + ", ".join(f"{s} {g:g} s" for s, g in zip(plan.sequence, now["stage_greens_s"], strict=False))
                    if now.get("cycle_s") is not None else "not connected")
        rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in (
            ("mode", now["mode"]), ("stage", f'{now["stage"]} {now["interval"] or ""}'),
            ("plan", f"{plan.id} v{deployed.version}" + (f", held by {hold.operator} since {hold.since:%H:%M}" if hold else "")),
            ("controller runs", reported), ("timing in the last summary", timing),
            ("degree of saturation", stages or "-"), ("level of service", now["los"]),
            ("control delay", f'{now["delay_s"]} s' if now["delay_s"] is not None else "-"),
            ("faults", ", ".join(now["faults"]) or "none"),
            ("unhealthy detectors", ", ".join(now["detectors_unhealthy"]) or "none")))
        body = (f'<h1 id="junction-title">{escape(junction)} — {escape(plan.name)}</h1><table id="junction-now">{rows}</table>'
                f'<p><a href="/plans/{escape(junction)}">its plan</a></p>'
                f'<h2>Last hour ({len(history)} minute summaries)</h2><div class="charts">{charts}</div>'
                f"{await self._performance(junction)}")
        body = page(junction, current_user(request), body, head="<style>.charts{display:flex;flex-wrap:wrap;gap:8px}"
                    " .chart{background:#fff;border:1px solid #ccc}</style>")
        return web.Response(text=body, content_type="text/html")

    async def _performance(self, junction: str) -> str:
        """The junction's signal performance measures over the last hour, from its controller's event log."""
        if self.database_url is None:
            return ""
        end = self.view.clock()
        try:
            spm = await junction_performance(self.database_url, junction, end - timedelta(seconds=HISTORY_S), end)
        except (ConfigurationError, StorageError) as err:
            return f"<h2>Signal performance</h2><p>not available: {escape(str(err))}</p>"
        return performance_html(spm)

    async def _history(self, junction: str, seconds: float) -> list[TrafficMeasured]:
        """The junction's summaries of the last ``seconds`` (on the runtime's clock) from the archive, oldest first."""
        if self.database_url is None:
            return []
        since = self.view.clock() - timedelta(seconds=seconds)
        out = []
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            # summaries are keyed by corridor: the body's intersection id picks the junction's before decoding
            cur = await conn.execute("SELECT body FROM events WHERE type = 'TrafficMeasured' AND event_time >= %s "
                                     "AND body LIKE %s ORDER BY event_time, position",
                                     (since, f'%"intersection_id":"{junction}"%'))
            for (body,) in await cur.fetchall():
                payload = decode_archived(body.encode()).payload
                if isinstance(payload, TrafficMeasured) and payload.intersection_id == junction:
                    out.append(payload)
        return out

    async def map(self, request: web.Request) -> web.Response:
        """The schematic map (SVG)."""
        return web.Response(text=self.svg, content_type="image/svg+xml")

    async def api_state(self, request: web.Request) -> web.Response:
        """The state now (JSON)."""
        return web.json_response(self.view.state())

    def _message(self) -> bytes:
        """The live state as one server-sent event; shared by the clients within half an interval of its building
        (a video wall and a dozen operators' screens cost one state a second, not thirteen)."""
        now = time.monotonic()
        if not self.share_updates or self._update is None or now - self._update[0] >= self.interval_s / 2:
            self._update = (now, f"data: {json.dumps(self.view.state())}\n\n".encode())
        return self._update[1]

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the state every ``interval_s`` until the client goes away, the server stops or the
        session ends (checked every ``session_recheck_s``: a logout, a disabled account or the 12-h limit ends a
        stream too; the stream itself counts as activity, so a video wall is not logged out for idling)."""
        token = request.cookies.get(COOKIE, "")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        checked = time.monotonic()
        try:
            while True:
                if time.monotonic() - checked >= self.session_recheck_s:
                    checked = time.monotonic()
                    if await asyncio.to_thread(self.auth.accounts.session, token) is None:
                        await response.write(b"event: session-ended\ndata: {}\n\n")
                        break
                await response.write(self._message())
                await asyncio.sleep(self.interval_s)
        except ConnectionResetError:
            log.debug("dashboard: an event stream's client went away")
        return response


def performance_html(spm: dict[str, Any]) -> str:
    """The signal performance section of a junction's page: arrivals on green and platoon ratio per coordinated
    group with its Purdue coordination diagram, and split failures per vehicle group (docs/dashboard.md)."""
    coordinated = "".join(
        f'<tr><td>{escape(c["group"])}</td><td>{escape(c["arrival_detectors"].replace("_", "-"))} loops</td>'
        f'<td>{c["cycles"]}</td><td>{c["arrivals"]}</td><td>{_pct(c["aog_pct"])}</td>'
        f'<td>{_pct(c["green_pct"])}</td><td>{_num(c["platoon_ratio"])}</td></tr>' for c in spm["coordinated"])
    failures = "".join(f'<tr><td>{escape(f["group"])}</td><td>{f["greens"]}</td><td>{f["failures"]}</td>'
                       f'<td>{_pct(f["failure_pct"])}</td></tr>' for f in spm["split_failures"])
    lost = f" ({spm['lost_entries']} log entries lost: cycles around them left out)" if spm["lost_entries"] else ""
    return (f'<h2>Signal performance, last hour</h2><p>From the controller\'s event log: {spm["entries"]:,} entries{lost}. '
            "Arrivals come from the advance loops (120 m upstream), shifted by the free-flow travel time to the stop "
            "line; split failures from the stop-line loops (docs/dashboard.md).</p>"
            '<table id="aog"><tr><th>coordinated group</th><th>arrivals from</th><th>cycles</th><th>arrivals</th>'
            '<th>arrivals on green</th>'
            f'<th>green share</th><th>platoon ratio</th></tr>{coordinated}</table>'
            f'<div class="charts" id="pcd">{spm["pcd_svg"]}</div>'
            '<table id="split-failures"><tr><th>group</th><th>greens</th><th>split failures</th><th>share</th></tr>'
            f"{failures}</table>")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} %"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
