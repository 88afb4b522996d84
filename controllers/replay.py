"""Replay (pure): re-run the fold and the decisions over archived events and compare with what was recorded.

Two checks, each naming the first difference:

1. **The fold.** For every intersection, the recorded ``TrafficMeasured`` summaries are
   re-computed in order: a fresh :class:`~controllers.traffic_state.IntersectionFold` folds
   the events each summary cites (and refuses the inputs it lists), then closes windows
   (:meth:`~controllers.traffic_state.IntersectionFold.apply_batch`); the summaries it
   produces must equal the recorded ones byte for byte (JSON of the payload).
2. **The decisions.** The recorded summaries of each corridor, in the order the decision loop
   read them (the archive's order), go through a fresh
   :class:`~controllers.decisions.CorridorDecisions` with the same strategy and
   configuration; every command it issues must equal the recorded ``CommandIssued`` with the
   same sequence number for that intersection, and none may be missing or extra.

The caller (``lalin replay``) reads the archive and passes the events in archive order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from controllers.decisions import CorridorDecisions, CorridorMember
from controllers.envelope import Envelope
from controllers.payloads import CommandIssued, TrafficMeasured
from controllers.strategy import Strategy
from controllers.traffic_state import FoldConfig, IntersectionFold, IntersectionLayout

FOLD_SOURCE_PREFIX = "lalin:fold:"
DECIDE_SOURCE = "lalin:decide"


@dataclass(frozen=True)
class Difference:
    """The first place a replay disagrees with the record: what (``fold`` or ``decision``), where, both values."""

    kind: str
    key: str
    position: int
    recorded: str
    replayed: str
    detail: str = ""
    at: datetime | None = None  # the recorded event's time (fold differences), for ``--from``


@dataclass
class ReplayReport:
    """What a replay checked and the first difference of each kind (none: the record is reproduced)."""

    events: int = 0
    summaries_checked: int = 0
    commands_checked: int = 0
    missing_inputs: int = 0
    vms_evaluations_checked: int = 0
    vms_commands_checked: int = 0
    plan_steps_checked: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing differs."""
        return not self.differences


def canonical_json(payload: msgspec.Struct | None) -> str:
    """Canonical JSON (sorted keys, as the archive stores events): a record and its replay compare as text."""
    return msgspec.json.encode(payload, order="sorted").decode() if payload is not None else "null"



def replay(events: Iterable[Envelope], layouts: Mapping[str, IntersectionLayout],
           corridors: Mapping[str, Sequence[CorridorMember]], strategy: Strategy, config_checksum: str, *,
           fold_config: FoldConfig | None = None, progress: Callable[[int], None] | None = None) -> ReplayReport:
    """Re-run fold and decisions over ``events`` (archive order) and compare (see the module docstring)."""
    everything = list(events)
    folds = check_folds(everything, layouts, fold_config=fold_config, progress=progress)
    decisions = check_decisions(everything, corridors, strategy, config_checksum, count=False)
    return merge_reports([folds, decisions])


def check_folds(events: Iterable[Envelope], layouts: Mapping[str, IntersectionLayout], *,
                fold_config: FoldConfig | None = None, progress: Callable[[int], None] | None = None) -> ReplayReport:
    """Check 1 for the intersections of ``layouts``: ``events`` holds their inputs and summaries, in any order.

    Intersections are independent, so a replay can split them between processes (``lalin replay --jobs``).
    """
    report = ReplayReport()
    by_id: dict[uuid.UUID, Envelope] = {}
    summaries: dict[str, list[Envelope]] = {}
    for event in events:
        report.events += 1
        if progress is not None and report.events % 10_000 == 0:
            progress(report.events)
        payload = event.payload
        if isinstance(payload, TrafficMeasured) and event.source.startswith(FOLD_SOURCE_PREFIX):
            summaries.setdefault(payload.intersection_id, []).append(event)
        elif not (isinstance(payload, CommandIssued) and event.source == DECIDE_SOURCE):
            by_id[event.event_id] = event
    config = fold_config if fold_config is not None else FoldConfig()
    for intersection, recorded in sorted(summaries.items()):
        layout = layouts.get(intersection)
        if layout is not None:
            _check_fold(report, layout, config, sorted(recorded, key=lambda e: e.seq), by_id)
    return report


