"""Per-stream sequence checking (pure): is the next event the one we expected?

A source numbers its events 1, 2, 3, ... per stream. Given the last sequence number
archived for a stream and the next one received, :func:`check_sequence` says whether the
event is in order, starts a new run after a source restart, follows a gap (events missing),
or goes backwards (a regression: a re-sent number with a new event id).
"""

from __future__ import annotations

import enum

import msgspec


class SequenceVerdict(enum.StrEnum):
    """The relation of a received sequence number to the last archived one."""

    FIRST = "first"  # nothing archived yet for this stream
    IN_ORDER = "in_order"
    GAP = "gap"
    RESET = "reset"
    REGRESSION = "regression"


class SequenceCheck(msgspec.Struct, frozen=True):
    """The verdict and, for anomalies, the expected number and how many are missing."""

    verdict: SequenceVerdict
    expected_seq: int
    received_seq: int
    missing_count: int = 0

    @property
    def is_anomaly(self) -> bool:
        """True for a gap, a reset or a regression."""
        return self.verdict in (SequenceVerdict.GAP, SequenceVerdict.RESET, SequenceVerdict.REGRESSION)


def check_sequence(last_seq: int | None, received_seq: int) -> SequenceCheck:
    """Classify ``received_seq`` against ``last_seq`` (``None`` when the stream is new).

    A new stream may start at any number (lalin may have joined late); a gap there is not
    knowable. After that, ``last + 1`` is in order, higher is a gap of
    ``received - last - 1`` events, exactly 1 is a reset, anything else a regression.
    """
    if last_seq is None:
        return SequenceCheck(SequenceVerdict.FIRST, received_seq, received_seq)
    expected = last_seq + 1
    if received_seq == expected:
        return SequenceCheck(SequenceVerdict.IN_ORDER, expected, received_seq)
    if received_seq > expected:
        return SequenceCheck(SequenceVerdict.GAP, expected, received_seq, received_seq - expected)
    if received_seq == 1:
        return SequenceCheck(SequenceVerdict.RESET, expected, received_seq)
    return SequenceCheck(SequenceVerdict.REGRESSION, expected, received_seq)
