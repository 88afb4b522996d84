"""An auditor's export verifies offline, and each kind of tampering is named as the first problem."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import timedelta

import msgspec
import pytest

from controllers.envelope import encode_event, stream_id
from controllers.export_manifest import (
    CSV_COLUMNS,
    ExportRow,
    ProblemKind,
    UnsupportedExport,
    build_manifest,
    encode_manifest,
    verify_export,
)
from controllers.hashchain import GENESIS, link
from tests.helpers import T0, detector_event

START, END = T0, T0 + timedelta(hours=1)
K01 = stream_id("lalin.detector", "K01", "det:K01-N")
K02 = stream_id("lalin.detector", "K02", "det:K02-S")


def chain(key: str, source: str, n: int, *, first: int = 1, shift: dict[int, timedelta] | None = None,
          body_suffix: dict[int, str] | None = None) -> list[ExportRow]:
    """Positions ``1..n`` of a stream linked from the genesis; rows from position ``first`` on are returned."""
    rows, prev = [], GENESIS
    for seq in range(1, n + 1):
        event = detector_event(seq, key=key, source=source, at=T0 + (shift or {}).get(seq, timedelta(0)))
        body = encode_event(event).decode() + (body_suffix or {}).get(seq, "")
        digest = link(prev, seq, body.encode())
        rows.append(ExportRow(stream=stream_id("lalin.detector", key, source), position=seq, event_id=str(event.event_id),
                              event_time=event.event_time, type=event.type, source=source, key=key, seq=seq,
                              prev_hash=prev, hash=digest, body=body))
        prev = digest
    return rows[first - 1:]


def export(rows: list[ExportRow] | None = None) -> tuple[bytes, bytes, list[ExportRow]]:
    """(manifest.json, events.csv, rows) of a good export: K01 positions 1..6, K02 positions 3..5."""
    if rows is None:
        rows = chain("K01", "det:K01-N", 6) + chain("K02", "det:K02-S", 5, first=3)
    data, manifest = build_manifest(rows, START, END, created_at=END + timedelta(minutes=5))
    return encode_manifest(manifest), data, rows


def table(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def untable(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()


def edit_csv(data: bytes, change: Callable[[list[list[str]]], None]) -> bytes:
    rows = table(data)
    change(rows)
    return untable(rows)


def edit_manifest(manifest: bytes, change: Callable[[dict], None]) -> bytes:
    value = json.loads(manifest)
    change(value)
    return json.dumps(value).encode()


def first_problem(manifest: bytes, data: bytes) -> dict:
    report = verify_export(manifest, data)
    assert not report.ok and report.problems
    return msgspec.to_builtins(report.problems[0])


def test_a_good_export_verifies_and_its_manifest_anchors_each_stream() -> None:
    full_k02 = chain("K02", "det:K02-S", 5)
    manifest_json, data, rows = export(chain("K01", "det:K01-N", 6) + full_k02[2:])
    report = verify_export(manifest_json, data)
    assert report.ok and report.problems == []
    assert (report.rows_checked, report.streams_checked) == (9, 2)

    manifest = json.loads(manifest_json)
    assert manifest["csv"]["rows"] == 9 and manifest["csv"]["size_bytes"] == len(data)
    assert table(data)[0] == list(CSV_COLUMNS)
    k01, k02 = manifest["streams"]
    assert (k01["stream"], k01["first_position"], k01["last_position"], k01["count"]) == (K01, 1, 6, 6)
    assert k01["anchor_prev_hash"] == GENESIS.hex() and k01["last_hash"] == rows[5].hash.hex()
    # K02 starts mid-chain: its anchor is the hash of position 2, which is not in the export
    assert (k02["first_position"], k02["last_position"], k02["count"]) == (3, 5, 3)
    assert k02["anchor_prev_hash"] == full_k02[1].hash.hex() == link(full_k02[0].hash, 2, full_k02[1].body.encode()).hex()
    assert k02["last_hash"] == full_k02[4].hash.hex()


def test_bodies_with_quotes_commas_and_line_breaks_survive_the_csv() -> None:
    rows = chain("K01", "det:K01-N", 3, body_suffix={2: "\r\n \n"})
    manifest_json, data, _ = export(rows)
    assert b'\r\n \n"' in data  # the body's own line breaks are inside a quoted field
    report = verify_export(manifest_json, data)
    assert report.ok, report.problems
    assert table(data)[2][-1] == rows[1].body


def test_an_edited_body_is_named() -> None:
    manifest, data, rows = export()

    def change(t: list[list[str]]) -> None:
        assert '"motorcycle":12' in t[3][10]
        t[3][10] = t[3][10].replace('"motorcycle":12', '"motorcycle":2')

    problem = first_problem(manifest, edit_csv(data, change))
    assert problem["file"] == "events.csv" and problem["kind"] == ProblemKind.ALTERED
    assert (problem["stream"], problem["position"], problem["event_id"]) == (K01, 3, rows[2].event_id)
    assert (problem["row"], problem["line"], problem["field"]) == (3, 4, "body")
    assert "does not recompute" in problem["detail"] and "the body was changed" in problem["detail"]


def test_an_edited_hash_is_named() -> None:
    manifest, data, rows = export()

    def change(t: list[list[str]]) -> None:
        t[4][9] = "ab" * 32

    problem = first_problem(manifest, edit_csv(data, change))
    assert (problem["file"], problem["kind"], problem["field"]) == ("events.csv", ProblemKind.ALTERED, "hash")
    assert (problem["stream"], problem["position"], problem["event_id"]) == (K01, 4, rows[3].event_id)
    assert link(rows[3].prev_hash, 4, rows[3].body.encode()).hex() in problem["detail"]
    assert "the hash was changed" in problem["detail"]


def test_an_edited_column_is_named_with_what_the_body_says() -> None:
    manifest, data, rows = export()

    def change(t: list[list[str]]) -> None:
        t[8][7] = "99"  # K02 position 4: seq

    problem = first_problem(manifest, edit_csv(data, change))
    assert (problem["kind"], problem["field"], problem["stream"], problem["position"]) == (ProblemKind.ALTERED, "seq", K02, 4)
    assert problem["event_id"] == rows[7].event_id and "column seq is '99', the body says '4'" in problem["detail"]


def test_a_deleted_row_is_named() -> None:
    manifest, data, rows = export()
    problem = first_problem(manifest, edit_csv(data, lambda t: t.pop(3)))  # K01 position 3
    assert (problem["file"], problem["kind"], problem["stream"], problem["position"]) == (
        "events.csv", ProblemKind.MISSING, K01, 3)
    assert rows[3].event_id in problem["detail"] and "has position 4" in problem["detail"]


def test_a_deleted_first_row_of_a_stream_is_named() -> None:
    manifest, data, _ = export()
    problem = first_problem(manifest, edit_csv(data, lambda t: t.pop(7)))  # K02 position 3, its first
    assert (problem["kind"], problem["stream"], problem["position"]) == (ProblemKind.MISSING, K02, 3)


def test_swapped_rows_are_named() -> None:
    manifest, data, rows = export()

    def change(t: list[list[str]]) -> None:
        t[2], t[3] = t[3], t[2]  # K01 positions 2 and 3

    problem = first_problem(manifest, edit_csv(data, change))
    assert (problem["kind"], problem["stream"], problem["position"], problem["event_id"]) == (
        ProblemKind.ORDER, K01, 3, rows[2].event_id)
    assert problem["row"] == 2 and "comes before position 2" in problem["detail"]


def test_a_forged_row_that_links_is_still_caught_at_the_manifest() -> None:
    """Re-chaining the rest of a stream after an edit leaves its last hash different from the manifest's."""
    manifest, data, rows = export()
    body = rows[3].body.replace('"motorcycle":12', '"motorcycle":2')
    prev, tail = rows[2].hash, []
    for original in rows[3:6]:
        text = body if original.position == 4 else original.body
        digest = link(prev, original.position, text.encode())
        tail.append(msgspec.structs.replace(original, prev_hash=prev, hash=digest, body=text))
        prev = digest

    def change(t: list[list[str]]) -> None:
        t[4:7] = [r.csv_fields() for r in tail]

    problem = first_problem(manifest, edit_csv(data, change))
    assert (problem["file"], problem["kind"], problem["stream"], problem["position"], problem["field"]) == (
        "events.csv", ProblemKind.ALTERED, K01, 6, "streams[0].last_hash")


