"""An auditor's export of a period of the archive, checkable offline (pure: no I/O, no clock).

An export is a directory of two files:

* ``events.csv`` — one row per archived record, ordered by stream (code-point order) then
  position, with the columns the hash chain needs (:data:`CSV_COLUMNS`): ``hash`` can be
  recomputed from ``prev_hash``, ``position`` and ``body`` alone
  (:func:`controllers.hashchain.link`), and the indexed columns can be checked against the body.
* ``manifest.json`` — a :class:`Manifest`: the period, when the export was made, the CSV's
  SHA-256, size and row count, and per stream the first and last position, the ``prev_hash``
  of the first record (the *anchor* into the full chain), the hash of the last one and the
  count; and the roots of the archive checkpoints made in or just after the period.

Every record whose event time lies in the period is exported. A stream's exported positions
are contiguous: should a record of the stream have an event time outside the period while
lying between two inside it (a late delivery), it is exported too, so the chain has no hole,
and counted in ``outside_period``.

:class:`ManifestBuilder` builds the manifest from the rows as they are written;
:class:`ExportVerifier` checks an export row by row and names the *first* problem precisely
(file, stream, position, event id, row and line, what differs). The shells read and write
the files (``infra/audit_export.py``).
"""

from __future__ import annotations

import csv
import enum
import hashlib
import io
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime

import msgspec

from controllers.envelope import decode_archived
from controllers.errors import InvalidEvent, LalinError
from controllers.hashchain import link

#: The ``format`` of every lalin export manifest.
EXPORT_FORMAT = "lalin-audit-export"
#: The manifest's version this code writes and can verify.
EXPORT_VERSION = 1
CSV_NAME = "events.csv"
MANIFEST_NAME = "manifest.json"
#: The columns of ``events.csv``, in order (those of the archive's ``events`` table the chain needs).
CSV_COLUMNS = ("stream", "position", "event_id", "event_time", "type", "source", "key", "seq",
               "prev_hash", "hash", "body")
_HASH_HEX_LEN = 64


class UnsupportedExport(LalinError):
    """A manifest of another format version than this lalin can verify."""


# --------------------------------------------------------------------------------------------
# rows


class ExportRow(msgspec.Struct, frozen=True):
    """One archived record as exported (a row of ``events.csv``)."""

    stream: str
    position: int
    event_id: str
    event_time: datetime
    type: str
    source: str
    key: str
    seq: int
    prev_hash: bytes
    hash: bytes
    body: str  # the archived body (the hashed bytes, as UTF-8 text)

    def csv_fields(self) -> list[str]:
        """The row's fields as written to ``events.csv`` (times in UTC, hashes in hex)."""
        return [self.stream, str(self.position), self.event_id, format_time(self.event_time), self.type,
                self.source, self.key, str(self.seq), self.prev_hash.hex(), self.hash.hex(), self.body]

    def body_bytes(self) -> bytes:
        """The hashed bytes of the body (undecodable bytes read from a file are kept as they were)."""
        return self.body.encode("utf-8", "surrogateescape")


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with ``Z`` (microseconds when there are any)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def csv_text(rows: Iterable[ExportRow], *, header: bool = False) -> str:
    """``rows`` as CSV text (RFC 4180: CRLF line ends, fields quoted when needed), after the header if asked."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(row.csv_fields())
    return buffer.getvalue()


class _BadField(Exception):
    def __init__(self, column: str, detail: str) -> None:
        super().__init__(detail)
        self.column, self.detail = column, detail


def _int_field(column: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise _BadField(column, f"{column} {text!r} is not a whole number")
    return int(text)


def _hash_field(column: str, text: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(text) != _HASH_HEX_LEN or len(value) != _HASH_HEX_LEN // 2:
        raise _BadField(column, f"{column} {text[:80]!r} is not a SHA-256 in hex (64 digits)")
    return value


def parse_row(fields: Sequence[str]) -> ExportRow:
    """A row of ``events.csv`` from its fields; raises ``ValueError`` naming the first bad column."""
    if len(fields) != len(CSV_COLUMNS):
        raise ValueError(f"{len(fields)} fields, expected {len(CSV_COLUMNS)} ({', '.join(CSV_COLUMNS)})")
    return _parse_row(fields)


def _parse_row(fields: Sequence[str]) -> ExportRow:
    stream, position, event_id, event_time, type_, source, key, seq, prev_hash, hash_, body = fields
    try:
        uuid.UUID(event_id)
    except ValueError:
        raise _BadField("event_id", f"event_id {event_id!r} is not a UUID") from None
    try:
        when = datetime.fromisoformat(event_time)
    except ValueError:
        raise _BadField("event_time", f"event_time {event_time!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise _BadField("event_time", f"event_time {event_time!r} has no time zone")
    return ExportRow(stream=stream, position=_int_field("position", position), event_id=event_id,
                     event_time=when, type=type_, source=source, key=key, seq=_int_field("seq", seq),
                     prev_hash=_hash_field("prev_hash", prev_hash), hash=_hash_field("hash", hash_), body=body)


# --------------------------------------------------------------------------------------------
# the manifest


class CsvFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``events.csv`` as written: name, SHA-256 (hex), size in bytes, data rows, columns."""

    name: str
    sha256: str
    size_bytes: int
    rows: int
    columns: list[str]


