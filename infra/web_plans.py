"""The plan workflow's pages (docs/dashboard.md, "Plans"): open a junction's plan, edit it, check it against
the safety rules, see what it would do (the HCM prediction with the traffic measured now, beside the deployed
version), submit it with a reason; a second engineer approves (which deploys it through the controller's
driver) or rejects it; release a junction held on a deployed timing. Every step is an event
(:mod:`infra.plan_service`); the rules are the pure :mod:`controllers.plan_workflow`.

Routes: ``/plans``, ``/plans/{plan}`` (the editor), ``POST /plans/{plan}/check`` and ``/whatif`` (JSON),
``POST /plans/{plan}/proposals`` (submit), ``/proposals/{proposal}`` and ``/api/proposals/{proposal}``,
``POST /proposals/{proposal}/review`` and ``/deploy``, ``POST /plans/{plan}/release``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import msgspec
import yaml
from aiohttp import web
from pydantic import ValidationError

from controllers.access import AccessDenied
from controllers.demand import demand_from_rows
from controllers.errors import ConfigurationError, InvalidDemand
from controllers.payloads import TrafficMeasured
from controllers.plan import Plan, Timing
from controllers.plan_whatif import Prediction, predict
from controllers.plan_workflow import NO_CHANGE, ProposalRefused, ProposalStatus, changes, check_candidate, plan_of
from controllers.schedule import active_timing, resolve_timing
from infra.counts import read_counts, rows_for_plan
from infra.plan_service import PlanService
from infra.plan_simulation import (
    DEFAULT_DURATION_S,
    DEFAULT_WARMUP_S,
    PERIOD_STEP_S,
    SimulationPeriodError,
    SimulationResult,
    default_start_s,
    measured_period,
    period_starts,
    simulate,
)
from infra.simclock import WITA, hhmm
from infra.web_auth import current_user, form_text, page
from infra.yaml_data import parse_yaml

SIMULATIONS_KEPT = 8
DESIGN_COUNTS = Path(__file__).parent / "catalogue" / "counts" / "sunset_road_am_peak.csv"
DEMAND_WINDOW_S = 900.0  # the what-if's demand: the mean of the last 15 min of measured flows (s)
MIN_MEASURED_MIN = 5  # ... when at least 5 one-minute summaries measured traffic; else the design counts
History = Callable[[str, float], Awaitable[list[TrafficMeasured]]]


def plan_yaml(plan: Plan) -> str:
    """The plan as YAML for the editor (field order as declared)."""
    return str(yaml.safe_dump(plan.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=120))


def parse_plan(text: str) -> tuple[Plan | None, list[str]]:
    """The plan in the editor's YAML text, or every problem that stops it being read (syntax, fields, bounds)."""
    try:
        return Plan.model_validate(parse_yaml(text)), []
    except yaml.YAMLError as err:
        return None, [f"yaml: {err}"]
    except ValidationError as err:
        return None, [f"{'.'.join(str(p) for p in e['loc']) or 'plan'}: {e['msg']}" for e in err.errors()]


def measured_demand(history: list[TrafficMeasured]) -> dict[str, float]:
    """Each movement's mean measured flow (pcu/h) over the summaries given (those that measured it)."""
    sums: dict[str, list[float]] = {}
    for summary in history:
        for m in summary.movements:
            if m.flow_pcu_h is not None and m.lanes_measured > 0:
                sums.setdefault(m.movement, []).append(m.flow_pcu_h)
    return {movement: sum(v) / len(v) for movement, v in sums.items()}


def design_demand(plan: Plan) -> dict[str, float]:
    """The catalogued morning-peak counts of the junction as pcu/h (when nothing is measured)."""
    try:
        rows = rows_for_plan(read_counts(DESIGN_COUNTS), plan.id)
        return {m: d.pcu_h for m, d in demand_from_rows(plan, rows, str(DESIGN_COUNTS)).items()}
    except (InvalidDemand, ConfigurationError):
        return {}


