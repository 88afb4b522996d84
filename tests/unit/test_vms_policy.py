"""The automatic-VMS policy (pure): scenarios on the demo network and property tests over random
sequences of traffic state, camera incidents, board faults, command outcomes and operator orders."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controllers.envelope import Envelope, make_event
from controllers.errors import ConfigurationError
from controllers.payloads import (
    ApproachMeasure,
    CommandAcknowledged,
    CommandIssued,
    CommandOutcome,
    ControlMode,
    DetectorHealth,
    DetectorStatus,
    FaultKind,
    Incident,
    IncidentKind,
    MovementMeasure,
    OperatorActed,
    Payload,
    RunningTiming,
    Severity,
    TimeWindow,
    TrafficMeasured,
    VmsAction,
    VmsBlankCommand,
    VmsDisplayReported,
    VmsEvaluated,
    VmsFaulted,
    VmsFaultKind,
    VmsMessageCommand,
    VmsStatus,
    VolumeByClass,
)
from controllers.plan import Plan
from controllers.vms_config import VmsPolicyConfig
from controllers.vms_policy import CANCEL_ACTION, SEND_ACTION, VmsNetwork, VmsPolicy
from controllers.vms_text import fit_problem, render
from infra.vms_catalogue import check_policy, load_policy, vms_checksum, vms_network

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # 08:00 WITA
NETWORK = vms_network()
POLICY = load_policy()
CHECKSUM = vms_checksum(POLICY, NETWORK)
BOARDS = {b.id: b for b in NETWORK.boards}


class Feed:
    """Builds envelopes with per-source sequence numbers."""

    def __init__(self) -> None:
        self.seq: dict[str, int] = {}

    def event(self, payload: Payload, at: datetime, key: str, source: str) -> Envelope:
        self.seq[source] = self.seq.get(source, 0) + 1
        return make_event(payload, event_id=uuid.uuid4(), event_time=at, ingest_time=at, source=source, key=key,
                          seq=self.seq[source])


def summary(junction: str, window_end: datetime, *, x: float = 0.5, queue_m: float | None = 20.0,
            incident: tuple[str, IncidentKind, float] | None = None, unhealthy: Sequence[str] = (),
            mode: ControlMode = ControlMode.CENTRAL, reachable: bool = True, faults: Sequence[FaultKind] = ()) -> TrafficMeasured:
    """A summary of ``junction``'s window ending at ``window_end``: every movement at degree of saturation ``x``."""
    plan = NETWORK.plans[junction]
    timing = plan.default_timing
    assert timing is not None
    movements = [MovementMeasure(movement=m.id, lanes_measured=m.lanes, lanes_total=m.lanes, volume_1min=VolumeByClass(car=10),
                                 volume_5min=VolumeByClass(car=50), flow_pcu_h=600.0, occupancy=0.2, mean_speed_kmh=25.0,
                                 degree_of_saturation=x) for m in plan.movements if not m.free_flow]
    approaches = [ApproachMeasure(approach=a.id, counts_1min=VolumeByClass(car=10), queue_length_m=queue_m,
                                  incident=Incident(kind=incident[1], confidence=incident[2])
                                  if incident is not None and incident[0] == a.id else None) for a in plan.approaches]
    window = TimeWindow(start=window_end - timedelta(seconds=60), end=window_end)
    return TrafficMeasured(
        intersection_id=junction, corridor="Jl. Sunset Road", window=window,
        window_5min=TimeWindow(start=window_end - timedelta(seconds=300), end=window_end), movements=movements,
        approaches=approaches, stages=[], detectors_unhealthy=[DetectorStatus(detector_id=d, health=DetectorHealth.STUCK_ON,
                                                                             since=window_end) for d in unhealthy],
        detectors_total=8, controller_mode=mode, controller_reachable=reachable,
        running=RunningTiming(plan_checksum=None, cycle_s=timing.cycle_s, offset_s=timing.offset_s,
                              stage_greens_s=[timing.stage_greens_s[s] for s in plan.sequence]),
        faults_active=list(faults), late_events=0, rejected_inputs=[], input_event_ids=[])


