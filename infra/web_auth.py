"""Login, sessions and authorisation of every request of the web surfaces (aiohttp middleware).

Every route is declared with the permission it needs (:data:`ROUTE_PERMISSIONS`, checked by the
middleware before the handler runs); a route missing from it and from :data:`PUBLIC` is refused, so a new
page cannot be left open by mistake (a unit test also checks every registered route is declared). A
request without a live session is sent to ``/login`` (pages) or answered 401 (API, forms); a role without
the permission gets 403, and the refusal is logged as an ``OperatorActed`` event (``web.denied``) with the
user, the role, the permission and the path. Logins, failed logins and logouts are events too
(``web.login``, ``web.login_failed``, ``web.logout``).

Cookies: ``lalin_session`` holds the session token, HttpOnly and SameSite=Strict; a state-changing request
(POST) must also come from the dashboard's own origin (``Origin`` or ``Referer`` matches ``Host``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from html import escape
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from controllers.access import AccessPolicy, Permission
from controllers.payloads import IDENTIFIER_PATTERN
from infra.accounts import Accounts, LoginFailed, User
from infra.plan_service import PlanService

log = logging.getLogger(__name__)
COOKIE = "lalin_session"
USER_KEY = web.RequestKey("user", User)  # the signed-in User of an authorised request
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)

#: (method, route path as registered) -> the permission it needs.
ROUTE_PERMISSIONS: dict[tuple[str, str], Permission] = {
    ("GET", "/"): "view",
    ("GET", "/map.svg"): "view",
    ("GET", "/api/state"): "view",
    ("GET", "/events"): "view",
    ("GET", "/junction/{junction}"): "view",
    ("GET", "/plans"): "view",
    ("GET", "/plans/{plan}"): "view",
    ("GET", "/proposals/{proposal}"): "view",
    ("GET", "/api/proposals/{proposal}"): "view",
    ("POST", "/plans/{plan}/check"): "plan.propose",
    ("POST", "/plans/{plan}/whatif"): "plan.propose",
    ("POST", "/plans/{plan}/proposals"): "plan.propose",
    ("POST", "/plans/{plan}/simulate"): "plan.propose",
    ("GET", "/api/simulations/{job}"): "plan.propose",
    ("POST", "/proposals/{proposal}/review"): "plan.approve",
    ("POST", "/proposals/{proposal}/deploy"): "plan.approve",
    ("POST", "/plans/{plan}/release"): "junction.release",
    ("GET", "/boards"): "view",
    ("POST", "/boards/{board}/order"): "vms.order",
    ("POST", "/boards/{board}/cancel"): "vms.order",
    ("GET", "/audit"): "audit.read",
    ("POST", "/audit/verify"): "audit.read",
    ("GET", "/audit/events"): "audit.read",
    ("GET", "/audit/events/{event_id}"): "audit.read",
    ("GET", "/audit/state"): "audit.read",
    ("POST", "/audit/export"): "audit.export",
    ("GET", "/users"): "users.manage",
    ("POST", "/users"): "users.manage",
}
#: Routes anyone may use (the login form itself).
PUBLIC = frozenset({("GET", "/login"), ("POST", "/login"), ("POST", "/logout")})


def route_key(request: web.Request) -> tuple[str, str]:
    """(method, the route's path pattern) of ``request``."""
    resource = request.match_info.route.resource
    return request.method, resource.canonical if resource is not None else request.path


def operator_name(text: str) -> str:
    """A name fit for an event's operator field (what someone typed at the login form may not be)."""
    return text if _IDENTIFIER.match(text) else "unknown"


class WebAuth:
    """The login pages and the authorisation middleware over :class:`Accounts`."""

    def __init__(self, accounts: Accounts, policy: AccessPolicy, actions: PlanService | None) -> None:
        """``actions`` logs what people do as events (None: only to the log, e.g. without a broker)."""
        self.accounts, self.policy, self.actions = accounts, policy, actions

    async def log_action(self, operator: str, action: str, target: str, reason: str, **detail: str) -> None:
        """An ``OperatorActed`` event of what a person did or was refused."""
        log.info("web: %s %s %s: %s %s", operator, action, target, reason, detail)
        if self.actions is not None:
            await self.actions.act(operator, action, target, reason, **detail)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticate and authorise ``request`` before its handler (see the module docstring)."""
        key = route_key(request)
        if key in PUBLIC:
            return await handler(request)
        if request.match_info.http_exception is not None:  # no such route (404, 405): nothing to authorise
            raise request.match_info.http_exception
        token = request.cookies.get(COOKIE)
        user = await asyncio.to_thread(self.accounts.session, token) if token else None
        if user is None:
            if request.method == "GET" and not request.path.startswith(("/api/", "/events")):
                raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}")
            raise web.HTTPUnauthorized(text="log in first (the session is missing or has expired)")
        if request.method != "GET" and not same_origin(request):
            await self.log_action(user.username, "web.denied", request.path, "cross-site request refused",
                                  origin=request.headers.get("Origin", ""), method=request.method)
            raise web.HTTPForbidden(text="cross-site request refused")
        permission = ROUTE_PERMISSIONS.get(key)
        if permission is None or not self.policy.allows(user.role, permission):
            needed = permission or "a declared route"
            await self.log_action(user.username, "web.denied", request.path[:64], f"role {user.role} lacks {needed}",
                                  permission=needed, role=user.role, method=request.method)
            raise web.HTTPForbidden(text=f"{user.username} ({user.role}) may not {needed}: {request.method} {request.path}")
        request[USER_KEY] = user
        return await handler(request)

    async def login_page(self, request: web.Request) -> web.Response:
        """The login form."""
        return web.Response(text=login_html(request.query.get("next", "/"), ""), content_type="text/html")

    async def login(self, request: web.Request) -> web.StreamResponse:
        """Check the form's user and password; on success a session cookie and a redirect to ``next``."""
        form = await request.post()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        target = safe_next(str(form.get("next", "/")))
        try:
            token, user = await asyncio.to_thread(self.accounts.login, username, password)
        except LoginFailed as err:
            await self.log_action(operator_name(username), "web.login_failed", "web", str(err)[:500],
                                  address=request.remote or "")
            return web.Response(text=login_html(target, str(err)), content_type="text/html", status=401)
        await self.log_action(user.username, "web.login", "web", "signed in", role=user.role,
                              address=request.remote or "")
        response = web.HTTPSeeOther(target)
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                            max_age=int(self.policy.sessions.absolute_timeout_s))
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """End the session and forget the cookie."""
        token = request.cookies.get(COOKIE)
        if token:
            user = await asyncio.to_thread(self.accounts.session, token)
            await asyncio.to_thread(self.accounts.logout, token)
            if user is not None:
                await self.log_action(user.username, "web.logout", "web", "signed out")
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response


