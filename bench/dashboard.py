"""The live dashboard at Badung's scale: 41 junctions on eight corridors and 20 boards, updating every second.

The demo's five Jl. Sunset Road plans are cloned onto eight corridors (41 junctions, each with a
minute summary in the automatic VMS's folded state) and its boards onto 20 placements. Measured in
one run, on a real aiohttp server (real PostgreSQL for the logins, real broker for their events):

1. **building one update** (``LiveView.state``: every junction's degree of saturation, HCM delay and
   level of service, every board, the alarms) and encoding it as JSON; baseline: the JSON encoding
   alone. Against the 1-s update interval.
2. **serving** N server-sent-event clients (a video wall and operators' screens, in a child process)
   for a while: the server process's CPU time per wall second, with the state built once per
   interval and shared by every client (lalin's way) and, as the baseline, built for each client.

    .venv/bin/python -P bench/dashboard.py [--clients 12] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import msgspec

from controllers.network_map import network_svg
from controllers.vms_state import VmsNetwork, VmsState
from infra.accounts import Accounts
from infra.db import migrate
from infra.embedded.broker import TansuBroker
from infra.embedded.postgres import EmbeddedPostgres
from infra.kafka import provision_topics, start_producer
from infra.plan_service import PlanService
from infra.publisher import EventPublisher
from infra.settings import KafkaSettings
from infra.topics import load_catalogue
from infra.vms_catalogue import vms_network
from infra.web import Dashboard, LiveView
from tests.unit.test_vms_policy import summary

CORRIDORS = 8
JUNCTIONS = 41
BOARDS = 20
NOW = datetime(2026, 11, 24, 0, 30, tzinfo=UTC)
PASSWORD = "video-wall-bench"


def badung_network() -> tuple[VmsNetwork, VmsState]:
    """41 junctions on eight corridors (clones of the demo plans), 20 boards, a summary per junction."""
    demo = vms_network()
    templates = [demo.plans[j] for j in sorted(demo.plans)]
    plans, detectors = {}, {}
    for n in range(JUNCTIONS):
        corridor, template = n % CORRIDORS, templates[n % len(templates)]
        junction = f"J{n + 1:02d}"
        assert template.coordination is not None
        coordination = template.coordination.model_copy(update={"corridor": f"Corridor {corridor + 1}",
                                                                "chainage_m": 600.0 * (n // CORRIDORS)})
        plans[junction] = template.model_copy(update={"id": junction, "coordination": coordination})
        detectors[junction] = demo.detectors[template.id]
    boards = []
    for n in range(BOARDS):
        board = demo.boards[n % len(demo.boards)]
        boards.append(msgspec.structs.replace(board, id=f"vms-{n + 1:02d}", corridor=f"Corridor {n % CORRIDORS + 1}",
                                              chainage_m=300.0 + 600.0 * (n // CORRIDORS), downstream=()))
    network = VmsNetwork(plans=plans, detectors=detectors, boards=boards)
    state = VmsState()
    for n, junction in enumerate(plans):
        template = templates[n % len(templates)].id
        s = msgspec.structs.replace(summary(template, NOW, x=0.4 + 0.05 * (n % 12)), intersection_id=junction)
        state.summaries[junction] = s
        state.summary_ids[junction] = uuid.uuid4()
    return network, state


def clients(url: str, count: int, seconds: float, out: Any) -> None:
    """The SSE clients (in a child process): log in, read the event stream, count messages and bytes."""
    async def one(session: aiohttp.ClientSession) -> tuple[int, int]:
        messages = size = 0
        deadline = time.monotonic() + seconds
        async with session.get(url + "/events") as answer:
            async for line in answer.content:
                if line.startswith(b"data: "):
                    messages, size = messages + 1, size + len(line)
                if time.monotonic() > deadline:
                    break
        return messages, size

    async def main() -> None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            await session.post(url + "/login", data={"username": "wall", "password": PASSWORD})
            results = await asyncio.gather(*(one(session) for _ in range(count)))
        out.send(results)

    asyncio.run(main())


async def serve(network: VmsNetwork, state: VmsState, database_url: str, bootstrap: str, count: int, seconds: float,
                shared: bool) -> tuple[float, int, int]:
    """Serve ``count`` SSE clients for ``seconds``: (server CPU s per wall s, messages, bytes)."""
    kafka = KafkaSettings(bootstrap=bootstrap)
    producer, _ = await start_producer(kafka, bootstrap)
    plans = PlanService(database_url, EventPublisher(producer, load_catalogue()), network.plans, {}, lambda: NOW)
    vms = SimpleNamespace(policy=SimpleNamespace(state=state), latest=None)  # the automatic VMS's folded state
    view = LiveView(network, lambda: None, lambda: vms, lambda: NOW)  # type: ignore[arg-type, return-value]
    dashboard = Dashboard(view, accounts=Accounts(database_url), plans=plans, database_url=database_url,
                          interval_s=1.0, share_updates=shared)
    await dashboard.start()
    try:
        receive, send = multiprocessing.get_context("spawn").Pipe(duplex=False)
        child = multiprocessing.get_context("spawn").Process(target=clients, args=(dashboard.url.rstrip("/"), count,
                                                                                  seconds, send))
        child.start()
        await asyncio.sleep(2.0)  # logins and connections
        cpu0, wall0 = time.process_time(), time.monotonic()
        while child.is_alive():
            await asyncio.sleep(0.2)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        results = receive.recv() if receive.poll(5) else []
        return cpu / wall, sum(m for m, _ in results), sum(b for _, b in results)
    finally:
        await dashboard.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    network, state = badung_network()
    vms = SimpleNamespace(policy=SimpleNamespace(state=state), latest=None)
    view = LiveView(network, lambda: None, lambda: vms, lambda: NOW)  # type: ignore[arg-type, return-value]
    svg = network_svg(network.plans, network.boards)
    runs = 200
    t0 = time.perf_counter()
    for _ in range(runs):
        payload = json.dumps(view.state())
    build_ms = (time.perf_counter() - t0) / runs * 1000
    snapshot = view.state()
    t0 = time.perf_counter()
    for _ in range(runs):
        json.dumps(snapshot)
    encode_ms = (time.perf_counter() - t0) / runs * 1000
    print(f"network: {len(network.plans)} junctions on {CORRIDORS} corridors, {len(network.boards)} boards; "
          f"map SVG {len(svg) / 1024:.0f} KiB")
    print(f"one update: state + JSON {build_ms:.2f} ms ({len(payload) / 1024:.1f} KiB); JSON alone {encode_ms:.2f} ms "
          f"(x{build_ms / encode_ms:.1f}); {build_ms / 10:.2f} % of the 1-s interval")
    with tempfile.TemporaryDirectory() as tmp:
        postgres, broker = EmbeddedPostgres(Path(tmp) / "pg"), TansuBroker(Path(tmp) / "tansu.log")
        postgres.start()
        broker.start()
        try:
            migrate(postgres.url)
            Accounts(postgres.url).add("wall", "viewer", PASSWORD)
            asyncio.run(provision_topics(KafkaSettings(bootstrap=broker.bootstrap), broker.bootstrap, load_catalogue()))
            figures = {}
            for shared in (False, True):
                figures[shared] = asyncio.run(serve(network, state, postgres.url, broker.bootstrap, args.clients,
                                                    args.seconds, shared))
        finally:
            broker.stop()
            postgres.stop()
    for shared, (cpu, messages, size) in figures.items():
        print(f"{args.clients} SSE clients for {args.seconds:g} s, state {'shared per interval' if shared else 'per client'}: "
              f"server CPU {cpu * 100:.1f} % of a core, {messages} updates received ({messages / args.clients / args.seconds:.2f}"
              f" per client per s), {size / 1024 / args.seconds:.0f} KiB/s")
    print(f"shared / per client server CPU: x{figures[True][0] / figures[False][0]:.2f}")


if __name__ == "__main__":
    main()