def timing_now(plan: Plan, at: datetime) -> tuple[str, Timing | None]:
    """The timing the plan's schedule runs at ``at``: its name and the timing (None: flash)."""
    name = active_timing(plan, at).timing
    return name, resolve_timing(plan, name)


def parse_period_start(text: str, default_s: float) -> float:
    """A what-if period's start from the form's ``HH:MM`` (s after local midnight; ``default_s`` when empty);
    SimulationPeriodError when it is no time of day."""
    if not text:
        return float(default_start_s(default_s))
    try:
        hours, minutes = (int(part) for part in text.split(":")[:2])
    except ValueError as err:
        raise SimulationPeriodError(f"the period start {text!r} is not a time of day (HH:MM)") from err
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise SimulationPeriodError(f"the period start {text!r} is not a time of day (HH:MM)")
    return hours * 3600.0 + minutes * 60.0


@dataclass
class Simulation:
    """A short run of the twin under way or done."""

    task: asyncio.Task[SimulationResult]


class PlanPages:
    """The handlers of the plan workflow (see the module docstring)."""

    def __init__(self, service: PlanService, history: History, clock: Callable[[], datetime],
                 running: Callable[[str], Mapping[str, Any]]) -> None:
        """``history(junction, seconds)``: the junction's archived summaries; ``running(junction)``: what the
        controller reports now (the live view's row)."""
        self.service, self.history, self.clock, self.running = service, history, clock, running
        self.simulations: dict[str, Simulation] = {}  # job id -> the short run of the twin (the last few kept)

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the application."""
        return [web.get("/plans", self.index), web.get("/plans/{plan}", self.editor),
                web.post("/plans/{plan}/check", self.check), web.post("/plans/{plan}/whatif", self.whatif),
                web.post("/plans/{plan}/proposals", self.submit), web.post("/plans/{plan}/release", self.release),
                web.get("/proposals/{proposal}", self.proposal), web.get("/api/proposals/{proposal}", self.api_proposal),
                web.post("/proposals/{proposal}/review", self.review), web.post("/proposals/{proposal}/deploy", self.deploy),
                web.post("/plans/{plan}/simulate", self.simulate), web.get("/api/simulations/{job}", self.simulation)]

    async def stop(self) -> None:
        """Cancel the simulations still running (their child processes end with them)."""
        running = [job.task for job in self.simulations.values() if not job.task.done()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    # --- reading --------------------------------------------------------------------------------------
    def _plan(self, request: web.Request) -> Plan:
        plan = self.service.registry.plans.get(request.match_info["plan"])
        if plan is None:
            raise web.HTTPNotFound(text=f"no junction plan {request.match_info['plan']!r}")
        return plan

    async def index(self, request: web.Request) -> web.Response:
        """Every junction: the deployed version, who deployed it, the hold, the open proposals."""
        reg = self.service.registry
        rows = []
        for plan_id, plan in sorted(reg.plans.items()):
            hold = reg.holds.get(plan_id)
            held = (f"held on v{hold.version} by {escape(hold.operator)}, its schedule running {escape(hold.timing)}"
                    if hold else "adaptive / time of day")
            opened = " ".join(f'<a href="/proposals/{p.proposed.proposal_id}">v{p.proposed.version} '
                              f'({p.status.value})</a>' for p in reg.pending(plan_id)) or "-"
            rows.append(f'<tr id="plan-{escape(plan_id)}"><td><a href="/plans/{escape(plan_id)}">{escape(plan_id)}</a></td>'
                        f"<td>{escape(plan.name)}</td><td>v{plan.version}</td>"
                        f"<td>{escape(reg.deployed_by.get(plan_id, 'catalogue'))}</td><td>{held}</td><td>{opened}</td></tr>")
        body = ("<h1>Signal plans</h1><table><tr><th>junction</th><th>name</th><th>deployed</th><th>by</th>"
                f"<th>control</th><th>open proposals</th></tr>{''.join(rows)}</table>")
        return web.Response(text=page("plans", current_user(request), body), content_type="text/html")

    async def editor(self, request: web.Request) -> web.Response:
        """The editor of a junction's plan (its deployed version), or of the text just refused."""
        plan = self._plan(request)
        return web.Response(text=self._editor_html(request, plan, plan_yaml(plan), [], ""), content_type="text/html")

    def _time_of_day_s(self) -> float:
        """Now on lalin's clock (the twin's in a demo), in seconds after local midnight (WITA)."""
        local = self.clock().astimezone(WITA)
        return local.hour * 3600.0 + local.minute * 60.0 + local.second

    def _editor_html(self, request: web.Request, plan: Plan, text: str, problems: list[str], reason: str) -> str:
        user, reg = current_user(request), self.service.registry
        hold = reg.holds.get(plan.id)
        release = (f'<form method="post" action="/plans/{escape(plan.id)}/release"><p>Held on v{hold.version} by '
                   f'{escape(hold.operator)} since {hold.since.isoformat()}. <input name="reason" id="release-reason" '
                   'placeholder="reason" required minlength="3"> <button id="release">Release: adaptive control again'
                   '</button></p></form>') if hold else ""
        refused = ("<div id=\"problems\" class=\"refused\"><h2>Refused</h2><ul>"
                   + "".join(f"<li>{escape(p)}</li>" for p in problems) + "</ul></div>") if problems else ""
        earliest, latest = period_starts()
        body = f"""<h1 id="plan-title">{escape(plan.id)} — {escape(plan.name)} (v{plan.version} deployed)</h1>{release}
<p>Edit the plan below (timings, named timings, schedule). The safety check runs first on every check, what-if and
submission; changes to the controller's safety configuration (groups, conflicts, intergreens, stages, cycle
bounds) are loaded at the controller itself, not deployed from here.</p>{refused}
<form method="post" action="/plans/{escape(plan.id)}/proposals" id="plan-form">
<input type="hidden" name="base_version" value="{plan.version}">
<textarea name="document" id="plan-text" spellcheck="false">{escape(text)}</textarea>
<p><button type="button" id="check">Check safety</button> <button type="button" id="whatif">What-if</button>
<button type="button" id="simulate">Simulate {DEFAULT_DURATION_S / 60:g} min of the corridor</button>
<label>from <input type="time" name="period_start" id="period-start" form="period-form" step="{PERIOD_STEP_S}"
min="{hhmm(earliest)}" max="{hhmm(latest)}" value="{hhmm(default_start_s(self._time_of_day_s()))}"></label> WITA (after up
to {DEFAULT_WARMUP_S / 60:g} min of warm-up)</p>
<div id="result"></div><div id="simulation"></div>
<label>Reason for the change <input name="reason" id="reason" size="80" required minlength="3" value="{escape(reason)}">
</label><button type="submit" id="submit">Submit for approval</button></form>
<form id="period-form"></form>
<script>
async function ask(what) {{
  const data = new URLSearchParams(new FormData(document.getElementById("plan-form")));
  const answer = await fetch("/plans/{escape(plan.id)}/" + what, {{method: "POST", body: data}});
  const body = await answer.json();
  const out = document.getElementById("result");
  out.innerHTML = "";
  const head = document.createElement("h2");
  head.className = body.problems.length ? "refused" : "ok";
  head.id = "result-verdict";
  head.textContent = body.problems.length ? "Refused" : (what === "check" ? "Safe" : "Safe — prediction below");
  out.appendChild(head);
  const list = document.createElement("ul");
  for (const p of body.problems.concat(body.changes || [])) {{
    const li = document.createElement("li"); li.textContent = p; list.appendChild(li);
  }}
  out.appendChild(list);
  if (body.html) {{ const div = document.createElement("div"); div.innerHTML = body.html; out.appendChild(div); }}
}}
async function simulate() {{
  const data = new URLSearchParams(new FormData(document.getElementById("plan-form")));
  data.set("period_start", document.getElementById("period-start").value);
  const out = document.getElementById("simulation");
  const started = await (await fetch("/plans/{escape(plan.id)}/simulate", {{method: "POST", body: data}})).json();
  if (!started.job) {{ out.textContent = "Refused: " + started.problems.join("; "); return; }}
  out.textContent = "simulating the corridor twice (deployed, proposed) ...";
  for (;;) {{
    await new Promise(r => setTimeout(r, 2000));
    const body = await (await fetch("/api/simulations/" + started.job)).json();
    if (body.status === "running") continue;
    if (body.status === "done") out.innerHTML = body.html; else out.textContent = "failed: " + body.error;
    break;
  }}
}}
document.getElementById("simulate").onclick = simulate;
document.getElementById("check").onclick = () => ask("check");
document.getElementById("whatif").onclick = () => ask("whatif");
</script>"""
        return page(f"plan {plan.id}", user, body)

    async def _candidate(self, request: web.Request) -> tuple[Plan, Plan | None, list[str], Any]:
        plan = self._plan(request)
        form = await request.post()
        candidate, problems = parse_plan(str(form.get("document", "")))
        if candidate is not None:
            base = form_text(form, "base_version", 12)
            problems = check_candidate(self.service.registry, plan.id, candidate,
                                       int(base) if base.isdigit() else -1)
        return plan, candidate, problems, form

    async def check(self, request: web.Request) -> web.Response:
        """The safety check and the workflow's rules on the editor's text (JSON: problems, changes)."""
        plan, candidate, problems, _ = await self._candidate(request)
        return web.json_response({"problems": problems, "changes": changes(plan, candidate) if candidate else []})

    async def whatif(self, request: web.Request) -> web.Response:
        """The HCM prediction of the timing the candidate's schedule runs now beside the deployed one's, with the
        traffic measured over the last 15 minutes (JSON; refused like a check when the candidate is unsafe)."""
        plan, candidate, problems, _ = await self._candidate(request)
        if candidate is None or any(p != NO_CHANGE for p in problems):
            return web.json_response({"problems": problems})
        at = self.clock()
        history = await self.history(plan.id, DEMAND_WINDOW_S)
        demand, source = measured_demand(history), f"measured over the last {len(history)} min"
        if len(history) < MIN_MEASURED_MIN or sum(demand.values()) <= 0:
            demand = design_demand(plan)
            source = f"of the design counts (only {len(history)} min measured with traffic so far)"
        rows = []
        for label, which in (("deployed", plan), ("proposed", candidate)):
            name, timing = timing_now(which, at)
            rows.append((label, name, predict(which, timing, demand) if timing is not None else None))
        body = {"problems": [], "demand_source": source, "at": at.isoformat(),
                "predictions": {label: msgspec.to_builtins(p) if p else None for label, _, p in rows},
                "html": whatif_html(rows, source)}
        return web.json_response(body)

    async def simulate(self, request: web.Request) -> web.Response:
        """Start the short run of the simulated network with the candidate beside the deployed plans (JSON: the job
        to poll at ``/api/simulations/{job}``); refused like a check when unsafe, 409 while another one runs."""
        plan, candidate, problems, _ = await self._candidate(request)
        if candidate is None or any(p != NO_CHANGE for p in problems):
            return web.json_response({"problems": problems}, status=422)
        if any(not job.task.done() for job in self.simulations.values()):
            return web.json_response({"problems": ["a simulation is running; try again when it has finished"]},
                                     status=409)
        form = await request.post()
        try:
            start_s = parse_period_start(form_text(form, "period_start", 8), self._time_of_day_s())
            measured_period(start_s)  # checked before a job starts
        except SimulationPeriodError as err:
            return web.json_response({"problems": [str(err)]}, status=422)
        job = uuid.uuid4().hex[:12]
        deployed = dict(self.service.registry.plans)
        self.simulations[job] = Simulation(asyncio.create_task(simulate(candidate, deployed, start_s=start_s),
                                                               name=f"simulate-{job}"))
        for old in list(self.simulations)[:-SIMULATIONS_KEPT]:
            del self.simulations[old]
        return web.json_response({"problems": [], "job": job, "plan": plan.id})

    async def simulation(self, request: web.Request) -> web.Response:
        """A simulation's state: running, failed (why) or done (both runs' metrics and the change, as HTML too)."""
        job = self.simulations.get(request.match_info["job"])
        if job is None:
            raise web.HTTPNotFound(text="no such simulation (only the last few are kept)")
        if not job.task.done():
            return web.json_response({"status": "running"})
        if job.task.cancelled() or job.task.exception() is not None:
            return web.json_response({"status": "failed", "error": repr(job.task.exception())})
        result = job.task.result()
        return web.json_response({"status": "done", "result": msgspec.to_builtins(result), "html": simulation_html(result)})

    async def submit(self, request: web.Request) -> web.StreamResponse:
        """Submit the editor's plan for approval; refused (422, every problem listed, the text kept) when unsafe."""
        user = current_user(request)
        plan, candidate, problems, form = await self._candidate(request)
        reason, text = form_text(form, "reason"), str(form.get("document", ""))
        if len(reason) < 3:
            problems = [*problems, "a reason of at least 3 characters is required"]
        if candidate is None or problems:
            await self.service.act(user.username, "plan.submit_refused", plan.id,
                                   reason if len(reason) >= 3 else "no reason given",
                                   **{f"problem_{n}": p for n, p in enumerate(problems[:20], start=1)})
            return web.Response(text=self._editor_html(request, plan, text, problems, reason), content_type="text/html",
                                status=422)
        base = int(form_text(form, "base_version", 12))
        try:
            event = await self.service.propose(plan.id, candidate, base_version=base, author=user.username, reason=reason)
        except ProposalRefused as err:  # someone deployed in between
            return web.Response(text=self._editor_html(request, plan, text, err.problems, reason),
                                content_type="text/html", status=422)
        raise web.HTTPSeeOther(f"/proposals/{event.payload.proposal_id}")  # type: ignore[attr-defined]

    def _proposal_id(self, request: web.Request) -> uuid.UUID:
        try:
            proposal_id = uuid.UUID(request.match_info["proposal"])
        except ValueError as err:
            raise web.HTTPNotFound(text=f"no proposal {request.match_info['proposal']!r}") from err
        if proposal_id not in self.service.registry.proposals:
            raise web.HTTPNotFound(text=f"no proposal {proposal_id}")
        return proposal_id

    async def api_proposal(self, request: web.Request) -> web.Response:
        """A proposal's state and, once deployed, its command's outcome and what the controller reports (JSON)."""
        proposal = self.service.registry.proposals[self._proposal_id(request)]
        p = proposal.proposed
        out: dict[str, Any] = {"proposal_id": str(p.proposal_id), "plan_id": p.plan_id, "version": p.version,
                               "author": p.author, "status": proposal.status.value, "reason": p.reason,
                               "changes": p.changes, "review": msgspec.to_builtins(proposal.review),
                               "deployment": msgspec.to_builtins(proposal.deployment), "outcome": None}
        if proposal.deployment is not None and proposal.deployment.command_id is not None:
            out["outcome"] = await self.service.outcome(proposal.deployment.command_id)
        out["controller"] = dict(self.running(p.plan_id))
        return web.json_response(out)

    async def proposal(self, request: web.Request, refusal: str = "", status: int = 200) -> web.Response:
        """A proposal: who, why, what changes, its review and deployment (``refusal``: why the last action on it
        was refused, with the HTTP ``status`` of that refusal)."""
        user, proposal = current_user(request), self.service.registry.proposals[self._proposal_id(request)]
        p = proposal.proposed
        plan = plan_of(p)
        name, timing = timing_now(plan, self.clock())
        review = ""
        if proposal.status == ProposalStatus.PENDING:
            review = (f'<form method="post" action="/proposals/{p.proposal_id}/review" id="review-form"><h2>Review</h2>'
                      '<label>Reason <input name="reason" id="review-reason" size="80" required minlength="3"></label>'
                      '<label><input type="checkbox" name="hold" id="hold" value="1" checked> hold the junction on this '
                      'plan (adaptive timings refused until released)</label>'
                      '<button name="decision" value="approve" id="approve">Approve and deploy</button> '
                      '<button name="decision" value="reject" id="reject">Reject</button></form>')
        elif proposal.status == ProposalStatus.APPROVED:
            review = (f'<form method="post" action="/proposals/{p.proposal_id}/deploy"><button id="deploy">'
                      'Deploy (approved, deployment not recorded)</button></form>')
        reviewed = (f"<p id=\"review\">{escape(proposal.review.decision.value)} by {escape(proposal.review.reviewer)}: "
                    f"{escape(proposal.review.reason)}</p>") if proposal.review else ""
        timing_text = (f"{name}: cycle {timing.cycle_s:g} s, offset {timing.offset_s:g} s, greens "
                       + ", ".join(f"{s} {timing.stage_greens_s[s]:g} s" for s in plan.sequence)) if timing else f"{name}"
        refused = f'<p id="refusal" class="refused">Refused: {escape(refusal)}</p>' if refusal else ""
        body = f"""<h1>Proposal v{p.version} of {escape(p.plan_id)}</h1>
<table><tr><th>status</th><td id="status">{proposal.status.value}</td></tr>
<tr><th>author</th><td>{escape(p.author)} at {proposal.proposed_at.isoformat()}</td></tr>
<tr><th>reason</th><td>{escape(p.reason)}</td></tr><tr><th>written on</th><td>v{p.base_version}</td></tr>
<tr><th>checksum</th><td>{p.checksum[:16]}</td></tr><tr><th>runs now</th><td>{escape(timing_text)}</td></tr>
<tr><th>changes</th><td><ul>{''.join(f"<li>{escape(c)}</li>" for c in p.changes)}</ul></td></tr></table>
{refused}{reviewed}{review}<h2>Deployment</h2><pre id="deployment" style="white-space:pre-wrap">-</pre>
<script>
async function poll() {{
  const body = await (await fetch("/api/proposals/{p.proposal_id}")).json();
  document.getElementById("status").textContent = body.status;
  const c = body.controller || {{}};
  document.getElementById("deployment").textContent = body.deployment === null ? "not deployed" :
    `timing ${{body.deployment.timing}} sent as command ${{body.deployment.command_id}}: ` +
    `${{body.outcome ? body.outcome.outcome + (body.outcome.detail ? " (" + body.outcome.detail + ")" : "") : "queued"}}\\n` +
    `controller now: ${{c.mode || "?"}}, cycle ${{c.cycle_s ?? "?"}} s, greens ${{JSON.stringify(c.stage_greens_s ?? null)}}`;
}}
poll(); setInterval(poll, 1000);
</script>"""
        return web.Response(text=page(f"proposal {p.plan_id} v{p.version}", user, body), content_type="text/html",
                            status=status)

    # --- acting ---------------------------------------------------------------------------------------
    async def review(self, request: web.Request) -> web.StreamResponse:
        """Approve (and deploy) or reject a proposal; refused for its author and for a proposal not pending."""
        user, proposal_id = current_user(request), self._proposal_id(request)
        form = await request.post()
        reason, decision = form_text(form, "reason"), form_text(form, "decision", 16)
        if len(reason) < 3 or decision not in {"approve", "reject"}:
            raise web.HTTPUnprocessableEntity(text="a decision (approve or reject) and a reason of 3+ characters")
        try:
            await self.service.review(proposal_id, reviewer=user.username, approve=decision == "approve", reason=reason,
                                      hold=form.get("hold") == "1")
        except AccessDenied as err:
            await self.service.act(user.username, "web.denied", str(proposal_id)[:64], str(err)[:500],
                                   permission="plan.approve", role=user.role)
            return await self.proposal(request, str(err), 403)
        except ProposalRefused as err:
            return await self.proposal(request, str(err), 409)
        raise web.HTTPSeeOther(f"/proposals/{proposal_id}")

    async def deploy(self, request: web.Request) -> web.StreamResponse:
        """Deploy an approved proposal whose deployment was not recorded."""
        proposal_id = self._proposal_id(request)
        try:
            await self.service.deploy(proposal_id)
        except ProposalRefused as err:
            raise web.HTTPConflict(text=str(err)) from err
        raise web.HTTPSeeOther(f"/proposals/{proposal_id}")

    async def release(self, request: web.Request) -> web.StreamResponse:
        """End the hold on a junction (a reason is required)."""
        user, plan = current_user(request), self._plan(request)
        reason = form_text(await request.post(), "reason")
        if len(reason) < 3:
            raise web.HTTPUnprocessableEntity(text="a reason of at least 3 characters is required")
        try:
            await self.service.release(plan.id, operator=user.username, reason=reason)
        except ProposalRefused as err:
            raise web.HTTPConflict(text=str(err)) from err
        raise web.HTTPSeeOther(f"/plans/{plan.id}")


