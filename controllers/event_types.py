"""The registry of event types: name -> (current schema version, payload schema).

Adding an event type is adding a line here; changing a payload's shape is bumping its
version here and adding an upcaster in ``controllers.upcasting``.
"""

from __future__ import annotations

from typing import Final

from controllers import payloads as p

EVENT_TYPES: Final[dict[str, tuple[int, type[p.Payload]]]] = {
    "DetectorCounted": (1, p.DetectorCounted),
    "CameraObserved": (1, p.CameraObserved),
    "SignalStateReported": (1, p.SignalStateReported),
    "ControllerFaulted": (1, p.ControllerFaulted),
    "CommandIssued": (1, p.CommandIssued),
    "CommandAcknowledged": (1, p.CommandAcknowledged),
    "OperatorActed": (1, p.OperatorActed),
    "SequenceAnomalyDetected": (1, p.SequenceAnomalyDetected),
    "BrokerRestartDetected": (1, p.BrokerRestartDetected),
    "VmsDisplayReported": (1, p.VmsDisplayReported),
    "VmsFaulted": (1, p.VmsFaulted),
    "DetectorsCounted": (1, p.DetectorsCounted),
    "TrafficMeasured": (1, p.TrafficMeasured),
    "VmsEvaluated": (1, p.VmsEvaluated),
    "ControllerEventsLogged": (1, p.ControllerEventsLogged),
    "PlanProposed": (1, p.PlanProposed),
    "PlanReviewed": (1, p.PlanReviewed),
    "PlanDeployed": (1, p.PlanDeployed),
    "PlanHoldReleased": (1, p.PlanHoldReleased),
    "PlanTimingScheduled": (1, p.PlanTimingScheduled),
}

TYPE_OF_PAYLOAD: Final[dict[type[p.Payload], str]] = {cls: name for name, (_, cls) in EVENT_TYPES.items()}
