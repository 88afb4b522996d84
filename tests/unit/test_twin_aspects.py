"""Signal-group aspects to SUMO state strings: a pure translation, no SUMO running."""

from __future__ import annotations

import pytest

from controllers.payloads import GroupState
from devices.twin.aspects import ASPECT_CHARS, check_state, link_char, state_string
from devices.twin.errors import InvalidSignalState, MissingAspect
from devices.twin.links import SignalLink


def link(index: int, group: str, permissive: bool = False) -> SignalLink:
    return SignalLink(index=index, group=group, permissive=permissive, movement="M", from_lane=f"in_{index}",
                      to_lane=f"out_{index}")


LINKS = [link(0, "A"), link(1, "A"), link(2, "B", permissive=True), link(3, "C")]


def test_every_group_state_of_lalin_has_a_sumo_character() -> None:
    assert set(ASPECT_CHARS) == {s.value for s in GroupState}


@pytest.mark.parametrize(("aspect", "permissive", "char"), [
    ("green", False, "G"), ("green", True, "g"), ("flashing_green", True, "g"), ("amber", True, "y"),
    ("red", True, "r"), ("red_amber", False, "u"), ("flashing_amber", False, "o"), ("flashing_amber", True, "o"),
    ("dark", False, "O"), ("dark", True, "O"),
])
def test_link_characters(aspect: str, permissive: bool, char: str) -> None:
    assert link_char(aspect, permissive) == char


def test_state_string_orders_characters_by_link_index_and_yields_on_permissive_links() -> None:
    assert state_string("K01", LINKS, {"A": "green", "B": "green", "C": "red", "P1": "green"}) == "GGgr"
    assert state_string("K01", LINKS, {"A": "amber", "B": "amber", "C": "red_amber"}) == "yyyu"
    assert state_string("K01", LINKS, {"A": "flashing_amber", "B": "flashing_amber", "C": "dark"}) == "oooO"


def test_a_missing_vehicle_group_names_the_controller_and_the_group() -> None:
    with pytest.raises(MissingAspect, match=r"K01.*'C'") as caught:
        state_string("K01", LINKS, {"A": "green", "B": "red"})
    assert (caught.value.controller_id, caught.value.group_id) == ("K01", "C")


def test_an_unknown_aspect_is_refused_with_the_group_and_value() -> None:
    with pytest.raises(InvalidSignalState, match=r"K02 group B.*'blue'"):
        state_string("K02", LINKS, {"A": "green", "B": "blue", "C": "red"})


def test_check_state_refuses_a_wrong_length_or_character() -> None:
    check_state("K01", "GGgr", 4)
    with pytest.raises(InvalidSignalState, match=r"K01.*3 characters.*4 links"):
        check_state("K01", "GGg", 4)
    with pytest.raises(InvalidSignalState, match=r"K01.*5 characters"):
        check_state("K01", "GGgrr", 4)
    with pytest.raises(InvalidSignalState, match=r"invalid character.*'X'"):
        check_state("K01", "GXgr", 4)
