"""The administrator's page of accounts (``/users``): every account with its role and state, and a form to
add one. Changing roles, passwords and disabling are also ``lalin users ...`` (:mod:`infra.users_cli`).
Each change is logged as an ``OperatorActed`` event by the administrator who made it."""

from __future__ import annotations

import asyncio
from html import escape

from aiohttp import web

from controllers.access import ROLES
from infra.accounts import AccountError, Accounts
from infra.web_auth import WebAuth, current_user, form_text, page


class UserPages:
    """``GET /users`` and ``POST /users`` (permission ``users.manage``)."""

    def __init__(self, accounts: Accounts, auth: WebAuth) -> None:
        self.accounts, self.auth = accounts, auth

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the application."""
        return [web.get("/users", self.index), web.post("/users", self.add)]

    async def index(self, request: web.Request, problem: str = "") -> web.Response:
        """Every account, and the form to add one."""
        rows = "".join(f"<tr><td>{escape(r['username'])}</td><td>{escape(r['role'])}</td><td>{escape(r['full_name'])}"
                       f"</td><td>{'disabled' if r['disabled'] else 'active'}</td></tr>"
                       for r in await asyncio.to_thread(self.accounts.list))
        options = "".join(f"<option>{r}</option>" for r in ROLES)
        error = f'<p class="error" id="users-error">{escape(problem)}</p>' if problem else ""
        body = (f"<h1>Accounts</h1>{error}<table id=\"users\"><tr><th>user</th><th>role</th><th>name</th><th>state</th>"
                f"</tr>{rows}</table><h2>Add</h2><form method=\"post\" action=\"/users\"><label>User <input name=\"username\">"
                f"</label><label>Role <select name=\"role\">{options}</select></label><label>Name <input name=\"full_name\">"
                "</label><label>Password <input name=\"password\" type=\"password\"></label><button>Add</button></form>")
        return web.Response(text=page("accounts", current_user(request), body), content_type="text/html",
                            status=422 if problem else 200)

    async def add(self, request: web.Request) -> web.StreamResponse:
        """Add an account (its name, role and password checked; the action logged)."""
        admin, form = current_user(request), await request.post()
        username, role = form_text(form, "username", 64), form_text(form, "role", 16)
        try:
            await asyncio.to_thread(self.accounts.add, username, role, str(form.get("password", "")),
                                    form_text(form, "full_name", 200))
        except AccountError as err:
            return await self.index(request, str(err))
        await self.auth.log_action(admin.username, "users.add", username, f"account added with role {role}", role=role)
        raise web.HTTPSeeOther("/users")
