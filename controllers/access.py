"""Who may do what in lalin's web surfaces: roles and permissions as data (pure).

The role file (``infra/catalogue/roles.yaml``) is loaded by the shell into :class:`AccessPolicy`.
Every request a person makes is checked with :func:`AccessPolicy.require` on the server before
anything is read or changed; a refusal raises :class:`AccessDenied` naming the user, the role and
the permission, and the shell logs it as an event.

Separation of duties lives here too: a plan change is proposed by one engineer and approved by
another (:func:`check_second_person`), so no single account can put a timing on the street.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controllers.errors import LalinError

Permission = Literal[
    "view",              # the live map, junction pages, plans and proposals (read)
    "vms.order",         # an operator's message on a board, or its cancellation
    "junction.release",  # end a hold on a deployed fixed timing: adaptive control again
    "plan.propose",      # edit, validate, what-if and submit a plan version
    "plan.approve",      # approve (and so deploy) or reject another engineer's proposal
    "audit.read",        # event-log explorer, state as of an instant, provenance, verification
    "audit.export",      # export a period with its manifest of hashes
    "users.manage",      # create, disable and re-role accounts
]
PERMISSIONS: tuple[Permission, ...] = ("view", "vms.order", "junction.release", "plan.propose", "plan.approve",
                                       "audit.read", "audit.export", "users.manage")
Role = Literal["viewer", "operator", "engineer", "auditor", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "engineer", "auditor", "admin")


class AccessDenied(LalinError):
    """A person asked for something their role does not allow (or that needs a second person)."""

    def __init__(self, user: str, role: str, permission: str, why: str = "") -> None:
        super().__init__(f"{user} ({role}) may not {permission}{': ' + why if why else ''}")
        self.user, self.role, self.permission, self.why = user, role, permission, why


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionRules(_Strict):
    """How long a login lasts: idle and absolute limits (seconds); lockout after failed logins."""

    idle_timeout_s: float = Field(1800.0, gt=0, le=86_400)
    absolute_timeout_s: float = Field(43_200.0, gt=0, le=7 * 86_400)
    max_failed_logins: int = Field(5, ge=1, le=100)
    lockout_s: float = Field(900.0, ge=0, le=86_400)
    min_password_length: int = Field(10, ge=8, le=128)

    @model_validator(mode="after")
    def _ordered(self) -> SessionRules:
        if self.idle_timeout_s > self.absolute_timeout_s:
            raise ValueError(f"idle timeout {self.idle_timeout_s} s exceeds the absolute timeout {self.absolute_timeout_s} s")
        return self


class AccessPolicy(_Strict):
    """Every role's permissions and the session rules (see the module docstring)."""

    roles: dict[Role, frozenset[Permission]]
    sessions: SessionRules = SessionRules()

    @model_validator(mode="after")
    def _complete(self) -> AccessPolicy:
        missing = [r for r in ROLES if r not in self.roles]
        if missing:
            raise ValueError(f"roles without permissions declared: {missing}")
        return self

    def allows(self, role: str, permission: Permission) -> bool:
        """True when ``role`` holds ``permission`` (an unknown role holds nothing)."""
        return permission in self.roles.get(role, frozenset())  # type: ignore[call-overload]

    def require(self, user: str, role: str, permission: Permission) -> None:
        """Raise :class:`AccessDenied` unless ``role`` holds ``permission``."""
        if not self.allows(role, permission):
            raise AccessDenied(user, role, permission, "the role does not hold this permission")


def check_second_person(approver: str, author: str) -> None:
    """A proposal's approver must not be its author (four-eyes principle)."""
    if approver == author:
        raise AccessDenied(approver, "author", "plan.approve", "a change needs a second person's approval, "
                           "not its author's")