def same_origin(request: web.Request) -> bool:
    """True when a state-changing request names this server as its origin (Origin, else Referer)."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin:
        return False
    return urlsplit(origin).netloc == request.host


def safe_next(target: str) -> str:
    """A redirect target on this server only (a path), never another site."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def login_html(next_path: str, error: str) -> str:
    """The login page."""
    problem = f'<p id="login-error" class="error">{escape(error)}</p>' if error else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>lalin — log in</title>{STYLE}</head>'
            f'<body><main class="narrow"><h1>lalin</h1><p>Badung ATCS command centre — log in</p>{problem}'
            f'<form method="post" action="/login"><input type="hidden" name="next" value="{escape(next_path)}">'
            f'<label>User <input name="username" id="username" autocomplete="username" required></label>'
            f'<label>Password <input name="password" id="password" type="password" autocomplete="current-password" '
            f'required></label><button id="login" type="submit">Log in</button></form></main></body></html>')


STYLE = """<style>
body{font-family:sans-serif;margin:0;background:#f4f4f4;color:#222}
nav{background:#1d3557;color:#fff;padding:6px 12px;display:flex;gap:16px;align-items:center}
nav a{color:#fff} nav form{margin-left:auto} nav button{font-size:0.9em}
main{padding:12px} main.narrow{max-width:420px;margin:40px auto;background:#fff;padding:24px;border:1px solid #ccc}
label{display:block;margin:8px 0} input,textarea,select{font-family:monospace}
.error,.refused{color:#b00020} .ok{color:#1a7f37} table{border-collapse:collapse;background:#fff}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
textarea{width:100%;height:480px}
</style>"""


NAV = (("/", "Map"), ("/boards", "Boards"), ("/plans", "Plans"), ("/audit", "Audit"))


def nav(user: User | None) -> str:
    """The navigation bar: the surfaces, who is signed in with which role, and the logout button."""
    who = (f'<span id="who">{escape(user.username)} ({escape(user.role)})</span>'
           '<form method="post" action="/logout"><button id="logout">Log out</button></form>') if user else ""
    links = "".join(f'<a href="{path}">{name}</a>' for path, name in NAV)
    return f"<nav><b>lalin</b>{links}{who}</nav>"


def page(title: str, user: User | None, body: str, head: str = "") -> str:
    """A page of the web surfaces: the navigation bar and ``body`` (``head``: extra style)."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>lalin — {escape(title)}</title>{STYLE}'
            f'{head}</head><body>{nav(user)}<main>{body}</main></body></html>')


def current_user(request: web.Request) -> User:
    """The signed-in user of an authorised request."""
    user: User = request[USER_KEY]
    return user


def form_text(form: Any, name: str, limit: int = 500) -> str:
    """A form field as stripped text, at most ``limit`` characters."""
    return str(form.get(name, "")).strip()[:limit]
