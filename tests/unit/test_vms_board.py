"""The board's firmware logic (devices.vms_board), pure: idempotency, refusals, priority,
activation and expiry, power and display faults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devices import vms_board as vb
from devices.vms_model import Refusal, capabilities, load_boards, load_model

CAPS = capabilities(load_model(), load_boards().board("vms-sunset-01"))
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def request(message_id: str, *pages: str, priority: int = 5, duration_s: float = 0.0, at: datetime | None = None,
            page_time_s: float = 2.0) -> vb.MessageRequest:
    return vb.MessageRequest(message_id=message_id, pages=pages or ("A",), priority=priority, activation_time=at,
                             duration_s=duration_s, page_time_s=page_time_s)


def test_a_message_is_shown_at_once_and_the_same_id_again_changes_nothing() -> None:
    state, outcome = vb.show(vb.BoardState(), CAPS, request("m1", "JALAN DITUTUP"), T0)
    assert outcome == vb.Outcome("accepted") and vb.status(state) == "displaying"
    assert state.shown is not None and (state.shown.message_id, state.shown.activated_at) == ("m1", T0)
    again, outcome = vb.show(state, CAPS, request("m1", "OTHER TEXT"), T0 + timedelta(seconds=5))
    assert outcome == vb.Outcome("repeated") and again is state


def test_a_refused_id_is_refused_again_with_the_same_reason_and_changes_nothing() -> None:
    state, first = vb.show(vb.BoardState(), CAPS, request("bad", "x" * 5), T0)
    assert first.result == "refused" and first.refusal is not None and first.refusal.code == "forbidden_character"
    assert state.shown is None
    _, second = vb.show(state, CAPS, request("bad", "FINE"), T0)
    assert second == first


def test_a_lower_priority_does_not_replace_a_higher_one_until_it_expires() -> None:
    state, _ = vb.show(vb.BoardState(), CAPS, request("urgent", "BANJIR", priority=1, duration_s=60), T0)
    state, outcome = vb.show(state, CAPS, request("info", "HATI HATI", priority=5), T0 + timedelta(seconds=10))
    assert outcome.refusal is not None and outcome.refusal.code == "lower_priority"
    assert "'urgent' of priority 1 (until 2026-11-24T08:01:00+00:00)" in outcome.refusal.detail
    assert state.shown is not None and state.shown.message_id == "urgent"
    state, outcome = vb.show(state, CAPS, request("equal", "BANJIR 2", priority=1), T0 + timedelta(seconds=20))
    assert outcome.result == "accepted" and state.shown is not None and state.shown.message_id == "equal"
    # a scheduled message is refused only if the higher one is still shown at its activation
    state, _ = vb.show(vb.BoardState(), CAPS, request("urgent", "BANJIR", priority=1, duration_s=60), T0)
    _, outcome = vb.show(state, CAPS, request("later", "INFO", priority=5, at=T0 + timedelta(seconds=90)), T0)
    assert outcome.result == "pending"


def test_expiry_blanks_the_board_at_activation_plus_duration() -> None:
    state, _ = vb.show(vb.BoardState(), CAPS, request("m1", duration_s=30), T0)
    assert vb.next_change_at(state) == T0 + timedelta(seconds=30)
    assert vb.advance(state, T0 + timedelta(seconds=29.9)) is state
    blank = vb.advance(state, T0 + timedelta(seconds=30))
    assert blank.shown is None and vb.status(blank) == "blank" and vb.next_change_at(blank) is None


def test_a_pending_message_comes_due_or_is_discarded_by_a_higher_priority() -> None:
    due = T0 + timedelta(seconds=60)
    state, outcome = vb.show(vb.BoardState(), CAPS, request("p", "LATER", priority=3, at=due), T0)
    assert outcome.result == "pending" and state.shown is None and vb.next_change_at(state) == due
    shown = vb.advance(state, due + timedelta(seconds=1))
    assert shown.pending is None and shown.shown is not None and shown.shown.activated_at == due
    state, _ = vb.show(state, CAPS, request("urgent", "BANJIR", priority=1), T0 + timedelta(seconds=10))
    discarded = vb.advance(state, due)
    assert discarded.pending is None and discarded.shown is not None and discarded.shown.message_id == "urgent"


def test_blank_takes_down_only_the_named_message() -> None:
    state, _ = vb.show(vb.BoardState(), CAPS, request("m1"), T0)
    same, outcome = vb.blank(state, "other", T0)
    assert outcome.result == "not_displayed" and same.shown == state.shown
    blank, outcome = vb.blank(state, "m1", T0)
    assert outcome.result == "accepted" and blank.shown is None
    _, outcome = vb.show(blank, CAPS, request("m1"), T0)
    assert outcome.result == "repeated"  # a taken-down message is not shown again by a repeated request


def test_no_power_or_a_faulted_display_refuses_and_forgets() -> None:
    state, _ = vb.show(vb.BoardState(), CAPS, request("m1"), T0)
    off = vb.set_power_failure(state, True)
    assert vb.status(off) == "off" and off.shown is None
    _, outcome = vb.show(off, CAPS, request("m2"), T0)
    assert outcome.refusal is not None and str(outcome.refusal) == "board_off: the board has no power"
    assert vb.status(vb.set_power_failure(off, False)) == "blank"
    faulted = vb.set_display_fault(state, True)
    assert vb.status(faulted) == "fault" and faulted.shown is None
    assert vb.show(faulted, CAPS, request("m3"), T0)[1].refusal == Refusal("board_off", "the display controller is faulted")


def test_the_board_remembers_a_bounded_number_of_ids() -> None:
    state = vb.BoardState()
    for n in range(vb.HANDLED_MEMORY + 10):
        state, _ = vb.show(state, CAPS, request(f"m{n}"), T0)
    assert len(state.handled) == vb.HANDLED_MEMORY
    assert vb.show(state, CAPS, request("m0"), T0)[1].result == "accepted"  # forgotten long ago


def test_a_pending_message_due_while_a_higher_priority_one_was_still_shown_is_discarded_even_if_read_later() -> None:
    """The board is asked only after both times passed: it must judge the pending message at its due time."""
    state, _ = vb.show(vb.BoardState(), CAPS, request("urgent", "KECELAKAAN", priority=1, duration_s=60), T0)
    state, outcome = vb.show(state, CAPS, request("later", "INFO", priority=1, at=T0 + timedelta(seconds=30)), T0)
    assert outcome.result == "pending"
    low, _ = vb.show(vb.BoardState(), CAPS, request("urgent", "KECELAKAAN", priority=1, duration_s=60), T0)
    low = vb.msgspec.structs.replace(low, pending=request("minor", "INFO", priority=6, at=T0 + timedelta(seconds=30)))
    after = vb.advance(low, T0 + timedelta(seconds=90))  # urgent expired at 60 s, minor came due at 30 s
    assert after.shown is None and after.pending is None
    shown = vb.advance(state, T0 + timedelta(seconds=90))
    assert shown.shown is not None and shown.shown.message_id == "later"  # same priority: it replaced the urgent one
