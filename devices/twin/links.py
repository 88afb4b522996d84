"""``signal_links.yaml``: lalin's ids mapped to the twin's SUMO ids, as validated data.

Per controller: its traffic light (TLS id), and for every SUMO link index the signal group that
drives it and whether it is *permissive* (shows ``g``: green, but yield to conflicting traffic);
per fleet detector its E1 loop and lane; per approach its camera, lanes, E1 loops and E2
detectors. :func:`derive_links` computes it from the net netconvert built (never by hand):

* a link's group is the signal group of the movement whose lane the link leaves from;
* a link is permissive when the net says it must yield to a link that can be green at the same
  time: a link of a group that shares a stage with its own group, or a free-flow link (always
  running). So a right turn sharing a lane group with through traffic (``S_TR``, group B, green
  beside the opposing through group A) is permissive, and a protected right turn (``N_R``,
  group C, green only beside its own approach) is not.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from controllers.errors import ConfigurationError
from devices.fleet import Fleet
from devices.twin.network import Approach, ApproachLane, Corridor, Junction
from infra.yaml_data import load_yaml_model

LINKS_FILE = "signal_links.yaml"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignalLink(_Frozen):
    """One SUMO link index of a traffic light: its signal group, whether it yields when green, and its lanes."""

    index: int = Field(ge=0)
    group: str
    permissive: bool
    movement: str
    from_lane: str
    to_lane: str


class DetectorLink(_Frozen):
    """A fleet detector in the twin: its E1 loop, SUMO lane and approach; its kind, and an advance loop's distance
    upstream of the stop line (m)."""

    e1: str
    lane: str
    approach: str
    kind: Literal["stop_line", "advance"] = "stop_line"
    distance_m: float = Field(0.0, ge=0.0)


class ApproachLinks(_Frozen):
    """An approach: its camera, SUMO edge, lanes (kerb first), the free-flow ones, and an E1 and an E2 per lane."""

    camera: str
    edge: str
    lanes: list[str] = Field(min_length=1)
    free_flow_lanes: list[str]
    e1: list[str]
    e2: list[str]


class ControllerLinks(_Frozen):
    """One controller in the twin."""

    tls_id: str
    links: list[SignalLink] = Field(min_length=1)
    detectors: dict[str, DetectorLink]
    approaches: dict[str, ApproachLinks]

    def groups(self) -> list[str]:
        """Signal groups that drive at least one link, in order of their first link."""
        return list(dict.fromkeys(link.group for link in self.links))


class SignalLinks(_Frozen):
    """The whole mapping, by controller id."""

    controllers: dict[str, ControllerLinks]

    def controller(self, controller_id: str) -> ControllerLinks:
        """One controller's mapping; ConfigurationError naming it when absent."""
        try:
            return self.controllers[controller_id]
        except KeyError:
            raise ConfigurationError(f"the twin has no controller {controller_id!r} "
                                     f"(known: {', '.join(self.controllers)})") from None


def e1_id(junction_id: str, lane: ApproachLane) -> str:
    """The E1 loop on an approach lane: ``e1_<junction>-<movement>-<lane>`` (the fleet's detector id)."""
    return f"e1_{lane.detector_name(junction_id)}"


def advance_e1_id(detector_id: str) -> str:
    """The E1 loop of an advance detector: ``e1_<junction>-<movement>-A<lane>`` (the fleet's detector id)."""
    return f"e1_{detector_id}"


def e2_id(junction_id: str, lane: ApproachLane) -> str:
    """The E2 detector on an approach lane: ``e2_<junction>-<movement>-<lane>``."""
    return f"e2_{lane.detector_name(junction_id)}"


@cache
def load_links(path: Path) -> SignalLinks:
    """The mapping in ``path`` (cached); ConfigurationError naming the file when invalid."""
    return load_yaml_model(SignalLinks, path, "twin signal links")


