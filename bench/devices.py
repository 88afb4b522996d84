"""Benchmark: the device layer at Badung's scale — 41 signal controllers (Modbus TCP) and 20 VMS
boards (OPC UA, SignAndEncrypt) driven from one process on this machine.

Controllers: 41 simulators (the five demo plans, round robin), each with its lalin driver
polling status every second and writing the heartbeat. Every controller gets ``--rounds``
commands, all controllers at once, alternating release-to-local and fault reset (commands that
take effect at once, so the latency is the device layer's, not a wait for a cycle boundary as
timings and flash have). Each
command is checked, written in one request and confirmed by reading back, exactly as in
production. Baseline in the same run: the bare protocol exchange — one function-16 write and
one function-4 read with a plain pymodbus client on the same simulators, no lalin logic.

Boards: 20 board simulators, each with its lalin driver subscribed to its display; every board
gets ``--rounds`` messages, all boards at once; a message is done when the subscription shows
the board displaying it. Baseline: the bare OPC UA method call on the same secure sessions.

Prints commands/s and p50/p99 latency (ms) per path and the ratios lalin/baseline.

Usage: python bench/devices.py [--controllers 41] [--boards 20] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from controllers.payloads import CommandOutcome, ControlMode, ModeChangeCommand, ResetFaultCommand
from devices.controller_driver import ControllerDriver
from devices.controller_protocol import PreparedCommand, command_registers
from devices.controller_sim import ControllerSimulator
from devices.events import RecordingSink
from devices.fleet import load_fleet
from devices.register_map import load_register_map


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, latencies_s: list[float], wall_s: float) -> dict[str, float]:
    """Print and return commands/s and p50/p99 (ms) of one path."""
    rate = len(latencies_s) / wall_s
    p50, p99 = percentile(latencies_s, 0.5) * 1000, percentile(latencies_s, 0.99) * 1000
    print(f"  {name:<44} {len(latencies_s):>6} commands {rate:>9.1f}/s   p50 {p50:>7.2f} ms   p99 {p99:>7.2f} ms")
    return {"rate": rate, "p50": p50, "p99": p99}


async def controllers_bench(n: int, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """lalin's driver vs the bare Modbus exchange on ``n`` simulated controllers."""
    fleet = load_fleet().controllers
    regmap = load_register_map()
    sims, drivers = [], []
    sink = RecordingSink()
    for k in range(n):
        base = fleet[k % len(fleet)]
        site = base.model_copy(update={"id": f"C{k + 1:02d}"})
        plan = base.load_plan()
        sim = ControllerSimulator(site, plan)
        await sim.start()
        sims.append(sim)
        drivers.append(ControllerDriver(site, plan, "127.0.0.1", sim.port, sink))
    for driver in drivers:
        await driver.start()
    await asyncio.gather(*(asyncio.wait_for(d.connected.wait(), 10) for d in drivers))

    async def drive(driver: ControllerDriver) -> list[float]:
        out = []
        for r in range(rounds):
            body = ModeChangeCommand(mode=ControlMode.TIME_OF_DAY) if r % 2 == 0 else ResetFaultCommand()
            t = time.perf_counter()
            ack = await driver.send(uuid.uuid4(), body, deadline_s=10)
            out.append(time.perf_counter() - t)
            if ack.outcome != CommandOutcome.ACKNOWLEDGED:
                raise RuntimeError(f"{driver.site.id}: {ack.outcome} {ack.detail}")
        return out

    t0 = time.perf_counter()
    lalin = [x for xs in await asyncio.gather(*(drive(d) for d in drivers)) for x in xs]
    lalin_wall = time.perf_counter() - t0
    for driver in drivers:
        await driver.stop()

    async def bare(sim: ControllerSimulator) -> list[float]:
        client = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=5, retries=0, reconnect_delay=0)
        await client.connect()
        out = []
        try:
            for r in range(rounds):
                block = command_registers(regmap, PreparedCommand("release_to_local" if r % 2 == 0 else "reset_fault"),
                                          sim.state.last_seq % 0xFFFF + 1)
                t = time.perf_counter()
                await client.write_registers(0, block, device_id=1)
                await client.read_input_registers(0, count=regmap.span("input"), device_id=1)
                out.append(time.perf_counter() - t)
        finally:
            client.close()
        return out

    t0 = time.perf_counter()
    raw = [x for xs in await asyncio.gather(*(bare(s) for s in sims)) for x in xs]
    raw_wall = time.perf_counter() - t0
    for sim in sims:
        await sim.stop()
    print(f"controllers: {n} simulators, {rounds} commands each, all at once "
          f"({len(sink.events)} events emitted by the drivers meanwhile)")
    return summary("lalin driver (check, write, read back, event)", lalin, lalin_wall), \
        summary("bare pymodbus write + read (baseline)", raw, raw_wall)


async def boards_bench(n: int, rounds: int) -> tuple[dict[str, float], dict[str, float]] | None:
    """lalin's VMS driver vs the bare OPC UA call on ``n`` simulated boards (see :mod:`bench_vms`)."""
    try:
        from bench_vms import run_boards
    except ImportError as err:
        print(f"boards: not measured ({err})")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return await run_boards(n, rounds, Path(tmp), summary)


def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # asyncua and pymodbus narrate every session and reconnect
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--controllers", type=int, default=41)
    parser.add_argument("--boards", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    lalin, raw = asyncio.run(controllers_bench(args.controllers, args.rounds))
    print(f"  ratio lalin/bare: throughput {lalin['rate'] / raw['rate']:.2f}x, p50 {lalin['p50'] / raw['p50']:.2f}x, "
          f"p99 {lalin['p99'] / raw['p99']:.2f}x")
    boards = asyncio.run(boards_bench(args.boards, args.rounds))
    if boards is not None:
        vms, bare = boards
        print(f"  ratio lalin/bare: throughput {vms['rate'] / bare['rate']:.2f}x, p50 {vms['p50'] / bare['p50']:.2f}x, "
              f"p99 {vms['p99'] / bare['p99']:.2f}x")


if __name__ == "__main__":
    main()