class Harness:
    """A policy with a feed; ``step`` folds events and evaluates at a time."""

    def __init__(self, config: VmsPolicyConfig = POLICY, network: VmsNetwork = NETWORK) -> None:
        self.policy = VmsPolicy(config, network, CHECKSUM)
        self.feed = Feed()
        self.records: list[VmsEvaluated] = []
        self.commands: list[CommandIssued] = []
        self.events: dict[uuid.UUID, Envelope] = {}

    def step(self, at: datetime, *payloads: tuple[Payload, str]) -> tuple[VmsEvaluated, list[CommandIssued]]:
        for payload, key in payloads:
            event = self.feed.event(payload, at, key, f"test:{key}")
            self.events[event.event_id] = event
            self.policy.apply(event)
        record, commands = self.policy.evaluate(at)
        self.records.append(record)
        self.commands += commands
        return record, commands

    def confirm(self, at: datetime, commands: Sequence[CommandIssued]) -> list[tuple[Payload, str]]:
        """The board reports and acknowledgements of boards that carry out ``commands``."""
        out: list[tuple[Payload, str]] = []
        for c in commands:
            body = c.command
            if isinstance(body, VmsMessageCommand):
                out.append((VmsDisplayReported(board_id=c.target, status=VmsStatus.DISPLAYING, pages=body.pages,
                                               message_id=str(c.command_id), priority=body.priority), c.target))
            elif isinstance(body, VmsBlankCommand):
                out.append((VmsDisplayReported(board_id=c.target, status=VmsStatus.BLANK, pages=[]), c.target))
            out.append((CommandAcknowledged(command_id=c.command_id, target=c.target, outcome=CommandOutcome.ACKNOWLEDGED),
                        c.target))
        return out


def board(record: VmsEvaluated, board_id: str):
    return next(b for b in record.boards if b.board_id == board_id)


def test_the_policy_judges_movements_by_their_stop_line_loops_not_the_advance_loops() -> None:
    # an unhealthy advance loop (a queue standing on it, say) must not withhold a direction's evidence
    assert NETWORK.detectors["K01"]["N_T"] == ["K01-N_T-1", "K01-N_T-2"]
    assert NETWORK.detectors["K03"]["S_TR"] == ["K03-S_TR-1", "K03-S_TR-2"]
    assert not [d for by_movement in NETWORK.detectors.values() for ids in by_movement.values() for d in ids
                if d.rsplit("-", 1)[1].startswith("A")]


def test_the_shipped_policy_fits_every_board_it_can_address() -> None:
    check_policy(POLICY, NETWORK)
    words = list(POLICY.words.values())
    about_junctions = ["incident", "signals_out", "congestion", "travel_time"]
    for b in NETWORK.boards:
        for junction in b.downstream:
            place = POLICY.places[junction]
            for w in words:
                params = {"what": (w.id, w.en), "place": (place.id, place.en), "dest": (place.id, place.en),
                          "minutes": ("59", "59")}
                for name in about_junctions:
                    pages, problem = render(POLICY.templates[name], params, b, POLICY.display.page_time_s)
                    assert pages is not None, f"{name} on {b.id} for {junction} / {w.id}: {problem}"
                    assert len(pages) == 2 and fit_problem(b, pages) is None
    for entry in POLICY.calendar:
        words_of = POLICY.words[entry.kind]
        params = {"what": (words_of.id, words_of.en), **{k: (v, v) for k, v in entry.params.items()}}
        for b in NETWORK.boards:
            if b.road in entry.roads or b.id in entry.boards:
                pages, problem = render(POLICY.templates[entry.template], params, b, POLICY.display.page_time_s)
                assert pages is not None and len(pages) == 2, f"{entry.id} on {b.id}: {problem}"


