"""Helpers every ``lalin`` command shares: durations and times, settings, the database, output, options."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import msgspec

from infra.runfile import read_info
from infra.settings import Settings

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smh]?)$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration_s(text: str) -> float:
    """``90``, ``90s``, ``15m`` or ``2h`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration (examples: 90s, 15m, 2h)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; a time without zone is refused (say Z or +08:00 for WITA)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as err:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time") from err
    if value.tzinfo is None:
        raise click.BadParameter(f"{text!r} has no time zone (add Z, or +08:00 for Bali)")
    return value


def settings_for(data_dir: Path | None) -> Settings:
    settings = Settings()
    if data_dir is not None:
        settings.runtime.data_dir = data_dir
    return settings


def database_url_for(settings: Settings, explicit: str | None) -> str:
    if explicit:
        return explicit
    if settings.database.url:
        return settings.database.url
    info = read_info(settings.runtime.data_dir)
    if info:
        return str(info["database"]["url"])
    raise click.ClickException(
        f"no database: start `lalin up` (data directory {settings.runtime.data_dir}), "
        "set LALIN_DATABASE__URL, or pass --database-url")


def emit(obj: Any, as_json: bool, text: str) -> None:
    if as_json:
        click.echo(msgspec.json.encode(obj).decode())
    else:
        click.echo(text)


data_dir_option = click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                               help="runtime data directory [default: LALIN_RUNTIME__DATA_DIR or ./.lalin]")
database_option = click.option("--database-url", default=None, help="archive database (libpq URI)")
