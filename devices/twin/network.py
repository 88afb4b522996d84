"""The corridor's road network derived from the fleet and the plans (pure: no SUMO, no files).

Jl. Sunset Road runs north-south; a junction's ``coordination.chainage_m`` is its ``y``
coordinate (metres, increasing northward) and the side streets run east and west. Each junction
has four arms named by compass point (``N``: the road to the north, whose approach carries
traffic coming *from* the north). Traffic drives on the left: a lane index 0 is the kerb lane,
left turns are the short turns and right turns cross the oncoming flow.

* An approach has one lane per lane of its plan's movements, free-flow movements included, in
  the plan's order (kerb side first: the left-turn lane, then through, then right); lane ``k``
  of a movement (1 = kerb side, the fleet's numbering) is SUMO lane ``first + k - 1``.
* Edges are ``<junction>_<arm>_in`` (the approach) and ``<junction>_<arm>_out``. Between two
  junctions the road is split at its midpoint (node ``M_<south>_<north>``): the first half is the
  upstream junction's ``_out`` edge, the second the downstream junction's approach, so trips can
  end or begin mid-block (the driveways that reconcile neighbouring counts, see
  :mod:`devices.twin.demand`). The corridor ends at ``SOUTH_END`` and ``NORTH_END``.
* A side arm without an approach in the plan (Jl. Dewa Ruci west of K04, Jl. Raya Kerobokan east
  of K05) is an exit-only street; it exists when some movement turns into it.
* Connections are explicit (:data:`TURN_LANES`, :data:`DESTINATION`): a left turn leaves from the
  movement's kerb lane, a right turn from its outer lane, through traffic from every lane.
* A junction's advance loops (the fleet's ``advance_detectors``) lie on their movement's lanes of
  its approach, ``distance_m`` upstream of the stop line (:class:`AdvanceLoop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from controllers.errors import ConfigurationError
from controllers.plan import Movement, Plan
from devices.fleet import Fleet

Arm = Literal["N", "E", "S", "W"]
Turn = Literal["left", "through", "right"]
ARMS: tuple[Arm, ...] = ("N", "E", "S", "W")
MAIN_ARMS: tuple[Arm, ...] = ("N", "S")
OPPOSITE: dict[Arm, Arm] = {"N": "S", "S": "N", "E": "W", "W": "E"}

#: Where a turn from an approach leaves the junction (left-hand traffic): approach arm -> turn -> arm.
DESTINATION: dict[Arm, dict[Turn, Arm]] = {
    "N": {"left": "E", "through": "S", "right": "W"},
    "S": {"left": "W", "through": "N", "right": "E"},
    "E": {"left": "S", "through": "W", "right": "N"},
    "W": {"left": "N", "through": "E", "right": "S"},
}
#: The turns a movement serves and the lanes of the movement each uses: its kerb lane, all, or its outer lane.
TURN_LANES: dict[str, dict[Turn, Literal["first", "all", "last"]]] = {
    "left": {"left": "all"},
    "through": {"through": "all"},
    "right": {"right": "all"},
    "left_through": {"left": "first", "through": "all"},
    "through_right": {"through": "all", "right": "last"},
    "all": {"left": "first", "through": "all", "right": "last"},
}

SIDE_LENGTH_M = 280.0  # junction centre to the end of a side street
FRINGE_LENGTH_M = 500.0  # the corridor's ends beyond K04 and K03
SIDE_EXIT_LANES = 2  # lanes of a side street leaving a junction
MAIN_SPEED_MPS = 13.89  # 50 km/h, Sunset Road
SIDE_SPEED_MPS = 11.11  # 40 km/h, side streets
SOUTH_END, NORTH_END = "SOUTH_END", "NORTH_END"


@dataclass(frozen=True)
class ApproachLane:
    """One lane of an approach: SUMO lane index (0 = kerb), movement, lane within the movement (1 = kerb side)."""

    index: int
    movement: str
    movement_lane: int
    signal_group: str | None  # None: a free-flow movement (not signalised)

    def detector_name(self, junction: str) -> str:
        """The fleet's id of a stop-line loop on this lane: ``<junction>-<movement>-<lane>``."""
        return f"{junction}-{self.movement}-{self.movement_lane}"