def test_the_policy_check_names_texts_that_cannot_be_shown() -> None:
    data = POLICY.model_dump(mode="json")
    data["calendar"][0]["params"]["day_id"] = "SEMBILAN MARET TAHUN DEPAN"  # too long for every wording on 3x18 boards
    data["templates"]["congestion"]["variants"][0]["id"][1] = "DI {junction}"  # a placeholder no rule gives
    with pytest.raises(ConfigurationError) as err:
        check_policy(VmsPolicyConfig.model_validate(data), NETWORK)
    assert "calendar nyepi-1949 on vms-sunset-01: no wording fits" in str(err.value)
    assert "template congestion: unknown placeholder {junction}" in str(err.value)


def test_an_incident_goes_to_the_nearest_upstream_board_moves_when_it_fails_and_clears() -> None:
    h = Harness()
    t = T0
    stalled = ("S", IncidentKind.STALLED_VEHICLE, 0.9)  # K03's southern approach: northbound (outbound) traffic
    record, commands = h.step(t, (summary("K03", t, incident=stalled), "Jl. Sunset Road"))
    assert [c.target for c in commands if isinstance(c.command, VmsMessageCommand)] == ["vms-sunset-03"]
    shown = board(record, "vms-sunset-03")
    assert shown.cause == "incident:K03:S" and shown.priority == POLICY.priorities.incident
    assert shown.pages[0] == ["KENDARAAN MOGOK", "DI SP GATSU BARAT", "HATI-HATI"]
    assert shown.pages[1] == ["STALLED VEHICLE", "AT GATSU BARAT JCT", "DRIVE CAREFULLY"]
    command = commands[0]
    assert command.provenance.rule == "vms.incident_blocking" and command.provenance.config_checksum == CHECKSUM
    assert VmsPolicy.evaluation_id(1, t) in command.provenance.input_event_ids
    assert h.policy.state.summary_ids["K03"] in command.provenance.input_event_ids
    southbound = board(record, "vms-sunset-02")
    assert southbound.cause is None, "a northbound incident is not shown to southbound traffic"
    assert any(c.note.startswith("not needed here") for c in board(record, "vms-sunset-01").candidates)
    # the board confirms; then it stops answering: the message moves to the next board upstream
    t += timedelta(seconds=5)
    h.step(t, *h.confirm(t, commands))
    t += timedelta(seconds=20)
    lost = VmsFaulted(board_id="vms-sunset-03", fault=VmsFaultKind.COMMS_LOST, severity=Severity.CRITICAL, active=True)
    record, commands = h.step(t, (lost, "vms-sunset-03"), (summary("K03", t, incident=stalled), "Jl. Sunset Road"))
    assert board(record, "vms-sunset-03").action is VmsAction.OUT_OF_USE
    assert any("vms-sunset-03 out of use" in p for p in record.problems)
    assert [c.target for c in commands] == ["vms-sunset-01"]
    assert board(record, "vms-sunset-01").cause == "incident:K03:S"
    # the camera stops reporting it: live for clear_after_s more (and the minimum display time), then blanked
    t += timedelta(seconds=5)
    h.step(t, *h.confirm(t, commands))
    rule = POLICY.incidents[1]
    t += timedelta(seconds=rule.clear_after_s - 10)
    record, commands = h.step(t, (summary("K03", t), "Jl. Sunset Road"))
    assert board(record, "vms-sunset-01").cause == "incident:K03:S" and commands == []
    t += timedelta(seconds=POLICY.display.min_display_s)
    record, commands = h.step(t, (summary("K03", t), "Jl. Sunset Road"))
    assert board(record, "vms-sunset-01").action is VmsAction.BLANK
    assert [(c.target, type(c.command)) for c in commands] == [("vms-sunset-01", VmsBlankCommand)]


