"""Step-by-step bookkeeping of a running simulation: loop entries and occupancy, trips and their stops.

Both read libsumo through subscriptions (one call per step for all loops, one for all vehicles)
and keep only what the reports need, so a step stays cheap at thousands of vehicles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from traci import constants as tc

from devices.twin.links import SignalLinks
from devices.twin.reports import DetectorEntry, DetectorStep

HALTING_SPEED_MPS = 0.1  # below this a vehicle is halting (SUMO's threshold); a new halt is a stop
PART_SEPARATOR = "#"  # the second motorcycle of a SUMO motorcycle vehicle is reported as "<vehicle id>#2"
_IDLE = DetectorStep()


def occupied_s(intervals: Iterable[tuple[float, float]]) -> float:
    """Length (s) of the union of time intervals ``(start, end)``: side-by-side motorcycles occupy a loop once."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


class LoopTracker:
    """Every E1 loop: vehicles entering, occupied time per step, and crossings by class for the approach cameras.

    A vehicle is counted once per approach, on the first loop it enters: one that swerves onto the
    neighbouring lane on the stop line (SUMO lets a vehicle waiting to change lanes creep onto the
    loop) is not counted again. The approach's advance loops are a separate group: a vehicle is
    counted once on them and once again at the stop line. It is forgotten when it leaves the network."""

    def __init__(self, links: SignalLinks, vtype_class: Mapping[str, str], class_weight: Mapping[str, int]) -> None:
        """Track the loops of ``links``; ``vtype_class`` maps SUMO vType ids to lalin's vehicle classes, and
        ``class_weight`` a class to the vehicles one SUMO vehicle stands for (each is reported)."""
        self._fleet = [(detector_id, d.e1) for c in links.controllers.values() for detector_id, d in c.detectors.items()]
        stop_line = [e1 for c in links.controllers.values() for a in c.approaches.values() for e1 in a.e1]
        advance = [d.e1 for c in links.controllers.values() for d in c.detectors.values() if d.kind == "advance"]
        self._loops = stop_line + advance
        self._class = dict(vtype_class)
        self._weight = dict(class_weight)
        group = {e1: a.edge for c in links.controllers.values() for a in c.approaches.values() for e1 in a.e1}
        group |= {d.e1: f"{c.approaches[d.approach].edge}/advance" for c in links.controllers.values()
                  for d in c.detectors.values() if d.kind == "advance"}
        seen_on: dict[str, set[str]] = {g: set() for g in group.values()}
        self._seen: dict[str, set[str]] = {e1: seen_on[group[e1]] for e1 in self._loops}  # shared per group
        self._where: dict[str, list[str]] = {}  # vehicle -> a loop of each approach it was counted on
        self._crossings: dict[str, dict[str, int]] = {e1: {} for e1 in self._loops}
        self._subscribed = False

    def read(self, sumo: Any, t0_s: float, t1_s: float) -> dict[str, DetectorStep]:
        """Loop activity of the step from ``t0_s`` to ``t1_s`` (s), for every fleet detector id.

        The vehicle counts of all loops come in one subscription; only loops that saw a vehicle are read
        in detail (libsumo does not decode a subscribed ``getVehicleData``)."""
        if not self._subscribed:
            for e1 in self._loops:
                sumo.inductionloop.subscribe(e1, [tc.LAST_STEP_VEHICLE_NUMBER])
            self._subscribed = True
            busy = [e1 for e1 in self._loops if sumo.inductionloop.getLastStepVehicleNumber(e1)]
        else:
            busy = [e1 for e1, values in sumo.inductionloop.getAllSubscriptionResults().items()
                    if values[tc.LAST_STEP_VEHICLE_NUMBER]]
        steps = {e1: self._step(e1, sumo.inductionloop.getVehicleData(e1), t0_s, t1_s) for e1 in busy}
        return {detector_id: steps.get(e1, _IDLE) for detector_id, e1 in self._fleet}

    def _step(self, e1: str, data: Iterable[tuple[str, float, float, float, str]], t0_s: float, t1_s: float) -> DetectorStep:
        entries, intervals = [], []
        seen, crossings = self._seen[e1], self._crossings[e1]
        for vehicle, _length, entry_s, exit_s, type_id in data:
            if vehicle not in seen:
                seen.add(vehicle)
                self._where.setdefault(vehicle, []).append(e1)
                vehicle_class = self._class.get(type_id, "car")
                weight = self._weight.get(vehicle_class, 1)
                entries += [DetectorEntry(vehicle if k == 1 else f"{vehicle}{PART_SEPARATOR}{k}", vehicle_class)
                            for k in range(1, weight + 1)]
                crossings[vehicle_class] = crossings.get(vehicle_class, 0) + weight
            end = t1_s if exit_s < 0 else min(exit_s, t1_s)
            start = max(entry_s, t0_s)
            if end > start:
                intervals.append((start, end))
        return DetectorStep(tuple(entries), occupied_s(intervals))

    def forget(self, vehicles: Iterable[str]) -> None:
        """Vehicles that left the network: their ids may be counted afresh (SUMO does not reuse ids)."""
        for vehicle in vehicles:
            for e1 in self._where.pop(vehicle, ()):
                self._seen[e1].discard(vehicle)

    def take_crossings(self, loops: Iterable[str]) -> dict[str, int]:
        """Vehicles by class that entered ``loops`` since the previous take of each; the counts restart."""
        total: dict[str, int] = {}
        for e1 in loops:
            for vehicle_class, n in self._crossings[e1].items():
                total[vehicle_class] = total.get(vehicle_class, 0) + n
            self._crossings[e1] = {}
        return total


