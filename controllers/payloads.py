"""Payload schemas of lalin's event types (current schema versions).

Each payload is a frozen ``msgspec.Struct`` that rejects unknown fields. Structs are declared
``gc=False`` (they hold only values and other structs, never cycles), which keeps Python's
cycle collector off the archiver's hot path. Every number is
bounded (so NaN and infinities are refused) and every unit is in the field name:
``_s`` seconds, ``_m`` metres, ``_kmh`` kilometres per hour, ``_veh`` vehicles; occupancy
and confidence are fractions in [0, 1]. Strings and lists have size caps.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated

import msgspec

# --- bounded scalar types -------------------------------------------------------------
IDENTIFIER_PATTERN = r"^[A-Za-z0-9_.:\-/@]{1,64}$"  # ids, keys, operators: what an Identifier accepts
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN)]
ShortText = Annotated[str, msgspec.Meta(max_length=500)]
Reason = Annotated[str, msgspec.Meta(min_length=3, max_length=500)]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
IntervalSeconds = Annotated[float, msgspec.Meta(gt=0.0, le=3600.0)]
VehicleCount = Annotated[int, msgspec.Meta(ge=0, le=100_000)]
SpeedKmh = Annotated[float, msgspec.Meta(ge=0.0, le=250.0)]
LengthMetres = Annotated[float, msgspec.Meta(ge=0.0, le=10_000.0)]
DurationSeconds = Annotated[float, msgspec.Meta(ge=0.0, le=86_400.0)]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
Sha256Hex = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
Sequence = Annotated[int, msgspec.Meta(ge=1, le=2**62)]


class Payload(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Base of every payload; subclasses are registered in ``controllers.event_types``."""


