"""``SumoWorld``: the corridor's SUMO simulation in this process (libsumo), driven by lalin's aspects.

One step of :meth:`SumoWorld.step` sets every given controller's signal groups, advances the
simulation by exactly one step and reports what the stop-line loops saw. Time is SUMO's:
seconds after local midnight (WITA), so the morning peak runs 21600-32400 s (06:00-09:00).
Before the first aspects arrive every light is red (SUMO's own programs never run).

Only one libsumo simulation can exist in a process (a second ``start`` silently replaces the
first), and libsumo holds the GIL during a step: run it in its own process beside an event loop
(:class:`devices.twin.process.TwinProcess`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from controllers.errors import ConfigurationError
from devices.twin import DATA_DIR
from devices.twin.aspects import check_state, state_string
from devices.twin.build import LATERAL_RESOLUTION_M, STEP_LENGTH_S, TIME_TO_TELEPORT_S
from devices.twin.errors import InvalidSignalState, SimulationNotRunning, TwinError, UnknownCamera
from devices.twin.links import LINKS_FILE, ApproachLinks, SignalLinks, load_links
from devices.twin.plainxml import PREFIX
from devices.twin.reports import CameraReading, DetectorEntry, DetectorStep, StepReport, TripMetrics
from devices.twin.sumo_files import CLASS_WEIGHT, DEMAND_BEGIN_S, DEMAND_END_S, E2_LENGTH_M, VTYPE_CLASS
from devices.twin.tracking import LoopTracker, TripTracker

DAY_S = 86400.0
STALL_MIN_FROM_STOP_LINE_M = 15.0  # a stalled vehicle blocks its lane: not one already at the stop line
STALL_MIN_IN_VIEW_M = 40.0  # ... and is this far inside the camera's view, so the queue behind it is seen


class SumoWorld:
    """The corridor simulation (see the module docstring). Use as a context manager, or ``start()``/``close()``."""

    _active: ClassVar[SumoWorld | None] = None  # the one libsumo simulation of this process

    def __init__(self, data_dir: Path = DATA_DIR, seed: int = 42, step_s: float = STEP_LENGTH_S,
                 begin_s: float = DEMAND_BEGIN_S, end_s: float = DEMAND_END_S,
                 lateral_resolution_m: float = LATERAL_RESOLUTION_M, time_to_teleport_s: float = TIME_TO_TELEPORT_S,
                 warnings: bool = False, extra_options: Sequence[str] = ()) -> None:
        """A world of the twin in ``data_dir``: SUMO ``seed``, step (s), begin and end (s after local midnight; SUMO
        is told the end, but libsumo keeps stepping past it, without demand after 09:00), the sublane model's
        lateral resolution (m, 0 = off), teleport time (s, -1 = never), whether SUMO prints its warnings
        (collisions, teleports) on stderr, and extra SUMO options."""
        if step_s <= 0 or end_s <= begin_s:
            raise ConfigurationError(f"twin step {step_s} s must be > 0 and end {end_s} s after begin {begin_s} s")
        self.data_dir = Path(data_dir)
        self.seed, self.step_s, self.begin_s, self.end_s = seed, step_s, begin_s, end_s
        self.lateral_resolution_m, self.time_to_teleport_s = lateral_resolution_m, time_to_teleport_s
        self.warnings, self.extra_options = warnings, tuple(extra_options)
        self.links: SignalLinks = load_links(self.data_dir / LINKS_FILE)
        self._cameras: dict[str, ApproachLinks] = {a.camera: a for c in self.links.controllers.values()
                                                   for a in c.approaches.values()}
        self._loops = LoopTracker(self.links, VTYPE_CLASS, CLASS_WEIGHT)
        self._trips = TripTracker(VTYPE_CLASS, CLASS_WEIGHT)
        self._states: dict[str, str] = {}
        self._link_counts: dict[str, int] = {}
        self._stalls: dict[str, tuple[str, float]] = {}  # vehicle id -> (camera, end time s)
        self._camera_read_s: dict[str, float] = {}
        self._sumo: Any = None
        self._time_s = begin_s
        self._measured_from_s = begin_s

    # -- life cycle -----------------------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The SUMO command line this world starts (argv[0] is not executed by libsumo)."""
        return ["sumo", "-c", str(self.data_dir / f"{PREFIX}.sumocfg"), "--seed", str(self.seed),
                "--step-length", f"{self.step_s:g}", "--begin", f"{self.begin_s:g}", "--end", f"{self.end_s:g}",
                "--lateral-resolution", f"{self.lateral_resolution_m:g}",
                "--time-to-teleport", f"{self.time_to_teleport_s:g}",
                "--no-step-log", "true", "--no-warnings", "false" if self.warnings else "true",
                "--duration-log.disable", "true", *self.extra_options]

    def start(self) -> None:
        """Load the net, demand and detectors and set every light to red; TwinError if this process already runs one."""
        if SumoWorld._active is not None:
            raise TwinError("a SUMO world already runs in this process (libsumo allows one); close it first")
        import libsumo

        try:
            libsumo.start(self.command())
        except libsumo.TraCIException as err:
            raise TwinError(f"SUMO did not start with {self.command()}: {err}") from err
        SumoWorld._active, self._sumo = self, libsumo
        try:
            for cid, controller in self.links.controllers.items():
                count = len(libsumo.trafficlight.getControlledLinks(controller.tls_id))
                self._link_counts[controller.tls_id] = count
                if count != len(controller.links):
                    raise ConfigurationError(f"{cid}: the net has {count} links at {controller.tls_id}, "
                                             f"{LINKS_FILE} maps {len(controller.links)}")
                self._set_state(controller.tls_id, "r" * count)
        except BaseException:
            self.close()
            raise
        self._time_s = float(libsumo.simulation.getTime())
        self._camera_read_s = dict.fromkeys(self._cameras, self._time_s)

    def close(self) -> None:
        """End the simulation (idempotent)."""
        if self._sumo is not None:
            self._sumo.close()
            self._sumo = None
            SumoWorld._active = None

    def __enter__(self) -> SumoWorld:
        """Start; the world closes when the block ends."""
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        """Close."""
        self.close()

    @property
    def time_s(self) -> float:
        """SUMO time (s): seconds after local midnight (WITA) of the simulated day."""
        return self._time_s

    @property
    def time_of_day_s(self) -> float:
        """Seconds after local midnight (WITA)."""
        return self._time_s % DAY_S

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``close()``."""
        return self._sumo is not None

    def controllers(self) -> list[str]:
        """Controller ids of the twin (= SUMO traffic-light ids)."""
        return list(self.links.controllers)

    def signal_groups(self, controller_id: str) -> list[str]:
        """The signal groups of ``controller_id`` that drive SUMO links (vehicle groups; no pedestrians), sorted."""
        return sorted(self.links.controller(controller_id).groups())

    def cameras(self) -> list[str]:
        """Every approach camera id (``CAM-<controller>-<approach>``)."""
        return list(self._cameras)

    # -- stepping -------------------------------------------------------------------------------------------

    def step(self, aspects: Mapping[str, Mapping[str, str]]) -> StepReport:
        """Show ``aspects`` (controller id -> signal group -> GroupState value) and advance one step.

        A controller given must have an aspect for each of its vehicle groups (MissingAspect otherwise);
        a controller not given keeps its last state. Nothing is changed when any aspect is refused."""
        sumo = self._require()
        states = {}
        for cid, groups in aspects.items():
            if cid not in self.links.controllers:
                raise InvalidSignalState(f"controller {cid!r} is not in the twin (known: {', '.join(self.links.controllers)})")
            controller = self.links.controllers[cid]
            states[controller.tls_id] = state_string(cid, controller.links, groups)
        for tls_id, state in states.items():
            if self._states.get(tls_id) != state:
                self._set_state(tls_id, state)
        sumo.simulationStep()
        now = float(sumo.simulation.getTime())
        previous, self._time_s = self._time_s, now
        self._trips.update(sumo)
        self._loops.forget(self._trips.arrived_last_step)
        detectors = self._loops.read(sumo, previous, now)
        self._release_stalls(now)
        return StepReport(time_s=now, detectors=detectors)

    def _set_state(self, tls_id: str, state: str) -> None:
        check_state(tls_id, state, self._link_counts[tls_id])  # SUMO itself accepts some wrong strings silently
        self._sumo.trafficlight.setRedYellowGreenState(tls_id, state)
        self._states[tls_id] = state

    def _require(self) -> Any:
        if self._sumo is None:
            raise SimulationNotRunning("the SUMO world is not running: call start() first (or it was closed)")
        return self._sumo

    # -- cameras and incidents --------------------------------------------------------------------------------

    def _approach(self, camera_id: str) -> ApproachLinks:
        try:
            return self._cameras[camera_id]
        except KeyError:
            raise UnknownCamera(f"camera {camera_id!r} is not in the twin (known: {', '.join(self._cameras)})") from None

    def camera_observation(self, camera_id: str) -> CameraReading:
        """What the approach's camera sees now (see :class:`CameraReading`); its crossing counts restart."""
        approach = self._approach(camera_id)
        sumo = self._require()
        counts = self._loops.take_crossings(approach.e1)
        queue_m = max((float(sumo.lanearea.getJamLengthMeters(e2)) for e2 in approach.e2), default=0.0)
        halting = sum(int(sumo.lanearea.getLastStepHaltingNumber(e2)) for e2 in approach.e2)
        incident = any(cam == camera_id for cam, _ in self._stalls.values())
        since, self._camera_read_s[camera_id] = self._camera_read_s[camera_id], self._time_s
        return CameraReading(camera_id=camera_id, time_s=self._time_s, interval_s=self._time_s - since,
                             motorcycle=counts.get("motorcycle", 0), car=counts.get("car", 0), heavy=counts.get("heavy", 0),
                             queue_m=queue_m, halting=halting, incident=incident)

    def stall_vehicle(self, camera_id: str, duration_s: float) -> str | None:
        """Stop one vehicle on the camera's approach for ``duration_s`` simulated seconds (an incident the camera
        sees): the most downstream vehicle on a signalised lane between 15 m and 80 m before the stop line (the
        camera's view is its E2 detectors, the last 120 m). Its id, or None when no vehicle is there now."""
        approach = self._approach(camera_id)
        if duration_s <= 0:
            raise TwinError(f"stall duration {duration_s} s must be > 0")
        sumo = self._require()
        candidates = []
        for lane in (lane for lane in approach.lanes if lane not in approach.free_flow_lanes):
            length = float(sumo.lane.getLength(lane))
            low, high = length - E2_LENGTH_M + STALL_MIN_IN_VIEW_M, length - STALL_MIN_FROM_STOP_LINE_M
            for vehicle in sumo.lane.getLastStepVehicleIDs(lane):
                position = float(sumo.vehicle.getLanePosition(vehicle))
                if vehicle not in self._stalls and low <= position <= high:
                    candidates.append((position, str(vehicle)))
        if not candidates:
            return None
        _, vehicle = max(candidates)
        sumo.vehicle.setLaneChangeMode(vehicle, 0)
        sumo.vehicle.setSpeed(vehicle, 0.0)
        self._stalls[vehicle] = (camera_id, self._time_s + duration_s)
        return vehicle

    def _release_stalls(self, now: float) -> None:
        for vehicle, (_, until) in list(self._stalls.items()):
            if vehicle in self._trips.arrived_last_step:
                del self._stalls[vehicle]
            elif now >= until:
                self._sumo.vehicle.setSpeed(vehicle, -1.0)
                self._sumo.vehicle.setLaneChangeMode(vehicle, 0b011001010101)  # SUMO's default
                del self._stalls[vehicle]

    # -- metrics ----------------------------------------------------------------------------------------------

    def begin_measure(self) -> None:
        """End a warm-up now: :meth:`metrics` counts from here on, only the trips that depart from now (the
        vehicles in the network, and those waiting to enter, are the warm-up's)."""
        sumo = self._require()
        self._trips.begin_measure(sumo.simulation.getPendingVehicles())
        self._measured_from_s = self._time_s

    def metrics(self) -> TripMetrics:
        """Trip metrics so far (see :class:`TripMetrics`), from the step-by-step tracking of every vehicle."""
        sumo = self._require()
        trips = self._trips
        elapsed_h = max(self._time_s - self._measured_from_s, 1e-9) / 3600.0
        return TripMetrics(time_s=self._time_s, completed=trips.completed, mean_delay_s=trips.mean_completed_delay_s(),
                           mean_stops=trips.mean_completed_stops(), throughput_veh_h=trips.completed / elapsed_h,
                           running=trips.running, running_mean_delay_s=trips.running_mean_delay_s(),
                           running_mean_stops=trips.running_mean_stops(), inserted=trips.inserted,
                           waiting_to_insert=trips.waiting(sumo.simulation.getPendingVehicles()), teleports=trips.teleports)

__all__ = ["CameraReading", "DetectorEntry", "DetectorStep", "StepReport", "SumoWorld", "TripMetrics"]