class StreamExtent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One stream's part of the export.

    ``anchor_prev_hash`` is the ``prev_hash`` of the first exported record: the hash of the
    record before it in the full chain (32 zero bytes when the export starts at the genesis).
    """

    stream: str
    first_position: int
    last_position: int
    anchor_prev_hash: str
    last_hash: str
    count: int
    outside_period: int = 0  # records outside the period exported to keep the chain contiguous


class CheckpointRoot(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An archive checkpoint made in the period or the first one after it (``in_period`` false)."""

    id: int
    created_at: datetime
    streams: int
    records: int
    root_hash: str
    in_period: bool


class ArchiveIdentity(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which archive the export comes from, as far as the database can tell."""

    database: str
    system_identifier: str | None = None  # PostgreSQL's cluster id (pg_control_system), when readable
    server_version: str | None = None


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``manifest.json`` of an export."""

    format: str = EXPORT_FORMAT
    version: int = EXPORT_VERSION
    period_from: datetime
    period_to: datetime
    created_at: datetime
    archive: ArchiveIdentity | None
    csv: CsvFile
    streams: list[StreamExtent]
    checkpoints: list[CheckpointRoot]


class _Header(msgspec.Struct, frozen=True):
    format: str = ""
    version: int = 0


def encode_manifest(manifest: Manifest) -> bytes:
    """``manifest.json``'s bytes (indented JSON, a final newline)."""
    return msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"


def in_period(when: datetime, start: datetime, end: datetime) -> bool:
    """``start <= when < end``."""
    return start <= when < end


class _Extent:
    """A stream's extent while rows are added."""

    def __init__(self, row: ExportRow) -> None:
        self.stream, self.first, self.anchor = row.stream, row.position, row.prev_hash
        self.last, self.last_hash, self.count, self.outside = row.position, row.hash, 0, 0

    def freeze(self) -> StreamExtent:
        return StreamExtent(stream=self.stream, first_position=self.first, last_position=self.last,
                            anchor_prev_hash=self.anchor.hex(), last_hash=self.last_hash.hex(), count=self.count,
                            outside_period=self.outside)


class ManifestBuilder:
    """Accumulates the manifest's stream extents from rows given in export order (stream, position)."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.end = start, end
        self._done: list[StreamExtent] = []
        self._current: _Extent | None = None
        self.rows = 0

    def add(self, row: ExportRow) -> None:
        """Account for the next row of ``events.csv``."""
        if self._current is None or self._current.stream != row.stream:
            if self._current is not None:
                self._done.append(self._current.freeze())
            self._current = _Extent(row)
        extent = self._current
        extent.last, extent.last_hash, extent.count = row.position, row.hash, extent.count + 1
        extent.outside += 0 if in_period(row.event_time, self.start, self.end) else 1
        self.rows += 1

    def streams(self) -> list[StreamExtent]:
        """The extents of the streams added so far."""
        return self._done + ([self._current.freeze()] if self._current is not None else [])

    def build(self, *, created_at: datetime, csv_sha256: str, csv_size_bytes: int,
              archive: ArchiveIdentity | None = None, checkpoints: Sequence[CheckpointRoot] = ()) -> Manifest:
        """The manifest, given the written CSV's SHA-256 (hex) and size, and the clock's ``created_at``."""
        return Manifest(period_from=self.start, period_to=self.end, created_at=created_at, archive=archive,
                        csv=CsvFile(name=CSV_NAME, sha256=csv_sha256, size_bytes=csv_size_bytes, rows=self.rows,
                                    columns=list(CSV_COLUMNS)),
                        streams=self.streams(), checkpoints=list(checkpoints))


def build_manifest(rows: Iterable[ExportRow], start: datetime, end: datetime, *, created_at: datetime,
                   archive: ArchiveIdentity | None = None,
                   checkpoints: Sequence[CheckpointRoot] = ()) -> tuple[bytes, Manifest]:
    """``events.csv``'s bytes and the manifest for ``rows`` (in export order), all in memory."""
    builder = ManifestBuilder(start, end)
    chunks = [csv_text((), header=True)]
    for row in rows:
        builder.add(row)
        chunks.append(csv_text((row,)))
    data = "".join(chunks).encode("utf-8", "surrogateescape")
    return data, builder.build(created_at=created_at, csv_sha256=hashlib.sha256(data).hexdigest(),
                               csv_size_bytes=len(data), archive=archive, checkpoints=checkpoints)


# --------------------------------------------------------------------------------------------
# verifying


class ProblemKind(enum.StrEnum):
    """What is wrong with an export."""

    MANIFEST = "manifest"  # manifest.json is not a valid manifest, or disagrees with records that verify
    MALFORMED = "malformed"  # a line of events.csv that is not a record (header, fields, values)
    ORDER = "order"  # rows out of order: a stream's rows split, or positions swapped
    MISSING = "missing"  # a position, the end of a stream or a whole stream is not there
    INSERTED = "inserted"  # a record or stream the export does not have (duplicate, extra, unknown stream)
    BROKEN_LINK = "broken_link"  # a prev_hash is not the previous record's hash (or not the anchor)
    ALTERED = "altered"  # the hash does not recompute from the row, or a column disagrees with the body
    PERIOD = "period"  # a record outside the period that the chain does not need
    TRUNCATED = "truncated"  # events.csv ends early
    CHECKSUM = "checksum"  # events.csv's SHA-256 or size differs from the manifest


class ExportProblem(msgspec.Struct, frozen=True, omit_defaults=True):
    """One problem of an export, located as precisely as it can be."""

    file: str
    kind: ProblemKind
    detail: str
    stream: str | None = None
    position: int | None = None
    event_id: str | None = None
    row: int | None = None  # data row of events.csv, 1-based (the header is row 0)
    line: int | None = None  # the line of events.csv where that row starts, 1-based
    field: str | None = None  # the CSV column or manifest field that differs

    def describe(self) -> str:
        """One line: kind, file, where, what."""
        where = [f"stream {self.stream}"] if self.stream is not None else []
        where += [f"position {self.position}"] if self.position is not None else []
        where += [f"event {self.event_id}"] if self.event_id is not None else []
        at = [f"row {self.row}"] if self.row is not None else []
        at += [f"line {self.line}"] if self.line is not None else []
        at += [f"field {self.field}"] if self.field is not None else []
        located = " ".join(where) + (f" ({', '.join(at)})" if at else "")
        return f"{self.kind.value} in {self.file}: " + (f"{located.strip()} — " if located else "") + self.detail


class ExportReport(msgspec.Struct, frozen=True):
    """The result of verifying an export: ``problems[0]`` is the first problem; any later ones are
    whole-file mismatches (SHA-256, size) found besides it."""

    ok: bool
    rows_checked: int
    streams_checked: int
    csv_sha256: str
    csv_size_bytes: int
    problems: list[ExportProblem]
    period_from: datetime | None = None
    period_to: datetime | None = None


def parse_manifest(data: bytes) -> Manifest | ExportProblem:
    """The manifest from ``manifest.json``'s bytes, or the problem that makes it unusable.

    Raises :class:`UnsupportedExport` for a lalin export manifest of another version.
    """
    try:
        header = msgspec.json.decode(data, type=_Header)
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        return ExportProblem(MANIFEST_NAME, ProblemKind.MANIFEST, f"not a JSON manifest: {err}")
    if header.format != EXPORT_FORMAT:
        return ExportProblem(MANIFEST_NAME, ProblemKind.MANIFEST,
                             f"format is {header.format!r}, not {EXPORT_FORMAT!r}", field="format")
    if header.version != EXPORT_VERSION:
        raise UnsupportedExport(f"{MANIFEST_NAME} is version {header.version} of {EXPORT_FORMAT}; "
                                f"this lalin verifies version {EXPORT_VERSION}")
    try:
        manifest = msgspec.json.decode(data, type=Manifest)
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        return ExportProblem(MANIFEST_NAME, ProblemKind.MANIFEST, f"not a valid manifest: {err}")
    problem = check_manifest(manifest)
    return manifest if problem is None else problem


def _manifest_problem(detail: str, field: str, stream: str | None = None) -> ExportProblem:
    return ExportProblem(MANIFEST_NAME, ProblemKind.MANIFEST, detail, stream=stream, field=field)


def check_manifest(manifest: Manifest) -> ExportProblem | None:
    """The first way ``manifest`` contradicts itself (or ``None``)."""
    if manifest.period_from.tzinfo is None or manifest.period_to.tzinfo is None:
        return _manifest_problem("the period's times have no time zone", "period_from")
    if manifest.period_to <= manifest.period_from:
        return _manifest_problem(f"period_to {format_time(manifest.period_to)} is not after period_from "
                                 f"{format_time(manifest.period_from)}", "period_to")
    if manifest.csv.name != CSV_NAME or tuple(manifest.csv.columns) != CSV_COLUMNS:
        return _manifest_problem(f"csv must be {CSV_NAME} with columns {', '.join(CSV_COLUMNS)}", "csv")
    if len(manifest.csv.sha256) != _HASH_HEX_LEN:
        return _manifest_problem(f"csv.sha256 {manifest.csv.sha256!r} is not a SHA-256 in hex", "csv.sha256")
    counted = sum(s.count for s in manifest.streams)
    if counted != manifest.csv.rows:
        return _manifest_problem(f"csv.rows is {manifest.csv.rows}, the streams' counts add up to {counted}", "csv.rows")
    names = [s.stream for s in manifest.streams]
    for i, extent in enumerate(manifest.streams):
        if i > 0 and names[i - 1] >= extent.stream:
            return _manifest_problem(f"streams are not in order: {names[i - 1]!r} before {extent.stream!r}",
                                     f"streams[{i}].stream", extent.stream)
        for name in ("anchor_prev_hash", "last_hash"):
            value = getattr(extent, name)
            if len(value) != _HASH_HEX_LEN or not all(c in "0123456789abcdef" for c in value):
                return _manifest_problem(f"{name} {value!r} is not a SHA-256 in hex", f"streams[{i}].{name}",
                                         extent.stream)
        if extent.first_position < 1 or extent.last_position < extent.first_position or extent.count < 1:
            return _manifest_problem(f"positions {extent.first_position}..{extent.last_position}, count {extent.count}",
                                     f"streams[{i}]", extent.stream)
    for i, checkpoint in enumerate(manifest.checkpoints):
        if len(checkpoint.root_hash) != _HASH_HEX_LEN:
            return _manifest_problem(f"root_hash {checkpoint.root_hash!r} is not a SHA-256 in hex",
                                     f"checkpoints[{i}].root_hash")
    return None


class _Seen(msgspec.Struct):
    """A row as far as it could be read: where it is and whom it names."""

    row: int
    line: int
    stream: str | None = None
    position: int | None = None
    event_id: str | None = None


def _column_difference(row: ExportRow) -> tuple[str, str] | None:
    """The first column that disagrees with the body, as (column, what differs)."""
    try:
        event = decode_archived(row.body_bytes())
    except InvalidEvent as err:
        return "body", f"the body does not decode as an event: {err}"
    pairs: list[tuple[str, object, object]] = [
        ("event_id", uuid.UUID(row.event_id), event.event_id), ("event_time", row.event_time, event.event_time),
        ("type", row.type, event.type), ("source", row.source, event.source), ("key", row.key, event.key),
        ("seq", row.seq, event.seq)]
    for column, stored, in_body in pairs:
        if stored != in_body:
            shown = format_time(in_body) if isinstance(in_body, datetime) else in_body
            return column, f"column {column} is {row.csv_fields()[CSV_COLUMNS.index(column)]!r}, the body says {str(shown)!r}"
    if not row.stream.endswith(f"/{event.key}/{event.source}"):
        return "stream", f"stream {row.stream!r} is not a stream of key {event.key!r} and source {event.source!r}"
    return None


class ExportVerifier:
    """Checks an export row by row against its manifest; stops at the first problem.

    Give it the manifest and the CSV's actual SHA-256 and size, then the header
    (:meth:`header`) and every row (:meth:`row`) in file order, then call :meth:`finish`.
    When ``events.csv`` still has the SHA-256 the manifest records, a disagreement between
    records that verify and the manifest is blamed on ``manifest.json``; otherwise on
    ``events.csv``.
    """

    def __init__(self, manifest: Manifest, csv_sha256: str, csv_size_bytes: int) -> None:
        self.manifest, self.csv_sha256, self.csv_size_bytes = manifest, csv_sha256, csv_size_bytes
        self.csv_as_written = csv_sha256 == manifest.csv.sha256
        self._index = {s.stream: i for i, s in enumerate(manifest.streams)}
        self.problem: ExportProblem | None = None
        self._problem_at_end = False
        self.rows_read = 0
        self.rows_checked = 0
        self.streams_checked = 0
        self._header_seen = False
        self.ends_with_line_end = True  # set by feed_csv: a file cut inside a row does not end with one
        self._last_seen: _Seen | None = None
        self._next_stream = 0  # index of the manifest stream expected next
        self._done: set[str] = set()
        self._extent: StreamExtent | None = None
        self._extent_index = -1
        self._expected = 0
        self._prev = b""
        self._count = 0
        self._outside = 0
        self._last: tuple[ExportRow, _Seen, bool] | None = None  # the stream's last good row, in period?
        self._gap: tuple[ExportRow, _Seen] | None = None  # a row past a hole, awaiting the next row
        self._altered: tuple[ExportRow, _Seen, bytes] | None = None  # a row that does not hash, awaiting the next

    # -- feeding

    def header(self, fields: Sequence[str], line: int = 1) -> None:
        """The header line of ``events.csv``."""
        self._header_seen = True
        if tuple(fields) != CSV_COLUMNS:
            self._fail(ExportProblem(CSV_NAME, ProblemKind.MALFORMED,
                                     f"the header is {', '.join(fields)!r}, expected {', '.join(CSV_COLUMNS)!r}",
                                     row=0, line=line, field="header"))

    def malformed(self, line: int, detail: str) -> None:
        """The file could not be parsed as CSV at ``line``."""
        self._flush()
        self._fail(ExportProblem(CSV_NAME, ProblemKind.MALFORMED, detail, row=self.rows_read + 1, line=line))

    def row(self, fields: Sequence[str], line: int) -> None:
        """The next data row (its fields) starting at ``line`` of ``events.csv``."""
        self.rows_read += 1
        seen = _Seen(self.rows_read, line, fields[0] if fields else None,
                     _maybe_int(fields[1]) if len(fields) > 1 else None, fields[2] if len(fields) > 2 else None)
        self._last_seen = seen
        if self.problem is not None:
            return
        if len(fields) != len(CSV_COLUMNS):
            self._flush()
            self._fail(self._at(seen, ProblemKind.MALFORMED,
                                f"{len(fields)} fields, expected {len(CSV_COLUMNS)} ({', '.join(CSV_COLUMNS)})"))
            return
        try:
            row = _parse_row(fields)
        except _BadField as err:
            self._flush()
            self._fail(self._at(seen, ProblemKind.MALFORMED, err.detail, field=err.column))
            return
        self._check(row, seen)

    def finish(self) -> ExportReport:
        """The verdict once every row was given."""
        if not self._header_seen and self.problem is None:
            self._fail(ExportProblem(CSV_NAME, ProblemKind.MALFORMED, "events.csv is empty (no header line)", row=0, line=1))
        if self.problem is None:
            self._problem_at_end = True
            self._end_stream()
        if self.problem is None:
            for extent in self.manifest.streams[self._next_stream:]:
                self._fail(self._absent(extent))
                break
        problems = [] if self.problem is None else [self._truncation_or(self.problem)]
        if not self.csv_as_written or self.csv_size_bytes != self.manifest.csv.size_bytes:
            checksum = ExportProblem(
                CSV_NAME, ProblemKind.CHECKSUM,
                f"events.csv has SHA-256 {self.csv_sha256} and {self.csv_size_bytes:,} bytes; manifest.json says "
                f"{self.manifest.csv.sha256} and {self.manifest.csv.size_bytes:,} bytes", field="csv.sha256")
            if not problems:
                problems = [self._truncation_or(checksum)]
            elif problems[0].kind != ProblemKind.TRUNCATED:
                problems.append(checksum)
        return ExportReport(ok=not problems, rows_checked=self.rows_checked, streams_checked=self.streams_checked,
                            csv_sha256=self.csv_sha256, csv_size_bytes=self.csv_size_bytes, problems=problems,
                            period_from=self.manifest.period_from, period_to=self.manifest.period_to)

    # -- checks

    def _check(self, row: ExportRow, seen: _Seen) -> None:
        if self._altered is not None:  # which column of the row before changed? the next row's link tells
            altered, self._altered = self._altered, None
            self._fail(self._unhashed(*altered, following=row if row.stream == altered[0].stream else None))
            return
        if self._extent is None or row.stream != self._extent.stream:
            if self._extent is not None and not self._end_stream():
                return
            if not self._begin_stream(row, seen):
                return
        extent = self._extent
        assert extent is not None
        if self._gap is not None:  # the row after a hole: is the hole a swap?
            gap_row, gap_seen = self._gap
            self._gap = None
            if row.position == self._expected:
                self._fail(self._at(gap_seen, ProblemKind.ORDER,
                                    f"position {gap_row.position} comes before position {row.position} "
                                    f"(row {seen.row}, event {row.event_id}): rows out of order"))
            else:
                self._fail(self._hole(gap_row, gap_seen))
            return
        if self._last is None and row.position != self._expected and (
                self.csv_as_written or row.position < self._expected):
            self._fail(self._disagree(seen, "first_position",
                                      f"the stream's first record is at position {row.position}, manifest.json's "
                                      f"first_position is {extent.first_position}", kind=ProblemKind.INSERTED))
            return
        if row.position < self._expected:
            duplicate = row.position == self._expected - 1
            self._fail(self._at(seen, ProblemKind.INSERTED if duplicate else ProblemKind.ORDER,
                                f"a second record at position {row.position}" if duplicate else
                                f"position {row.position} comes after position {self._expected - 1}"))
            return
        if row.position > self._expected:
            self._gap = (row, seen)
            return
        self._link(row, seen, extent)

    def _link(self, row: ExportRow, seen: _Seen, extent: StreamExtent) -> None:
        first = row.position == extent.first_position
        recomputed = link(row.prev_hash, row.position, row.body_bytes())
        if row.prev_hash != self._prev:
            if first and recomputed == row.hash:
                self._fail(self._disagree(seen, "anchor_prev_hash",
                                          f"the first record's prev_hash is {row.prev_hash.hex()}, manifest.json's "
                                          f"anchor_prev_hash is {self._prev.hex()}"))
            else:
                self._fail(self._at(seen, ProblemKind.BROKEN_LINK,
                                    f"prev_hash {row.prev_hash.hex()} is not "
                                    + ("the manifest's anchor_prev_hash " if first else
                                       f"the hash of position {row.position - 1} ")
                                    + self._prev.hex(), field="prev_hash"))
            return
        if recomputed != row.hash:
            self._altered = (row, seen, recomputed)
            return
        difference = _column_difference(row)
        if difference is not None:
            self._fail(self._at(seen, ProblemKind.ALTERED, difference[1], field=difference[0]))
            return
        inside = in_period(row.event_time, self.manifest.period_from, self.manifest.period_to)
        if not inside and first:
            self._fail(self._at(seen, ProblemKind.PERIOD, self._outside_detail(row), field="event_time"))
            return
        if row.position > extent.last_position:
            self._fail(self._disagree(seen, "last_position",
                                      f"a record after the manifest's last position {extent.last_position}",
                                      kind=ProblemKind.INSERTED))
            return
        self._prev, self._expected = row.hash, row.position + 1
        self._count += 1
        self._outside += 0 if inside else 1
        self._last = (row, seen, inside)
        self.rows_checked += 1

    def _begin_stream(self, row: ExportRow, seen: _Seen) -> bool:
        index = self._index.get(row.stream)
        if row.stream in self._done:
            self._fail(self._at(seen, ProblemKind.ORDER, "the stream's rows resume after another stream's",
                                field="stream"))
            return False
        if index is None:
            self._fail(self._disagree(seen, "streams", "a stream manifest.json does not list", kind=ProblemKind.INSERTED))
            return False
        if index != self._next_stream:
            self._fail(self._absent(self.manifest.streams[self._next_stream]))
            return False
        extent = self.manifest.streams[index]
        self._extent, self._extent_index, self._next_stream = extent, index, index + 1
        self._expected, self._prev = extent.first_position, bytes.fromhex(extent.anchor_prev_hash)
        self._count = self._outside = 0
        self._last = None
        return True

    def _end_stream(self) -> bool:
        """Close the current stream; ``False`` when that found a problem."""
        extent = self._extent
        if extent is None:
            return True
        if self._altered is not None or self._gap is not None:
            self._flush()
            return False
        last = self._last
        if last is None:  # every row of the stream failed (cannot happen without a problem already)
            return self.problem is None
        row, seen, inside = last
        field = f"streams[{self._extent_index}]"
        if row.position < extent.last_position:
            self._fail(ExportProblem(CSV_NAME, ProblemKind.MISSING,
                                     f"the stream ends at position {row.position} (row {seen.row}); manifest.json "
                                     f"says it ends at {extent.last_position}", stream=row.stream,
                                     position=row.position + 1, row=seen.row, line=seen.line))
        elif not inside:
            self._fail(self._at(seen, ProblemKind.PERIOD, self._outside_detail(row), field="event_time"))
        elif row.hash.hex() != extent.last_hash:
            self._fail(self._disagree(seen, "last_hash", f"the last record's hash is {row.hash.hex()}, manifest.json's "
                                                         f"last_hash is {extent.last_hash}",
                                      kind=ProblemKind.ALTERED, field_prefix=field))
        elif self._count != extent.count or self._outside != extent.outside_period:
            self._fail(self._disagree(seen, "count",
                                      f"{self._count} records ({self._outside} outside the period), manifest.json "
                                      f"says {extent.count} ({extent.outside_period} outside)",
                                      kind=ProblemKind.INSERTED, field_prefix=field))
        if self.problem is not None:
            return False
        self._done.add(extent.stream)
        self.streams_checked += 1
        self._extent = None
        return True

    # -- problems

    def _flush(self) -> None:
        """Decide a pending row (one that does not hash, or one past a hole) without seeing the next."""
        altered, gap, self._altered, self._gap = self._altered, self._gap, None, None
        if altered is not None:
            self._fail(self._unhashed(*altered, following=None))
        if gap is not None:
            self._fail(self._hole(*gap))

    def _fail(self, problem: ExportProblem) -> None:
        if self.problem is None:
            self.problem = problem

    def _at(self, seen: _Seen, kind: ProblemKind, detail: str, field: str | None = None) -> ExportProblem:
        return ExportProblem(CSV_NAME, kind, detail, stream=seen.stream, position=seen.position,
                             event_id=seen.event_id, row=seen.row, line=seen.line, field=field)

    def _disagree(self, seen: _Seen, name: str, detail: str, *, kind: ProblemKind = ProblemKind.BROKEN_LINK,
                  field_prefix: str | None = None) -> ExportProblem:
        """Records that verify disagree with the manifest: blame manifest.json when events.csv is as written."""
        prefix = field_prefix if field_prefix is not None else (
            f"streams[{self._extent_index}]" if self._extent is not None else "")
        manifest_field = f"{prefix}.{name}" if prefix else name
        if self.csv_as_written:
            return ExportProblem(MANIFEST_NAME, ProblemKind.MANIFEST, detail + " (events.csv is as exported)",
                                 stream=seen.stream, position=seen.position, event_id=seen.event_id,
                                 row=seen.row, line=seen.line, field=manifest_field)
        return self._at(seen, kind, detail, field=manifest_field)

    def _unhashed(self, row: ExportRow, seen: _Seen, recomputed: bytes, following: ExportRow | None) -> ExportProblem:
        """A row whose hash does not recompute; the next record's prev_hash shows which column was changed."""
        stated = f"hash {row.hash.hex()} does not recompute from prev_hash, position and body (they give {recomputed.hex()})"
        if following is not None and following.prev_hash == recomputed:
            return self._at(seen, ProblemKind.ALTERED, stated + ", which the next record links to: the hash was changed",
                            field="hash")
        if following is not None and following.prev_hash == row.hash:
            return self._at(seen, ProblemKind.ALTERED, stated + "; the next record links to the stored hash: "
                                                                "the body was changed", field="body")
        return self._at(seen, ProblemKind.ALTERED, stated)

    def _hole(self, row: ExportRow, seen: _Seen) -> ExportProblem:
        missing = f"{self._expected}" if row.position == self._expected + 1 else f"{self._expected}..{row.position - 1}"
        return ExportProblem(CSV_NAME, ProblemKind.MISSING,
                             f"position {missing} is missing: the next row (row {seen.row}, event {row.event_id}) "
                             f"has position {row.position}", stream=row.stream, position=self._expected,
                             row=seen.row, line=seen.line)

    def _absent(self, extent: StreamExtent) -> ExportProblem:
        return ExportProblem(CSV_NAME, ProblemKind.MISSING,
                             f"the stream is absent ({extent.count} records, positions {extent.first_position}.."
                             f"{extent.last_position} in manifest.json)", stream=extent.stream,
                             position=extent.first_position)

    def _outside_detail(self, row: ExportRow) -> str:
        return (f"event_time {format_time(row.event_time)} is outside the period {format_time(self.manifest.period_from)}"
                f" .. {format_time(self.manifest.period_to)} and the chain does not need the record")

    def _truncation_or(self, problem: ExportProblem) -> ExportProblem:
        """A shorter file whose first problem is at its end (or only its checksum) was cut short."""
        shorter = self.csv_size_bytes < self.manifest.csv.size_bytes and not self.csv_as_written
        last = self._last_seen
        at_end = (problem.kind == ProblemKind.CHECKSUM or (self._problem_at_end and problem.kind == ProblemKind.MISSING)
                  or (last is not None and problem.row == last.row and not self.ends_with_line_end))
        if not (shorter and at_end):
            return problem
        return ExportProblem(CSV_NAME, ProblemKind.TRUNCATED,
                             f"events.csv ends after {self.csv_size_bytes:,} of the {self.manifest.csv.size_bytes:,} "
                             f"bytes manifest.json records" + (
                                 f" (its last row is cut: {problem.detail})"
                                 if last is not None and problem.row == last.row else ""),
                             stream=None if last is None else last.stream, position=None if last is None else last.position,
                             event_id=None if last is None else last.event_id, row=None if last is None else last.row,
                             line=None if last is None else last.line)


def _maybe_int(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def feed_csv(verifier: ExportVerifier, lines: Iterable[str]) -> None:
    """Parse ``events.csv`` text, given line by line (line ends kept), into ``verifier``."""
    last_line = ""

    def remembering() -> Iterator[str]:
        nonlocal last_line
        for text in lines:
            last_line = text
            yield text

    reader = csv.reader(remembering())
    line_end = 0
    try:
        for fields in reader:
            start, line_end = line_end + 1, reader.line_num
            if start == 1:
                verifier.header(fields, start)
            else:
                verifier.row(fields, start)
    except csv.Error as err:
        verifier.malformed(line_end + 1, f"not CSV: {err}")
    verifier.ends_with_line_end = last_line.endswith("\n")


def unusable_manifest(problem: ExportProblem, csv_sha256: str, csv_size_bytes: int) -> ExportReport:
    """The report when ``manifest.json`` itself is the problem (nothing else can be checked)."""
    return ExportReport(ok=False, rows_checked=0, streams_checked=0, csv_sha256=csv_sha256,
                        csv_size_bytes=csv_size_bytes, problems=[problem])


def verify_export(manifest_json: bytes, csv_data: bytes) -> ExportReport:
    """Verify an export held in memory (``manifest.json``'s and ``events.csv``'s bytes)."""
    sha256 = hashlib.sha256(csv_data).hexdigest()
    manifest = parse_manifest(manifest_json)
    if isinstance(manifest, ExportProblem):
        return unusable_manifest(manifest, sha256, len(csv_data))
    verifier = ExportVerifier(manifest, sha256, len(csv_data))
    feed_csv(verifier, io.StringIO(csv_data.decode("utf-8", "surrogateescape"), newline=""))
    return verifier.finish()