def test_congestion_needs_persistence_healthy_detectors_and_clears_with_hysteresis() -> None:
    rule = POLICY.congestion
    assert rule is not None
    h = Harness()
    t = T0
    record, commands = h.step(t, (summary("K05", t, x=1.2), "c"))
    assert not any(b.cause and b.cause.startswith("congestion") for b in record.boards)
    assert any(c.cause == "congestion:K05:outbound" and not c.active for c in record.causes), "pending, not yet live"
    # a stuck detector on the northbound movement: its X no longer counts, the cause does not go live
    detector = NETWORK.detectors["K05"]["S_TR"][0]
    t += timedelta(seconds=rule.on_after_s)
    record, _ = h.step(t, (summary("K05", t, x=1.2, queue_m=30, unhealthy=[detector]), "c"))
    assert not any(c.cause == "congestion:K05:outbound" and c.active for c in record.causes)
    # healthy again and still saturated for on_after_s: live, on the nearest outbound board with K05 downstream
    record, _ = h.step(t, (summary("K05", t + timedelta(seconds=1), x=1.2), "c"))
    t += timedelta(seconds=rule.on_after_s + 1)
    record, commands = h.step(t, (summary("K05", t, x=1.2), "c"))
    shown = board(record, "vms-sunset-03")
    assert shown.cause == "congestion:K05:outbound" and shown.pages[0][0] == "MACET"
    h.step(t, *h.confirm(t, commands))
    # below the on threshold but above the off one: stays; below every off threshold for off_after_s: taken down
    t += timedelta(seconds=60)
    record, _ = h.step(t, (summary("K05", t, x=0.9), "c"))
    assert board(record, "vms-sunset-03").cause == "congestion:K05:outbound"
    t += timedelta(seconds=60)
    h.step(t, (summary("K05", t, x=0.5, queue_m=10), "c"))
    t += timedelta(seconds=rule.off_after_s - 1)
    record, _ = h.step(t, (summary("K05", t, x=0.5, queue_m=10), "c"))
    assert board(record, "vms-sunset-03").cause == "congestion:K05:outbound"
    t += timedelta(seconds=2)
    record, commands = h.step(t, (summary("K05", t, x=0.5, queue_m=10), "c"))
    assert board(record, "vms-sunset-03").action in (VmsAction.BLANK, VmsAction.SHOW)
    assert board(record, "vms-sunset-03").cause != "congestion:K05:outbound"


def all_junctions(t: datetime, **kwargs: object) -> list[tuple[Payload, str]]:
    return [(summary(j, t, **kwargs), "c") for j in sorted(NETWORK.plans)]  # type: ignore[arg-type]


def test_travel_time_is_shown_only_from_healthy_detectors_and_changes_by_whole_steps() -> None:
    h = Harness()
    t = T0
    record, commands = h.step(t, *all_junctions(t, x=0.6))
    shown = board(record, "vms-sunset-01")
    assert shown.cause == "travel_time:vms-sunset-01" and shown.pages[0][:2] == ["WAKTU TEMPUH", "KE SP GATSU BARAT"]
    cause = next(c for c in record.causes if c.cause == "travel_time:vms-sunset-01")
    minutes = int(cause.evidence["minutes"])
    assert shown.pages[0][2] == f"{minutes} MENIT" and shown.pages[1][2] == f"{minutes} MIN"
    cruise_s = (4100 + 300) / (40 / 3.6)
    assert float(cause.evidence["cruise_s"]) == pytest.approx(cruise_s, abs=1)
    assert minutes * 60 >= cruise_s
    h.step(t, *h.confirm(t, commands))
    # a stuck detector on the way (K02 northbound): the time is withheld and the message taken down after its minimum
    detector = NETWORK.detectors["K02"]["S_TR"][0]
    t += timedelta(seconds=POLICY.display.min_display_s)
    payloads = [(summary(j, t, x=0.6, unhealthy=[detector] if j == "K02" else []), "c") for j in sorted(NETWORK.plans)]
    record, commands = h.step(t, *payloads)
    assert not any(c.cause == "travel_time:vms-sunset-01" for c in record.causes)
    assert board(record, "vms-sunset-01").action is VmsAction.BLANK
    # vms-sunset-03 (K05 and K03 ahead) still has its time: K02 is behind it
    assert board(record, "vms-sunset-03").cause == "travel_time:vms-sunset-03"


