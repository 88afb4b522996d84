"""The operators' page of the boards (``/boards``): what each board reports showing now, its faults, and — for a
role with ``vms.order`` — an operator's message above every automatic one until it expires, or its cancellation,
always with a reason. An order is the same ``OperatorActed`` (``vms_send`` / ``vms_cancel``) as ``lalin vms
send`` / ``cancel`` publish; the automatic VMS carries it out and reports it like any message (docs/vms.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from html import escape
from typing import Any

from aiohttp import web

from controllers.vms_config import BoardSite
from controllers.vms_state import CANCEL_ACTION, SEND_ACTION
from controllers.vms_text import operator_pages, order_problem
from infra.plan_service import PlanService
from infra.vms_catalogue import load_policy
from infra.web_auth import WebAuth, current_user, form_text, page


class BoardPages:
    """``GET /boards``, ``POST /boards/{board}/order`` and ``/cancel``."""

    def __init__(self, boards: Mapping[str, BoardSite], service: PlanService, auth: WebAuth,
                 live: Callable[[], Mapping[str, Any]], clock: Callable[[], datetime]) -> None:
        """``live()``: every board's row of the live state; ``clock``: the runtime's clock (orders' expiry)."""
        self.boards, self.service, self.auth, self.live, self.clock = boards, service, auth, live, clock

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the application."""
        return [web.get("/boards", self.index), web.post("/boards/{board}/order", self.order),
                web.post("/boards/{board}/cancel", self.cancel)]

    def _board(self, request: web.Request) -> BoardSite:
        board = self.boards.get(request.match_info["board"])
        if board is None:
            raise web.HTTPNotFound(text=f"no board {request.match_info['board']!r}")
        return board

    async def index(self, request: web.Request, problem: str = "", status: int = 200) -> web.Response:
        """Every board: what it shows, its faults, and the order forms."""
        user, live = current_user(request), self.live()
        may_order = self.auth.policy.allows(user.role, "vms.order")
        rows = []
        for board_id, board in sorted(self.boards.items()):
            row = live.get(board_id, {})
            shown = " | ".join(" / ".join(lines) for lines in row.get("pages", [])) or "-"
            forms = (f'<form method="post" action="/boards/{escape(board_id)}/order"><input name="text" size="40" '
                     f'placeholder="JALAN DITUTUP/PUTAR BALIK|ROAD CLOSED/TURN BACK"> for <input name="minutes" size="4" '
                     f'value="30"> min, reason <input name="reason" size="24"> <button>Show</button></form>'
                     f'<form method="post" action="/boards/{escape(board_id)}/cancel">reason <input name="reason" size="24">'
                     " <button>End operator messages</button></form>") if may_order else ""
            rows.append(f'<tr id="row-{escape(board_id)}"><td>{escape(board_id)}</td><td>{escape(board.road or "-")}</td>'
                        f'<td>{escape(str(row.get("status")))}</td><td>{escape(shown)}</td>'
                        f'<td>{escape(", ".join(row.get("faults", [])) or "none")}</td><td>{forms}</td></tr>')
        error = f'<p id="order-refused" class="refused">Refused: {escape(problem)}</p>' if problem else ""
        body = (f"<h1>Boards</h1>{error}<p>Pages are split by |, lines by /. An operator's message outranks every "
                "automatic one until it expires or is ended; every order is logged with its reason.</p>"
                "<table><tr><th>board</th><th>road</th><th>status</th><th>showing</th><th>faults</th><th></th></tr>"
                f"{''.join(rows)}</table>")
        return web.Response(text=page("boards", user, body), content_type="text/html", status=status)

    async def order(self, request: web.Request) -> web.StreamResponse:
        """An operator's message on the board until now + ``minutes``; refused (422) when it does not fit."""
        user, board, form = current_user(request), self._board(request), await request.post()
        text, reason, minutes = form_text(form, "text"), form_text(form, "reason"), form_text(form, "minutes", 6)
        now = self.clock()
        if len(reason) < 3 or not text or not minutes.isdigit():
            return await self.index(request, "a text, a whole number of minutes and a reason of 3+ characters", 422)
        pages = operator_pages(text)
        until = now + timedelta(minutes=int(minutes))
        problem = order_problem(board, pages, load_policy().display.page_time_s, now, until)
        if problem is not None:
            return await self.index(request, problem, 422)
        await self.service.act(user.username, SEND_ACTION, board.id, reason,
                               text="|".join("/".join(lines) for lines in pages), until=until.isoformat())
        raise web.HTTPSeeOther("/boards")

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        """End the operator messages on the board (the automatic ones take over)."""
        user, board = current_user(request), self._board(request)
        reason = form_text(await request.post(), "reason")
        if len(reason) < 3:
            return await self.index(request, "a reason of 3+ characters", 422)
        await self.service.act(user.username, CANCEL_ACTION, board.id, reason)
        raise web.HTTPSeeOther("/boards")
