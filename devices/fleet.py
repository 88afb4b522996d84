"""The controllers lalin drives, as validated data (``devices/catalogue/controllers.yaml``).

Each entry names the controller, the plan it runs and the number the controller knows that
plan by, the heartbeat backup time (seconds) and its stop-line detectors, declared as lanes
per signalised movement and numbered in declaration order (detector 0, 1, ... of the
register map).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from controllers.errors import ConfigurationError
from controllers.plan import Plan
from devices.register_map import load_register_map
from infra.plans import PLANS_DIR, load_plan
from infra.yaml_data import load_yaml_model

FLEET_FILE = Path(__file__).parent / "catalogue" / "controllers.yaml"


class Detector(BaseModel):
    """One stop-line loop: its id, the movement and the lane (1 = kerb side) it watches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    movement: str
    lane: int = Field(ge=1)


class ControllerSite(BaseModel):
    """One signal controller: id, plan file, plan number, backup time (s) and detectors per movement (lanes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$", max_length=32)
    plan: str
    plan_number: int = Field(ge=1, le=0xFFFF)
    backup_time_s: int = Field(15, ge=0, le=0xFFFF, description="0 disables the heartbeat watchdog")
    detectors: dict[str, int] = Field(default_factory=dict, description="lanes with a stop-line loop, per movement")

    def detector_list(self) -> list[Detector]:
        """The detectors in register order, ids ``<site>-<movement>-<lane>``."""
        return [Detector(id=f"{self.id}-{movement}-{lane}", movement=movement, lane=lane)
                for movement, lanes in self.detectors.items() for lane in range(1, lanes + 1)]

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
