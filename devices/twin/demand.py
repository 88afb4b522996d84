"""The morning-peak demand of the corridor from the movement counts (pure: no SUMO, no files, no randomness).

The counts (veh/h by class, per movement) are the rates of the peak hour 07:15-08:15 WITA; the
simulated morning 06:00-09:00 scales them per 15-minute period by :data:`PROFILE`.

* **Where traffic enters.** Main-road traffic enters at the corridor's two ends at the counted
  volume of the end junctions' approaches (K03 from the north, K04 from the south); side-street
  traffic at every side approach at its counted volume.
* **Where it goes.** At every approach a vehicle of class ``c`` takes a movement with the
  movement's share of that approach's class-``c`` count, and a turn of that movement with
  :data:`TURN_SHARES` (the counts lump turns in ``through_right`` and ``all`` movements).
* **Reconciling neighbours.** What arrives at the next junction along the main road then
  rarely equals its own count (the count stations were not counted on the same day). The
  difference is made up mid-block, where Sunset Road's shops, hotels and lanes feed and absorb
  traffic: when fewer vehicles of a class arrive than counted, a *source* on the second half of
  the link adds the difference (veh/h); when more arrive, a *sink* ends that fraction of the
  trips on the link's first half. So every approach carries its counted volume per class
  (in expectation), turning shares follow the counts, and no count is dropped.

A *route distribution* per origin and class lists every path through the corridor with its
probability; SUMO draws each vehicle's route from it, and departures are Poisson
(``period="exp(rate)"``), so the seed of the simulation decides the actual vehicles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controllers.demand import CLASSES, MovementDemand
from devices.twin.network import DESTINATION, OPPOSITE, Arm, Corridor, Junction, Turn, in_edge, out_edge

#: Local start (HH:MM, WITA) and factor of the peak-hour rate of each 15-minute period; the peak
#: hour 07:15-08:15 averages 1.0 (peak-hour factor 1 / (4 x 1.05) = 0.95).
PROFILE: tuple[tuple[str, float], ...] = (
    ("06:00", 0.50), ("06:15", 0.60), ("06:30", 0.70), ("06:45", 0.80),
    ("07:00", 0.90), ("07:15", 0.95), ("07:30", 1.05), ("07:45", 1.05),
    ("08:00", 0.95), ("08:15", 0.85), ("08:30", 0.75), ("08:45", 0.65),
)
PERIOD_S = 900
#: How a movement's vehicles split over its turns (the counts do not separate them).
TURN_SHARES: dict[str, dict[Turn, float]] = {
    "left": {"left": 1.0},
    "through": {"through": 1.0},
    "right": {"right": 1.0},
    "left_through": {"left": 0.25, "through": 0.75},
    "through_right": {"through": 0.85, "right": 0.15},
    "all": {"left": 0.4, "through": 0.3, "right": 0.3},
}
MIN_ROUTE_PROBABILITY = 1e-5  # paths rarer than this are left out (and the rest renormalised)

Counts = Mapping[str, Mapping[str, MovementDemand]]  # junction id -> movement id -> demand (veh/h by class)


def seconds_of_day(hhmm: str) -> int:
    """Seconds after local midnight of ``HH:MM``."""
    hours, minutes = hhmm.split(":")
    return int(hours) * 3600 + int(minutes) * 60


@dataclass(frozen=True)
class Route:
    """A path (edge ids) and its probability within its origin's distribution."""

    edges: tuple[str, ...]
    probability: float


@dataclass(frozen=True)
class Origin:
    """Where trips of one class enter: the first edge, the peak-hour rate (veh/h) and the route distribution."""

    edge: str
    vehicle_class: str
    rate_veh_h: float
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class LinkBalance:
    """One direction of a main-road link: what arrives from upstream, what the downstream junction counted (veh/h),
    the fraction ending mid-block and the rate starting mid-block."""

    from_junction: str
    to_junction: str
    vehicle_class: str
    arriving_veh_h: float
    counted_veh_h: float
    sink_fraction: float
    source_veh_h: float


def class_rate(demand: MovementDemand, vehicle_class: str) -> float:
    """The demand of one class (veh/h)."""
    return float(getattr(demand, f"{vehicle_class}_veh_h"))


def approach_count(counts: Counts, junction: Junction, arm: Arm, vehicle_class: str) -> float:
    """Counted volume of an approach for one class (veh/h); 0 for an exit-only arm."""
    approach = junction.approach(arm)
    if approach is None:
        return 0.0
    rows = counts.get(junction.id, {})
    return sum(class_rate(rows[m.id], vehicle_class) for m in junction.plan.movements
               if m.approach == approach.id and m.id in rows)


