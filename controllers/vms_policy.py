"""The automatic-VMS policy as a fold (pure): traffic state, camera incidents, board reports, command
outcomes and operator orders in; at each evaluation, every board's message and the commands to get it
there, with the reasons.

The parts: :mod:`controllers.vms_state` (the state and the fold of the inputs),
:mod:`controllers.vms_causes` (the causes and their hysteresis), :mod:`controllers.vms_evidence`
(direction measures, travel times), :mod:`controllers.vms_text` (texts); this module decides.

Inputs (:meth:`VmsPolicy.apply`, each update commutative, so a batch folds the same in any order):
``TrafficMeasured`` (the latest per junction; camera incidents with the last window that saw
them), ``VmsDisplayReported`` and ``VmsFaulted`` (the latest per board and fault kind by event
time and sequence), ``CommandAcknowledged`` (the outcome of each command) and ``OperatorActed``
(``vms_send`` / ``vms_cancel`` orders).

Evaluation (:meth:`VmsPolicy.evaluate`, at the instant ``at`` passed in; never a clock):

1. Delivery: a message a board refused (rejected) or did not confirm within
   ``max_attempts`` sends moves away from that board (the board is *failed* for that cause for
   ``FAILED_REST_S``, 10 minutes); one not yet confirmed is re-sent after ``retry_after_s``; a board whose
   report shows something other than what lalin keeps on it (a power cycle, a local change) is
   sent it again the same way.
2. Causes, each with hysteresis (a cause, once live, stays live at least ``min_display_s``):
   operator orders (until they expire or are cancelled); camera incidents (live until
   ``clear_after_s`` after the last window that saw them); signals out (a downstream controller
   flashing, dark, unreachable or with a conflict / power fault); congestion (on after
   ``on_after_s`` above an on-threshold, off after ``off_after_s`` below every off-threshold;
   detector values only from healthy detectors); travel time to each board's destination
   (only when every junction on the way is measured by healthy detectors); the calendar
   (closures, ceremonies, Nyepi, announced from ``announce_from``); a default message.
3. Placement: a located cause goes to the boards facing its traffic with its junction
   downstream within ``max_distance_m``, nearest first, skipping boards out of use (an active
   fault of ``unavailable_faults``) or failed for it, ``max_boards`` of them; the text must fit
   the board (:func:`controllers.vms_text.render`).
4. Per board the candidate of highest priority wins (then the nearest, then the cause key);
   the message on the board changes only to a higher priority (preemption), or when its cause
   ended or lost the board and it has been up ``min_display_s``; a travel time changes only by
   ``min_change_min``; an automatic message is sent with ``hold_s`` and refreshed before it
   runs out, so a silent lalin leaves no stale message. A message of lower priority than the
   board's current one is preceded by a blank (the board refuses to replace a higher priority).

Every command is a ``CommandIssued`` with provenance (rule, version, configuration checksum,
the summaries or order behind it, the operator); every evaluation is a ``VmsEvaluated`` that
cites its inputs, so a replay that folds each evaluation's inputs and evaluates at its ``at``
reproduces both bit for bit. Times are seconds since the epoch inside the state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from controllers.envelope import Envelope
from controllers.payloads import (
    CommandIssued,
    Provenance,
    VmsAction,
    VmsBlankCommand,
    VmsBoardDecision,
    VmsCandidate,
    VmsCauseStatus,
    VmsEvaluated,
    VmsMessageCommand,
)
from controllers.vms_causes import Candidate, CauseFinder
from controllers.vms_config import BoardSite, VmsPolicyConfig
from controllers.vms_state import (
    CANCEL_ACTION,
    SEND_ACTION,
    Showing,
    VmsFold,
    VmsNetwork,
    VmsState,
)
from controllers.vms_text import TextError, fit_problem, render

__all__ = ["CANCEL_ACTION", "SEND_ACTION", "VmsNetwork", "VmsPolicy", "VmsState"]

VMS_NAMESPACE = uuid.UUID("3c0f7a0e-5b7e-4d55-8f0c-6a1a5e9d2b71")
RULE_VERSION = "1"
FAILED_REST_S = 600.0  # a board failed for a cause is tried again for it after this (s)
STALE_ACK_FACTOR = 4  # no outcome at all after this many retry intervals: treated as not confirmed


@dataclass
class Offer:
    """A candidate rendered for one board."""

    candidate: Candidate
    priority: int
    distance_m: float
    pages: list[list[str]]


def _t(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class VmsPolicy:
    """The policy over a network (mutable state; see the module docstring)."""

    def __init__(self, config: VmsPolicyConfig, network: VmsNetwork, config_checksum: str,
                 state: VmsState | None = None) -> None:
        self.config, self.network, self.config_checksum = config, network, config_checksum
        self.state = state if state is not None else VmsState()
        self._causes = CauseFinder(config, network)

    # --- fold ------------------------------------------------------------------------------
    def apply(self, event: Envelope) -> bool:
        """Fold one event; True when it concerns the policy (it is then cited by the next evaluation)."""
        return VmsFold(self.network, self.state).apply(event)

    # --- evaluate --------------------------------------------------------------------------
    def evaluate(self, at: datetime) -> tuple[VmsEvaluated, list[CommandIssued]]:
        """Decide every board at ``at`` (see the module docstring): the evaluation record and the commands."""
        st = self.state
        at_s = max(at.timestamp(), st.at_s)
        at = _t(at_s)
        st.at_s = at_s
        st.evaluations += 1
        evaluation_id = self.evaluation_id(st.evaluations, at)
        problems: list[str] = []
        in_use = self._in_use(at_s)
        self._delivery(at_s, in_use, problems)
        candidates = self._causes.find(st, at)
        offers, notes, placed = self._place(candidates, in_use, at_s)
        decisions: list[VmsBoardDecision] = []
        commands: list[CommandIssued] = []
        for board in self.network.boards:
            decision, issued = self._decide(board, offers.get(board.id, []), notes.get(board.id, []), in_use, at_s,
                                            evaluation_id, problems)
            decisions.append(decision)
            commands += issued
        causes = [self._cause_status(c, placed.get(c.cause, []), at_s) for c in candidates]
        causes += [VmsCauseStatus(cause=k, rule=k.split(":")[0], category="pending", active=False, since=None,
                                  evidence={"condition_since": _t(t.pending_since_s).isoformat()}, boards=[])
                   for k, t in sorted(st.causes.items()) if not t.on and t.pending_since_s is not None][:100]
        self._prune(at_s, {c.cause for c in candidates})
        record = VmsEvaluated(at=at, evaluation=st.evaluations, config_checksum=self.config_checksum,
                              rule_version=RULE_VERSION, boards=decisions, causes=causes[:1000],
                              commands=[c.command_id for c in commands], problems=[p[:500] for p in problems[:256]],
                              input_event_ids=sorted(st.cited))  # the set folded: any arrival order
        st.cited = []
        return record, commands

    @staticmethod
    def evaluation_id(number: int, at: datetime) -> uuid.UUID:
        """The deterministic event id of evaluation ``number`` at ``at``."""
        return uuid.uuid5(VMS_NAMESPACE, f"VmsEvaluated/{number}/{at.isoformat()}")

    # --- 1. boards in use and delivery -------------------------------------------------------
    def _in_use(self, at_s: float) -> dict[str, str | None]:
        """Board -> None when in use, else why not (its active faults that take it out of use)."""
        out: dict[str, str | None] = {}
        bad = {f.value for f in self.config.display.unavailable_faults}
        for board in self.network.boards:
            active = sorted(k for k, (on, _, _) in self.state.faults.get(board.id, {}).items() if on and k in bad)
            out[board.id] = f"fault {', '.join(active)}" if active else None
        return out

    def _delivery(self, at_s: float, in_use: Mapping[str, str | None], problems: list[str]) -> None:
        st, rules = self.state, self.config.display
        for board_id, showing in list(st.showing.items()):
            if in_use.get(board_id) is not None:
                st.showing.pop(board_id)
                problems.append(f"{board_id} out of use ({in_use[board_id]}): its message {showing.cause} moves to the "
                                "next suitable board")
                continue
            outcome = st.acks.get(str(showing.command_id))
            if outcome is not None and outcome[0] == "rejected":
                self._fail(board_id, showing, at_s, f"refused by the board: {outcome[1]}", problems)
            elif showing.attempt >= rules.max_attempts:
                resend = self._needs_resend(board_id, showing, at_s)
                if resend is not None:
                    self._fail(board_id, showing, at_s, f"not confirmed after {showing.attempt} sends ({resend})", problems)

    def _fail(self, board_id: str, showing: Showing, at_s: float, why: str, problems: list[str]) -> None:
        if showing.category == "operator":
            problems.append(f"{board_id}: operator message {showing.cause} {why}")
        else:
            problems.append(f"{board_id}: {showing.cause} {why}; it moves to the next suitable board")
        self.state.failed.setdefault(board_id, {})[showing.cause] = (at_s, why[:300])
        self.state.showing.pop(board_id)

    def _needs_resend(self, board_id: str, showing: Showing, at_s: float) -> str | None:
        """Why the message lalin keeps on a board must be sent again now, or None."""
        rules = self.config.display
        if at_s - showing.sent_s < rules.retry_after_s:
            return None
        outcome = self.state.acks.get(str(showing.command_id))
        if outcome is None:
            return "no outcome from the board yet" if at_s - showing.sent_s > STALE_ACK_FACTOR * rules.retry_after_s else None
        if outcome[0] == "timed_out":
            return f"not confirmed ({outcome[1][:120]})"
        fb = self.state.feedback.get(board_id)
        if outcome[0] == "acknowledged" and fb is not None and fb.order[0] > showing.sent_s \
                and (fb.status != "displaying" or fb.message_id != str(showing.command_id)):
            return f"the board reports {fb.status} {fb.message_id or ''}".rstrip() + " instead"
        return None

    # --- 3. placement ------------------------------------------------------------------------
    def _place(self, candidates: Iterable[Candidate], in_use: Mapping[str, str | None], at_s: float) -> tuple[
            dict[str, list[Offer]], dict[str, list[VmsCandidate]], dict[str, list[str]]]:
        offers: dict[str, list[Offer]] = {}
        notes: dict[str, list[VmsCandidate]] = {}
        placed: dict[str, list[str]] = {}
        for c in candidates:
            priority = self.config.priorities.of(c.category)
            taken = 0
            for board, distance in self._reach(c):
                if c.junction is not None and taken >= c.max_boards:
                    problem = f"not needed here: on the {c.max_boards} nearest board(s) in use"
                else:
                    pages, problem = self._text_for(c, board, in_use)
                if problem:
                    notes.setdefault(board.id, []).append(VmsCandidate(c.cause, c.category, priority, problem[:500]))
                    continue
                offers.setdefault(board.id, []).append(Offer(c, priority, distance, pages))
                placed.setdefault(c.cause, []).append(board.id)
                taken += 1
        return offers, notes, placed

    def _text_for(self, c: Candidate, board: BoardSite, in_use: Mapping[str, str | None]) -> tuple[list[list[str]], str]:
        """The pages of ``c`` on ``board`` and "", or [] and why it cannot go there (out of use, failed, does not fit)."""
        if in_use.get(board.id) is not None:
            return [], f"board out of use ({in_use[board.id]})"
        failed = self.state.failed.get(board.id, {}).get(c.cause)
        if failed is not None:
            return [], f"this board failed for it: {failed[1]}"
        page_time_s = self.config.display.page_time_s
        if c.pages is not None:
            problem = fit_problem(board, c.pages)
            if problem is None and len(c.pages) > 1 and page_time_s < board.min_page_time_s:
                problem = f"page time {page_time_s:g} s below the board's {board.min_page_time_s:g} s"
            return (c.pages, "") if problem is None else ([], f"does not fit: {problem}")
        assert c.template is not None
        try:
            rendered, why = render(self.config.templates[c.template], c.params, board, page_time_s)
        except TextError as err:  # the configuration check refuses this at start; never crash the loop on it
            return [], f"template {c.template}: {err}"
        return (rendered, "") if rendered is not None else ([], f"does not fit: {why}")

    def _reach(self, c: Candidate) -> list[tuple[BoardSite, float]]:
        """The boards a candidate may go to, nearest first, with their distance (m) to its junction (0: fixed boards)."""
        if c.junction is None:
            return [(self.network.board_by_id[b], 0.0) for b in c.boards if b in self.network.board_by_id]
        where = self.network.chainage(c.junction)
        if where is None:
            return []
        found = []
        for board in self.network.boards:
            if board.corridor != where[0] or board.chainage_m is None or board.facing not in c.facings \
                    or c.junction not in board.downstream:
                continue
            distance = abs(where[1] - board.chainage_m)
            if distance <= c.max_distance_m:
                found.append((board, distance))
        return sorted(found, key=lambda bd: (bd[1], bd[0].id))

    # --- 4. per board ------------------------------------------------------------------------
    def _decide(self, board: BoardSite, offers: list[Offer], notes: list[VmsCandidate], in_use: Mapping[str, str | None],
                at_s: float, evaluation_id: uuid.UUID, problems: list[str]) -> tuple[VmsBoardDecision, list[CommandIssued]]:
        st = self.state
        current = st.showing.get(board.id)
        offers = sorted(offers, key=lambda o: (o.priority, o.distance_m, o.candidate.cause))
        winner = offers[0] if offers else None
        listed = [VmsCandidate(o.candidate.cause, o.candidate.category, o.priority,
                               "chosen" if o is winner else f"outranked by {winner.candidate.cause}" if winner else "")
                  for o in offers] + notes
        if in_use.get(board.id) is not None:
            return self._record(board, VmsAction.OUT_OF_USE, f"out of use: {in_use[board.id]}", None, listed), []
        commands: list[CommandIssued] = []
        action, why = self._choose(board, current, offers, at_s)
        if action in (VmsAction.SHOW, VmsAction.UPDATE, VmsAction.REFRESH, VmsAction.RETRY):
            commands = self._show(board, current, winner if action is not VmsAction.RETRY else None, action, at_s,
                                  evaluation_id)
        elif action is VmsAction.BLANK:
            assert current is not None
            commands = [self._blank(board, current.command_id, current, at_s, evaluation_id, "cause ended")]
            st.showing.pop(board.id)
        elif current is None:
            commands = self._reconcile(board, at_s, evaluation_id)
            if commands:
                action, why = VmsAction.BLANK, "the board shows an earlier lalin message no cause wants any more: taken down"
        return self._record(board, action, why, st.showing.get(board.id), listed), commands

    def _choose(self, board: BoardSite, current: Showing | None, offers: list[Offer], at_s: float) -> tuple[VmsAction, str]:
        """What to do on ``board``, given what lalin keeps on it and the offers (best first), and why."""
        winner = offers[0] if offers else None
        if current is None:
            return (VmsAction.SHOW, f"{winner.candidate.cause} is the highest priority proposed") if winner is not None \
                else (VmsAction.NONE, "nothing to show")
        if winner is not None and winner.priority < current.priority:
            return VmsAction.SHOW, (f"{winner.candidate.cause} (priority {winner.priority}) preempts {current.cause} "
                                    f"(priority {current.priority})")
        if winner is not None and winner.candidate.cause == current.cause:
            return self._same_cause(board, current, winner, at_s)
        age = at_s - current.since_s
        if any(o.candidate.cause == current.cause for o in offers):
            resend = self._needs_resend(board.id, current, at_s)
            return (VmsAction.RETRY, f"sent again: {resend}") if resend is not None \
                else (VmsAction.KEEP, f"{current.cause} stays: no higher priority proposed")
        if age < self.config.display.min_display_s and current.category != "operator":
            return VmsAction.KEEP, (f"{current.cause} moved to another board, but stays the minimum display time here "
                                    f"({self.config.display.min_display_s - age:.0f} s left)")
        if winner is not None:
            return VmsAction.SHOW, f"{current.cause} ended after {age:.0f} s; {winner.candidate.cause} follows"
        return VmsAction.BLANK, f"{current.cause} ended after {age:.0f} s: taken down"

    def _same_cause(self, board: BoardSite, current: Showing, winner: Offer, at_s: float) -> tuple[VmsAction, str]:
        rules = self.config.display
        age = at_s - current.since_s
        changed = winner.pages != current.pages
        if changed and winner.candidate.value is not None and current.value is not None:
            rule = self.config.travel_time
            step = rule.min_change_min if rule is not None else 1
            changed = abs(winner.candidate.value - current.value) >= step
        if changed and age >= rules.min_display_s:
            return VmsAction.UPDATE, f"{current.cause}: new text after {age:.0f} s up"
        resend = self._needs_resend(board.id, current, at_s)
        if resend is not None:
            return VmsAction.RETRY, f"sent again: {resend}"
        if current.category != "operator" and current.hold_until_s - at_s < rules.refresh_before_s:
            return VmsAction.REFRESH, f"refreshed: {current.hold_until_s - at_s:.0f} s of its hold left"
        if changed:
            return VmsAction.KEEP, f"{current.cause}: new text waits for the minimum display time " \
                                   f"({rules.min_display_s - age:.0f} s left)"
        return VmsAction.KEEP, f"{current.cause} stays"

    def _command_id(self, board_id: str, what: str, at_s: float, evaluation_id: uuid.UUID) -> uuid.UUID:
        return uuid.uuid5(VMS_NAMESPACE, f"{board_id}/{what}/{evaluation_id}/{_t(at_s).isoformat()}")

    def _show(self, board: BoardSite, current: Showing | None, offer: Offer | None, action: VmsAction, at_s: float,
              evaluation_id: uuid.UUID) -> list[CommandIssued]:
        st, rules = self.state, self.config.display
        out: list[CommandIssued] = []
        if offer is None:  # a retry: the same message, a new message id
            assert current is not None
            c_cause, c_rule, category, priority, pages = (current.cause, current.rule, current.category,
                                                         current.priority, current.pages)
            value, operator, reason, inputs, until_s = current.value, current.operator, current.reason, current.inputs, None
            since_s, attempt = current.since_s, current.attempt + 1
            window = None
            if category == "operator":
                until_s = current.hold_until_s
        else:
            c = offer.candidate
            c_cause, c_rule, category, priority, pages = c.cause, c.rule, c.category, offer.priority, offer.pages
            value, operator, reason, inputs, until_s, window = c.value, c.operator, c.reason, c.inputs, c.until_s, c.window
            same_text = current is not None and current.cause == c.cause and current.pages == pages
            since_s = current.since_s if same_text and current is not None else at_s
            attempt = 1
        fb = st.feedback.get(board.id)
        shown_priority = current.priority if current is not None else (
            fb.priority if fb is not None and fb.status == "displaying" and fb.message_id in st.ours.get(board.id, []) else None)
        shown_id = str(current.command_id) if current is not None else (fb.message_id if fb is not None else None)
        if shown_priority is not None and shown_priority < priority and shown_id is not None:
            out.append(self._blank(board, uuid.UUID(shown_id), current, at_s, evaluation_id,
                                   f"makes way for {c_cause} (lower priority)"))
        hold_until = until_s if until_s is not None else at_s + min(rules.hold_s, board.max_duration_s)
        duration = min(max(hold_until - at_s, 1.0), board.max_duration_s)
        command_id = self._command_id(board.id, f"show/{c_cause}", at_s, evaluation_id)
        provenance = Provenance(rule=f"vms.{c_rule}"[:64], rule_version=RULE_VERSION, config_checksum=self.config_checksum,
                                input_event_ids=[evaluation_id, *inputs][:1000], input_window=window, operator=operator,
                                reason=reason if reason is not None else f"{action.value}: {c_cause}")
        out.append(CommandIssued(command_id=command_id, target=board.id, provenance=provenance,
                                 command=VmsMessageCommand(pages=pages, priority=priority, duration_s=round(duration, 3))))
        st.showing[board.id] = Showing(cause=c_cause, rule=c_rule, category=category, priority=priority, pages=pages,
                                       since_s=since_s, command_id=command_id, sent_s=at_s, attempt=attempt,
                                       hold_until_s=at_s + duration, value=value, operator=operator, reason=reason,
                                       inputs=list(inputs))
        self._remember(board.id, str(command_id))
        st.commands += len(out)
        return out

    def _blank(self, board: BoardSite, message_id: uuid.UUID, current: Showing | None, at_s: float,
               evaluation_id: uuid.UUID, why: str) -> CommandIssued:
        self.state.commands += 1
        inputs = current.inputs if current is not None else []
        provenance = Provenance(rule=f"vms.{current.rule if current is not None else 'reconcile'}"[:64],
                                rule_version=RULE_VERSION, config_checksum=self.config_checksum,
                                input_event_ids=[evaluation_id, *inputs][:1000], reason=f"blank: {why}"[:500])
        return CommandIssued(command_id=self._command_id(board.id, f"blank/{message_id}", at_s, evaluation_id),
                             target=board.id, provenance=provenance, command=VmsBlankCommand(message_id=str(message_id)))

    def _reconcile(self, board: BoardSite, at_s: float, evaluation_id: uuid.UUID) -> list[CommandIssued]:
        """A board lalin wants blank that reports one of lalin's earlier messages (e.g. back from a fault): blank it,
        at most once per retry interval."""
        fb = self.state.feedback.get(board.id)
        ours = self.state.ours.get(board.id, [])
        if fb is None or fb.status != "displaying" or fb.message_id is None or fb.message_id not in ours:
            return []
        last = self.state.failed.get(board.id, {}).get(f"reconcile:{fb.message_id}")
        if last is not None and at_s - last[0] < self.config.display.retry_after_s:
            return []
        self.state.failed.setdefault(board.id, {})[f"reconcile:{fb.message_id}"] = (at_s, "blanked")
        return [self._blank(board, uuid.UUID(fb.message_id), None, at_s, evaluation_id, "no cause wants it")]

    def _remember(self, board_id: str, message_id: str) -> None:
        ours = self.state.ours.setdefault(board_id, [])
        ours.append(message_id)
        del ours[:-16]

    def _record(self, board: BoardSite, action: VmsAction, why: str, showing: Showing | None,
                candidates: list[VmsCandidate]) -> VmsBoardDecision:
        if showing is None:
            return VmsBoardDecision(board_id=board.id, action=action, why=why[:500], candidates=candidates[:64])
        return VmsBoardDecision(board_id=board.id, action=action, why=why[:500], cause=showing.cause,
                                category=showing.category, priority=showing.priority, pages=showing.pages,
                                since=_t(showing.since_s), message_id=showing.command_id, candidates=candidates[:64])

    def _cause_status(self, c: Candidate, boards: list[str], at_s: float) -> VmsCauseStatus:
        track = self.state.causes.get(c.cause)
        since = track.onset_s if track is not None and track.onset_s is not None else None
        if c.category == "operator" and c.inputs:
            order = self.state.orders.get(c.cause.split(":", 1)[1])
            since = order.issued_s if order is not None else None
        return VmsCauseStatus(cause=c.cause, rule=c.rule, category=c.category, active=True,
                              since=_t(since) if since is not None else None,
                              evidence={k: v[:500] for k, v in sorted(c.evidence.items())[:32]}, boards=boards[:64],
                              input_event_ids=c.inputs[:64])

    def _prune(self, at_s: float, live: set[str]) -> None:
        st = self.state
        wanted = {str(s.command_id) for s in st.showing.values()}
        st.acks = {k: v for k, v in st.acks.items() if k in wanted}
        for board_id in list(st.failed):
            kept = {cause: v for cause, v in st.failed[board_id].items()
                    if at_s - v[0] < FAILED_REST_S and (cause in live or cause.startswith("reconcile:"))}
            if kept:
                st.failed[board_id] = kept
            else:
                del st.failed[board_id]
        st.orders = {k: o for k, o in st.orders.items() if o.cancelled_s is None and at_s < o.until_s}
        st.sightings = {k: v for k, v in st.sightings.items() if "incident:" + k.replace("/", ":") in live
                        or at_s - v.last_s <= max((r.clear_after_s for r in self.config.incidents), default=0.0)}
        st.causes = {k: t for k, t in st.causes.items() if t.on or t.pending_since_s is not None}

    # --- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """The state as msgpack bytes."""
        return msgspec.msgpack.encode(self.state)

    @staticmethod
    def restore_state(data: bytes) -> VmsState:
        """A state from :meth:`snapshot` bytes."""
        return msgspec.msgpack.decode(data, type=VmsState)
