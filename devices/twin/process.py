"""The twin in a child process, behind an async API; and the fixed-time baseline.

libsumo allows one simulation per process and holds the GIL for a whole step, so lalin's main
process (asyncio, Modbus servers) runs :class:`SumoWorld` in a child started with the ``spawn``
method. The two talk over a pipe in small picklable messages, one request at a time:

* parent -> child: ``(operation, arguments)``: ``start`` (the world's settings), ``call`` (a method
  of the world and its arguments), ``fixed_time`` (a whole :func:`run_fixed_time`), ``close``;
* child -> parent: ``("ok", result)`` or ``("error", type name, message)``.

The parent waits for an answer with the event loop's reader on the pipe (no thread). An error in
the child becomes :class:`TwinProcessError` carrying the child's exception type and message; a
child that dies becomes one too, with its exit code. :meth:`TwinProcess.close` ends the world,
then the child, and reaps it (it is killed if it does not end within its timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import multiprocessing
import os
from collections.abc import Mapping
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from controllers.errors import ConfigurationError
from controllers.plan import Plan
from devices.twin import DATA_DIR
from devices.twin.build import LATERAL_RESOLUTION_M, STEP_LENGTH_S
from devices.twin.errors import TwinError, TwinProcessError
from devices.twin.fixed_time import DEFAULT_DATE, FixedTimeCorridor
from devices.twin.reports import CameraReading, StepReport, TripMetrics
from devices.twin.sumo_files import DEMAND_BEGIN_S, DEMAND_END_S
from devices.twin.world import SumoWorld

#: The world's methods the parent may call in the child.
CALLABLE = frozenset({"step", "camera_observation", "stall_vehicle", "metrics", "signal_groups", "controllers", "cameras"})
CLOSE_TIMEOUT_S = 10.0


def run_fixed_time(seed: int = 42, begin_s: float = DEMAND_BEGIN_S, end_s: float = DEMAND_END_S,
                   step_s: float = STEP_LENGTH_S, data_dir: Path = DATA_DIR, date: datetime.date = DEFAULT_DATE,
                   lateral_resolution_m: float = LATERAL_RESOLUTION_M,
                   incident: tuple[float, str, float] | None = None,
                   plan_documents: Mapping[str, str] | None = None,
                   measure_from_s: float | None = None) -> TripMetrics:
    """The demand from ``begin_s`` to ``end_s`` (s after local midnight) of ``date`` under each junction's own
    time-of-day plan, run by lalin's controller firmware (see :mod:`devices.twin.fixed_time`): the trip metrics.
    ``incident`` (s after local midnight, camera, duration s): a vehicle stalls, as in the run compared with.
    ``plan_documents`` (controller id -> a plan's JSON): plans that replace the catalogued ones (a what-if).
    ``measure_from_s`` (s after local midnight): the end of a warm-up; the metrics count the trips that depart
    from then on (:meth:`SumoWorld.begin_measure`). Default: from ``begin_s``.

    Blocking, and it runs libsumo in this process: call it in a child process (a ``spawn``
    ``ProcessPoolExecutor``, or :func:`run_fixed_time_in_child`) beside an event loop or another world."""
    from devices.fleet import load_fleet

    if measure_from_s is not None and not begin_s <= measure_from_s < end_s:
        raise ConfigurationError(f"measurement from {measure_from_s} s is not within the run, {begin_s}-{end_s} s "
                                 "after midnight")
    plans = {site.id: site.load_plan() for site in load_fleet().controllers}
    plans |= {cid: Plan.model_validate_json(text) for cid, text in (plan_documents or {}).items()}
    with SumoWorld(data_dir=data_dir, seed=seed, step_s=step_s, begin_s=begin_s, end_s=end_s,
                   lateral_resolution_m=lateral_resolution_m) as world:
        corridor = FixedTimeCorridor({cid: plans[cid] for cid in world.controllers()}, date, world.time_of_day_s)
        stalled: str | None = None
        warming_up = measure_from_s is not None and measure_from_s > begin_s
        while world.time_s < end_s - 1e-9:
            if warming_up and measure_from_s is not None and world.time_s >= measure_from_s - 1e-9:
                world.begin_measure()
                warming_up = False
            if incident is not None and stalled is None and world.time_s >= incident[0]:
                stalled = world.stall_vehicle(incident[1], incident[2])  # the same incident as the compared run
            world.step(corridor.aspects())
            corridor.advance(step_s)
        return world.metrics()


def _serve(conn: Connection, quiet: bool) -> None:
    """The child: answer requests until ``close`` (or the parent goes away)."""
    if quiet:  # SUMO's loading messages go to the C stdout
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    world: SumoWorld | None = None
    try:
        while True:
            try:
                request = conn.recv()
            except EOFError:
                return
            operation = request[0]
            try:
                result = _handle(world, request)
                if operation == "start":
                    world, result = result, None
            except Exception as err:  # noqa: BLE001  (every error goes back to the parent, typed by name)
                result, failed = (type(err).__name__, str(err)), True
            else:
                failed = False
            try:
                conn.send(("error", *result) if failed else ("ok", result))
            except (BrokenPipeError, ConnectionResetError):
                return  # the parent went away (it stopped, or abandoned a stuck request): nothing to answer
            if operation == "close":
                return
    finally:
        if world is not None:
            world.close()
        conn.close()


def _handle(world: SumoWorld | None, request: tuple[Any, ...]) -> Any:
    operation = request[0]
    if operation == "start":
        if world is not None:
            raise TwinError("the twin's world is already started")
        started = SumoWorld(**request[1])
        started.start()
        return started
    if operation == "fixed_time":
        return run_fixed_time(**request[1])
    if operation == "close":
        if world is not None:
            world.close()
        return None
    if operation == "call":
        name, args = request[1], request[2]
        if name not in CALLABLE:
            raise TwinError(f"the twin has no operation {name!r}")
        if world is None:
            raise TwinError(f"{name}: the twin's world is not started")
        return getattr(world, name)(*args)
    raise TwinError(f"unknown request {operation!r}")


class TwinProcess:
    """A :class:`SumoWorld` in a child process with an async API (see the module docstring).

    ``world_options`` are :class:`SumoWorld`'s keyword arguments (``seed``, ``step_s``, ``begin_s``,
    ``end_s``, ``data_dir``, ...); ``quiet`` silences SUMO's messages on the child's stdout."""

    def __init__(self, quiet: bool = True, **world_options: Any) -> None:
        """Nothing runs until :meth:`start`."""
        self.world_options = world_options
        self.quiet = quiet
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self._unread: asyncio.Future[Any] | None = None  # the answer to a request whose caller was cancelled

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    async def _spawn(self) -> None:
        if self._process is not None:
            raise TwinError("the twin's child process is already running")
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe(duplex=True)
        process = context.Process(target=_serve, args=(child, self.quiet), name="lalin-twin", daemon=True)
        process.start()
        child.close()
        self._process, self._conn = process, parent

    async def start(self) -> None:
        """Start the child and the world in it (TwinProcessError with the child's message if it fails)."""
        await self._spawn()
        try:
            await self._request(("start", self.world_options))
        except BaseException:
            await self._reap()
            raise

    async def _request(self, request: tuple[Any, ...]) -> Any:
        """Send ``request`` and wait for its answer; one request at a time, answers in order.

        A caller cancelled while waiting (a task stopped mid-step) does not desynchronise the
        pipe: its answer is still read when it comes, and the next request waits for it first
        (up to :data:`CLOSE_TIMEOUT_S`; after that the child is abandoned and killed).
        """
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise TwinError("the twin's child process is not running: call start() first")
            await self._drain_unread(conn)
            loop = asyncio.get_running_loop()
            answer: asyncio.Future[Any] = loop.create_future()

            def readable() -> None:
                loop.remove_reader(conn.fileno())
                if answer.done():
                    return
                try:
                    answer.set_result(conn.recv())
                except (EOFError, OSError) as err:
                    answer.set_exception(err)

            try:
                conn.send(request)
            except (BrokenPipeError, OSError) as err:
                raise self._died(err) from err
            loop.add_reader(conn.fileno(), readable)
            try:
                reply = await asyncio.shield(answer)  # a cancelled caller leaves the read going on
            except asyncio.CancelledError:
                self._unread = answer
                raise
            except (EOFError, OSError) as err:
                raise self._died(err) from err
        if reply[0] == "error":
            raise TwinProcessError(f"the twin's child raised {reply[1]}: {reply[2]}", child_type=reply[1])
        return reply[1]

    async def _drain_unread(self, conn: Connection) -> None:
        """Read and drop the answer a cancelled caller left in the pipe (see :meth:`_request`)."""
        unread, self._unread = self._unread, None
        if unread is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(unread), CLOSE_TIMEOUT_S)
        except (EOFError, OSError) as err:
            raise self._died(err) from err
        except TimeoutError:
            asyncio.get_running_loop().remove_reader(conn.fileno())
            self._conn = None
            self._abandon(conn)
            raise TwinProcessError(f"the twin's child did not answer within {CLOSE_TIMEOUT_S:g} s; killed",
                                   child_type="") from None

    def _died(self, err: BaseException) -> TwinProcessError:
        process = self._process
        code = process.exitcode if process is not None else None
        return TwinProcessError(f"the twin's child process ended (exit code {code}): {err!r}", child_type="")

    def _abandon(self, conn: Connection) -> None:
        conn.close()
        if self._process is not None and self._process.is_alive():
            self._process.kill()

    async def step(self, aspects: Mapping[str, Mapping[str, str]]) -> StepReport:
        """:meth:`SumoWorld.step` in the child."""
        report: StepReport = await self._request(("call", "step", ({k: dict(v) for k, v in aspects.items()},)))
        return report

    async def camera_observation(self, camera_id: str) -> CameraReading:
        """:meth:`SumoWorld.camera_observation` in the child."""
        reading: CameraReading = await self._request(("call", "camera_observation", (camera_id,)))
        return reading

    async def stall_vehicle(self, camera_id: str, duration_s: float) -> str | None:
        """:meth:`SumoWorld.stall_vehicle` in the child."""
        vehicle: str | None = await self._request(("call", "stall_vehicle", (camera_id, duration_s)))
        return vehicle

    async def metrics(self) -> TripMetrics:
        """:meth:`SumoWorld.metrics` in the child."""
        metrics: TripMetrics = await self._request(("call", "metrics", ()))
        return metrics

    async def signal_groups(self, controller_id: str) -> list[str]:
        """:meth:`SumoWorld.signal_groups` in the child."""
        groups: list[str] = await self._request(("call", "signal_groups", (controller_id,)))
        return groups

    async def controllers(self) -> list[str]:
        """:meth:`SumoWorld.controllers` in the child."""
        controllers: list[str] = await self._request(("call", "controllers", ()))
        return controllers

    async def cameras(self) -> list[str]:
        """:meth:`SumoWorld.cameras` in the child."""
        cameras: list[str] = await self._request(("call", "cameras", ()))
        return cameras

    async def close(self) -> None:
        """Close the world, end the child and reap it (killed after :data:`CLOSE_TIMEOUT_S`); idempotent."""
        if self._conn is not None:
            with contextlib.suppress(TwinError, TimeoutError):  # the child is gone or stuck: it is killed below
                await asyncio.wait_for(self._request(("close",)), CLOSE_TIMEOUT_S)
        await self._reap()

    async def _reap(self) -> None:
        process, conn = self._process, self._conn
        self._process, self._conn = None, None
        if conn is not None:
            conn.close()
        if process is None:
            return
        deadline = asyncio.get_running_loop().time() + CLOSE_TIMEOUT_S
        while process.is_alive() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        if process.is_alive():
            process.kill()
            while process.is_alive():
                await asyncio.sleep(0.02)
        process.join()
        process.close()

    async def __aenter__(self) -> TwinProcess:
        """Start; closed when the block ends."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close."""
        await self.close()


async def run_fixed_time_in_child(**options: Any) -> TripMetrics:
    """:func:`run_fixed_time` with ``options`` in a child process of its own; the event loop stays free."""
    twin = TwinProcess()
    await twin._spawn()
    try:
        metrics: TripMetrics = await twin._request(("fixed_time", options))
        return metrics
    finally:
        await twin.close()
