"""Per-stream sequence checking (pure): is the next event the one we expected?

A source numbers its events 1, 2, 3, ... per stream. Given what is known of a stream — the
highest sequence number archived and the gaps still open below it — :func:`check_sequence`
classifies the next number received:

* ``in_order``: the next number;
* ``gap``: numbers were skipped; the skipped range is remembered as an open gap;
* ``late``: a number inside an open gap arrived after all (a delayed or retried delivery);
  it is removed from the gap;
* ``reset``: back to 1 — the source restarted its numbering; open gaps are closed;
* ``regression``: a number at or below the highest that is in no open gap (a source that
  re-used a number; the event id differs, or it would have been a duplicate).

At most :data:`MAX_OPEN_GAPS` ranges are remembered per stream; older ones are closed.
"""

from __future__ import annotations

import enum

import msgspec

MAX_OPEN_GAPS = 32

Gap = tuple[int, int]  # inclusive range of missing sequence numbers


class SequenceVerdict(enum.StrEnum):
    """The relation of a received sequence number to what is known of its stream."""

    FIRST = "first"  # nothing archived yet for this stream
    IN_ORDER = "in_order"
    GAP = "gap"
    LATE = "late"
    RESET = "reset"
    REGRESSION = "regression"


class SequenceCheck(msgspec.Struct, frozen=True):
    """The verdict, the stream's new state (highest number, open gaps) and, for gaps, how many are missing."""

    verdict: SequenceVerdict
    expected_seq: int
    received_seq: int
    last_seq: int
    open_gaps: tuple[Gap, ...] = ()
    missing_count: int = 0

    @property
    def is_anomaly(self) -> bool:
        """True for anything but the first or the next number."""
        return self.verdict not in (SequenceVerdict.FIRST, SequenceVerdict.IN_ORDER)


def _without(gaps: tuple[Gap, ...], seq: int) -> tuple[Gap, ...]:
    out: list[Gap] = []
    for low, high in gaps:
        if low <= seq <= high:
            out.extend(g for g in ((low, seq - 1), (seq + 1, high)) if g[0] <= g[1])
        else:
            out.append((low, high))
    return tuple(out)


def check_sequence(last_seq: int | None, received_seq: int, open_gaps: tuple[Gap, ...] = ()) -> SequenceCheck:
    """Classify ``received_seq`` given the stream's highest archived number and open gaps.

    ``last_seq`` is ``None`` for a new stream, which may start at any number (lalin may
    have joined late: a gap before the first number is not knowable).
    """
    if last_seq is None:
        return SequenceCheck(SequenceVerdict.FIRST, received_seq, received_seq, received_seq)
    expected = last_seq + 1
    if received_seq == expected:
        return SequenceCheck(SequenceVerdict.IN_ORDER, expected, received_seq, received_seq, open_gaps)
    if received_seq > expected:
        gaps = (*open_gaps, (expected, received_seq - 1))[-MAX_OPEN_GAPS:]
        return SequenceCheck(SequenceVerdict.GAP, expected, received_seq, received_seq, gaps, received_seq - expected)
    if any(low <= received_seq <= high for low, high in open_gaps):
        return SequenceCheck(SequenceVerdict.LATE, expected, received_seq, last_seq, _without(open_gaps, received_seq))
    if received_seq == 1:
        return SequenceCheck(SequenceVerdict.RESET, expected, received_seq, 1)
    return SequenceCheck(SequenceVerdict.REGRESSION, expected, received_seq, last_seq, open_gaps)
