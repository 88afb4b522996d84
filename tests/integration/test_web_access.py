"""Roles and login over real HTTP (the dashboard's aiohttp server, a real PostgreSQL and broker): every role is
refused exactly what its permissions do not allow, on every declared route, and each refusal is an event;
passwords are stored hashed; sessions expire; failed logins lock the account."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer

from controllers.envelope import decode_archived
from controllers.payloads import OperatorActed
from infra.accounts import Accounts, LoginFailed, load_access
from infra.kafka import provision_topics, start_producer
from infra.plan_service import PlanService
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topics import load_catalogue
from infra.vms_catalogue import vms_network
from infra.web import Dashboard, LiveView
from infra.web_auth import ROUTE_PERMISSIONS

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"
NOW = datetime(2026, 11, 24, 0, 30, tzinfo=UTC)


def test_every_registered_route_declares_a_permission(database_url: str) -> None:
    view = LiveView(vms_network(), lambda: None, lambda: None, lambda: NOW)
    dashboard = Dashboard(view, accounts=Accounts(database_url), plans=None, database_url=database_url)  # type: ignore[arg-type]
    registered = {(r.method, r.resource.canonical) for r in dashboard.app.router.routes() if r.method != "HEAD"}
    public = {("GET", "/login"), ("POST", "/login"), ("POST", "/logout")}
    assert registered - public == set(ROUTE_PERMISSIONS), registered ^ (set(ROUTE_PERMISSIONS) | public)


def test_each_role_is_refused_what_it_may_not_do_and_each_refusal_is_an_event(settings: Settings, database_url: str) -> None:
    asyncio.run(each_role(settings, database_url))


async def each_role(settings: Settings, database_url: str) -> None:
    accounts = Accounts(database_url)
    for role in ("viewer", "operator", "engineer", "auditor", "admin"):
        accounts.add(f"{role}1", role, PASSWORD)
    refused: list[tuple[str, str, str]] = []
    async with serving(settings, database_url) as dashboard:
        url = dashboard.url.rstrip("/")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as anonymous:
            async with anonymous.get(url + "/plans", allow_redirects=False) as answer:
                assert answer.status == 303 and answer.headers["Location"].startswith("/login")
            async with anonymous.get(url + "/api/state") as answer:
                assert answer.status == 401
        policy = load_access()
        for role in ("viewer", "operator", "engineer", "auditor", "admin"):
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.post(url + "/login", data={"username": f"{role}1", "password": PASSWORD, "next": "/plans"},
                                     headers={"Origin": url}) as answer:
                    assert answer.status == 200 and f"{role}1 ({role})" in await answer.text()
                for (method, route), permission in sorted(ROUTE_PERMISSIONS.items()):
                    path = route.format(plan="K03", junction="K03", proposal=uuid.uuid4(), event_id=uuid.uuid4(),
                                        job="0" * 12, board="vms-sunset-03")
                    async with http.request(method, url + path, data={} if method == "POST" else None,
                                            headers={"Origin": url}, allow_redirects=False) as answer:
                        status = answer.status
                    if policy.allows(role, permission):
                        assert status != 403, (role, method, route, status)
                    else:
                        assert status == 403, (role, method, route, status)
                        refused.append((f"{role}1", path[:64], permission))
                # a state-changing request from another site is refused even with a valid session
                async with http.post(url + "/plans/K03/check", data={}, headers={"Origin": "http://evil.example"}) as answer:
                    assert answer.status == 403
        assert refused, "no role was refused anything"
    denied = [(p.operator, p.target, p.detail.get("permission")) for p in await operator_events(settings)
              if p.action == "web.denied" and p.detail.get("permission")]
    assert sorted(denied) == sorted(refused)
    logins = [p.operator for p in await operator_events(settings) if p.action == "web.login"]
    assert sorted(logins) == sorted(f"{r}1" for r in ("viewer", "operator", "engineer", "auditor", "admin"))


@contextlib.asynccontextmanager
async def serving(settings: Settings, database_url: str, **options: Any) -> AsyncIterator[Dashboard]:
    """The dashboard on a real database and broker (topics provisioned), stopped afterwards."""
    await provision_topics(settings.kafka, settings.kafka.bootstrap or "", load_catalogue())
    producer, _ = await start_producer(settings.kafka, settings.kafka.bootstrap or "")
    network = vms_network()
    plans = PlanService(database_url, EventPublisher(producer, load_catalogue()), network.plans, {"K03": 3}, lambda: NOW)
    dashboard = Dashboard(LiveView(network, lambda: None, lambda: None, lambda: NOW), accounts=Accounts(database_url),
                          plans=plans, database_url=database_url, **options)
    await dashboard.start()
    try:
        yield dashboard
    finally:
        await dashboard.stop()
        await producer.stop()


def test_an_operator_orders_a_board_message_with_a_reason_and_a_text_that_fits(settings: Settings,
                                                                              database_url: str) -> None:
    Accounts(database_url).add("op.wayan", "operator", PASSWORD)
    asyncio.run(operator_orders(settings, database_url))


async def operator_orders(settings: Settings, database_url: str) -> None:
    async with serving(settings, database_url) as dashboard:
        url = dashboard.url.rstrip("/")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await http.post(url + "/login", data={"username": "op.wayan", "password": PASSWORD})
            too_long = {"text": "JALAN SUNSET ROAD DITUTUP TOTAL SAMPAI BESOK PAGI", "minutes": "30", "reason": "ceremony"}
            async with http.post(url + "/boards/vms-sunset-03/order", data=too_long, headers={"Origin": url}) as answer:
                assert answer.status == 422 and "does not fit vms-sunset-03" in await answer.text()
            order = {"text": "UPACARA ADAT/JALAN DITUTUP|CEREMONY/ROAD CLOSED", "minutes": "45", "reason": "melasti procession"}
            async with http.post(url + "/boards/vms-sunset-03/order", data=order, headers={"Origin": url}) as answer:
                assert answer.status == 200 and "Boards" in await answer.text()
            async with http.post(url + "/boards/vms-sunset-03/cancel", data={"reason": "procession passed"},
                                 headers={"Origin": url}) as answer:
                assert answer.status == 200
    orders = [p for p in await operator_events(settings) if p.action in {"vms_send", "vms_cancel"}]
    assert [(p.operator, p.action, p.target, p.reason) for p in orders] == [
        ("op.wayan", "vms_send", "vms-sunset-03", "melasti procession"),
        ("op.wayan", "vms_cancel", "vms-sunset-03", "procession passed")]
    assert orders[0].detail["text"] == "UPACARA ADAT/JALAN DITUTUP|CEREMONY/ROAD CLOSED"
    assert orders[0].detail["until"] == (NOW + timedelta(minutes=45)).isoformat()


async def operator_events(settings: Settings) -> list[Any]:
    consumer = AIOKafkaConsumer("lalin.operator", bootstrap_servers=settings.kafka.bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    out = []
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=1500)
            if not batches:
                break
            for records in batches.values():
                out += [decode_archived(r.value).payload for r in records]
    finally:
        await consumer.stop()
    return [p for p in out if isinstance(p, OperatorActed)]


def test_passwords_are_hashed_sessions_expire_and_failed_logins_lock(database_url: str) -> None:
    now = [NOW]
    accounts = Accounts(database_url, clock=lambda: now[0])
    accounts.add("eng1", "engineer", PASSWORD)
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT password_hash FROM web_users WHERE username = 'eng1'").fetchone()[0]
    assert stored.startswith("scrypt$16384$8$1$") and PASSWORD not in stored
    token, user = accounts.login("eng1", PASSWORD)
    assert user.role == "engineer" and accounts.session(token) == user
    rules = load_access().sessions
    now[0] += timedelta(seconds=rules.idle_timeout_s - 60)
    assert accounts.session(token) == user  # used within the idle time: still live (and the idle timer restarts)
    now[0] += timedelta(seconds=rules.idle_timeout_s + 1)
    assert accounts.session(token) is None  # idle too long
    token, _ = accounts.login("eng1", PASSWORD)
    for _ in range(int(rules.absolute_timeout_s // (rules.idle_timeout_s / 2)) + 1):
        now[0] += timedelta(seconds=rules.idle_timeout_s / 2)
        accounts.session(token)
    assert accounts.session(token) is None  # busy all along, but past the absolute limit
    token, _ = accounts.login("eng1", PASSWORD)
    accounts.logout(token)
    assert accounts.session(token) is None
    for _ in range(rules.max_failed_logins - 1):
        with pytest.raises(LoginFailed, match="wrong user name or password"):
            accounts.login("eng1", "wrong password!")
    with pytest.raises(LoginFailed, match="now locked"):
        accounts.login("eng1", "wrong password!")
    with pytest.raises(LoginFailed, match="locked until"):
        accounts.login("eng1", PASSWORD)  # even the right password, while locked
    now[0] += timedelta(seconds=rules.lockout_s + 1)
    token, _ = accounts.login("eng1", PASSWORD)
    accounts.disable("eng1")
    assert accounts.session(token) is None
    with pytest.raises(LoginFailed, match="disabled"):
        accounts.login("eng1", PASSWORD)
    with pytest.raises(LoginFailed, match="wrong user name or password"):
        accounts.login("nobody", PASSWORD)


def test_a_live_stream_ends_when_its_account_is_disabled(settings: Settings, database_url: str) -> None:
    asyncio.run(stream_ends(settings, database_url))


async def stream_ends(settings: Settings, database_url: str) -> None:
    accounts = Accounts(database_url)
    accounts.add("wall", "viewer", PASSWORD)
    async with serving(settings, database_url, interval_s=0.2, session_recheck_s=0.5) as dashboard:
        url = dashboard.url.rstrip("/")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await http.post(url + "/login", data={"username": "wall", "password": PASSWORD})
            updates, ended = 0, False
            async with http.get(url + "/events") as answer:
                assert answer.status == 200
                async for line in answer.content:
                    updates += line.startswith(b"data: {\"at\"")
                    if updates == 3:
                        await asyncio.to_thread(accounts.disable, "wall")
                    if line.startswith(b"event: session-ended"):
                        ended = True
                        break
            assert updates >= 3 and ended
            async with http.get(url + "/api/state") as answer:
                assert answer.status == 401