def turn_shares(counts: Counts, junction: Junction, arm: Arm, vehicle_class: str) -> dict[Turn, float]:
    """P(turn) of a class-``vehicle_class`` vehicle on an approach, from its movements' counts and :data:`TURN_SHARES`.

    A class with no count on the approach takes the shares of all classes together."""
    approach = junction.approach(arm)
    if approach is None:
        return {}
    rows = counts.get(junction.id, {})
    movements = [m for m in junction.plan.movements if m.approach == approach.id]
    for classes in ((vehicle_class,), CLASSES):
        shares: dict[Turn, float] = {}
        for m in movements:
            rate = sum(class_rate(rows[m.id], c) for c in classes) if m.id in rows else 0.0
            for turn, share in TURN_SHARES[m.turns].items():
                shares[turn] = shares.get(turn, 0.0) + rate * share
        total = sum(shares.values())
        if total > 0:
            return {t: s / total for t, s in shares.items() if s > 0}
    return {}


def link_balances(corridor: Corridor, counts: Counts) -> list[LinkBalance]:
    """Every main-road link direction and class: arriving against counted volume, and the sink or source that reconciles them."""
    out = []
    for j in corridor.junctions:
        for arm in ("N", "S"):
            k = corridor.neighbour(j.id, arm)
            if k is None:
                continue
            for c in CLASSES:
                arriving = sum(approach_count(counts, j, a.arm, c) * p
                               for a in j.approaches for t, p in turn_shares(counts, j, a.arm, c).items()
                               if DESTINATION[a.arm][t] == arm)
                counted = approach_count(counts, k, OPPOSITE[arm], c)
                sink = 1.0 - counted / arriving if arriving > counted else 0.0
                out.append(LinkBalance(j.id, k.id, c, arriving, counted, sink, max(0.0, counted - arriving)))
    return out


def origins(corridor: Corridor, counts: Counts) -> list[Origin]:
    """Every origin (end, side street, mid-block source) and class with a positive rate, with its routes."""
    balances = {(b.from_junction, b.to_junction, b.vehicle_class): b for b in link_balances(corridor, counts)}
    out = []
    for c in CLASSES:
        for j in corridor.junctions:
            for a in j.approaches:
                fed = corridor.neighbour(j.id, a.arm)  # a main-road approach fed by the previous junction
                rate = approach_count(counts, j, a.arm, c)
                if fed is None and rate > 0:
                    out.append(Origin(a.edge, c, rate, _routes(corridor, counts, balances, j, a.arm, c)))
            for arm in ("N", "S"):
                k = corridor.neighbour(j.id, arm)
                b = balances.get((j.id, k.id, c)) if k is not None else None
                if k is not None and b is not None and b.source_veh_h > 0:
                    routes = _routes(corridor, counts, balances, k, OPPOSITE[arm], c)
                    out.append(Origin(in_edge(k.id, OPPOSITE[arm]), c, b.source_veh_h, routes))
    return out


def _routes(corridor: Corridor, counts: Counts, balances: Mapping[tuple[str, str, str], LinkBalance],
            junction: Junction, arm: Arm, vehicle_class: str) -> tuple[Route, ...]:
    """All paths from the approach ``arm`` of ``junction`` (depth-first, in a fixed order), renormalised."""
    paths: list[Route] = []
    stack: list[tuple[Junction, Arm, tuple[str, ...], float]] = [(junction, arm, (in_edge(junction.id, arm),), 1.0)]
    while stack:
        j, a, edges, p = stack.pop()
        for turn, share in turn_shares(counts, j, a, vehicle_class).items():
            leave = DESTINATION[a][turn]
            here = (*edges, out_edge(j.id, leave))
            k = corridor.neighbour(j.id, leave)
            if k is None:
                paths.append(Route(here, p * share))
                continue
            sink = balances[(j.id, k.id, vehicle_class)].sink_fraction
            if sink > 0:
                paths.append(Route(here, p * share * sink))
            stack.append((k, OPPOSITE[leave], (*here, in_edge(k.id, OPPOSITE[leave])), p * share * (1.0 - sink)))
    kept = [r for r in paths if r.probability >= MIN_ROUTE_PROBABILITY]
    total = sum(r.probability for r in kept)
    return tuple(Route(r.edges, r.probability / total) for r in kept)
