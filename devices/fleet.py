"""The controllers lalin drives, as validated data (``devices/catalogue/controllers.yaml``).

Each entry names the controller, the plan it runs and the number the controller knows that
plan by, the heartbeat backup time (seconds), its stop-line detectors, declared as lanes per
signalised movement, and its advance detectors (lanes per movement and their distance upstream
of the stop line, m). Detectors are numbered in declaration order, the stop-line ones first
and the advance ones after them (detector 0, 1, ... of the register map), so adding advance
detectors never renumbers a stop-line one.

A detector's ``kind`` (``stop_line`` or ``advance``) is data: the fold measures a movement's flow
and occupancy from its stop-line detectors only (an advance loop sees the same vehicles again);
signal performance measures take arrivals from the advance ones (docs/dashboard.md).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from controllers.errors import ConfigurationError
from controllers.plan import Plan
from controllers.traffic_state import DetectorKind, IntersectionLayout
from devices.register_map import load_register_map
from infra.plans import PLANS_DIR, load_plan
from infra.yaml_data import load_yaml_model

FLEET_FILE = Path(__file__).parent / "catalogue" / "controllers.yaml"


#: Longest distance upstream of the stop line an advance detector may be declared at (m).
MAX_ADVANCE_DISTANCE_M = 500.0


class Detector(BaseModel):
    """One loop: its id, the movement and the lane (1 = kerb side) it watches, its kind, and for an advance loop
    its distance upstream of the stop line (m; 0 for a stop-line loop)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    movement: str
    lane: int = Field(ge=1)
    kind: DetectorKind = "stop_line"
    distance_m: float = Field(0.0, ge=0.0, le=MAX_ADVANCE_DISTANCE_M)


class AdvanceDetectors(BaseModel):
    """Advance loops of one movement: how many lanes carry one (kerb side first) and how far upstream of the stop
    line they lie (m; ATSPM's usual 100-120 m)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lanes: int = Field(ge=1)
    distance_m: float = Field(gt=0.0, le=MAX_ADVANCE_DISTANCE_M)


class ControllerSite(BaseModel):
    """One signal controller: id, plan file, plan number, backup time (s) and detectors per movement (lanes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$", max_length=32)
    plan: str
    plan_number: int = Field(ge=1, le=0xFFFF)
    backup_time_s: int = Field(15, ge=0, le=0xFFFF, description="0 disables the heartbeat watchdog")
    detectors: dict[str, int] = Field(default_factory=dict, description="lanes with a stop-line loop, per movement")
    advance_detectors: dict[str, AdvanceDetectors] = Field(
        default_factory=dict, description="lanes with an advance loop and its distance upstream, per movement")

    def detector_list(self) -> list[Detector]:
        """The detectors in register order: the stop-line ones (ids ``<site>-<movement>-<lane>``), then the advance
        ones (ids ``<site>-<movement>-A<lane>``)."""
        stop_line = [Detector(id=f"{self.id}-{movement}-{lane}", movement=movement, lane=lane)
                     for movement, lanes in self.detectors.items() for lane in range(1, lanes + 1)]
        advance = [Detector(id=f"{self.id}-{movement}-A{lane}", movement=movement, lane=lane, kind="advance",
                            distance_m=a.distance_m)
                   for movement, a in self.advance_detectors.items() for lane in range(1, a.lanes + 1)]
        return stop_line + advance

    def layout(self, plan: Plan | None = None) -> IntersectionLayout:
        """What the fold and the measures know of this junction: ``plan`` (default: the site's, checked) and every
        detector with its movement, lane, kind and distance."""
        return IntersectionLayout.of(self.id, plan if plan is not None else self.load_plan(),
                                     [(d.id, d.movement, d.lane, d.kind, d.distance_m) for d in self.detector_list()])

    def load_plan(self, plans_dir: Path = PLANS_DIR) -> Plan:
        """The site's plan, checked against the site: known movements, lanes, register-map limits."""
        plan = load_plan(plans_dir / self.plan)
        limits = load_register_map().limits
        for movement, lanes in self.detectors.items():
            declared = plan.movement(movement)
            if declared is None:
                raise ConfigurationError(f"controller {self.id}: plan {plan.id} has no movement {movement!r}")
            if lanes > declared.lanes:
                raise ConfigurationError(f"controller {self.id}: {lanes} detector lanes on {movement}, "
                                         f"the movement has {declared.lanes} lanes")
        for movement, advance in self.advance_detectors.items():
            declared = plan.movement(movement)
            if declared is None:
                raise ConfigurationError(f"controller {self.id}: advance detectors on {movement!r}, "
                                         f"a movement plan {plan.id} does not have")
            if declared.signal_group is None:
                raise ConfigurationError(f"controller {self.id}: advance detectors on {movement}, a free-flow movement "
                                         "(no signal group to measure arrivals against)")
            if advance.lanes > declared.lanes:
                raise ConfigurationError(f"controller {self.id}: {advance.lanes} advance detector lanes on {movement}, "
                                         f"the movement has {declared.lanes} lanes")
        if len(self.detector_list()) > limits["detectors"]:
            raise ConfigurationError(f"controller {self.id}: {len(self.detector_list())} detectors, "
                                     f"the register map holds {limits['detectors']}")
        if len(plan.signal_groups) > limits["groups"] or len(plan.sequence) > limits["stages"]:
            raise ConfigurationError(f"controller {self.id}: plan {plan.id} has more groups or stages "
                                     "than the register map holds")
        return plan


class Fleet(BaseModel):
    """All controllers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    controllers: list[ControllerSite]

    def site(self, controller_id: str) -> ControllerSite:
        """A controller by id; KeyError naming it when absent."""
        for c in self.controllers:
            if c.id == controller_id:
                return c
        raise KeyError(f"no controller {controller_id!r} in the fleet")


@cache
def load_fleet(path: Path = FLEET_FILE) -> Fleet:
    """The fleet in ``path`` (cached); ConfigurationError naming the file when invalid."""
    return load_yaml_model(Fleet, path, "controller fleet")
