"""One fold task: the records of one partition index of the fold's input topics, folded per intersection.

The Faust agent (:mod:`streams.fold_app`) only hands records here; this class decodes them at
the edge (msgspec, the envelope's strict validation), routes each event to its
intersection's :class:`~controllers.traffic_state.IntersectionFold`, wraps the summaries the
fold returns in envelopes for ``lalin.state`` and remembers, per input topic, the next offset
to read. Its whole state — every intersection's fold, the offsets, the dead letters not yet
stored — is a :class:`~infra.fold_store.TaskSnapshot` stored in one PostgreSQL statement.

Refused records are never dropped: an envelope that does not validate (the archiver
dead-letters the same record), an event the fold refuses (a detector, approach or
controller the intersection does not have: dead-lettered here, reason ``unknown_input``) and
an event the fold failed on (a defect: dead-lettered here, reason ``fold_failed``, naming the
exception; the partition goes on) are noted in the intersection's next summary
(``rejected_inputs``), and the detector they name turns ``bad_data``. Records keyed by a VMS
board (its display reports, faults and command outcomes) belong to the VMS loop: skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime

import msgspec

from controllers.archive_plan import DeadLetter
from controllers.envelope import Envelope, make_event
from controllers.errors import InvalidEvent
from controllers.inbound import Limits, decode_record
from controllers.payloads import TrafficMeasured
from controllers.traffic_state import FoldConfig, FoldState, IntersectionFold, IntersectionLayout, summary_event_id
from infra.fold_store import TaskSnapshot

FOLD_SOURCE_PREFIX = "lalin:fold:"
STATE_TOPIC = "lalin.state"
#: The event types the fold takes (the input topics also carry VMS board reports, which it leaves alone).
FOLDED_TYPES = frozenset({"DetectorCounted", "DetectorsCounted", "CameraObserved", "SignalStateReported",
                          "ControllerFaulted", "CommandAcknowledged"})
_DETECTOR_ID = re.compile(rb'"detector_id"\s*:\s*"([A-Za-z0-9_.:\-/@]{1,64})"')


def corridor_key(layout: IntersectionLayout) -> str:
    """The record key of an intersection's summaries: its corridor as a slug (``jl-sunset-road``), else its id."""
    if layout.corridor is None:
        return layout.intersection_id
    return re.sub(r"[^a-z0-9]+", "-", layout.corridor.lower()).strip("-")[:64] or layout.intersection_id


class _TaskState(msgspec.Struct):
    folds: dict[str, FoldState] = {}


class FoldTask:
    """The fold of every intersection whose records land in partition ``task`` (see the module docstring)."""

    def __init__(self, task: int, layouts: Mapping[str, IntersectionLayout], epoch: str, *,
                 config: FoldConfig | None = None, limits: Limits | None = None,
                 snapshot: TaskSnapshot | None = None, boards: frozenset[str] = frozenset()) -> None:
        self.task, self.layouts, self.epoch, self.boards = task, layouts, epoch, boards
        self.config = config if config is not None else FoldConfig()
        self.limits = limits if limits is not None else Limits()
        self.offsets: dict[str, int] = dict(snapshot.offsets) if snapshot is not None else {}
        self.folded = snapshot.folded if snapshot is not None else 0
        self.emitted = snapshot.emitted if snapshot is not None else 0
        stored = msgspec.msgpack.decode(snapshot.state, type=_TaskState) if snapshot is not None else _TaskState()
        self.folds = {key: IntersectionFold(layouts[key], self.config, state) for key, state in stored.folds.items()
                      if key in layouts}
        self.dead_letters: list[DeadLetter] = []  # refused since the last snapshot: stored with the next one

    def position(self, topic: str) -> int:
        """The next offset to read from ``topic``'s partition ``task`` (0 when nothing was folded)."""
        return self.offsets.get(topic, 0)

    def handle(self, topic: str, offset: int, key: bytes | None, value: bytes, now: datetime,
               clock: Callable[[], datetime]) -> list[Envelope]:
        """Fold one record (``now``: the wall or simulated time validation compares against); returns summaries to emit.

        A record at or below an offset already folded is skipped (a re-delivery after a seek).
        """
        if offset < self.offsets.get(topic, 0):
            return []
        self.offsets[topic] = offset + 1
        self.folded += 1
        ref = fold_ref(self.epoch, topic, self.task, offset)
        try:
            event = decode_record(topic, key, value, now, self.limits).event
        except InvalidEvent as err:
            self._refuse_raw(ref, key, value, err.reason)  # the archiver dead-letters the same record
            return []
        if event.type not in FOLDED_TYPES or event.key in self.boards:
            return []  # another consumer's event on a shared topic (a VMS board's report): archived, not folded
        fold = self._fold_of(event.key)
        if fold is None:
            self.dead_letters.append(DeadLetter(topic, self.task, offset, key, value, "unknown_intersection",
                                                f"no intersection {event.key!r} is configured for the fold"))
            return []
        try:
            summaries = fold.apply(event)
        except InvalidEvent as err:
            self._refuse(fold, ref, DeadLetter(topic, self.task, offset, key, value, "unknown_input", err.message), event)
            return []
        except Exception as err:  # noqa: BLE001 - the fault barrier: a defect on one record must not stop the partition
            detail = f"{type(err).__name__}: {str(err)[:300]}"
            self._refuse(fold, ref, DeadLetter(topic, self.task, offset, key, value, "fold_failed", detail), event)
            return []
        return [self._envelope(fold, s, clock()) for s in summaries]

    def _refuse(self, fold: IntersectionFold, ref: str, dead: DeadLetter, event: Envelope) -> None:
        self.dead_letters.append(dead)
        detector = getattr(event.payload, "detector_id", None)
        fold.reject(ref, dead.reason, detector if isinstance(detector, str) else None, event.event_time)

    def _fold_of(self, key: str) -> IntersectionFold | None:
        fold = self.folds.get(key)
        if fold is None and key in self.layouts:
            fold = self.folds[key] = IntersectionFold(self.layouts[key], self.config)
        return fold

    def _refuse_raw(self, ref: str, key: bytes | None, value: bytes, reason: str) -> None:
        intersection = key.decode("utf-8", "replace") if key else ""
        fold = self._fold_of(intersection)
        if fold is None:
            return
        found = _DETECTOR_ID.search(value[:4096])
        fold.reject(ref, reason[:64] if reason else "invalid", found.group(1).decode() if found else None, None)

    def _envelope(self, fold: IntersectionFold, summary: TrafficMeasured, now: datetime) -> Envelope:
        self.emitted += 1
        layout = fold.layout
        return make_event(summary, event_id=summary_event_id(layout.intersection_id, summary.window.start),
                          event_time=summary.window.end, ingest_time=now,
                          source=FOLD_SOURCE_PREFIX + layout.intersection_id, key=corridor_key(layout),
                          seq=fold.state.summaries)

    def snapshot(self) -> TaskSnapshot:
        """The task's state and offsets as one snapshot (store :attr:`dead_letters` in the same transaction)."""
        state = _TaskState(folds={k: f.state for k, f in sorted(self.folds.items())})
        return TaskSnapshot(state=msgspec.msgpack.encode(state), offsets=dict(self.offsets), folded=self.folded,
                            emitted=self.emitted, broker_epoch=self.epoch)


def fold_ref(epoch: str, topic: str, partition: int, offset: int) -> str:
    """The reference a refused input is listed under (broker epoch/topic/partition/offset)."""
    return f"{epoch}/{topic}/{partition}/{offset}"