def whatif_html(rows: list[tuple[str, str, Prediction | None]], source: str) -> str:
    """The what-if table: per movement, deployed and proposed demand, green, X, delay and LOS."""
    head = "".join(f"<th colspan=4>{label}: {escape(name)}</th>" for label, name, _ in rows)
    by_movement: dict[str, list[Any]] = {}
    for n, (_, _, prediction) in enumerate(rows):
        for m in prediction.movements if prediction else []:
            by_movement.setdefault(m.movement, [None] * len(rows))[n] = m
    lines = []
    for movement, cells in by_movement.items():
        tds = "".join(f"<td>{m.green_s:g} s</td><td>{m.degree_of_saturation:.2f}</td><td>{m.delay_s:g} s</td>"
                      f"<td>{m.los}</td>" if m else "<td colspan=4>-</td>" for m in cells)
        demand = next((m.demand_pcu_h for m in cells if m), 0.0)
        lines.append(f"<tr><td>{escape(movement)}</td><td>{demand:g}</td>{tds}</tr>")
    total = "".join(f"<td colspan=4 id=\"whatif-{label}\">{'-' if p.delay_s is None else p.delay_s} s/pcu, LOS {p.los}, "
                    f"max X {p.max_degree_of_saturation}</td>" if p else "<td colspan=4>flash</td>" for label, _, p in rows)
    notes = sorted({note for _, _, p in rows if p for note in p.notes})
    return (f"<p>HCM control delay with the demand {escape(source)} (pcu/h).</p><table><tr><th>movement</th><th>pcu/h"
            f"</th>{head}</tr><tr><th></th><th></th>{'<th>green</th><th>X</th><th>delay</th><th>LOS</th>' * len(rows)}"
            f"</tr>{''.join(lines)}<tr><th>junction</th><th></th>{total}</tr></table>"
            + (f"<p>{escape('; '.join(notes))}</p>" if notes else ""))