def check_decisions(events: Iterable[Envelope], corridors: Mapping[str, Sequence[CorridorMember]], strategy: Strategy,
                    config_checksum: str, *, count: bool = True) -> ReplayReport:
    """Check 2: ``events`` holds the recorded summaries in the order the decision loop read them (archive order)
    and the recorded commands; other events are ignored (counted unless ``count`` is false)."""
    report = ReplayReport()
    corridor_input: dict[str, list[TrafficMeasured]] = {}
    recorded_commands: dict[str, list[CommandIssued]] = {}
    for event in events:
        report.events += count
        payload = event.payload
        if isinstance(payload, TrafficMeasured) and event.source.startswith(FOLD_SOURCE_PREFIX):
            corridor_input.setdefault(event.key, []).append(payload)
        elif isinstance(payload, CommandIssued) and event.source == DECIDE_SOURCE:
            recorded_commands.setdefault(payload.target, []).append(payload)
    for key, inputs in sorted(corridor_input.items()):
        members = corridors.get(key)
        if members is not None:
            _check_decisions(report, key, members, strategy, config_checksum, inputs, recorded_commands)
    return report


def merge_reports(reports: Iterable[ReplayReport]) -> ReplayReport:
    """One report of several partial ones (fold checks of disjoint intersections, the decision check)."""
    merged = ReplayReport()
    for part in reports:
        merged.events += part.events
        merged.summaries_checked += part.summaries_checked
        merged.commands_checked += part.commands_checked
        merged.missing_inputs += part.missing_inputs
        merged.vms_evaluations_checked += part.vms_evaluations_checked
        merged.vms_commands_checked += part.vms_commands_checked
        merged.plan_steps_checked += part.plan_steps_checked
        merged.differences += part.differences
    return merged


def _check_fold(report: ReplayReport, layout: IntersectionLayout, config: FoldConfig, recorded: list[Envelope],
                by_id: Mapping[uuid.UUID, Envelope]) -> None:
    fold = IntersectionFold(layout, config)
    produced: list[TrafficMeasured] = []
    for k, envelope in enumerate(recorded):
        summary = envelope.payload
        assert isinstance(summary, TrafficMeasured)
        replayed: TrafficMeasured | None
        if k < len(produced):
            replayed = produced[k]  # closed by an earlier batch (one event can close several windows)
        else:
            inputs = [by_id[i] for i in summary.input_event_ids if i in by_id]
            if len(inputs) < len(summary.input_event_ids):
                report.missing_inputs += len(summary.input_event_ids) - len(inputs)
                report.differences.append(Difference(
                    "fold", layout.intersection_id, envelope.seq, canonical_json(summary), "",
                    f"{len(summary.input_event_ids) - len(inputs)} cited input(s) are not in the replayed range or archive",
                    envelope.event_time))
                return
            produced += fold.apply_batch(inputs, summary.rejected_inputs)
            replayed = produced[k] if k < len(produced) else None
        report.summaries_checked += 1
        if canonical_json(replayed) != canonical_json(summary):
            report.differences.append(Difference("fold", layout.intersection_id, envelope.seq, canonical_json(summary),
                                                 canonical_json(replayed), f"summary of the window from {summary.window.start}",
                                                 envelope.event_time))
            return


def _check_decisions(report: ReplayReport, key: str, members: Sequence[CorridorMember], strategy: Strategy,
                     config_checksum: str, inputs: list[TrafficMeasured],
                     recorded: Mapping[str, list[CommandIssued]]) -> None:
    loop = CorridorDecisions(members, strategy, config_checksum)
    produced: dict[str, list[CommandIssued]] = {}
    for summary in inputs:
        for command in loop.on_measured(summary):
            produced.setdefault(command.target, []).append(command)
    for member in members:
        want = recorded.get(member.intersection_id, [])
        got = produced.get(member.intersection_id, [])
        for n in range(max(len(want), len(got))):
            report.commands_checked += 1
            a = want[n] if n < len(want) else None
            b = got[n] if n < len(got) else None
            if canonical_json(a) != canonical_json(b):
                report.differences.append(Difference("decision", member.intersection_id, n + 1, canonical_json(a),
                                                     canonical_json(b),
                                                     f"command {n + 1} to {member.intersection_id} (corridor {key})"))
                return