@dataclass(frozen=True)
class Approach:
    """An approach of a junction: its plan id, arm, SUMO edge, lanes (kerb first) and speed (m/s)."""

    junction: str
    id: str
    arm: Arm
    edge: str
    lanes: tuple[ApproachLane, ...]
    speed_mps: float

    @property
    def camera_id(self) -> str:
        """The approach's camera: ``CAM-<junction>-<approach>``."""
        return f"CAM-{self.junction}-{self.id}"

    def lane_id(self, lane: ApproachLane) -> str:
        """SUMO's id of ``lane``."""
        return f"{self.edge}_{lane.index}"


@dataclass(frozen=True)
class AdvanceLoop:
    """An advance detector of the fleet on an approach lane: its fleet id, approach id, lane and distance upstream of
    the stop line (m)."""

    detector_id: str
    approach: str
    lane: ApproachLane
    distance_m: float


@dataclass(frozen=True)
class Node:
    """A plain-XML node: id, position (m) and SUMO junction type."""

    id: str
    x_m: float
    y_m: float
    type: str


@dataclass(frozen=True)
class Edge:
    """A plain-XML edge: id, end nodes, type (``main``/``side``), lanes and speed (m/s)."""

    id: str
    from_node: str
    to_node: str
    type: str
    lanes: int
    speed_mps: float


@dataclass(frozen=True)
class Connection:
    """A lane-to-lane connection; ``uncontrolled`` for free-flow movements (no signal)."""

    from_edge: str
    to_edge: str
    from_lane: int
    to_lane: int
    uncontrolled: bool = False


@dataclass(frozen=True)
class Junction:
    """A signalised junction: controller id (= SUMO node and TLS id), chainage (m), plan, approaches, arms."""

    id: str
    chainage_m: float
    plan: Plan
    approaches: tuple[Approach, ...]
    arms: tuple[Arm, ...]
    advance_loops: tuple[AdvanceLoop, ...] = ()

    def approach(self, arm: Arm) -> Approach | None:
        """The approach on ``arm``, or None for an exit-only arm."""
        return next((a for a in self.approaches if a.arm == arm), None)


@dataclass(frozen=True)
class Corridor:
    """The whole corridor: junctions south to north, nodes, edges and connections."""

    junctions: tuple[Junction, ...]
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    connections: tuple[Connection, ...]

    def junction(self, junction_id: str) -> Junction:
        """A junction by controller id; ConfigurationError naming it when absent."""
        for j in self.junctions:
            if j.id == junction_id:
                return j
        raise ConfigurationError(f"the corridor has no junction {junction_id!r}")

    def edge(self, edge_id: str) -> Edge:
        """An edge by id; ConfigurationError naming it when absent."""
        for e in self.edges:
            if e.id == edge_id:
                return e
        raise ConfigurationError(f"the corridor has no edge {edge_id!r}")

    def neighbour(self, junction_id: str, arm: Arm) -> Junction | None:
        """The next junction along the main road on ``arm`` (N or S), or None at the corridor's end."""
        if arm not in MAIN_ARMS:
            return None
        ids = [j.id for j in self.junctions]
        k = ids.index(junction_id) + (1 if arm == "N" else -1)
        return self.junctions[k] if 0 <= k < len(ids) else None


def in_edge(junction_id: str, arm: str) -> str:
    """Id of the approach edge of ``arm``."""
    return f"{junction_id}_{arm}_in"


def out_edge(junction_id: str, arm: str) -> str:
    """Id of the edge leaving the junction by ``arm``."""
    return f"{junction_id}_{arm}_out"


def lane_indices(movements: list[Movement], movement_id: str) -> list[int]:
    """SUMO lane indices (kerb first) of a movement on its approach, given the approach's movements in plan order."""
    first = 0
    for m in movements:
        if m.id == movement_id:
            return list(range(first, first + m.lanes))
        first += m.lanes
    raise ConfigurationError(f"movement {movement_id!r} is not on this approach")