def test_a_lower_priority_message_follows_a_blank_and_an_operator_order_outranks_until_it_expires() -> None:
    h = Harness()
    t = T0
    record, commands = h.step(t, *all_junctions(t, x=0.6))
    h.step(t, *h.confirm(t, commands))
    until = t + timedelta(minutes=10)
    order = OperatorActed(operator="made", action=SEND_ACTION, target="vms-sunset-02", reason="upacara di Jl. Sunset",
                          detail={"text": "UPACARA ADAT/JALAN PELAN|CEREMONY/SLOW DOWN", "until": until.isoformat()})
    t += timedelta(seconds=10)
    record, commands = h.step(t, (order, "vms-sunset-02"))
    shown = board(record, "vms-sunset-02")
    assert shown.category == "operator" and shown.priority == 1
    assert shown.pages == [["UPACARA ADAT", "JALAN PELAN"], ["CEREMONY", "SLOW DOWN"]]
    sent = [c for c in commands if c.target == "vms-sunset-02"]
    assert isinstance(sent[-1].command, VmsMessageCommand) and sent[-1].provenance.operator == "made"
    assert sent[-1].command.duration_s == pytest.approx(600 - 10)
    h.step(t, *h.confirm(t, commands))
    # when it expires the automatic message returns: it has a lower priority, so a blank goes first
    t = until + timedelta(seconds=1)
    record, commands = h.step(t, *all_junctions(t, x=0.6))
    to_board = [c for c in commands if c.target == "vms-sunset-02"]
    assert [type(c.command) for c in to_board] == [VmsBlankCommand, VmsMessageCommand]
    assert board(record, "vms-sunset-02").cause == "travel_time:vms-sunset-02"
    # a cancelled order ends at once
    h.step(t, *h.confirm(t, commands))
    order2 = msgspec.structs.replace(order, detail={"text": "TES", "until": (t + timedelta(hours=1)).isoformat()})
    record, _ = h.step(t, (order2, "vms-sunset-02"))
    assert board(record, "vms-sunset-02").category == "operator"
    cancel = OperatorActed(operator="made", action=CANCEL_ACTION, target="vms-sunset-02", reason="selesai, tes berakhir")
    record, _ = h.step(t + timedelta(seconds=5), (cancel, "vms-sunset-02"))
    assert board(record, "vms-sunset-02").cause == "travel_time:vms-sunset-02"


def test_an_unconfirmed_message_is_sent_again_then_moves_on() -> None:
    rules = POLICY.display
    h = Harness()
    t = T0
    stalled = ("S", IncidentKind.CRASH, 0.95)
    _, commands = h.step(t, (summary("K03", t, incident=stalled), "c"))
    first = next(c for c in commands if c.target == "vms-sunset-03")
    for attempt in range(2, rules.max_attempts + 1):
        timed_out = CommandAcknowledged(command_id=first.command_id, target="vms-sunset-03", outcome=CommandOutcome.TIMED_OUT,
                                        detail="no confirmation within 10 s")
        t += timedelta(seconds=rules.retry_after_s)
        record, commands = h.step(t, (timed_out, "vms-sunset-03"), (summary("K03", t, incident=stalled), "c"))
        assert board(record, "vms-sunset-03").action is VmsAction.RETRY, attempt
        first = next(c for c in commands if c.target == "vms-sunset-03")
        assert first.command == commands[0].command
    timed_out = CommandAcknowledged(command_id=first.command_id, target="vms-sunset-03", outcome=CommandOutcome.TIMED_OUT)
    t += timedelta(seconds=rules.retry_after_s)
    record, commands = h.step(t, (timed_out, "vms-sunset-03"), (summary("K03", t, incident=stalled), "c"))
    assert any(f"not confirmed after {rules.max_attempts} sends" in p for p in record.problems)
    assert [c.target for c in commands] == ["vms-sunset-01"]
    assert any("failed for it" in c.note for c in board(record, "vms-sunset-03").candidates)


def test_signals_out_is_a_safety_message_to_both_directions() -> None:
    h = Harness()
    t = T0
    record, commands = h.step(t, (summary("K02", t, mode=ControlMode.FLASH), "c"))
    targets = sorted(c.target for c in commands)
    assert targets == ["vms-sunset-01", "vms-sunset-02"]  # the nearest boards with K02 ahead, each way
    assert all(board(record, b).priority == POLICY.priorities.safety for b in targets)


