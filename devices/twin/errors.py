"""Errors of the digital twin, under lalin's root :class:`~controllers.errors.LalinError`.

::

    LalinError
    ├── ConfigurationError          (controllers.errors) catalogue data the twin cannot be built from
    └── TwinError                   the simulation refused or failed an operation
        ├── MissingAspect           a vehicle signal group of a controller has no aspect in a step
        ├── InvalidSignalState      an unknown aspect, controller or group, or a state string SUMO would misread
        ├── UnknownCamera           a camera id the twin does not know
        ├── SimulationNotRunning    a call before ``start()`` or after ``close()``
        └── TwinProcessError        the twin's child process failed; carries the child's message

Every message names the offending controller, group, camera or value.
"""

from __future__ import annotations

from controllers.errors import LalinError


class TwinError(LalinError):
    """The SUMO twin refused or failed an operation."""


class MissingAspect(TwinError):
    """``step()`` got aspects for a controller but not for one of its vehicle signal groups."""

    def __init__(self, controller_id: str, group_id: str) -> None:
        super().__init__(f"controller {controller_id}: no aspect for vehicle signal group {group_id!r}")
        self.controller_id = controller_id
        self.group_id = group_id


class InvalidSignalState(TwinError):
    """An aspect name, controller or group the twin does not know, or a state string of the wrong length or characters."""


class UnknownCamera(TwinError):
    """No approach of the twin has this camera id."""


class SimulationNotRunning(TwinError):
    """The simulation was not started, or was closed, or has ended."""


class TwinProcessError(TwinError):
    """The twin's child process raised an error (its type and message are in this message) or died."""

    def __init__(self, message: str, child_type: str = "") -> None:
        super().__init__(message)
        self.child_type = child_type  # the class name of the child's exception ("" when the child died)