def derive_corridor(fleet: Fleet, plans: dict[str, Plan]) -> Corridor:
    """The corridor of every controller of ``fleet`` (``plans`` by controller id), south to north by chainage."""
    junctions = sorted((_with_advance_loops(_junction(site.id, plans[site.id]), fleet) for site in fleet.controllers),
                       key=lambda j: j.chainage_m)
    chainages = [j.chainage_m for j in junctions]
    if len(set(chainages)) != len(chainages):
        raise ConfigurationError(f"two junctions share a chainage: {chainages} m")
    corridor = Corridor(tuple(junctions), (), (), ())
    nodes = _nodes(corridor)
    edges = _edges(corridor)
    corridor = Corridor(corridor.junctions, nodes, edges, ())
    return Corridor(corridor.junctions, nodes, edges, _connections(corridor))


def _junction(site_id: str, plan: Plan) -> Junction:
    if plan.coordination is None:
        raise ConfigurationError(f"plan {plan.id} of {site_id} has no coordination: its chainage is unknown")
    approaches: list[Approach] = []
    for approach in plan.approaches:
        if approach.heading not in ARMS:
            raise ConfigurationError(f"plan {plan.id}: approach {approach.id} heading {approach.heading!r} is not N, E, S or W")
        arm: Arm = approach.heading
        movements = [m for m in plan.movements if m.approach == approach.id]
        lanes = tuple(ApproachLane(lane, m.id, k + 1, m.signal_group)
                      for m in movements for k, lane in enumerate(lane_indices(movements, m.id)))
        if lanes:
            approaches.append(Approach(site_id, approach.id, arm, in_edge(site_id, arm), lanes, _speed_mps(plan, movements, arm)))
    for arm in MAIN_ARMS:
        if not any(a.arm == arm for a in approaches):
            raise ConfigurationError(f"plan {plan.id} of {site_id} has no {arm} approach on the corridor")
    arms = {a.arm for a in approaches}
    for a in approaches:
        for m in (m for m in plan.movements if m.approach == a.id):
            arms.update(DESTINATION[a.arm][turn] for turn in TURN_LANES[m.turns])
    return Junction(site_id, plan.coordination.chainage_m, plan, tuple(approaches), tuple(a for a in ARMS if a in arms))


def _with_advance_loops(junction: Junction, fleet: Fleet) -> Junction:
    """``junction`` with the fleet's advance detectors placed on their movements' lanes."""
    loops = []
    for d in (d for d in fleet.site(junction.id).detector_list() if d.kind == "advance"):
        found = [(a, lane) for a in junction.approaches for lane in a.lanes
                 if lane.movement == d.movement and lane.movement_lane == d.lane]
        if not found:
            raise ConfigurationError(f"advance detector {d.id}: junction {junction.id} has no lane {d.lane} of "
                                     f"movement {d.movement}")
        approach, lane = found[0]
        loops.append(AdvanceLoop(d.id, approach.id, lane, d.distance_m))
    return Junction(junction.id, junction.chainage_m, junction.plan, junction.approaches, junction.arms, tuple(loops))


def _speed_mps(plan: Plan, movements: list[Movement], arm: Arm) -> float:
    """An approach's speed limit (m/s): the highest approach speed of its signalised groups, else the road's."""
    speeds = [g.approach_speed_kmh / 3.6 for m in movements if m.signal_group
              for g in [plan.group(m.signal_group)] if g is not None and g.approach_speed_kmh > 0]
    return round(max(speeds), 2) if speeds else (MAIN_SPEED_MPS if arm in MAIN_ARMS else SIDE_SPEED_MPS)


def _far_node(corridor: Corridor, junction: Junction, arm: Arm) -> str:
    """The node at the far end of an arm: a mid-block node, a corridor end or a side street's end."""
    if arm not in MAIN_ARMS:
        return f"{junction.id}_{arm}_END"
    other = corridor.neighbour(junction.id, arm)
    if other is None:
        return NORTH_END if arm == "N" else SOUTH_END
    south, north = (junction, other) if arm == "N" else (other, junction)
    return f"M_{south.id}_{north.id}"


