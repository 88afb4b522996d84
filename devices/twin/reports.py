"""What the twin reports (msgspec structs: small, frozen, picklable for the child-process pipe).

Times are SUMO's: seconds after local midnight (WITA). Vehicle classes are lalin's:
``motorcycle``, ``car``, ``heavy`` (buses and trucks).
"""

from __future__ import annotations

import msgspec


class DetectorEntry(msgspec.Struct, frozen=True):
    """A vehicle that entered a stop-line loop: SUMO vehicle id and class (motorcycle, car, heavy)."""

    vehicle_id: str
    vehicle_class: str


class DetectorStep(msgspec.Struct, frozen=True):
    """One loop during one step: vehicles that entered it (each once; the second motorcycle of a SUMO
    motorcycle vehicle as ``<id>#2``) and the seconds it was occupied."""

    entries: tuple[DetectorEntry, ...] = ()
    occupied_s: float = 0.0


class StepReport(msgspec.Struct, frozen=True):
    """After one step: SUMO time (s after local midnight) and every fleet detector's entries and occupancy."""

    time_s: float
    detectors: dict[str, DetectorStep]


class CameraReading(msgspec.Struct, frozen=True):
    """An approach camera: vehicles by class that crossed the stop line since its previous reading, over
    ``interval_s`` seconds; queue (m, the longest E2 jam of its lanes), halting vehicles, and an incident flag."""

    camera_id: str
    time_s: float
    interval_s: float
    motorcycle: int
    car: int
    heavy: int
    queue_m: float
    halting: int
    incident: bool


class TripMetrics(msgspec.Struct, frozen=True):
    """Trips so far: completed count, mean delay (SUMO time loss, s/veh), mean stops per vehicle (halts below
    0.1 m/s), throughput (completed veh/h of simulated time since the begin, or the warm-up's end), the same for
    vehicles still running, vehicles inserted and still waiting to enter, and SUMO teleports. Counts are real
    vehicles (a SUMO motorcycle counts as two); a teleport counts SUMO vehicles. After a warm-up the completed
    trips, inserted vehicles and teleports count only from its end; ``running``, its means and
    ``waiting_to_insert`` are everything on the road or waiting, the warm-up's vehicles included."""

    time_s: float
    completed: int
    mean_delay_s: float
    mean_stops: float
    throughput_veh_h: float
    running: int
    running_mean_delay_s: float
    running_mean_stops: float
    inserted: int
    waiting_to_insert: int
    teleports: int


__all__ = ["CameraReading", "DetectorEntry", "DetectorStep", "StepReport", "TripMetrics"]
