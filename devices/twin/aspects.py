"""Signal-group aspects to SUMO traffic-light state strings (pure: no SUMO).

lalin's aspects (:class:`controllers.payloads.GroupState` values) map to SUMO's link states:

============== ============================================ ==========
aspect         meaning in SUMO                              character
============== ============================================ ==========
green          go (``g`` on a permissive link: yield first) ``G``/``g``
flashing_green still green (a vehicle group never shows it)  ``G``/``g``
amber          stop if you safely can                       ``y``
red            stop                                         ``r``
red_amber      prepare to go (red and amber together)       ``u``
flashing_amber blinking amber: proceed, yielding            ``o``
dark           signal off: the junction's priority rules    ``O``
============== ============================================ ==========

Character ``i`` of a state string drives SUMO link index ``i`` of the traffic light.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from devices.twin.errors import InvalidSignalState, MissingAspect
from devices.twin.links import SignalLink

#: Aspect -> SUMO character for a link with priority; green on a permissive link is ``g`` instead.
ASPECT_CHARS: dict[str, str] = {
    "green": "G",
    "flashing_green": "G",
    "amber": "y",
    "red": "r",
    "red_amber": "u",
    "flashing_amber": "o",
    "dark": "O",
}
#: Every character SUMO accepts in a state string.
SUMO_STATE_CHARS = frozenset("rRyYgGsuoO")


def link_char(aspect: str, permissive: bool) -> str:
    """The SUMO character of one link showing ``aspect``; InvalidSignalState for an unknown aspect."""
    try:
        char = ASPECT_CHARS[aspect]
    except KeyError:
        raise InvalidSignalState(f"aspect {aspect!r} is not one of {', '.join(ASPECT_CHARS)}") from None
    return "g" if char == "G" and permissive else char


def state_string(controller_id: str, links: Sequence[SignalLink], aspects: Mapping[str, str]) -> str:
    """The state string of a traffic light whose links are ``links`` (in index order) for group ``aspects``.

    MissingAspect names the controller and the first group driving a link that has no aspect;
    groups without links (pedestrian crossings) are ignored."""
    chars = []
    for link in links:
        aspect = aspects.get(link.group)
        if aspect is None:
            raise MissingAspect(controller_id, link.group)
        try:
            chars.append(link_char(str(aspect), link.permissive))
        except InvalidSignalState as err:
            raise InvalidSignalState(f"controller {controller_id} group {link.group}: {err}") from None
    return "".join(chars)


def check_state(tls_id: str, state: str, link_count: int) -> None:
    """InvalidSignalState unless ``state`` has one valid character per link (SUMO accepts some wrong strings silently)."""
    if len(state) != link_count:
        raise InvalidSignalState(f"traffic light {tls_id}: state {state!r} has {len(state)} characters, "
                                 f"the light has {link_count} links")
    bad = sorted(set(state) - SUMO_STATE_CHARS)
    if bad:
        raise InvalidSignalState(f"traffic light {tls_id}: state {state!r} has invalid character(s) {bad}")