class VolumeByClass(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Vehicles counted in one interval, by class (vehicles, not PCU)."""

    motorcycle: VehicleCount = 0
    car: VehicleCount = 0
    heavy: VehicleCount = 0  # buses and trucks
    unclassified: VehicleCount = 0  # a loop that counts without classifying (a controller's detector counter)

    @property
    def total_veh(self) -> int:
        """All classes together (vehicles)."""
        return self.motorcycle + self.car + self.heavy + self.unclassified


class DetectorCounted(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """A loop or virtual detector's count over ``interval_s`` seconds ending at event time."""

    detector_id: Identifier
    interval_s: IntervalSeconds
    volume: VolumeByClass
    occupancy: Fraction
    mean_speed_kmh: SpeedKmh | None = None  # None when no vehicle passed
    lane: Identifier | None = None


class IncidentKind(enum.StrEnum):
    """What a camera's analytics report as an incident."""

    STALLED_VEHICLE = "stalled_vehicle"
    CRASH = "crash"
    FLOODING = "flooding"
    WRONG_WAY = "wrong_way"
    PEDESTRIAN_ON_ROAD = "pedestrian_on_road"
    DEBRIS = "debris"
    OTHER = "other"


class Incident(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """An incident seen by camera analytics, with its confidence (0..1)."""

    kind: IncidentKind
    confidence: Fraction


class CameraObserved(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """CCTV analytics for one approach over ``interval_s`` seconds."""

    camera_id: Identifier
    approach: Identifier
    interval_s: IntervalSeconds
    counts: VolumeByClass
    queue_length_m: LengthMetres
    incident: Incident | None = None


class ControlMode(enum.StrEnum):
    """How a signal controller is being driven."""

    TIME_OF_DAY = "time_of_day"
    CENTRAL = "central"
    FLASH = "flash"
    MANUAL = "manual"
    OFF = "off"


class GroupState(enum.StrEnum):
    """Aspect of one signal group."""

    RED = "red"
    RED_AMBER = "red_amber"
    GREEN = "green"
    AMBER = "amber"
    FLASHING_AMBER = "flashing_amber"
    FLASHING_GREEN = "flashing_green"  # pedestrian clearance
    DARK = "dark"


class SignalInterval(enum.StrEnum):
    """What part of its sequence a controller is in."""

    GREEN = "green"
    INTERGREEN = "intergreen"
    FLASH = "flash"
    STARTUP = "startup"  # all red before the first green after flash
    FLASH_ENTRY = "flash_entry"  # the running stage's groups clear before flash


class SignalStateReported(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """A controller's reported state: mode, running plan, stage and each group's aspect."""

    controller_id: Identifier
    mode: ControlMode
    plan_id: Annotated[int, msgspec.Meta(ge=0, le=65_535)]
    cycle_s: DurationSeconds
    stage: Annotated[int, msgspec.Meta(ge=0, le=64)]
    stage_elapsed_s: DurationSeconds
    group_states: Annotated[dict[Identifier, GroupState], msgspec.Meta(max_length=64)]
    interval: SignalInterval | None = None
    cycle_elapsed_s: DurationSeconds | None = None  # since the start of the cycle (first stage's green)
    plan_checksum: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{8}$")] | None = None  # first 32 bits of the plan's SHA-256
    offset_s: DurationSeconds | None = None
    stage_greens_s: Annotated[list[DurationSeconds], msgspec.Meta(max_length=16)] | None = None  # in sequence order


class FaultKind(enum.StrEnum):
    """Classes of controller fault."""

    COMMS_LOST = "comms_lost"
    CONFLICT = "conflict"
    LAMP_FAILURE = "lamp_failure"
    DETECTOR_FAULT = "detector_fault"
    POWER = "power"
    WATCHDOG = "watchdog"
    CABINET_DOOR = "cabinet_door"
    CLOCK = "clock_invalid"
    READBACK_MISMATCH = "readback_mismatch"  # the device shows something other than what was acknowledged
    RESTARTED = "restarted"  # a notice (never active): the controller restarted and forgot its volatile state
    LATE_APPLICATION = "late_application"  # a notice: a command reported timed_out was carried out after all
    PROTOCOL = "protocol"  # the device answers outside its register map (unknown code, wrong map version)
    EVENT_LOG = "event_log"  # a notice: high-resolution log entries were lost (ring overflow) or could not be read
    OTHER = "other"


class Severity(enum.StrEnum):
    """How urgent an alarm is for the command centre."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class ControllerFaulted(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """A fault raised (``active``) or cleared by a controller or by lalin about one."""

    controller_id: Identifier
    fault: FaultKind
    severity: Severity
    active: bool
    detail: ShortText = ""


class VmsStatus(enum.StrEnum):
    """What a VMS board is doing."""

    DISPLAYING = "displaying"
    BLANK = "blank"
    FAULT = "fault"
    OFF = "off"


class VmsDisplayReported(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """What a VMS board reports it shows now, and its health (read from the board, not assumed)."""

    board_id: Identifier
    status: VmsStatus
    pages: Annotated[
        list[Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=8)]],
        msgspec.Meta(max_length=8),
    ]
    message_id: Identifier | None = None  # the id written with the message (lalin writes its command id)
    priority: Annotated[int, msgspec.Meta(ge=1, le=10)] | None = None
    brightness_pct: Annotated[int, msgspec.Meta(ge=0, le=100)] = 100
    pixel_faults: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 0
    door_open: bool = False
    power_ok: bool = True


class VmsFaultKind(enum.StrEnum):
    """Classes of VMS board fault."""

    COMMS_LOST = "comms_lost"
    PIXEL_FAILURE = "pixel_failure"
    DOOR_OPEN = "door_open"
    POWER_FAILURE = "power_failure"
    READBACK_MISMATCH = "readback_mismatch"  # the board shows something other than what was written
    DISPLAY_FAULT = "display_fault"
    OTHER = "other"


class VmsFaulted(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """A VMS board fault raised (``active``) or cleared, by the board or by lalin about it."""

    board_id: Identifier
    fault: VmsFaultKind
    severity: Severity
    active: bool
    detail: ShortText = ""


class TimeWindow(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A half-open interval [start, end) of event time."""

    start: AwareTime
    end: AwareTime


class Provenance(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Why a command was given: inputs, rule, configuration and (if a person acted) who."""

    rule: Identifier
    rule_version: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    config_checksum: Sha256Hex
    input_event_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=1000)] = []
    input_window: TimeWindow | None = None
    operator: Identifier | None = None
    reason: ShortText | None = None


class TimingPlanCommand(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False, tag="timing_plan", tag_field="kind"):
    """Run a timing: cycle and offset (seconds) and a green time per stage (seconds)."""

    plan_id: Annotated[int, msgspec.Meta(ge=0, le=65_535)]
    cycle_s: Annotated[float, msgspec.Meta(gt=0.0, le=600.0)]
    offset_s: Annotated[float, msgspec.Meta(ge=0.0, le=600.0)]
    stage_greens_s: Annotated[list[Annotated[float, msgspec.Meta(ge=0.0, le=600.0)]], msgspec.Meta(min_length=1, max_length=16)]


class VmsMessageCommand(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False, tag="vms_message", tag_field="kind"):
    """Show pages of text lines on a board for ``duration_s`` seconds at a priority (1 = highest)."""

    pages: Annotated[
        list[Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=8)]],
        msgspec.Meta(min_length=1, max_length=8),
    ]
    priority: Annotated[int, msgspec.Meta(ge=1, le=10)]
    duration_s: DurationSeconds


class ModeChangeCommand(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False, tag="mode_change", tag_field="kind"):
    """Switch a controller's control mode."""

    mode: ControlMode


class ResetFaultCommand(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False, tag="reset_fault", tag_field="kind"):
    """Clear a controller's latched conflict fault and restart its sequence (after an on-site check)."""


class VmsBlankCommand(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False, tag="vms_blank", tag_field="kind"):
    """Take down the message ``message_id`` from a board (it shows nothing else lalin did not send)."""

    message_id: Identifier


CommandBody = TimingPlanCommand | VmsMessageCommand | ModeChangeCommand | ResetFaultCommand | VmsBlankCommand


class CommandIssued(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """A command sent to a device (controller or VMS board), with its provenance."""

    command_id: uuid.UUID
    target: Identifier
    command: CommandBody
    provenance: Provenance


class CommandOutcome(enum.StrEnum):
    """How a command ended: exactly one of these per command."""

    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"


class CommandAcknowledged(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """The end of a command at the device: acknowledged (read back), rejected or timed out."""

    command_id: uuid.UUID
    target: Identifier
    outcome: CommandOutcome
    detail: ShortText = ""


class OperatorActed(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """A person did something (override, acknowledge an alarm, approve); a reason is required."""

    operator: Identifier
    action: Identifier
    target: Identifier
    reason: Reason
    detail: Annotated[dict[Identifier, ShortText], msgspec.Meta(max_length=32)] = {}


class SequenceAnomalyKind(enum.StrEnum):
    """What broke a stream's sequence numbers."""

    GAP = "gap"  # numbers were skipped: events are missing
    LATE = "late"  # a number inside an open gap arrived after all
    RESET = "reset"  # the source restarted at 1
    REGRESSION = "regression"  # a number at or below one already archived, with a new event id


class SequenceAnomalyDetected(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """lalin found a hole or a jump in a stream's per-source sequence numbers."""

    stream: Annotated[str, msgspec.Meta(max_length=300)]
    kind: SequenceAnomalyKind
    expected_seq: Sequence
    received_seq: Sequence
    missing_count: Annotated[int, msgspec.Meta(ge=0, le=2**62)]


class BrokerRestartDetected(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """The Kafka broker lost its log (a restart of a memory-only broker, or a wiped cluster).

    Events acknowledged by the old broker after ``at_risk_from`` and not archived may be
    lost; per-stream ``SequenceAnomalyDetected`` events name exactly which.
    """

    old_epoch: Annotated[str, msgspec.Meta(max_length=64)]
    new_epoch: Annotated[str, msgspec.Meta(max_length=64)]
    last_confirmed_at: AwareTime
    detected_at: AwareTime
    at_risk_from: AwareTime


# --- batched detector counts (one event per controller and count interval) -------------------
class DetectorReading(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One detector's count in a :class:`DetectorsCounted` batch (same meaning as :class:`DetectorCounted`)."""

    detector_id: Identifier
    volume: VolumeByClass
    occupancy: Fraction
    mean_speed_kmh: SpeedKmh | None = None
    lane: Identifier | None = None


class DetectorsCounted(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """Every detector of one controller over the same ``interval_s`` seconds ending at event time.

    A controller reports all its lanes per interval in one event (the message granularity of the
    closed loop): one envelope, one decode, one fold call for up to 64 lane readings.
    """

    controller_id: Identifier
    interval_s: IntervalSeconds
    readings: Annotated[list[DetectorReading], msgspec.Meta(min_length=1, max_length=64)]


# --- the controllers' high-resolution event logs (signal performance measures) ----------------
class EventCode(enum.IntEnum):
    """The Indiana high-resolution event codes lalin's controllers log (docs/modbus-map.md, "The event log")."""

    PHASE_BEGIN_GREEN = 1
    PHASE_BEGIN_YELLOW_CLEARANCE = 8
    PHASE_BEGIN_RED_CLEARANCE = 10
    PEDESTRIAN_BEGIN_WALK = 21
    PEDESTRIAN_BEGIN_CLEARANCE = 22
    PEDESTRIAN_BEGIN_SOLID_DONT_WALK = 23
    DETECTOR_OFF = 81
    DETECTOR_ON = 82


class LoggedEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One entry of a controller's event log: its sequence number in the log, the Indiana code, what it is about
    (a signal group id for codes 1-23, a detector id for 81 and 82) and when it happened (the controller's log
    clock, related to lalin's clock when read)."""

    seq: Annotated[int, msgspec.Meta(ge=1, le=2**32 - 1)]
    code: Annotated[int, msgspec.Meta(ge=0, le=255)]
    param: Identifier
    at: AwareTime


class ControllerEventsLogged(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """Entries of one controller's high-resolution event log, read since the previous batch, in log order.

    Sequence numbers restart at 1 when the controller restarts (``boot`` changes); a reader
    keeps one copy of each (controller, boot, seq). ``lost`` entries, just before the first
    one here, were overwritten in the controller's ring before lalin read them (also reported as
    a ``ControllerFaulted`` notice of kind ``event_log``).
    """

    controller_id: Identifier
    boot: Annotated[int, msgspec.Meta(ge=0, le=65_535)]
    entries: Annotated[list[LoggedEvent], msgspec.Meta(min_length=1, max_length=256)]
    lost: Annotated[int, msgspec.Meta(ge=0, le=2**32)] = 0


# --- traffic state (the fold's output: one summary per intersection and closed window) ----------
class DetectorHealth(enum.StrEnum):
    """What the fold concludes about a detector from its recent readings."""

    OK = "ok"
    NO_COUNTS = "no_counts"  # silent while the rest of the intersection counts
    STUCK_ON = "stuck_on"  # occupied (almost) all the time, minute after minute
    CHATTER = "chatter"  # more pulses than vehicles can make
    BAD_DATA = "bad_data"  # its readings were refused (dead-lettered)
    NO_REPORTS = "no_reports"  # nothing received for it (the controller or the link is down)


class DetectorStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A detector whose health is not ``ok``, and since when."""

    detector_id: Identifier
    health: DetectorHealth
    since: AwareTime


class MovementMeasure(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One signalised movement (lane group) in the closed 1-min window and the 5-min hopping window.

    ``flow_pcu_h`` and ``degree_of_saturation`` are over the 5-min window (None when no healthy
    detector measures the movement, or for the degree of saturation when the running timing is
    unknown); vehicle counts include substitutes for unhealthy lanes (healthy lanes' mean).
    """

    movement: Identifier
    lanes_measured: Annotated[int, msgspec.Meta(ge=0, le=16)]
    lanes_total: Annotated[int, msgspec.Meta(ge=1, le=16)]
    volume_1min: VolumeByClass
    volume_5min: VolumeByClass
    flow_pcu_h: Annotated[float, msgspec.Meta(ge=0.0, le=100_000.0)] | None
    occupancy: Fraction | None  # mean over the 1-min window and the measured lanes
    mean_speed_kmh: SpeedKmh | None = None
    degree_of_saturation: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)] | None = None


class ApproachMeasure(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One approach as its camera saw it in the closed 1-min window (None fields: no camera report)."""

    approach: Identifier
    counts_1min: VolumeByClass | None = None
    queue_length_m: LengthMetres | None = None  # the longest queue reported in the window
    incident: Incident | None = None


class StageMeasure(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A stage's degree of saturation (its most saturated movement, 5-min window) at the running timing."""

    stage: Identifier
    degree_of_saturation: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)] | None


class RunningTiming(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """The timing a controller last reported running (seconds; greens in sequence order)."""

    plan_checksum: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{8}$")] | None
    cycle_s: DurationSeconds
    offset_s: DurationSeconds | None
    stage_greens_s: Annotated[list[DurationSeconds], msgspec.Meta(max_length=16)] | None


class RejectedInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """An input the fold refused (dead-lettered): where it was, the detector it named (if known) and when."""

    ref: Annotated[str, msgspec.Meta(max_length=200)]  # broker epoch/topic/partition/offset of the record
    reason: Identifier
    detector_id: Identifier | None = None
    at: AwareTime | None = None  # the time the fold counted it at (the record's event time, else stream time)


class TrafficMeasured(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """The traffic state of one intersection for a closed 1-min window (and the 5-min window ending with it).

    Emitted by the fold when event time passes the window's end plus the grace period. It
    names the events it folded since the previous summary (``input_event_ids``), so a replay
    re-folds exactly those and must reach the same summary; events for windows already closed
    count as ``late_events`` (they stay in the archive, not in the measures).
    """

    intersection_id: Identifier
    corridor: Annotated[str, msgspec.Meta(max_length=64)] | None
    window: TimeWindow
    window_5min: TimeWindow
    movements: Annotated[list[MovementMeasure], msgspec.Meta(max_length=32)]
    approaches: Annotated[list[ApproachMeasure], msgspec.Meta(max_length=8)]
    stages: Annotated[list[StageMeasure], msgspec.Meta(max_length=16)]
    detectors_unhealthy: Annotated[list[DetectorStatus], msgspec.Meta(max_length=64)]
    detectors_total: Annotated[int, msgspec.Meta(ge=0, le=64)]
    controller_mode: ControlMode | None
    controller_reachable: bool
    running: RunningTiming | None
    faults_active: Annotated[list[FaultKind], msgspec.Meta(max_length=16)]
    late_events: Annotated[int, msgspec.Meta(ge=0, le=2**31)]
    rejected_inputs: Annotated[list[RejectedInput], msgspec.Meta(max_length=1000)]
    input_event_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=5000)]
    inputs_uncited: Annotated[int, msgspec.Meta(ge=0, le=2**31)] = 0  # inputs beyond the 5,000 cited (a flood)


# --- automatic VMS (the policy's evaluations: why each board shows what it shows) -------------
CauseKey = Annotated[str, msgspec.Meta(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.:\-/@]+$")]
VmsPages = Annotated[
    list[Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=8)]],
    msgspec.Meta(max_length=8),
]


class VmsAction(enum.StrEnum):
    """What an evaluation did on a board."""

    NONE = "none"  # nothing to show, nothing shown
    KEEP = "keep"  # the message stays
    SHOW = "show"  # a new message
    UPDATE = "update"  # the same cause, new text (after the minimum display time)
    REFRESH = "refresh"  # the same message again before the board's hold runs out
    RETRY = "retry"  # the same message again: not confirmed on the board
    BLANK = "blank"  # the cause ended: taken down
    OUT_OF_USE = "out_of_use"  # the board has a fault: nothing sent to it


class VmsCandidate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A message a rule proposed for a board, and what became of it (``note``)."""

    cause: CauseKey
    category: Identifier
    priority: Annotated[int, msgspec.Meta(ge=1, le=10)]
    note: ShortText = ""


class VmsBoardDecision(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One board after an evaluation: what lalin keeps on it (cause, text, since when, the message id) and why."""

    board_id: Identifier
    action: VmsAction
    why: ShortText
    cause: CauseKey | None = None
    category: Identifier | None = None
    priority: Annotated[int, msgspec.Meta(ge=1, le=10)] | None = None
    pages: VmsPages = []
    since: AwareTime | None = None
    message_id: uuid.UUID | None = None
    candidates: Annotated[list[VmsCandidate], msgspec.Meta(max_length=64)] = []


class VmsCauseStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A cause the policy tracks: whether it is live, since when, the values that make it, the boards it is on."""

    cause: CauseKey
    rule: Identifier
    category: Identifier
    active: bool
    since: AwareTime | None
    evidence: Annotated[dict[Identifier, ShortText], msgspec.Meta(max_length=32)]
    boards: Annotated[list[Identifier], msgspec.Meta(max_length=64)]
    input_event_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=64)] = []


class VmsEvaluated(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """One evaluation of the automatic-VMS policy at ``at``: every board's decision, the causes, the commands issued.

    It cites the events folded since the previous evaluation (``input_event_ids``), so a replay
    folds exactly those and must reach the same evaluation and the same commands.
    """

    at: AwareTime
    evaluation: Annotated[int, msgspec.Meta(ge=1, le=2**62)]
    config_checksum: Sha256Hex
    rule_version: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    boards: Annotated[list[VmsBoardDecision], msgspec.Meta(max_length=256)]
    causes: Annotated[list[VmsCauseStatus], msgspec.Meta(max_length=1000)]
    commands: Annotated[list[uuid.UUID], msgspec.Meta(max_length=1000)]
    problems: Annotated[list[ShortText], msgspec.Meta(max_length=256)]
    input_event_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=5000)]


# --- the plan workflow (issue 7): every step a person takes on a signal plan -----------------------------
PlanVersion = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class PlanProposed(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """An engineer proposes a new version of a junction's plan: the whole plan (canonical JSON), what it changes
    from the version deployed when it was written (``base_version``), and why. It passed the safety check."""

    proposal_id: uuid.UUID
    plan_id: Identifier
    version: PlanVersion
    base_version: PlanVersion
    base_checksum: Sha256Hex
    checksum: Sha256Hex
    safety_checksum: Sha256Hex
    document: Annotated[str, msgspec.Meta(min_length=2, max_length=48_000)]
    author: Identifier
    reason: Reason
    changes: Annotated[list[ShortText], msgspec.Meta(max_length=64)] = []


class ReviewDecision(enum.StrEnum):
    """A second engineer's decision on a proposal."""

    APPROVED = "approved"
    REJECTED = "rejected"


class PlanReviewed(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """A second person approved (which deploys it) or rejected a proposal, with a reason."""

    proposal_id: uuid.UUID
    plan_id: Identifier
    reviewer: Identifier
    decision: ReviewDecision
    reason: Reason


class PlanDeployed(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """An approved version became the junction's plan; the timing its schedule runs now went out as ``command_id``
    (None when the schedule runs flash now: nothing is sent). ``hold``: adaptive timings are refused at the junction
    until the hold is released."""

    proposal_id: uuid.UUID
    plan_id: Identifier
    version: PlanVersion
    checksum: Sha256Hex
    timing: Identifier
    command_id: uuid.UUID | None
    hold: bool
    operator: Identifier


class PlanTimingScheduled(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """The deployed version's schedule at a held junction moved to ``timing`` (its time-of-day entry began, or
    ``flash``), sent as ``command_id`` (the timing, or a change to flash)."""

    plan_id: Identifier
    version: PlanVersion
    timing: Identifier
    command_id: uuid.UUID


class PlanHoldReleased(Payload, frozen=True, forbid_unknown_fields=True, gc=False):
    """A person ended the hold on a deployed timing: the controller is handed back to its own time-of-day plan
    by ``command_id`` (None in events recorded before it was sent), and the adaptive control may command it
    again."""

    plan_id: Identifier
    version: PlanVersion
    operator: Identifier
    reason: Reason
    command_id: uuid.UUID | None = None