def _nodes(corridor: Corridor) -> tuple[Node, ...]:
    js = corridor.junctions
    nodes = [Node(SOUTH_END, 0.0, js[0].chainage_m - FRINGE_LENGTH_M, "priority")]
    for k, j in enumerate(js):
        nodes.append(Node(j.id, 0.0, j.chainage_m, "traffic_light"))
        nodes += [Node(f"{j.id}_{arm}_END", SIDE_LENGTH_M * (1 if arm == "E" else -1), j.chainage_m, "priority")
                  for arm in j.arms if arm not in MAIN_ARMS]
        if k + 1 < len(js):
            nodes.append(Node(f"M_{j.id}_{js[k + 1].id}", 0.0, (j.chainage_m + js[k + 1].chainage_m) / 2, "priority"))
    nodes.append(Node(NORTH_END, 0.0, js[-1].chainage_m + FRINGE_LENGTH_M, "priority"))
    return tuple(nodes)


def _out_lanes(corridor: Corridor, junction: Junction, arm: Arm) -> int:
    """Lanes of an edge leaving ``junction`` by ``arm``: the next junction's approach lanes, or the through lanes here."""
    if arm not in MAIN_ARMS:
        return SIDE_EXIT_LANES
    other = corridor.neighbour(junction.id, arm)
    if other is not None:
        facing = other.approach(OPPOSITE[arm])
        assert facing is not None  # every junction has N and S approaches (checked in _junction)
        return len(facing.lanes)
    feeding = junction.approach(OPPOSITE[arm])
    assert feeding is not None
    movements = {m.id: m for m in junction.plan.movements}
    return max(1, sum(1 for lane in feeding.lanes if "through" in TURN_LANES[movements[lane.movement].turns]))


def _edges(corridor: Corridor) -> tuple[Edge, ...]:
    edges: list[Edge] = []
    for j in corridor.junctions:
        for arm in j.arms:
            kind = "main" if arm in MAIN_ARMS else "side"
            far = _far_node(corridor, j, arm)
            approach = j.approach(arm)
            if approach is not None:
                edges.append(Edge(approach.edge, far, j.id, kind, len(approach.lanes), approach.speed_mps))
            speed = MAIN_SPEED_MPS if kind == "main" else SIDE_SPEED_MPS
            edges.append(Edge(out_edge(j.id, arm), j.id, far, kind, _out_lanes(corridor, j, arm), speed))
    return tuple(edges)


def _to_lanes(turn: Turn, count: int, dest_lanes: int) -> list[int]:
    """Target lanes of ``count`` source lanes (kerb first): left turns keep to the kerb, right turns to the
    outer lanes, through lanes shift one lane out when the exit is wider (its kerb lane takes the left-turners)."""
    n = dest_lanes
    if turn == "left":
        return [min(i, n - 1) for i in range(count)]
    if turn == "right":
        return [max(0, n - count + i) for i in range(count)]
    if n > count:
        return [min(n - 1, i + 1) for i in range(count)]
    return [max(0, i - (count - n)) for i in range(count)]


def _connections(corridor: Corridor) -> tuple[Connection, ...]:
    out: list[Connection] = []
    lanes_of = {e.id: e.lanes for e in corridor.edges}
    for j in corridor.junctions:
        for approach in j.approaches:
            movements = [m for m in j.plan.movements if m.approach == approach.id]
            for m in movements:
                indices = lane_indices(movements, m.id)
                for turn, which in TURN_LANES[m.turns].items():
                    source = indices if which == "all" else [indices[0] if which == "first" else indices[-1]]
                    target = out_edge(j.id, DESTINATION[approach.arm][turn])
                    for from_lane, to_lane in zip(source, _to_lanes(turn, len(source), lanes_of[target]), strict=True):
                        out.append(Connection(approach.edge, target, from_lane, to_lane, uncontrolled=m.free_flow))
        north = corridor.neighbour(j.id, "N")
        if north is not None:  # straight through the mid-block nodes, lane for lane
            for first, second in ((out_edge(j.id, "N"), in_edge(north.id, "S")), (out_edge(north.id, "S"), in_edge(j.id, "N"))):
                out += [Connection(first, second, k, k) for k in range(lanes_of[first])]
    return tuple(out)
