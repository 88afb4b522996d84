"""Replay of the automatic VMS (pure): re-run every recorded evaluation and compare.

Each recorded ``VmsEvaluated`` cites the events folded since the evaluation before it. A fresh
:class:`~controllers.vms_policy.VmsPolicy` folds exactly those (in any order: the policy's
updates commute) and evaluates at the recorded instant; the evaluation it produces must equal
the recorded one byte for byte (JSON of the payload), and every command it issues must equal
the recorded ``CommandIssued`` with the same id. An evaluation number recorded twice (outputs
published again after a crash, before the state was stored) is checked once, the first record.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from controllers.envelope import Envelope
from controllers.payloads import CommandIssued, VmsEvaluated
from controllers.replay import Difference, ReplayReport, canonical_json
from controllers.vms_config import VmsPolicyConfig
from controllers.vms_policy import VmsPolicy
from controllers.vms_state import VmsNetwork


def check_vms(evaluations: Iterable[Envelope], inputs: Mapping[uuid.UUID, Envelope], commands: Mapping[uuid.UUID, CommandIssued],
              config: VmsPolicyConfig, network: VmsNetwork, config_checksum: str, *,
              upto: int | None = None) -> tuple[ReplayReport, VmsPolicy]:
    """Re-run the recorded evaluations (up to number ``upto``) in order; the report (first difference) and the policy
    as it stands after the last one re-run."""
    report = ReplayReport()
    policy = VmsPolicy(config, network, config_checksum)
    records = sorted((e for e in evaluations if isinstance(e.payload, VmsEvaluated)),
                     key=lambda e: (e.payload.evaluation, e.event_time, e.seq) if isinstance(e.payload, VmsEvaluated) else ())
    done: set[int] = set()
    for envelope in records:
        recorded = envelope.payload
        assert isinstance(recorded, VmsEvaluated)
        if recorded.evaluation in done or (upto is not None and recorded.evaluation > upto):
            continue
        done.add(recorded.evaluation)
        missing = [i for i in recorded.input_event_ids if i not in inputs]
        if missing:
            report.missing_inputs += len(missing)
            report.differences.append(Difference("vms", "vms", recorded.evaluation, canonical_json(recorded), "",
                                                 f"{len(missing)} cited input(s) of evaluation {recorded.evaluation} are "
                                                 "not in the archive", envelope.event_time))
            break
        for event_id in recorded.input_event_ids:
            policy.apply(inputs[event_id])
        again, issued = policy.evaluate(recorded.at)
        report.vms_evaluations_checked += 1
        if canonical_json(again) != canonical_json(recorded):
            report.differences.append(Difference("vms", "vms", recorded.evaluation, canonical_json(recorded),
                                                 canonical_json(again),
                                                 f"evaluation {recorded.evaluation} at {recorded.at.isoformat()}",
                                                 envelope.event_time))
            break
        for command in issued:
            report.vms_commands_checked += 1
            archived = commands.get(command.command_id)
            if canonical_json(archived) != canonical_json(command):
                report.differences.append(Difference("vms", command.target, recorded.evaluation, canonical_json(archived),
                                                     canonical_json(command), f"command {command.command_id} of evaluation "
                                                     f"{recorded.evaluation} to {command.target}", envelope.event_time))
                return report, policy
    return report, policy
