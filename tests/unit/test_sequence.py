"""Sequence checking per stream."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controllers.sequence import SequenceVerdict, check_sequence


@given(st.integers(1, 2**40))
def test_next_number_is_in_order(last) -> None:
    check = check_sequence(last, last + 1)
    assert check.verdict == SequenceVerdict.IN_ORDER and not check.is_anomaly


@given(st.integers(1, 2**40), st.integers(2, 10_000))
def test_a_jump_is_a_gap_counting_the_missing_events(last, jump) -> None:
    check = check_sequence(last, last + jump)
    assert check.verdict == SequenceVerdict.GAP
    assert check.missing_count == jump - 1
    assert check.expected_seq == last + 1


@given(st.integers(2, 2**40))
def test_back_to_one_is_a_reset(last) -> None:
    assert check_sequence(last, 1).verdict == SequenceVerdict.RESET


@given(st.integers(3, 2**40), st.data())
def test_going_backwards_otherwise_is_a_regression(last, data) -> None:
    received = data.draw(st.integers(2, last))
    assert check_sequence(last, received).verdict == SequenceVerdict.REGRESSION


def test_a_new_stream_starts_anywhere() -> None:
    assert check_sequence(None, 57).verdict == SequenceVerdict.FIRST


def test_a_late_arrival_fills_its_gap_without_moving_the_highest_number() -> None:
    gap = check_sequence(2, 5)
    assert gap.open_gaps == ((3, 4),) and gap.last_seq == 5
    late = check_sequence(gap.last_seq, 3, gap.open_gaps)
    assert late.verdict == SequenceVerdict.LATE and late.last_seq == 5 and late.open_gaps == ((4, 4),)
    assert check_sequence(late.last_seq, 6, late.open_gaps).verdict == SequenceVerdict.IN_ORDER
    assert check_sequence(late.last_seq, 3, late.open_gaps).verdict == SequenceVerdict.REGRESSION


@given(st.lists(st.integers(1, 200), min_size=1, max_size=100))
def test_the_highest_number_never_goes_backwards_except_on_reset(numbers) -> None:
    last, gaps = None, ()
    for n in numbers:
        check = check_sequence(last, n, gaps)
        if check.verdict != SequenceVerdict.RESET and last is not None:
            assert check.last_seq >= last
        assert all(lo <= hi < check.last_seq for lo, hi in check.open_gaps)
        last, gaps = check.last_seq, check.open_gaps
