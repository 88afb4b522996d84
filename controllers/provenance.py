"""What an event rests on (pure): the events it names as its inputs, so that an auditor can walk back from a
command to the detector counts, camera reports and people's decisions behind it.

An event's references, in the order they explain it:

* ``CommandIssued`` — its provenance's ``input_event_ids`` (the summaries a timing was decided from, the
  proposal and approval of a deployed plan, the evaluation of a VMS message);
* ``TrafficMeasured`` and ``VmsEvaluated`` — their ``input_event_ids`` (the counts, reports and orders folded);
* ``PlanReviewed`` and ``PlanDeployed`` — the proposal (found by ``proposal_id``), ``PlanDeployed`` also its
  command; ``CommandAcknowledged`` — the command it ends;
* any event — its envelope's ``causation_id``.

The shell looks the references up in the archive (:mod:`infra.web_audit`), level by level.
"""

from __future__ import annotations

import uuid
from typing import Literal

import msgspec

from controllers.envelope import Envelope
from controllers.payloads import (
    CommandAcknowledged,
    CommandIssued,
    PlanDeployed,
    PlanReviewed,
    TrafficMeasured,
    VmsEvaluated,
)

RefKind = Literal["event", "proposal", "command"]


class Reference(msgspec.Struct, frozen=True):
    """One thing an event rests on: an event id, a proposal id (its ``PlanProposed``) or a command id (its
    ``CommandIssued``), with why it is named."""

    kind: RefKind
    id: uuid.UUID
    role: str


def references(event: Envelope) -> list[Reference]:
    """The references of ``event`` (see the module docstring), without duplicates, in order."""
    p = event.payload
    out: list[Reference] = []
    if isinstance(p, CommandIssued):
        out += [Reference("event", i, f"input of rule {p.provenance.rule}") for i in p.provenance.input_event_ids]
    elif isinstance(p, (TrafficMeasured, VmsEvaluated)):
        out += [Reference("event", i, "folded input") for i in p.input_event_ids]
    elif isinstance(p, (PlanReviewed, PlanDeployed)):
        out.append(Reference("proposal", p.proposal_id, "the proposal"))
    elif isinstance(p, CommandAcknowledged):
        out.append(Reference("command", p.command_id, "the command it ends"))
    if event.causation_id is not None:
        out.append(Reference("event", event.causation_id, "caused by"))
    seen: set[uuid.UUID] = set()
    unique = []
    for ref in out:
        if ref.id not in seen:
            seen.add(ref.id)
            unique.append(ref)
    return unique


def summary(event: Envelope) -> str:
    """One line saying what ``event`` is about (for lists and chains)."""
    p = event.payload
    if isinstance(p, CommandIssued):
        who = f", operator {p.provenance.operator}" if p.provenance.operator else ""
        return (f"{p.command.__struct_config__.tag} to {p.target} by rule {p.provenance.rule} v{p.provenance.rule_version}"
                f" (config {p.provenance.config_checksum[:12]}{who})")
    if isinstance(p, CommandAcknowledged):
        return f"{p.outcome.value} by {p.target}{': ' + p.detail if p.detail else ''}"
    if isinstance(p, TrafficMeasured):
        return f"{p.intersection_id} window {p.window.start:%H:%M}-{p.window.end:%H:%M} UTC, {len(p.input_event_ids)} inputs"
    text = msgspec.json.encode(p).decode()
    return text if len(text) <= 160 else text[:157] + "..."
