"""A simulated controller's high-resolution event log (docs/modbus-map.md, "The event log"): pure, time passed in.

The controller simulator feeds it what its signal groups show and what its detectors see;
it keeps a ring of :attr:`capacity` entries numbered from 1 after power-up, each stamped with
the log clock (tenths of a second since power-up), and answers reads of the log's registers.

* A signal group's aspect change is logged with the Indiana code of the new aspect
  (:data:`ASPECT_CODES`): vehicle groups 1 begin green, 8 begin yellow clearance, 10 begin red
  clearance; crossings 21 begin walk, 22 begin clearance, 23 begin solid don't walk. Flashing
  amber and dark (flash) log nothing.
* A detector pulse logs 82 detector on at the pulse and 81 detector off ``occupied_s`` later.
  A pulse while the detector is still on (two vehicles within one twin step) logs off and on
  at that instant and extends the presence; more occupied time without a new vehicle (one
  standing on the loop) extends it too.
* The twin reports a detector's occupancy a step (1 s) late, so an entry is committed to the
  ring only ``hold_s`` seconds after it happened: entries stay in time order and a detector's
  off is logged when it is known. A standing vehicle reported after its off was committed
  (the twin fell more than ``hold_s`` behind) starts a new presence: one extra "on".
"""

from __future__ import annotations

from collections.abc import Mapping

from controllers.plan import Plan
from devices.controller_protocol import LogEntry, log_entry_registers
from devices.register_map import UINT16_MAX, UINT32_MAX, RegisterMap, encode

#: (group kind, new aspect) -> the Indiana code name logged (the register map's ``event_code`` enum).
ASPECT_CODES: Mapping[tuple[str, str], str] = {
    ("vehicle", "green"): "phase_begin_green",
    ("vehicle", "amber"): "phase_begin_yellow_clearance",
    ("vehicle", "red"): "phase_begin_red_clearance",
    ("pedestrian", "green"): "pedestrian_begin_walk",
    ("pedestrian", "flashing_green"): "pedestrian_begin_clearance",
    ("pedestrian", "red"): "pedestrian_begin_solid_dont_walk",
}
DETECTOR_ON, DETECTOR_OFF = "detector_on", "detector_off"
#: Seconds an entry waits before it is committed to the ring (a detector's off is known a twin step late).
DEFAULT_HOLD_S = 5.0
_LAST = 1 << 62  # a detector's own off sorts after every entry logged at the same instant


class ControllerEventLog:
    """The event log of one power-up of a controller (seconds are the simulator's controller seconds)."""

    def __init__(self, regmap: RegisterMap, plan: Plan, detectors: int, boot: int, powered_at_s: float,
                 hold_s: float = DEFAULT_HOLD_S) -> None:
        self.regmap, self.boot, self.powered_at_s, self.hold_s = regmap, boot, powered_at_s, hold_s
        layout = regmap.event_log
        self.capacity, self._size = layout.capacity, layout.entry_size
        self.head = 0  # sequence number of the newest committed entry
        self._ring = [0] * (self.capacity * self._size)
        self._pending: list[tuple[float, int, str, int]] = []  # (second, order, code, param) not committed yet
        self._order = 0
        self._off_at: list[float | None] = [None] * detectors  # while a detector is on: when it goes off
        self._shown: dict[str, str] = {}
        self._groups = {g.id: (k, g.kind) for k, g in enumerate(plan.signal_groups)}

    # --- what happens -----------------------------------------------------------------
    def aspects(self, shown: Mapping[str, str], at_s: float) -> None:
        """The groups show ``shown`` at ``at_s``: log every change since the last call."""
        for group, aspect in shown.items():
            if self._shown.get(group) == aspect:
                continue
            self._shown[group] = aspect
            index, kind = self._groups[group]
            code = ASPECT_CODES.get((kind, aspect))
            if code is not None:
                self._push(at_s, code, index)

    def detector_pulse(self, index: int, at_s: float, occupied_s: float) -> None:
        """A vehicle reached detector ``index`` at ``at_s`` and occupies it ``occupied_s`` seconds."""
        off = self._off_at[index]
        if off is not None:
            self._push(min(off, at_s), DETECTOR_OFF, index)
        self._push(at_s, DETECTOR_ON, index)
        self._off_at[index] = max(off if off is not None else at_s, at_s) + occupied_s

    def detector_occupied(self, index: int, at_s: float, occupied_s: float) -> None:
        """Detector ``index`` stayed occupied ``occupied_s`` more seconds without a new vehicle."""
        off = self._off_at[index]
        if off is None:  # its off was committed already: a new presence
            self._push(at_s, DETECTOR_ON, index)
            self._off_at[index] = at_s + occupied_s
        else:
            self._off_at[index] = off + occupied_s

    def _push(self, at_s: float, code: str, param: int) -> None:
        self._order += 1
        self._pending.append((at_s, self._order, code, param))

    # --- the ring ---------------------------------------------------------------------
    def commit(self, now_s: float) -> None:
        """Commit, in time order, every entry that happened ``hold_s`` or more before ``now_s``."""
        horizon = now_s - self.hold_s
        due = [p for p in self._pending if p[0] <= horizon]
        if due:
            self._pending = [p for p in self._pending if p[0] > horizon]
        for index, off in enumerate(self._off_at):
            if off is not None and off <= horizon:
                due.append((off, _LAST, DETECTOR_OFF, index))
                self._off_at[index] = None
        for at_s, _, code, param in sorted(due):
            self.head += 1
            entry = LogEntry(self.head & UINT32_MAX, self.clock_ds(at_s), code, param)
            slot = (self.head - 1) % self.capacity
            self._ring[slot * self._size:(slot + 1) * self._size] = log_entry_registers(self.regmap, entry)

    def clock_ds(self, at_s: float) -> int:
        """The log clock at controller second ``at_s``: tenths of a second since power-up (wrapping at 2^32)."""
        return round((at_s - self.powered_at_s) * 10) & UINT32_MAX

    def header(self, now_s: float) -> list[int]:
        """The header's registers now."""
        oldest = max(1, self.head - self.capacity + 1) if self.head else 0
        return encode(self.regmap, "log_header", {
            "log_head_seq": self.head & UINT32_MAX, "log_oldest_seq": oldest & UINT32_MAX,
            "log_clock": self.clock_ds(now_s), "log_boot": self.boot & UINT16_MAX, "log_capacity": self.capacity})

    def read(self, address: int, count: int, now_s: float) -> list[int]:
        """Registers ``address`` to ``address + count - 1`` of the log (header and ring; 0 between them)."""
        layout = self.regmap.event_log
        header = self.header(now_s)
        out: list[int] = []
        for a in range(address, address + count):
            if layout.header_address <= a < layout.header_address + len(header):
                out.append(header[a - layout.header_address])
            elif layout.entries_address <= a < layout.end:
                out.append(self._ring[a - layout.entries_address])
            else:
                out.append(0)
        return out