def simulation_html(result: SimulationResult) -> str:
    """Both runs of the twin side by side, with the change (%)."""
    rows = "".join(f"<tr><th>{label}</th><td>{getattr(result.deployed, name):,.{digits}f}</td>"
                   f"<td>{getattr(result.proposed, name):,.{digits}f}</td><td>{change}</td></tr>"
                   for label, name, digits, change in (
                       ("trips completed", "completed", 0, f"{result.change_pct['completed']:+.1f} %"),
                       ("mean delay (s/veh)", "mean_delay_s", 1, f"{result.change_pct['mean_delay_s']:+.1f} %"),
                       ("mean stops (per veh)", "mean_stops", 2, f"{result.change_pct['mean_stops']:+.1f} %"),
                       ("vehicles on the road at the end (any departure)", "running", 0, "")))
    warm_up = (f"after a warm-up from {hhmm(result.begin_s)}" if result.begin_s < result.measured_from_s
               else "from an empty network (the modelled demand starts at 06:00)")
    return (f"<h2>Simulated corridor, trips departing {hhmm(result.measured_from_s)}-{hhmm(result.end_s)} WITA, "
            f"{warm_up} (seed {result.seed})</h2>"
            f'<table id="simulation-result"><tr><th></th><th>deployed</th><th>proposed {escape(result.plan_id)}</th>'
            f"<th>change</th></tr>{rows}</table><p>A short run of the twin: the direction and size of a change, not a "
            "calibrated forecast.</p>")
