"""What the stream processors work on, from the fleet and the plans (data, not code).

* the fold's intersections: a :class:`~controllers.traffic_state.IntersectionLayout` per
  controller (its plan, its detectors in register order, its approaches, its corridor);
* the decision loop's corridors: the intersections of each corridor (keyed like the
  summaries, :func:`streams.fold_task.corridor_key`) with their plans and plan numbers;
* the configuration checksum every command cites (plans + strategy parameters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

from controllers.decisions import CorridorMember
from controllers.plan import Plan
from controllers.strategy import config_checksum
from controllers.traffic_state import IntersectionLayout
from devices.fleet import Fleet, load_fleet
from devices.vms_model import load_boards
from streams.fold_task import corridor_key


@dataclass(frozen=True)
class Topology:
    """Layouts by intersection, corridor members by corridor key, plans and plan numbers by intersection."""

    layouts: Mapping[str, IntersectionLayout]
    corridors: Mapping[str, Sequence[CorridorMember]]
    plans: Mapping[str, Plan]
    boards: frozenset[str] = frozenset()  # VMS board ids: their records go to the VMS loop, not the fold

    def checksum(self, strategy_config: msgspec.Struct) -> str:
        """The configuration checksum commands cite (SHA-256 hex)."""
        return config_checksum(self.plans, strategy_config)


def load_topology(fleet: Fleet | None = None) -> Topology:
    """The topology of ``fleet`` (default: the catalogued fleet)."""
    fleet = fleet or load_fleet()
    layouts: dict[str, IntersectionLayout] = {}
    plans: dict[str, Plan] = {}
    corridors: dict[str, list[CorridorMember]] = {}
    for site in fleet.controllers:
        plan = site.load_plan()
        plans[site.id] = plan
        layout = site.layout(plan)
        layouts[site.id] = layout
        corridors.setdefault(corridor_key(layout), []).append(CorridorMember(site.id, plan, site.plan_number))
    return Topology(layouts, corridors, plans, frozenset(b.id for b in load_boards().boards))