def test_the_calendar_announces_nyepi_and_ceremonies_on_their_roads_from_the_announcement_on() -> None:
    nyepi = next(e for e in POLICY.calendar if e.kind == "nyepi")
    melasti = next(e for e in POLICY.calendar if e.kind == "ceremony")
    h = Harness()
    record, commands = h.step(melasti.announce_from - timedelta(seconds=1))
    assert commands == [] and all(b.cause is None for b in record.boards)
    record, commands = h.step(melasti.announce_from)
    bypass = {b.id for b in NETWORK.boards if b.road in melasti.roads}
    assert {c.target for c in commands} == bypass and len(bypass) == 2
    pages = board(record, sorted(bypass)[0]).pages
    assert pages == [["UPACARA ADAT MELASTI", "5 MARET 07.00-12.00", "JALAN DIALIHKAN"],
                     ["CEREMONY", "5 MARCH 07.00-12.00", "ROAD DIVERTED"]]
    assert all(board(record, b).priority == POLICY.priorities.closure for b in bypass)
    record, commands = h.step(melasti.end)
    assert {c.target for c in commands} == bypass and all(isinstance(c.command, VmsBlankCommand) for c in commands)
    record, commands = h.step(nyepi.announce_from)
    assert {c.target for c in commands} == {b.id for b in NETWORK.boards}  # every board stands on one of its roads
    assert board(record, "vms-sunset-01").pages[0] == ["HARI RAYA NYEPI", "9 MARET 06.00", "JALAN DITUTUP"]


# --- properties ----------------------------------------------------------------------------------
JUNCTIONS = sorted(NETWORK.plans)
BOARD_IDS = sorted(BOARDS)

step_strategy = st.fixed_dictionaries({
    "dt": st.integers(5, 240),
    "summaries": st.lists(st.tuples(st.sampled_from(JUNCTIONS), st.floats(0.2, 1.5), st.floats(0, 400),
                                    st.none() | st.tuples(st.sampled_from(["N", "S", "E", "W"]),
                                                          st.sampled_from(list(IncidentKind)), st.floats(0.3, 1.0)),
                                    st.booleans(),
                                    st.sampled_from([ControlMode.CENTRAL, ControlMode.CENTRAL, ControlMode.FLASH])),
                          max_size=3),
    "fault": st.none() | st.tuples(st.sampled_from(BOARD_IDS), st.sampled_from([VmsFaultKind.COMMS_LOST,
                                                                              VmsFaultKind.POWER_FAILURE]), st.booleans()),
    "outcome": st.sampled_from(["acknowledged", "acknowledged", "timed_out", "rejected", "none"]),
    "order": st.none() | st.tuples(st.sampled_from(BOARD_IDS), st.integers(60, 1200), st.booleans()),
})


