"""The causes of VMS messages (pure): what the folded state, the orders and the calendar propose at an
instant, each with its evidence, inputs and reach, and the hysteresis that keeps a cause live.

A cause, once live, stays live until its condition has failed for its off delay AND it has been
shown ``min_display_s`` on every board that shows it, so a message never comes down sooner.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from controllers.payloads import ControlMode, TimeWindow
from controllers.vms_config import Category, Facing, VmsPolicyConfig, calendar_active
from controllers.vms_evidence import DirectionMeasure, approach_facing, measure_direction, travel_time
from controllers.vms_state import CauseTrack, VmsNetwork, VmsState
from controllers.vms_text import Params


@dataclass
class Candidate:
    """A message some cause proposes, before placement."""

    cause: str
    rule: str
    category: Category
    template: str | None
    params: Params
    evidence: dict[str, str]
    inputs: list[uuid.UUID]
    junction: str | None = None  # located causes: the junction, the directions, and how far they reach
    facings: tuple[Facing, ...] = ()
    max_boards: int = 0
    max_distance_m: float = 0.0
    boards: tuple[str, ...] = ()  # fixed boards (operator, calendar, travel time, default)
    pages: list[list[str]] | None = None  # fixed text (operator)
    value: int | None = None
    operator: str | None = None
    reason: str | None = None
    until_s: float | None = None
    window: TimeWindow | None = None


def _t(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _fmt(value: float | None, unit: str) -> str:
    return "unknown" if value is None else f"{value:.2f} {unit}".replace(".00 ", " ")


class CauseFinder:
    """The causes live at an instant (see the module docstring); updates the hysteresis in the state it is given."""

    def __init__(self, config: VmsPolicyConfig, network: VmsNetwork) -> None:
        self.config, self.network = config, network
        self.state = VmsState()
        self._measures: dict[tuple[str, Facing], DirectionMeasure | None] = {}

    def find(self, state: VmsState, at: datetime) -> list[Candidate]:
        """Every cause live at ``at``, in a fixed order (operator, incidents, signals out, congestion, travel times,
        calendar, default)."""
        self.state, at_s = state, at.timestamp()
        self._measures = {}
        out = self._operator(at_s)
        out += self._incidents(at_s)
        out += self._signals_out(at_s)
        out += self._congestion(at_s)
        out += self._travel_times(at_s)
        out += self._calendar(at)
        if self.config.default_template is not None:
            out += [Candidate(f"default:{b.id}", "default", "default", self.config.default_template, {}, {}, [],
                              boards=(b.id,)) for b in self.network.boards]
        return out

    def _track(self, cause: str, condition: bool, at_s: float, on_after_s: float, off_after_s: float) -> bool:
        """Hysteresis: live once ``condition`` held ``on_after_s``; ends once it failed ``off_after_s`` and the cause has
        been live, and on every board showing it, ``min_display_s``. True while live."""
        track = self.state.causes.setdefault(cause, CauseTrack())
        if not track.on:
            if not condition:
                track.pending_since_s = None
                return False
            if track.pending_since_s is None:
                track.pending_since_s = at_s
            if at_s - track.pending_since_s >= on_after_s:
                track.on, track.onset_s, track.clear_since_s = True, at_s, None
            return track.on
        if condition:
            track.clear_since_s = None
            return True
        if track.clear_since_s is None:
            track.clear_since_s = at_s
        onset = track.onset_s if track.onset_s is not None else at_s
        shown_since = max([onset, *(s.since_s for s in self.state.showing.values() if s.cause == cause)])
        if at_s - track.clear_since_s >= off_after_s and at_s - shown_since >= self.config.display.min_display_s:
            self.state.causes[cause] = CauseTrack()
            return False
        return True

    def _operator(self, at_s: float) -> list[Candidate]:
        out = []
        for key, order in sorted(self.state.orders.items(), key=lambda kv: (kv[1].issued_s, kv[0])):
            if order.cancelled_s is not None or at_s >= order.until_s:
                continue
            out.append(Candidate(f"operator:{key}", "operator", "operator", None, {}, {
                "operator": order.operator, "reason": order.reason[:200], "until": _t(order.until_s).isoformat()},
                [order.order_id], boards=(order.board_id,), pages=order.pages, operator=order.operator,
                reason=order.reason, until_s=order.until_s))
        return out

    def _incidents(self, at_s: float) -> list[Candidate]:
        out = []
        for key, seen in sorted(self.state.sightings.items()):
            junction, approach = key.split("/", 1)
            rule = next((r for r in self.config.incidents if seen.kind in {k.value for k in r.kinds}), None)
            plan = self.network.plans.get(junction)
            if rule is None or plan is None:
                continue
            cause = f"incident:{junction}:{approach}"
            fresh = seen.confidence >= rule.min_confidence and at_s - seen.last_s <= rule.clear_after_s
            if not self._track(cause, fresh, at_s, 0.0, 0.0):
                continue
            words = self.config.words.get(seen.kind)
            what = (words.id, words.en) if words else (seen.kind.replace("_", " "), seen.kind.replace("_", " "))
            out.append(Candidate(cause, rule.id, rule.category, rule.template, {"what": what, **self._place_params(junction)},
                                 {"kind": seen.kind, "confidence": f"{seen.confidence:.2f}", "junction": junction,
                                  "approach": approach, "last_seen": _t(seen.last_s).isoformat()},
                                 [seen.summary_id], junction=junction, facings=tuple(approach_facing(plan, approach)),
                                 max_boards=rule.max_boards, max_distance_m=rule.max_distance_m))
        return out

    def _place_params(self, junction: str) -> dict[str, tuple[str, str]]:
        name = self.config.places.get(junction)
        return {"place": (name.id, name.en) if name else (junction, junction)}

    def _signals_out(self, at_s: float) -> list[Candidate]:
        rule = self.config.signals_out
        if rule is None:
            return []
        out = []
        for junction, summary in sorted(self.state.summaries.items()):
            reasons = []
            if summary.controller_mode in rule.modes:
                reasons.append(f"mode {summary.controller_mode.value if summary.controller_mode else ''}")
            if rule.unreachable and not summary.controller_reachable:
                reasons.append("controller unreachable")
            reasons += [f"fault {f.value}" for f in summary.faults_active if f in rule.faults]
            cause = f"signals_out:{junction}"
            if not self._track(cause, bool(reasons), at_s, 0.0, rule.clear_after_s):
                continue
            out.append(Candidate(cause, rule.id, "safety", rule.template, self._place_params(junction),
                                 {"junction": junction, "condition": "; ".join(reasons) or "recovering (hysteresis)",
                                  "mode": (summary.controller_mode or ControlMode.OFF).value,
                                  "window_end": summary.window.end.isoformat()},
                                 [self.state.summary_ids[junction]], junction=junction, facings=("outbound", "inbound"),
                                 max_boards=rule.max_boards, max_distance_m=rule.max_distance_m, window=summary.window))
        return out

    def _measure(self, junction: str, facing: Facing) -> DirectionMeasure | None:
        """The direction's measure in the latest summary (computed once per evaluation: congestion and travel times
        share it)."""
        key = (junction, facing)
        if key not in self._measures:
            summary, plan = self.state.summaries.get(junction), self.network.plans.get(junction)
            self._measures[key] = None if summary is None or plan is None or plan.coordination is None else \
                measure_direction(plan, self.network.detectors.get(junction, {}), summary,
                                  self.state.summary_ids[junction], facing)
        return self._measures[key]

    def _congestion(self, at_s: float) -> list[Candidate]:
        rule = self.config.congestion
        if rule is None:
            return []
        out = []
        for junction in sorted(self.state.summaries):
            for facing in ("outbound", "inbound"):
                m = self._measure(junction, facing)
                if m is None:
                    continue
                on, off = rule.switch_on, rule.switch_off
                hot = []
                if on.degree_of_saturation is not None and m.degree_of_saturation is not None \
                        and m.degree_of_saturation >= on.degree_of_saturation:
                    hot.append(f"X {m.degree_of_saturation:.2f} >= {on.degree_of_saturation:g}")
                if on.queue_m is not None and m.queue_m is not None and m.queue_m >= on.queue_m:
                    hot.append(f"queue {m.queue_m:.0f} m >= {on.queue_m:g} m")
                if on.speed_kmh is not None and m.speed_kmh is not None and m.speed_kmh <= on.speed_kmh:
                    hot.append(f"speed {m.speed_kmh:.1f} km/h <= {on.speed_kmh:g} km/h")
                if on.control_delay_s is not None and m.control_delay_s is not None and m.control_delay_s >= on.control_delay_s:
                    hot.append(f"delay {m.control_delay_s:.0f} s >= {on.control_delay_s:g} s")
                still = (off.degree_of_saturation is not None and m.degree_of_saturation is not None
                         and m.degree_of_saturation > off.degree_of_saturation) or (
                    off.queue_m is not None and m.queue_m is not None and m.queue_m > off.queue_m) or (
                    off.speed_kmh is not None and m.speed_kmh is not None and m.speed_kmh < off.speed_kmh) or (
                    off.control_delay_s is not None and m.control_delay_s is not None
                    and m.control_delay_s > off.control_delay_s)
                cause = f"congestion:{junction}:{facing}"
                track = self.state.causes.get(cause)
                condition = bool(hot) if track is None or not track.on else still
                if not self._track(cause, condition, at_s, rule.on_after_s, rule.off_after_s):
                    continue
                summary = self.state.summaries[junction]
                out.append(Candidate(cause, rule.id, "congestion", rule.template, self._place_params(junction), {
                    "junction": junction, "facing": facing, "condition": "; ".join(hot) or "clearing (hysteresis)",
                    "degree_of_saturation": _fmt(m.degree_of_saturation, ""), "queue_m": _fmt(m.queue_m, "m"),
                    "speed_kmh": _fmt(m.speed_kmh, "km/h"), "control_delay_s": _fmt(m.control_delay_s, "s"),
                    "withheld": "; ".join(m.withheld)[:300] or "none",
                    "window_end": summary.window.end.isoformat()}, [m.summary_id], junction=junction, facings=(facing,),
                    max_boards=rule.max_boards, max_distance_m=rule.max_distance_m, window=summary.window))
        return out

    def _travel_times(self, at_s: float) -> list[Candidate]:
        rule = self.config.travel_time
        if rule is None:
            return []
        out = []
        for board in self.network.boards:
            if board.corridor is None or board.chainage_m is None or board.facing is None or not board.downstream:
                continue
            path, measures = [], {}
            for junction in board.downstream:
                where = self.network.chainage(junction)
                if where is None:
                    break
                path.append((junction, where[1], where[2]))
                m = self._measure(junction, board.facing)
                if m is not None:
                    measures[junction] = m
            estimate = travel_time(board.chainage_m, path, measures)
            minutes = estimate.minutes
            if minutes is None or minutes > rule.max_minutes:
                continue  # withheld: the evaluation's cause list does not show it; the reason is in the evidence below
            destination = board.downstream[-1]
            inputs = [measures[j].summary_id for j, _, _ in path]
            out.append(Candidate(f"travel_time:{board.id}", rule.id, "travel_time", rule.template,
                                 {"minutes": (str(minutes), str(minutes)), "dest": self._place_params(destination)["place"]},
                                 {"destination": destination, "minutes": str(minutes), "cruise_s": f"{estimate.cruise_s:.0f}",
                                  "delays_s": ", ".join(f"{j} {d:.0f}" for j, d in estimate.delays_s)[:300]},
                                 inputs, boards=(board.id,), value=minutes))
        return out

    def _calendar(self, at: datetime) -> list[Candidate]:
        out = []
        for entry in self.config.calendar:
            if not calendar_active(entry, at):
                continue
            boards = tuple(b.id for b in self.network.boards if b.id in entry.boards or (b.road in entry.roads))
            words = self.config.words.get(entry.kind)
            params: dict[str, tuple[str, str]] = {"what": (words.id, words.en) if words else (entry.kind, entry.kind)}
            params.update({k: (v, v) for k, v in entry.params.items()})
            out.append(Candidate(f"calendar:{entry.id}", entry.id, "closure", entry.template, params,
                                 {"kind": entry.kind, "start": entry.start.isoformat(), "end": entry.end.isoformat()},
                                 [], boards=boards))
        return out
