"""The archive's tamper-evident hash chain (pure functions).

Each archived record belongs to a stream and has a position in it (1, 2, 3, ...). Its hash
covers the previous record's hash, its own position and its body (the bytes as received)::

    hash_n = SHA-256( hash_{n-1} || position_n as 8 bytes big-endian || body_n )
    hash_0 = 32 zero bytes (the genesis of every stream)

Changing, removing or inserting any record breaks the link of that record or of the next,
and :func:`verify_stream` names the first one that does not link.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
from collections.abc import Iterable

import msgspec

GENESIS = bytes(32)


def link(prev_hash: bytes, position: int, body: bytes) -> bytes:
    """The hash of the record at ``position`` (1-based) whose predecessor hashed to ``prev_hash``."""
    digest = hashlib.sha256(prev_hash)
    digest.update(position.to_bytes(8, "big"))
    digest.update(body)
    return digest.digest()


class FaultKind(enum.StrEnum):
    """How a stream fails verification."""

    ALTERED = "altered"  # the record's content does not give its stored hash
    INSERTED = "inserted"  # a record the chain does not expect (duplicate or extra position)
    MISSING = "missing"  # positions are skipped, or the stream ends before its recorded head
    BROKEN_LINK = "broken_link"  # the stored previous hash is not the predecessor's hash


class ChainFault(msgspec.Struct, frozen=True):
    """The first place a stream stops verifying."""

    stream: str
    position: int
    kind: FaultKind
    detail: str
    event_id: str | None = None


class ChainRecord(msgspec.Struct, frozen=True):
    """One archived record as read back for verification."""

    position: int
    event_id: str
    body: bytes
    prev_hash: bytes
    hash: bytes
    columns_match: bool = True  # the indexed columns agree with the body


def verify_stream(
    stream: str,
    records: Iterable[ChainRecord],
    *,
    start_position: int = 1,
    start_prev_hash: bytes = GENESIS,
    head_position: int | None = None,
    head_hash: bytes | None = None,
) -> tuple[ChainFault | None, int]:
    """Verify ``records`` (ordered by position) of one stream.

    Starts at ``start_position`` whose predecessor hash is ``start_prev_hash`` (a trusted
    checkpoint, or the genesis). When the recorded head (``head_position``, ``head_hash``) is
    given, the stream must end exactly there. Returns the first fault (or ``None``) and the
    number of records checked.
    """
    expected_position, prev = start_position, start_prev_hash
    checked = 0
    for position, group in itertools.groupby(records, key=lambda r: r.position):
        candidates = list(group)
        if len(candidates) > 1:
            return _inserted(stream, candidates, expected_position, prev), checked
        rec = candidates[0]
        fault = _check_record(stream, rec, expected_position, prev)
        if fault is not None:
            return fault, checked
        prev, expected_position, checked = rec.hash, position + 1, checked + 1
    if head_position is not None and expected_position - 1 < head_position:
        return ChainFault(stream, expected_position, FaultKind.MISSING,
                          f"stream ends at position {expected_position - 1}, its head is {head_position}"), checked
    if head_position is not None and head_hash is not None and expected_position - 1 == head_position and prev != head_hash:
        return ChainFault(stream, head_position, FaultKind.ALTERED, "last record's hash differs from the recorded head"), checked
    return None, checked


def _inserted(stream: str, candidates: list[ChainRecord], expected_position: int, prev: bytes) -> ChainFault:
    """Several records claim one position: name one that does not verify there (the intruder)."""
    intruder = next((c for c in candidates if _check_record(stream, c, expected_position, prev) is not None),
                    candidates[-1])
    return ChainFault(stream, intruder.position, FaultKind.INSERTED,
                      f"{len(candidates)} records at position {intruder.position}", intruder.event_id)


def _check_record(stream: str, rec: ChainRecord, expected_position: int, prev: bytes) -> ChainFault | None:
    if rec.position < expected_position:
        return ChainFault(stream, rec.position, FaultKind.INSERTED,
                          f"a second record at position {rec.position}", rec.event_id)
    if rec.position > expected_position:
        return ChainFault(stream, expected_position, FaultKind.MISSING,
                          f"positions {expected_position}..{rec.position - 1} are missing", rec.event_id)
    if rec.prev_hash != prev:
        return ChainFault(stream, rec.position, FaultKind.BROKEN_LINK,
                          "stored previous hash is not the predecessor's hash", rec.event_id)
    if link(prev, rec.position, rec.body) != rec.hash or not rec.columns_match:
        return ChainFault(stream, rec.position, FaultKind.ALTERED,
                          "content does not match its hash", rec.event_id)
    return None
