"""Signal plans as validated data: an intersection's signal groups, conflicts, intergreens,
stages and their sequence, and a timing.

A *signal group* is a set of signal heads that always show the same aspect (a vehicle
movement or a pedestrian crossing). A *stage* is a set of groups green together; the plan
runs its stages in ``sequence``, with an *interstage* between consecutive stages during which
losing groups show amber (vehicles) or the flashing/blackout clearance (pedestrians) and then
all-red. A *timing* gives the cycle, the offset and each stage's green; everything else
follows from the plan.

Field checks (types, bounds, units) happen when a plan is loaded; cross-references and
safety (conflicting greens, intergreens below clearance, minimum greens, ...) are reported by
:func:`controllers.safety.validate`, so an engineer sees every problem at once.
Units: seconds (``_s``), metres (``_m``), km/h (``_kmh``), m/s and m/s² (``_mps``, ``_mps2``),
passenger-car units per hour of green (``_pcu_h``).

Beyond the signals, a plan holds what timing design needs: the approaches and the *movements*
(lane groups) on them, each with its lanes, saturation flow and signal group; the corridor it
is coordinated on (chainage and the arterial groups); named timings and a time-of-day schedule
with exception days (Nyepi, ceremonies).
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Id = str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)


class PcuFactors(_Strict):
    """Passenger-car equivalents per vehicle class (dimensionless).

    Defaults: MKJI 1997 (Manual Kapasitas Jalan Indonesia), signalised intersections, protected
    approach: light vehicle 1.0, heavy vehicle 1.3, motorcycle 0.2 (0.4 on an opposed approach).
    """

    motorcycle: float = Field(0.2, gt=0, le=2)
    car: float = Field(1.0, gt=0, le=2)
    heavy: float = Field(1.3, gt=0, le=5)


class ClearanceParameters(_Strict):
    """Inputs of the clearance formulas (ITE): driver reaction, deceleration, vehicle length, walking speed."""

    reaction_s: float = Field(1.0, gt=0, le=3)
    deceleration_mps2: float = Field(3.0, gt=0, le=10)
    vehicle_length_m: float = Field(6.0, gt=0, le=25)
    walking_speed_mps: float = Field(1.2, gt=0, le=3)


class SignalGroup(_Strict):
    """One signal group: a vehicle movement (with its approach speed and crossing distance) or a crossing."""

    id: Id = Field(pattern=r"^[A-Za-z0-9_-]{1,16}$")
    kind: Literal["vehicle", "pedestrian"]
    description: str = ""
    min_green_s: float = Field(ge=0, le=120, description="minimum green (pedestrians: the walk time)")
    max_green_s: float | None = Field(None, gt=0, le=300)
    amber_s: float = Field(0.0, ge=0, le=10, description="declared amber (vehicles)")
    approach_speed_kmh: float = Field(0.0, ge=0, le=120, description="design or 85th-percentile speed (vehicles)")
    grade: float = Field(0.0, ge=-0.15, le=0.15, description="approach grade, fraction (+ uphill)")
    crossing_m: float = Field(gt=0, le=200, description="stop line to the far side of the last conflict point")

    @model_validator(mode="after")
    def _vehicle_fields(self) -> SignalGroup:
        if self.kind == "vehicle" and (self.amber_s <= 0 or self.approach_speed_kmh <= 0):
            raise ValueError(f"vehicle group {self.id} needs amber_s > 0 s and approach_speed_kmh > 0 km/h")
        if self.max_green_s is not None and self.max_green_s < self.min_green_s:
            raise ValueError(f"group {self.id}: max_green_s {self.max_green_s} s < min_green_s {self.min_green_s} s")
        return self


#: MKJI 1997 basic saturation flow of a protected approach: ``S0 = 600 x We`` pcu per hour of green (We in metres).
MKJI_BASE_SATURATION_PCU_H_PER_M = 600.0


class Approach(_Strict):
    """An approach (arm) of the intersection: the direction its traffic comes from."""

    id: Id = Field(pattern=r"^[A-Za-z0-9_-]{1,16}$")
    name: str = ""
    heading: Literal["N", "NE", "E", "SE", "S", "SW", "W", "NW"] = Field(description="where its traffic comes from")


class Movement(_Strict):
    """A lane group: the lanes of an approach that serve the same turns under one signal group.

    Its saturation flow (pcu per hour of green, all its lanes together) is given directly or from
    MKJI 1997 (protected approach): ``S = 600 x effective_width_m x saturation_factor``, where the
    factor is the product of MKJI's adjustments (city size, side friction, grade, parking, turns).
    A movement with ``free_flow`` (belok kiri jalan terus, left turn on red) is not signalised.
    """

    id: Id = Field(pattern=r"^[A-Za-z0-9_-]{1,16}$")
    approach: Id
    turns: Literal["left", "through", "right", "left_through", "through_right", "all"]
    signal_group: Id | None = None
    free_flow: bool = False
    lanes: int = Field(1, ge=1, le=8)
    saturation_flow_pcu_h: float | None = Field(None, gt=0, le=20000)
    effective_width_m: float | None = Field(None, gt=0, le=40)
    saturation_factor: float = Field(1.0, gt=0, le=2)
    progression_factor: float = Field(1.0, ge=0, le=2.5, description="HCM PF: 1.0 for random arrivals")

    @model_validator(mode="after")
    def _consistent(self) -> Movement:
        given = (self.saturation_flow_pcu_h is not None) + (self.effective_width_m is not None)
        if given > 1 or (given == 0 and not self.free_flow):
            raise ValueError(f"movement {self.id}: give exactly one of saturation_flow_pcu_h (pcu/h) and "
                             f"effective_width_m (m)")
        if self.free_flow == (self.signal_group is not None):
            raise ValueError(f"movement {self.id}: a signalised movement needs signal_group; a free_flow one has none")
        return self

    def saturation_pcu_h(self) -> float:
        """Saturation flow of the lane group (pcu per hour of green)."""
        if self.saturation_flow_pcu_h is not None:
            return self.saturation_flow_pcu_h * self.saturation_factor
        if self.effective_width_m is None:
            raise ValueError(f"movement {self.id} is free-flowing: it has no saturation flow")
        return MKJI_BASE_SATURATION_PCU_H_PER_M * self.effective_width_m * self.saturation_factor


class Coordination(_Strict):
    """Where the intersection lies on a coordinated corridor and which groups carry the arterial."""

    corridor: str = Field(min_length=1)
    chainage_m: float = Field(ge=0, le=200_000, description="position along the corridor (m)")
    outbound_group: Id = Field(description="arterial group in the direction of increasing chainage")
    inbound_group: Id = Field(description="arterial group in the direction of decreasing chainage")
    progression_speed_kmh: float = Field(40.0, gt=0, le=120, description="design speed of the green wave (km/h)")


class Stage(_Strict):
    """Groups that are green together."""

    id: Id = Field(pattern=r"^[A-Za-z0-9_-]{1,16}$")
    green: list[Id] = Field(min_length=1, max_length=32)


class CycleBounds(_Strict):
    """Allowed cycle lengths (seconds)."""

    min_s: float = Field(gt=0, le=600)
    max_s: float = Field(gt=0, le=600)

    @model_validator(mode="after")
    def _ordered(self) -> CycleBounds:
        if self.max_s < self.min_s:
            raise ValueError(f"cycle max_s {self.max_s} s < min_s {self.min_s} s")
        return self


class Timing(_Strict):
    """A timing of a plan: cycle and offset (seconds) and the green of each stage (seconds)."""

    cycle_s: float = Field(gt=0, le=600)
    offset_s: float = Field(0.0, ge=0, le=600, description="start of the first stage after the corridor's reference time")
    stage_greens_s: dict[Id, float] = Field(min_length=1, max_length=32)


#: Reserved timing names: flashing amber (e.g. on Nyepi, when Bali's roads are empty), and the
#: plan's default timing.
FLASH = "flash"
DEFAULT = "default"
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Switch(_Strict):
    """From local time ``at`` (HH:MM) on, run the named timing (or ``flash``)."""

    at: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    timing: Id

    def minute_of_day(self) -> int:
        """Minutes after local midnight."""
        hours, minutes = self.at.split(":")
        return int(hours) * 60 + int(minutes)


class ExceptionDay(_Strict):
    """A date that runs another day plan: Nyepi, a ceremony (upacara), a holiday, a planned closure."""

    date: datetime.date
    name: str = Field(min_length=1)
    day_plan: Id


class Schedule(_Strict):
    """Time-of-day control: day plans (switch lists), the day plan of each weekday, and exception days.

    Local time is ``utc_offset_h`` from UTC (Bali: WITA, UTC+8, no daylight saving). Before the
    first switch of a day, the last timing of the previous day continues.
    """

    utc_offset_h: float = Field(8.0, ge=-12, le=14)
    day_plans: dict[Id, list[Switch]] = Field(min_length=1)
    week: dict[Weekday, Id]
    exceptions: list[ExceptionDay] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> Schedule:
        missing = [d for d in WEEKDAYS if d not in self.week]
        if missing:
            raise ValueError(f"schedule week has no day plan for {missing}")
        for name, switches in self.day_plans.items():
            times = [s.minute_of_day() for s in switches]
            if not switches or times != sorted(set(times)):
                raise ValueError(f"day plan {name}: switches must be non-empty and in strictly increasing time")
        dates = [e.date for e in self.exceptions]
        if len(dates) != len(set(dates)):
            raise ValueError("schedule exceptions name the same date twice")
        return self


#: The fields of a plan that make up its safety configuration (see :meth:`Plan.safety_checksum`).
SAFETY_FIELDS: set[str] = {"id", "clearance", "signal_groups", "conflicts", "intergreens_s", "stages", "sequence", "cycle"}


class Plan(_Strict):
    """An intersection's signal plan (see the module docstring)."""

    id: Id = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    name: str
    version: int = Field(ge=1)
    pcu_factors: PcuFactors = PcuFactors()
    clearance: ClearanceParameters = ClearanceParameters()
    signal_groups: list[SignalGroup] = Field(min_length=1, max_length=64)
    conflicts: list[tuple[Id, Id]] = Field(default_factory=list, description="pairs that may never be green together")
    intergreens_s: dict[Id, dict[Id, float]] = Field(
        default_factory=dict, description="losing group -> gaining group -> seconds from end of green to start of green")
    stages: list[Stage] = Field(min_length=2, max_length=16)
    sequence: list[Id] = Field(min_length=2, max_length=16)
    cycle: CycleBounds
    default_timing: Timing | None = None
    approaches: list[Approach] = Field(default_factory=list, max_length=8)
    movements: list[Movement] = Field(default_factory=list, max_length=32)
    coordination: Coordination | None = None
    timings: dict[Id, Timing] = Field(default_factory=dict, description="named timings the schedule runs")
    schedule: Schedule | None = None

    def group(self, group_id: Id) -> SignalGroup | None:
        """The group with id ``group_id``, or None."""
        return next((g for g in self.signal_groups if g.id == group_id), None)

    def stage(self, stage_id: Id) -> Stage | None:
        """The stage with id ``stage_id``, or None."""
        return next((s for s in self.stages if s.id == stage_id), None)

    def movement(self, movement_id: Id) -> Movement | None:
        """The movement with id ``movement_id``, or None."""
        return next((m for m in self.movements if m.id == movement_id), None)

    def conflict(self, a: Id, b: Id) -> bool:
        """True when groups ``a`` and ``b`` may never be green together."""
        return (a, b) in self._conflict_set or (b, a) in self._conflict_set

    @property
    def _conflict_set(self) -> frozenset[tuple[Id, Id]]:
        # Not cached: pydantic's model_copy(update=...) would carry a cached set into a copy whose
        # conflicts changed, and a safety check must never answer from stale data.
        return frozenset(self.conflicts)

    def checksum(self) -> str:
        """SHA-256 (hex) of the plan's canonical JSON: the configuration checksum commands cite."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    def safety_checksum(self) -> str:
        """SHA-256 (hex) of the plan's *safety configuration* only — what a controller checks a timing against:
        its id, clearance parameters, signal groups (minimum and maximum greens, ambers), conflicts, intergreens,
        stages, sequence and cycle bounds. Timings, schedules, movements and coordination may change (a new plan
        version deployed from lalin) without changing it; a controller's conflict matrix is never rewritten
        remotely, so a plan whose safety checksum differs must be loaded at the controller itself."""
        return hashlib.sha256(self.model_dump_json(include=SAFETY_FIELDS).encode()).hexdigest()