def test_an_edited_manifest_is_named() -> None:
    manifest, data, rows = export()

    def change(m: dict) -> None:
        m["streams"][1]["last_hash"] = "cd" * 32

    problem = first_problem(edit_manifest(manifest, change), data)
    assert (problem["file"], problem["kind"], problem["field"]) == ("manifest.json", ProblemKind.MANIFEST,
                                                                    "streams[1].last_hash")
    assert (problem["stream"], problem["position"], problem["event_id"]) == (K02, 5, rows[8].event_id)
    assert "cd" * 32 in problem["detail"] and rows[8].hash.hex() in problem["detail"]


def test_an_edited_anchor_and_count_in_the_manifest_are_named() -> None:
    manifest, data, rows = export()

    def anchor(m: dict) -> None:
        m["streams"][1]["anchor_prev_hash"] = GENESIS.hex()

    problem = first_problem(edit_manifest(manifest, anchor), data)
    assert (problem["file"], problem["field"], problem["stream"], problem["position"], problem["event_id"]) == (
        "manifest.json", "streams[1].anchor_prev_hash", K02, 3, rows[6].event_id)

    def count(m: dict) -> None:
        m["streams"][0]["count"] = 7

    problem = first_problem(edit_manifest(manifest, count), data)
    assert (problem["file"], problem["field"]) == ("manifest.json", "csv.rows")