def run_sequence(steps: list[dict]) -> Harness:  # type: ignore[type-arg]
    h = Harness()
    t = T0
    pending: list[CommandIssued] = []
    for step in steps:
        t += timedelta(seconds=step["dt"])
        payloads: list[tuple[Payload, str]] = []
        for junction, x, queue, incident, stuck, mode in step["summaries"]:
            plan: Plan = NETWORK.plans[junction]
            detectors = [d for ds in NETWORK.detectors[junction].values() for d in ds][:1] if stuck else []
            approaches = {a.id for a in plan.approaches}
            payloads.append((summary(junction, t, x=x, queue_m=queue, mode=mode, unhealthy=detectors,
                                     incident=incident if incident is not None and incident[0] in approaches else None), "c"))
        if step["fault"] is not None:
            b, kind, active = step["fault"]
            payloads.append((VmsFaulted(board_id=b, fault=kind, severity=Severity.CRITICAL, active=active), b))
        if step["outcome"] == "acknowledged":
            payloads += h.confirm(t, pending)
        elif step["outcome"] != "none":
            payloads += [(CommandAcknowledged(command_id=c.command_id, target=c.target, outcome=CommandOutcome(step["outcome"]),
                                              detail="simulated"), c.target) for c in pending]
        if step["outcome"] != "none":
            pending = []
        if step["order"] is not None:
            b, minutes_s, cancel = step["order"]
            if cancel:
                payloads.append((OperatorActed(operator="op", action=CANCEL_ACTION, target=b, reason="tes selesai"), b))
            else:
                payloads.append((OperatorActed(operator="op", action=SEND_ACTION, target=b, reason="tes operator",
                                               detail={"text": "TES/OPERATOR", "until": (t + timedelta(seconds=minutes_s))
                                                       .isoformat()}), b))
        _, commands = h.step(t, *payloads)
        pending += commands
    return h


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step_strategy, min_size=5, max_size=40))
def test_properties_over_random_sequences(steps: list[dict]) -> None:  # type: ignore[type-arg]
    h = run_sequence(steps)
    min_display = POLICY.display.min_display_s
    # every command fits its board and goes to a board in use
    for record in h.records:
        sent = set(record.commands)
        out_of_use = {b.board_id for b in record.boards if b.action is VmsAction.OUT_OF_USE}
        for c in h.commands:
            if c.command_id in sent:
                assert c.target not in out_of_use
                if isinstance(c.command, VmsMessageCommand):
                    assert fit_problem(BOARDS[c.target], c.command.pages) is None
                    assert 1 <= c.command.priority <= 10
    previous: dict[str, tuple[str | None, list[list[str]], int | None, str | None, datetime]] = {}
    for record in h.records:
        live = {c.cause for c in record.causes if c.active}
        troubled = {b for b in BOARD_IDS if any(p.startswith(b) for p in record.problems)}
        for b in record.boards:
            # every message lalin keeps on a board has a live cause (operator orders included)
            if b.cause is not None:
                assert b.cause in live, (record.at, b)
                offered = [c.priority for c in b.candidates if c.note == "chosen" or c.note.startswith("outranked")]
                # priorities: nothing proposed for this board outranks what it shows
                assert not offered or (b.priority is not None and b.priority <= min(offered)), (record.at, b)
            before = previous.get(b.board_id)
            now = (b.cause, b.pages, b.priority, b.category, record.at)
            if before is not None and (before[0], before[1]) != (b.cause, b.pages):
                since = before[4] if before[0] is None else next(
                    (r.at for r in h.records if r.at <= before[4] and board(r, b.board_id).cause == before[0]
                     and board(r, b.board_id).pages == before[1]), before[4])
                up_s = (record.at - since).total_seconds()
                preempted = b.priority is not None and before[2] is not None and b.priority < before[2]
                if before[0] is not None and up_s < min_display:
                    # a message changes faster than the minimum display time only when a higher priority preempts
                    # it, an operator order ends, or the board fails (out of use, delivery failed)
                    assert preempted or before[3] == "operator" or b.board_id in troubled \
                        or b.action is VmsAction.OUT_OF_USE, (b.board_id, before, now, up_s)
            if b.action is not VmsAction.OUT_OF_USE:
                previous[b.board_id] = now
            else:
                previous.pop(b.board_id, None)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step_strategy, min_size=5, max_size=25))
def test_replaying_the_cited_inputs_reproduces_every_evaluation(steps: list[dict]) -> None:  # type: ignore[type-arg]
    """What a replay does: fold each evaluation's cited inputs (in another order) and evaluate at its instant."""
    h = run_sequence(steps)
    replica = VmsPolicy(POLICY, NETWORK, CHECKSUM)
    for record in h.records:
        for event_id in reversed(record.input_event_ids):
            replica.apply(h.events[event_id])
        again, commands = replica.evaluate(record.at)
        got, want = msgspec.to_builtins(again), msgspec.to_builtins(record)
        assert {k: v for k, v in got.items() if v != want[k]} == {k: v for k, v in want.items() if v != got[k]}
        assert commands == [c for c in h.commands if c.command_id in set(record.commands)]