def derive_links(net: Any, corridor: Corridor, fleet: Fleet) -> SignalLinks:
    """The mapping for the sumolib ``net`` built from ``corridor``."""
    return SignalLinks(controllers={j.id: _controller(net, j, fleet) for j in corridor.junctions})


def _lanes_by_id(junction: Junction) -> dict[str, tuple[Approach, ApproachLane]]:
    return {a.lane_id(lane): (a, lane) for a in junction.approaches for lane in a.lanes}


def _controller(net: Any, junction: Junction, fleet: Fleet) -> ControllerLinks:
    lanes = _lanes_by_id(junction)
    node = net.getNode(junction.id)
    group_of: dict[Any, str | None] = {}
    for conn in node.getConnections():
        from_lane = conn.getFromLane().getID()
        if from_lane not in lanes:
            raise ConfigurationError(f"{junction.id}: the net has a connection from lane {from_lane} of no approach")
        group_of[conn] = lanes[from_lane][1].signal_group
    links: dict[int, SignalLink] = {}
    for conn, group in group_of.items():
        index = conn.getTLLinkIndex()
        if index < 0:
            continue
        approach, lane = lanes[conn.getFromLane().getID()]
        if group is None:
            raise ConfigurationError(f"{junction.id}: free-flow movement {lane.movement} has signal link {index}")
        link = SignalLink(index=index, group=group, permissive=_permissive(node, junction, conn, group_of),
                          movement=lane.movement, from_lane=approach.lane_id(lane), to_lane=conn.getToLane().getID())
        if index in links and links[index].group != group:
            raise ConfigurationError(f"{junction.id}: link {index} is driven by groups {links[index].group} and {group}")
        links.setdefault(index, link)
    if sorted(links) != list(range(len(links))):
        raise ConfigurationError(f"{junction.id}: link indices {sorted(links)} are not 0..{len(links) - 1}")
    return ControllerLinks(tls_id=junction.id, links=[links[k] for k in sorted(links)],
                           detectors=_detectors(junction, fleet), approaches=_approaches(junction))


def _permissive(node: Any, junction: Junction, conn: Any, group_of: dict[Any, str | None]) -> bool:
    """True when ``conn`` must yield to a link that can be green with it (a free-flow link is always green)."""
    group = group_of[conn]
    together = {g for s in junction.plan.stages if group in s.green for g in s.green}
    return any(node.forbids(other, conn) and (other_group is None or other_group in together)
               for other, other_group in group_of.items() if other is not conn)


def _detectors(junction: Junction, fleet: Fleet) -> dict[str, DetectorLink]:
    out = {}
    approach_of = {a.id: a for a in junction.approaches}
    advance = {loop.detector_id: loop for loop in junction.advance_loops}
    for detector in fleet.site(junction.id).detector_list():
        if detector.kind == "advance":
            loop = advance[detector.id]
            out[detector.id] = DetectorLink(e1=advance_e1_id(detector.id), lane=approach_of[loop.approach].lane_id(loop.lane),
                                            approach=loop.approach, kind="advance", distance_m=loop.distance_m)
            continue
        found = [(a, lane) for a in junction.approaches for lane in a.lanes
                 if lane.movement == detector.movement and lane.movement_lane == detector.lane]
        if not found:
            raise ConfigurationError(f"detector {detector.id}: no lane {detector.lane} of movement {detector.movement}")
        approach, lane = found[0]
        out[detector.id] = DetectorLink(e1=e1_id(junction.id, lane), lane=approach.lane_id(lane), approach=approach.id)
    return out


def _approaches(junction: Junction) -> dict[str, ApproachLinks]:
    return {a.id: ApproachLinks(camera=a.camera_id, edge=a.edge, lanes=[a.lane_id(lane) for lane in a.lanes],
                                free_flow_lanes=[a.lane_id(lane) for lane in a.lanes if lane.signal_group is None],
                                e1=[e1_id(junction.id, lane) for lane in a.lanes],
                                e2=[e2_id(junction.id, lane) for lane in a.lanes])
            for a in junction.approaches}