def test_an_edited_csv_checksum_in_the_manifest_is_named() -> None:
    manifest, data, _ = export()

    def change(m: dict) -> None:
        m["csv"]["sha256"] = "00" * 32

    report = verify_export(edit_manifest(manifest, change), data)
    assert not report.ok and report.rows_checked == 9
    [problem] = report.problems
    assert (problem.kind, problem.field) == (ProblemKind.CHECKSUM, "csv.sha256") and "00" * 32 in problem.detail


def test_a_truncated_csv_is_named() -> None:
    manifest, data, rows = export()
    cut = data[: len(data) - 40]  # inside the last row's body
    problem = first_problem(manifest, cut)
    assert (problem["file"], problem["kind"]) == ("events.csv", ProblemKind.TRUNCATED)
    assert (problem["stream"], problem["position"], problem["event_id"], problem["row"]) == (K02, 5, rows[8].event_id, 9)
    assert f"ends after {len(cut):,} of the {len(data):,} bytes" in problem["detail"]


def test_a_csv_cut_at_a_row_boundary_is_named_truncated() -> None:
    manifest, data, rows = export()
    cut = data[: data.rindex(b"\r\n", 0, len(data) - 2) + 2]  # the last row gone entirely
    problem = first_problem(manifest, cut)
    assert (problem["kind"], problem["stream"], problem["position"], problem["row"], problem["event_id"]) == (
        ProblemKind.TRUNCATED, K02, 4, 8, rows[7].event_id)


def test_an_edited_last_row_is_not_called_truncation() -> None:
    manifest, data, rows = export()

    def change(t: list[list[str]]) -> None:
        t[9][10] = t[9][10].replace('"motorcycle":12', '"motorcycle":2')  # shorter, but a whole row

    problem = first_problem(manifest, edit_csv(data, change))
    assert (problem["kind"], problem["position"], problem["event_id"]) == (ProblemKind.ALTERED, 5, rows[8].event_id)


def test_a_stream_removed_from_the_csv_is_named() -> None:
    manifest, data, _ = export()
    problem = first_problem(manifest, edit_csv(data, lambda t: t.__delitem__(slice(1, 7))))
    assert (problem["kind"], problem["stream"], problem["position"]) == (ProblemKind.MISSING, K01, 1)


def test_a_late_record_inside_the_chain_is_exported_and_counted() -> None:
    """A record between two of the period with an earlier event time keeps the chain contiguous."""
    rows = chain("K01", "det:K01-N", 4, shift={3: -timedelta(days=1)})
    manifest_json, data, _ = export(rows)
    assert json.loads(manifest_json)["streams"][0]["outside_period"] == 1
    assert verify_export(manifest_json, data).ok
    # ... but not at a stream's end, where nothing needs it
    rows = chain("K01", "det:K01-N", 4, shift={4: timedelta(hours=2)})
    manifest_json, data, _ = export(rows)
    problem = first_problem(manifest_json, data)
    assert (problem["kind"], problem["position"], problem["field"]) == (ProblemKind.PERIOD, 4, "event_time")


def test_a_damaged_or_foreign_manifest_is_named_and_a_newer_one_refused() -> None:
    _, data, _ = export()
    problem = first_problem(b'{"format": "lalin-audit-export", "version": 1, "streams": ', data)
    assert (problem["file"], problem["kind"]) == ("manifest.json", ProblemKind.MANIFEST)
    problem = first_problem(b'{"format": "something-else", "version": 1}', data)
    assert problem["field"] == "format"
    with pytest.raises(UnsupportedExport, match="version 2"):
        verify_export(b'{"format": "lalin-audit-export", "version": 2}', data)


def test_a_malformed_row_is_named() -> None:
    manifest, data, rows = export()

    def change(t: list[list[str]]) -> None:
        t[2][1] = "two"

    problem = first_problem(manifest, edit_csv(data, change))
    assert (problem["kind"], problem["field"], problem["row"], problem["event_id"]) == (
        ProblemKind.MALFORMED, "position", 2, rows[1].event_id)


def test_an_empty_period_exports_a_header_and_verifies() -> None:
    manifest, data, _ = export([])
    assert data == (",".join(CSV_COLUMNS) + "\r\n").encode()
    report = verify_export(manifest, data)
    assert report.ok and report.rows_checked == 0
