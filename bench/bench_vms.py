"""The VMS half of bench/devices.py: N OPC UA board simulators (SignAndEncrypt, Aes256Sha256RsaPss)
and lalin's drivers, all boards commanded at once.

lalin path: ``VmsDriver.send`` — one ShowMessage call, done when the board's subscription shows
it displaying exactly that message (render delay 0, so the figure is the device layer's; the
subscription's publishing interval, 100 ms, bounds how soon a change can be seen).
Baseline: the bare ShowMessage call on a plain secure asyncua session to the same boards, no
confirmation.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from asyncua import ua

from controllers.payloads import CommandOutcome, VmsMessageCommand
from devices.events import RecordingSink
from devices.opcua_common import MIN_DATETIME
from devices.opcua_server import prepare_address_space_cache
from devices.pki import init_pki
from devices.vms_driver import ClientCredentials, VmsDriver, make_client
from devices.vms_model import load_boards, load_model
from devices.vms_sim import VmsBoardSimulator

Summary = Callable[[str, list[float], float], dict[str, float]]


async def run_boards(n: int, rounds: int, workdir: Path, summary: Summary) -> tuple[dict[str, float], dict[str, float]]:
    """Start ``n`` boards and drivers, send ``rounds`` messages to each (all boards at once), then the baseline."""
    model = load_model()
    base = load_boards().boards[0]
    specs = [base.model_copy(update={"id": f"bench-{k:02d}"}) for k in range(n)]
    pki = workdir / "pki"
    init_pki(pki, board_ids=[s.id for s in specs])
    cache = await prepare_address_space_cache(workdir / "cache")
    boards = [VmsBoardSimulator(s, pki, render_delay_s=0.0, address_space_cache=cache) for s in specs]
    for board in boards:
        await board.start()
    sink = RecordingSink()
    credentials = ClientCredentials.central(pki)
    drivers = [VmsDriver(s, b.url, sink, credentials) for s, b in zip(specs, boards, strict=True)]
    try:
        await asyncio.gather(*(d.start() for d in drivers))

        async def drive(driver: VmsDriver) -> list[float]:
            out = []
            for r in range(rounds):
                command = VmsMessageCommand(pages=[["MACET DI DEPAN", f"PESAN {r}"], ["CONGESTION AHEAD", f"MESSAGE {r}"]],
                                            priority=5, duration_s=600)
                t = time.perf_counter()
                outcome = await driver.send(uuid.uuid4(), command, deadline_s=10)
                out.append(time.perf_counter() - t)
                if outcome != CommandOutcome.ACKNOWLEDGED:
                    raise RuntimeError(f"{driver.spec.id}: {outcome}")
            return out

        t0 = time.perf_counter()
        lalin = [x for xs in await asyncio.gather(*(drive(d) for d in drivers)) for x in xs]
        lalin_wall = time.perf_counter() - t0
    finally:
        for driver in drivers:
            await driver.stop()

    async def bare(spec_id: str, board: VmsBoardSimulator) -> list[float]:
        client = await make_client(board.url, credentials, board_id=spec_id, auto_reconnect=False)
        await client.connect()
        try:
            ns = await client.get_namespace_index(model.namespace_uri)
            out = []
            for r in range(rounds):
                args = [ua.Variant(f"bare-{r}", ua.VariantType.String),
                        ua.Variant(["MACET DI DEPAN\nPESAN", "CONGESTION AHEAD\nMESSAGE"], ua.VariantType.String),
                        ua.Variant(5, ua.VariantType.Byte), ua.Variant(MIN_DATETIME, ua.VariantType.DateTime),
                        ua.Variant(600.0, ua.VariantType.Double), ua.Variant(float(base.min_page_time_s), ua.VariantType.Double)]
                request = ua.CallMethodRequest(ObjectId=ua.NodeId(model.board_object, ns),
                                               MethodId=ua.NodeId(model.method_node_id("ShowMessage"), ns), InputArguments=args)
                t = time.perf_counter()
                result = (await client.uaclient.call([request]))[0]
                out.append(time.perf_counter() - t)
                if not result.StatusCode.is_good():
                    raise RuntimeError(f"{spec_id}: {result.StatusCode}")
            return out
        finally:
            await client.disconnect()

    try:
        t0 = time.perf_counter()
        raw = [x for xs in await asyncio.gather(*(bare(s.id, b) for s, b in zip(specs, boards, strict=True))) for x in xs]
        raw_wall = time.perf_counter() - t0
    finally:
        for board in boards:
            await board.stop()
    print(f"boards: {n} simulators (OPC UA SignAndEncrypt, Aes256Sha256RsaPss), {rounds} messages each, all at once "
          f"({len(sink.events)} events emitted by the drivers)")
    return summary("lalin driver (call, confirm by subscription, event)", lalin, lalin_wall), \
        summary("bare asyncua ShowMessage call (baseline)", raw, raw_wall)