class TripTracker:
    """Every vehicle in the network (speed and time loss subscribed at departure): its stops and time loss,
    and the totals of completed trips, each SUMO vehicle weighted by the real vehicles it stands for.

    :meth:`begin_measure` ends a warm-up: the totals start again and the vehicles in the network then (or
    waiting to enter) are left out of them, so a measured period's completed trips are those that departed in
    it (the running figures still cover every vehicle on the road)."""

    VARIABLES = (tc.VAR_SPEED, tc.VAR_TIMELOSS)

    def __init__(self, vtype_class: Mapping[str, str], class_weight: Mapping[str, int]) -> None:
        """Nothing tracked yet; ``vtype_class`` and ``class_weight`` as for :class:`LoopTracker`."""
        self._type_weight = {t: class_weight.get(c, 1) for t, c in vtype_class.items()}
        self._class_weight = dict(class_weight)
        self._weight: dict[str, int] = {}
        self._halted: dict[str, bool] = {}
        self._stops: dict[str, int] = {}
        self._time_loss_s: dict[str, float] = {}
        self.completed = 0
        self.completed_stops = 0
        self.completed_delay_s = 0.0
        self.inserted = 0
        self.running = 0
        self.teleports = 0
        self.arrived_last_step: frozenset[str] = frozenset()
        self._warm_up: set[str] = set()  # vehicles of the warm-up: tracked, never counted
        self._pending_warm_up: set[str] = set()  # warm-up vehicles still waiting to enter

    def begin_measure(self, pending: Iterable[str]) -> None:
        """End the warm-up: totals start again from zero; the vehicles in the network and ``pending`` (SUMO's
        vehicles waiting to enter) are left out of every total to come."""
        self._warm_up = set(self._weight)
        self._pending_warm_up = set(pending)
        self.completed = self.completed_stops = self.inserted = self.teleports = 0
        self.completed_delay_s = 0.0

    def update(self, sumo: Any) -> None:
        """After a simulation step: subscribe departures, close arrivals, count new halts."""
        for vehicle in sumo.simulation.getDepartedIDList():
            sumo.vehicle.subscribe(vehicle, self.VARIABLES)
            weight = self._type_weight.get(sumo.vehicle.getTypeID(vehicle), 1)
            self._weight[vehicle], self._halted[vehicle], self._stops[vehicle], self._time_loss_s[vehicle] = weight, False, 0, 0.0
            self.running += weight
            if vehicle in self._pending_warm_up:  # it waited through the warm-up's end: a warm-up vehicle
                self._pending_warm_up.discard(vehicle)
                self._warm_up.add(vehicle)
            else:
                self.inserted += weight
        arrived = sumo.simulation.getArrivedIDList()
        for vehicle in arrived:
            weight = self._weight.pop(vehicle, 0)
            trip_stops, trip_delay_s = self._stops.pop(vehicle, 0), self._time_loss_s.pop(vehicle, 0.0)
            self._halted.pop(vehicle, None)
            self.running -= weight
            if vehicle in self._warm_up:
                self._warm_up.discard(vehicle)
                continue
            self.completed += weight
            self.completed_stops += weight * trip_stops
            self.completed_delay_s += weight * trip_delay_s
        self.arrived_last_step = frozenset(arrived)
        self.teleports += int(sumo.simulation.getStartingTeleportNumber())
        halted, stops, loss = self._halted, self._stops, self._time_loss_s
        for vehicle, values in sumo.vehicle.getAllSubscriptionResults().items():
            if vehicle not in halted:
                continue
            loss[vehicle] = values[tc.VAR_TIMELOSS]
            if values[tc.VAR_SPEED] < HALTING_SPEED_MPS:
                if not halted[vehicle]:
                    stops[vehicle] += 1
                    halted[vehicle] = True
            else:
                halted[vehicle] = False

    def waiting(self, pending: Iterable[str]) -> int:
        """Real vehicles among SUMO's vehicles waiting to enter (flow vehicle ids ``<origin>.<class>.<period>.<n>``)."""
        return sum(self._class_weight.get(v.split(".")[1] if v.count(".") >= 3 else "", 1) for v in pending)

    def mean_completed_delay_s(self) -> float:
        """Mean time loss of completed trips (s/veh), to the last step before arrival."""
        return self.completed_delay_s / self.completed if self.completed else 0.0

    def mean_completed_stops(self) -> float:
        """Mean stops of completed trips."""
        return self.completed_stops / self.completed if self.completed else 0.0

    def running_mean_delay_s(self) -> float:
        """Mean time loss so far of the vehicles in the network (s/veh)."""
        total = sum(self._weight[v] * loss for v, loss in self._time_loss_s.items())
        return total / self.running if self.running else 0.0

    def running_mean_stops(self) -> float:
        """Mean stops so far of the vehicles in the network."""
        total = sum(self._weight[v] * n for v, n in self._stops.items())
        return total / self.running if self.running else 0.0
