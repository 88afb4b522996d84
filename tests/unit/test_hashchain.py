"""The hash chain names the first altered, inserted or missing record."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controllers.hashchain import GENESIS, ChainRecord, FaultKind, link, verify_stream


def chain(contents: list[bytes]) -> list[ChainRecord]:
    records, prev = [], GENESIS
    for position, body in enumerate(contents, start=1):
        digest = link(prev, position, body)
        records.append(ChainRecord(position, f"id-{position}", body, prev, digest))
        prev = digest
    return records


bodies = st.lists(st.binary(min_size=1, max_size=40), min_size=2, max_size=30)


@given(bodies)
def test_an_untouched_chain_verifies(contents) -> None:
    records = chain(contents)
    fault, checked = verify_stream("s", records, head_position=len(records), head_hash=records[-1].hash)
    assert fault is None and checked == len(records)


@given(bodies, st.data())
def test_any_altered_record_is_named(contents, data) -> None:
    records = chain(contents)
    i = data.draw(st.integers(0, len(records) - 1))
    records[i] = ChainRecord(records[i].position, records[i].event_id, records[i].body + b"!",
                             records[i].prev_hash, records[i].hash)
    fault, _ = verify_stream("s", records, head_position=len(records), head_hash=records[-1].hash)
    assert fault is not None and fault.kind == FaultKind.ALTERED and fault.position == i + 1
    assert fault.event_id == f"id-{i + 1}"


@given(bodies, st.data())
def test_any_deleted_record_is_named(contents, data) -> None:
    records = chain(contents)
    head = records[-1]
    i = data.draw(st.integers(0, len(records) - 1))
    del records[i]
    fault, _ = verify_stream("s", records, head_position=head.position, head_hash=head.hash)
    assert fault is not None and fault.kind == FaultKind.MISSING and fault.position == i + 1


@given(bodies, st.data())
def test_any_inserted_record_is_named(contents, data) -> None:
    records = chain(contents)
    i = data.draw(st.integers(0, len(records) - 1))
    forged = ChainRecord(records[i].position, "forged", records[i].body, records[i].prev_hash, records[i].hash,
                         columns_match=False)  # a copy of the record under another id
    before = data.draw(st.booleans())  # the database may return the intruder first or second
    records.insert(i if before else i + 1, forged)
    fault, _ = verify_stream("s", records, head_position=len(contents), head_hash=records[-1].hash)
    assert fault is not None and fault.kind == FaultKind.INSERTED and fault.position == i + 1
    assert fault.event_id == "forged"


def test_a_rewritten_chain_with_a_new_predecessor_breaks_the_link() -> None:
    records = chain([b"a", b"b", b"c"])
    records[1] = ChainRecord(2, "id-2", b"B", GENESIS, link(GENESIS, 2, b"B"))
    fault, _ = verify_stream("s", records)
    assert fault is not None and fault.kind == FaultKind.BROKEN_LINK and fault.position == 2


def test_verification_can_start_at_a_checkpoint() -> None:
    records = chain([b"a", b"b", b"c", b"d"])
    fault, checked = verify_stream("s", records[2:], start_position=3, start_prev_hash=records[1].hash)
    assert fault is None and checked == 2


def test_columns_that_disagree_with_the_body_count_as_altered() -> None:
    records = chain([b"a", b"b"])
    records[0] = ChainRecord(1, "id-1", b"a", GENESIS, records[0].hash, columns_match=False)
    fault, _ = verify_stream("s", records)
    assert fault is not None and fault.kind == FaultKind.ALTERED and fault.position == 1
