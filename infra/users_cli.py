"""``lalin users``: the accounts of the web surfaces (docs/dashboard.md, "Roles and login").

::

    lalin users add NAME --role ROLE [--password-file F] [--full-name TEXT]
    lalin users list [--json]
    lalin users set-role NAME ROLE
    lalin users set-password NAME [--password-file F]
    lalin users disable NAME | enable NAME

Passwords are read from a file (its first line) or asked for twice at the terminal, never taken on the
command line (where other users could see them in the process list); they are stored as scrypt hashes.
Changing a role, a password or disabling an account ends the account's sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from controllers.access import ROLES
from infra.accounts import AccountError, Accounts
from infra.cli_common import data_dir_option, database_option, database_url_for, emit, settings_for


def _accounts(data_dir: Path | None, database_url: str | None) -> Accounts:
    return Accounts(database_url_for(settings_for(data_dir), database_url))


def _password(path: Path | None) -> str:
    if path is not None:
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines or not lines[0]:
            raise click.BadParameter(f"{path} holds no password on its first line", param_hint="--password-file")
        return lines[0]
    return str(click.prompt("password", hide_input=True, confirmation_prompt=True))


def _run(action: str, call: Callable[[], None]) -> None:
    try:
        call()
    except AccountError as err:
        raise click.ClickException(str(err)) from err
    click.echo(action)


@click.group()
def users() -> None:
    """Accounts of the web surfaces: roles viewer, operator, engineer, auditor, admin."""


password_file = click.option("--password-file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
                             default=None, help="read the password from this file's first line [default: ask]")


@users.command("add")
@data_dir_option
@database_option
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@password_file
@click.option("--full-name", default="", help="the person's name, for the pages")
def add(data_dir: Path | None, database_url: str | None, name: str, role: str, password_file: Path | None,
        full_name: str) -> None:
    """Create the account NAME with ROLE."""
    accounts = _accounts(data_dir, database_url)
    password = _password(password_file)
    _run(f"user {name} added (role {role})", lambda: accounts.add(name, role, password, full_name))


@users.command("list")
@data_dir_option
@database_option
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def list_users(data_dir: Path | None, database_url: str | None, as_json: bool) -> None:
    """Every account: name, role, disabled, locked (never a password hash)."""
    rows = _accounts(data_dir, database_url).list()
    text = "\n".join(f"{r['username']:<20} {r['role']:<9} {'disabled' if r['disabled'] else 'active'}"
                     + (f", locked until {r['locked_until'].isoformat()}" if r["locked_until"] else "") for r in rows)
    emit(rows, as_json, text or "no accounts")


@users.command("set-role")
@data_dir_option
@database_option
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
def set_role(data_dir: Path | None, database_url: str | None, name: str, role: str) -> None:
    """Give NAME another ROLE (its sessions end)."""
    accounts = _accounts(data_dir, database_url)
    _run(f"user {name} now has role {role}", lambda: accounts.set_role(name, role))


@users.command("set-password")
@data_dir_option
@database_option
@click.argument("name")
@password_file
def set_password(data_dir: Path | None, database_url: str | None, name: str, password_file: Path | None) -> None:
    """A new password for NAME (its sessions end, a lock is lifted)."""
    accounts = _accounts(data_dir, database_url)
    password = _password(password_file)
    _run(f"password of {name} changed", lambda: accounts.set_password(name, password))


@users.command("disable")
@data_dir_option
@database_option
@click.argument("name")
def disable(data_dir: Path | None, database_url: str | None, name: str) -> None:
    """Disable NAME (its sessions end)."""
    accounts = _accounts(data_dir, database_url)
    _run(f"user {name} disabled", lambda: accounts.disable(name))


@users.command("enable")
@data_dir_option
@database_option
@click.argument("name")
def enable(data_dir: Path | None, database_url: str | None, name: str) -> None:
    """Enable NAME again."""
    accounts = _accounts(data_dir, database_url)
    _run(f"user {name} enabled", lambda: accounts.disable(name, False))
