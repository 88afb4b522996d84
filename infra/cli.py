"""The ``lalin`` command line.

::

    lalin up [--duration 15m] [--data-dir DIR] [--no-generator] [--invalid-fraction F]
    lalin archive [--duration 15m]          an extra archiver worker beside a running lalin
    lalin status [--json]
    lalin migrate
    lalin audit verify [--since T] [--json]
    lalin audit export --from T1 --to T2 --out DIR [--json]
    lalin audit verify-export DIR [--json]       offline: no database
    lalin plan validate PLAN.yaml [--json]
    lalin plan diff A.yaml B.yaml [--json]
    lalin plan schedule PLAN.yaml [--at T] [--json]
    lalin timing compute PLAN.yaml --counts COUNTS.csv [--cycle S] [--json]
    lalin timing corridor PLAN.yaml... --counts COUNTS.csv [--json]
    lalin deadletters list [--limit N] [--reason R] [--json]
    lalin pki init [--dir DIR] [--force]
    lalin vms status | send | cancel | explain     (infra.vms_cli)
    lalin users add | list | set-role | set-password | disable | enable   (infra.users_cli)

The database is ``--database-url``, else ``LALIN_DATABASE__URL``, else the one of the
runtime currently running on the data directory.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec
import psycopg

from controllers.errors import LalinError, RuntimeConflict
from infra import db
from infra.audit import verify_archive
from infra.cli_common import (
    data_dir_option,
    database_option,
    database_url_for,
    emit,
    parse_duration_s,
    parse_time,
    settings_for,
)
from infra.deadletters import count_dead_letters, list_dead_letters
from infra.runfile import read_info
from infra.simclock import SimClock
from infra.users_cli import users
from infra.vms_cli import vms


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="log at INFO level")
def cli(verbose: bool) -> None:
    """lalin — event-sourced traffic-signal and VMS control."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cli.command()
@data_dir_option
@click.option("--duration", default=None, help="stop after this long, wall time (90s, 15m, 2h); default: until Ctrl-C")
@click.option("--speed", type=click.FloatRange(min=0.1, max=100), default=None,
              help="simulated seconds per wall second (the closed loop; default 1)")
@click.option("--start", "start_text", default=None, help="simulated start, ISO 8601 with zone [default: 06:00 WITA]")
@click.option("--workers", type=click.IntRange(0, 8), default=None, help="stream worker processes (default 1)")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="the twin's random seed (default 42)")
@click.option("--no-loop", is_flag=True, help="no twin, workers or decisions: devices and the demo generator only")
@click.option("--no-generator", is_flag=True, help="do not run the demo event generator (without the loop)")
@click.option("--invalid-fraction", type=click.FloatRange(0, 1), default=None,
              help="share of deliberately invalid demo records (shows dead-lettering)")
def up(data_dir: Path | None, duration: str | None, speed: float | None, start_text: str | None, workers: int | None,
       seed: int | None, no_loop: bool, no_generator: bool, invalid_fraction: float | None) -> None:
    """Start the runtime: embedded broker and PostgreSQL (unless configured otherwise), the field
    devices, and the closed loop (SUMO twin, stream workers, decisions). A bounded run (--duration)
    ends with a report against the fixed time-of-day plans."""
    from infra.runtime import Runtime

    settings = settings_for(data_dir)
    if no_loop:
        settings.loop.enabled = False
    if speed is not None:
        settings.loop.speed = speed
    if start_text is not None:
        settings.loop.start = parse_time(start_text)
    if workers is not None:
        settings.loop.workers = workers
    if seed is not None:
        settings.loop.seed = seed
    if no_generator:
        settings.generator.enabled = False
    if invalid_fraction is not None:
        settings.generator.invalid_fraction = invalid_fraction
    duration_s = parse_duration_s(duration) if duration else None
    try:
        asyncio.run(Runtime(settings).run(duration_s))
    except RuntimeConflict as err:
        click.echo(str(err))


@cli.command()
@data_dir_option
def worker(data_dir: Path | None) -> None:
    """Run one stream worker (fold and decisions; a member of the lalin-streams consumer group) beside a
    running `lalin up`, or against LALIN_KAFKA__BOOTSTRAP and LALIN_DATABASE__URL (docs/scaling.md)."""
    from infra.stream_process import worker_main

    settings = settings_for(data_dir)
    info = read_info(settings.runtime.data_dir)
    settings.kafka.bootstrap = settings.kafka.bootstrap or (info["kafka"]["bootstrap"] if info else None)
    settings.database.url = settings.database.url or (info["database"]["url"] if info else None)
    worker_main(settings)


@cli.command()
@data_dir_option
@database_option
@click.option("--from", "from_text", required=True, help="start of the period checked (ISO 8601 with zone)")
@click.option("--to", "to_text", required=True, help="end of the period (ISO 8601 with zone)")
@click.option("--verify", is_flag=True, help="exit 1 at any difference, naming the first")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="fold-check processes, each a share of the intersections (default: the machine's cores)")
def replay(data_dir: Path | None, database_url: str | None, from_text: str, to_text: str, verify: bool,
           as_json: bool, jobs: int | None) -> None:
    """Rebuild the traffic state from the archive and re-run the decisions; compare with what was recorded."""
    from infra.replay import Progress, count_events, run_replay

    settings = settings_for(data_dir)
    url = database_url_for(settings, database_url)
    since, until = parse_time(from_text), parse_time(to_text)
    if until <= since:
        raise click.BadParameter(f"--to {until.isoformat()} must be after --from {since.isoformat()}")
    bar = None if as_json else Progress(count_events(url, until))
    report, elapsed_s = run_replay(url, since, until, progress=bar, jobs=jobs)
    if bar is not None:
        bar.finish(report.events)
    body = {"from": since.isoformat(), "to": until.isoformat(), "events": report.events,
            "summaries_checked": report.summaries_checked, "commands_checked": report.commands_checked,
            "vms_evaluations_checked": report.vms_evaluations_checked, "vms_commands_checked": report.vms_commands_checked,
            "plan_steps_checked": report.plan_steps_checked,
            "differences": [d.__dict__ for d in report.differences], "seconds": round(elapsed_s, 3),
            "events_per_s": round(report.events / elapsed_s) if elapsed_s > 0 else None}
    lines = [f"replayed {report.events:,} events in {elapsed_s:.2f} s ({body['events_per_s'] or 0:,} events/s): "
             f"{report.summaries_checked:,} traffic summaries, {report.commands_checked:,} signal commands, "
             f"{report.vms_evaluations_checked:,} VMS evaluations, {report.vms_commands_checked:,} VMS commands and "
             f"{report.plan_steps_checked:,} plan workflow steps re-computed"]
    if report.differences:
        first = report.differences[0]
        lines.append(f"FIRST DIFFERENCE ({first.kind}) at {first.key} #{first.position}: {first.detail}")
        lines.append(f"  recorded: {first.recorded[:400]}")
        lines.append(f"  replayed: {first.replayed[:400]}")
    else:
        lines.append("no differences: every recorded summary and command is reproduced bit for bit")
    emit(body, as_json, "\n".join(lines))
    if verify and report.differences:
        raise SystemExit(1)


@cli.command("archive")
@data_dir_option
@click.option("--duration", default=None, help="stop after this long (90s, 15m, 2h); default: until Ctrl-C")
def archive_worker(data_dir: Path | None, duration: str | None) -> None:
    """Run an extra archiver worker (scale-out: about one per core) beside a running `lalin up`,
    or against LALIN_KAFKA__BOOTSTRAP and LALIN_DATABASE__URL."""
    from infra.runtime import Runtime

    settings = settings_for(data_dir)
    info = read_info(settings.runtime.data_dir)
    settings.kafka.bootstrap = settings.kafka.bootstrap or (info["kafka"]["bootstrap"] if info else None)
    settings.database.url = settings.database.url or (info["database"]["url"] if info else None)
    # beside a closed-loop demo, event times are on its simulated clock: validate them on the same clock
    clock = SimClock.from_env(info.get("clock")) if info and info.get("clock") else None
    asyncio.run(Runtime(settings, clock=clock, worker=True).run(parse_duration_s(duration) if duration else None))


@cli.command()
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(data_dir: Path | None, as_json: bool) -> None:
    """Show what runs where, and the archive's counts."""
    settings = settings_for(data_dir)
    info = read_info(settings.runtime.data_dir)
    report: dict[str, Any] = {"running": info is not None, "runtime": info}
    url = settings.database.url or (info["database"]["url"] if info else None)
    if url:
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                row = conn.execute("SELECT count(*), max(archived_at) FROM events").fetchone()
                report["archive"] = {"events": row[0] if row else 0, "last_archived_at": row[1] if row else None,
                                     "dead_letters": count_dead_letters(conn)}
        except psycopg.Error as err:
            report["archive"] = {"error": str(err)}
    if as_json:
        click.echo(json.dumps(report, default=str, indent=2))
        return
    if info is None:
        click.echo(f"lalin is not running on {settings.runtime.data_dir.resolve()}")
    else:
        click.echo(f"lalin is running (pid {info['pid']}) since {info['started_at']}")
        click.echo(f"  kafka     {info['kafka']['bootstrap']} (epoch {info['kafka']['epoch'][:12]})")
        click.echo(f"  postgres  {info['database']['url']}")
    if "archive" in report:
        click.echo(f"  archive   {json.dumps(report['archive'], default=str)}")


@cli.command()
@data_dir_option
@database_option
def migrate(data_dir: Path | None, database_url: str | None) -> None:
    """Apply pending database migrations."""
    applied = db.migrate(database_url_for(settings_for(data_dir), database_url))
    click.echo(f"applied: {', '.join(applied)}" if applied else "the schema is up to date")


@cli.group()
def audit() -> None:
    """Auditors' tools."""


@audit.command("verify")
@data_dir_option
@database_option
@click.option("--since", default=None, help="start at the last checkpoint before this time (ISO 8601 with zone)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def audit_verify(data_dir: Path | None, database_url: str | None, since: str | None, as_json: bool) -> None:
    """Recompute every stream's hash chain; exit 1 naming the first broken record of each stream."""
    url = database_url_for(settings_for(data_dir), database_url)
    report = verify_archive(url, parse_time(since) if since else None)
    lines = [f"archive intact: {report.records_checked:,} records in {report.streams_checked} streams verified"]
    if not report.ok:
        lines = [f"ARCHIVE NOT INTACT: {len(report.faults)} stream(s) broken ({report.records_checked:,} records verified)"]
        lines += [f"  {f.kind.value}: stream {f.stream} position {f.position}"
                  f"{' event ' + f.event_id if f.event_id else ''} — {f.detail}" for f in report.faults]
    emit(report, as_json, "\n".join(lines))
    sys.exit(0 if report.ok else 1)


_LISTED_STREAMS = 20


def _database_url_or_exit_2(data_dir: Path | None, database_url: str | None) -> str:
    """The archive's URL; no database known is "could not do the job" (exit 2)."""
    try:
        return database_url_for(settings_for(data_dir), database_url)
    except click.ClickException as err:
        err.exit_code = 2
        raise


def _problem_lines(problems: list[Any]) -> list[str]:
    return [f"  FIRST PROBLEM {problems[0].describe()}"] + [f"  also: {p.describe()}" for p in problems[1:]]


@audit.command("export")
@data_dir_option
@database_option
@click.option("--from", "from_text", required=True, help="start of the period, included (ISO 8601 with zone)")
@click.option("--to", "to_text", required=True, help="end of the period, excluded (ISO 8601 with zone)")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="directory to write events.csv and manifest.json to (created; must not hold an export)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def audit_export(data_dir: Path | None, database_url: str | None, from_text: str, to_text: str, out_dir: Path,
                 as_json: bool) -> None:
    """Export the archived events of a period (event time in [FROM, TO)) with a manifest an auditor can
    check offline (`lalin audit verify-export`); exit 1 when the exported records do not verify."""
    from controllers.export_manifest import format_time
    from infra.audit_export import export_period, verify_export_dir

    url = _database_url_or_exit_2(data_dir, database_url)
    start, end = parse_time(from_text), parse_time(to_text)
    if end <= start:
        raise click.BadParameter(f"--to {end.isoformat()} must be after --from {start.isoformat()}")
    manifest = export_period(url, start, end, out_dir, datetime.now(UTC))
    check = verify_export_dir(out_dir)
    lines = [f"exported {manifest.csv.rows:,} records of {len(manifest.streams)} streams, event time "
             f"{format_time(start)} to {format_time(end)}, into {out_dir}",
             f"  {manifest.csv.name}  {manifest.csv.size_bytes:,} bytes, sha256 {manifest.csv.sha256}"]
    for extent in manifest.streams[:_LISTED_STREAMS]:
        lines.append(f"  {extent.stream}  positions {extent.first_position}..{extent.last_position} ({extent.count}), "
                     f"anchor {extent.anchor_prev_hash[:16]}…, last hash {extent.last_hash[:16]}…")
    if len(manifest.streams) > _LISTED_STREAMS:
        lines.append(f"  ... and {len(manifest.streams) - _LISTED_STREAMS} more streams (manifest.json)")
    lines += [f"  checkpoint #{c.id} {format_time(c.created_at)} root {c.root_hash}"
              f"{'' if c.in_period else ' (first after the period)'}" for c in manifest.checkpoints]
    if check.ok:
        lines.append("the exported records verify: every stream links from its anchor to its last hash")
    else:
        lines.append("EXPORTED RECORDS DO NOT VERIFY (the archive's records of the period are not intact):")
        lines += _problem_lines(check.problems)
    emit({"ok": check.ok, "out": str(out_dir), "manifest": manifest, "problems": check.problems}, as_json,
         "\n".join(lines))
    sys.exit(0 if check.ok else 1)


@audit.command("verify-export")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def audit_verify_export(directory: Path, as_json: bool) -> None:
    """Check an export offline (no database): the CSV's SHA-256, every record's hash and link, the anchors
    and last hashes of the manifest; exit 1 naming the first problem, 2 when the files cannot be read."""
    from controllers.export_manifest import format_time
    from infra.audit_export import verify_export_dir

    report = verify_export_dir(directory)
    period = ("" if report.period_from is None or report.period_to is None
              else f", event time {format_time(report.period_from)} to {format_time(report.period_to)}")
    if report.ok:
        text = (f"export intact: {report.rows_checked:,} records in {report.streams_checked} streams verified{period}; "
                f"events.csv sha256 {report.csv_sha256} matches the manifest")
    else:
        text = "\n".join([f"EXPORT NOT INTACT: {report.rows_checked:,} records verified before the first problem{period}",
                          *_problem_lines(report.problems)])
    emit(report, as_json, text)
    sys.exit(0 if report.ok else 1)


@cli.group()
def plan() -> None:
    """Traffic engineers' tools for signal plans."""


@plan.command("validate")
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def plan_validate(plan_file: Path, as_json: bool) -> None:
    """Check a plan (its default and named timings too) against the safety rules; exit 1 listing every violation."""
    from controllers.safety import validate_all
    from infra.plans import load_plan

    loaded = load_plan(plan_file)
    violations = validate_all(loaded)
    if as_json:
        click.echo(msgspec.json.encode({"plan": loaded.id, "version": loaded.version, "checksum": loaded.checksum(),
                                        "ok": not violations, "violations": violations}).decode())
    elif violations:
        click.echo(f"plan {loaded.id} v{loaded.version}: {len(violations)} violation(s)")
        for v in violations:
            click.echo(f"  {v.code}: {v.message}")
    else:
        click.echo(f"plan {loaded.id} v{loaded.version} is safe (checksum {loaded.checksum()[:16]})")
    sys.exit(1 if violations else 0)


@plan.command("diff")
@click.argument("before", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("after", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def plan_diff(before: Path, after: Path, as_json: bool) -> None:
    """What changed from plan BEFORE to plan AFTER, and whether AFTER is safe; exit 0 when equal, 1 when not."""
    from controllers.plan_diff import diff_plans
    from controllers.safety import validate_all
    from infra.plans import load_plan

    a, b = load_plan(before), load_plan(after)
    changes = diff_plans(a, b)
    violations = validate_all(b)
    if as_json:
        click.echo(msgspec.json.encode({"before": {"plan": a.id, "version": a.version, "checksum": a.checksum()},
                                        "after": {"plan": b.id, "version": b.version, "checksum": b.checksum()},
                                        "changes": changes, "after_violations": violations}).decode())
    else:
        click.echo(f"{a.id} v{a.version} ({a.checksum()[:12]}) -> {b.id} v{b.version} ({b.checksum()[:12]}): "
                   f"{len(changes)} change(s)")
        for c in changes:
            if c.kind == "changed":
                click.echo(f"  ~ {c.path}: {json.dumps(c.before)} -> {json.dumps(c.after)}")
            else:
                click.echo(f"  {'+' if c.kind == 'added' else '-'} {c.path}: "
                           f"{json.dumps(c.after if c.kind == 'added' else c.before)}")
        click.echo(f"{b.id} v{b.version}: " + ("safe" if not violations else f"{len(violations)} violation(s)"))
        for v in violations:
            click.echo(f"  {v.code}: {v.message}")
    sys.exit(1 if changes else 0)


@plan.command("schedule")
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--at", "at_text", default=None, help="ISO 8601 time with zone [default: now]")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def plan_schedule(plan_file: Path, at_text: str | None, as_json: bool) -> None:
    """Which timing the plan's time-of-day schedule runs at an instant, and why."""
    from controllers.schedule import active_timing, resolve_timing
    from infra.plans import load_plan

    loaded = load_plan(plan_file)
    at = parse_time(at_text) if at_text else datetime.now(UTC)
    active = active_timing(loaded, at)
    timing = resolve_timing(loaded, active.timing)
    shown = "flashing amber" if timing is None else (
        f"cycle {timing.cycle_s:g} s, offset {timing.offset_s:g} s, greens "
        + ", ".join(f"{s} {g:g} s" for s, g in timing.stage_greens_s.items()))
    text = f"{loaded.id} at {at.isoformat()}: {active.timing} ({shown})\n" + (
        f"  day plan {active.day_plan} ({active.day}), since {active.since_local:%Y-%m-%d %H:%M} local"
        if active.day_plan else "  no schedule: the default timing runs at all times")
    emit({"plan": loaded.id, "at": at.isoformat(), **msgspec.to_builtins(active),
           "timing_detail": None if timing is None else timing.model_dump()}, as_json, text)


@cli.group()
def timing() -> None:
    """Timing design from traffic counts: Webster cycle, splits, HCM delay, corridor offsets."""


@timing.command("compute")
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--counts", "counts_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV: movement, motorcycle, car, heavy, unit (veh/h, veh/15min, veh/5min, veh/min) [, plan]")
@click.option("--cycle", "cycle_s", type=click.FloatRange(min=1, max=600), default=None,
              help="use this cycle (s) instead of Webster's")
@click.option("--period-min", type=click.FloatRange(min=1, max=240), default=15.0, show_default=True,
              help="HCM analysis period (minutes)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def timing_compute(plan_file: Path, counts_file: Path, cycle_s: float | None, period_min: float, as_json: bool) -> None:
    """Cycle, stage greens, X, delay and LOS per movement and for the intersection, from counts."""
    from controllers.demand import demand_from_rows
    from controllers.timing_design import design_timing
    from infra.counts import read_counts, rows_for_plan
    from infra.plans import load_plan

    loaded = load_plan(plan_file)
    rows = rows_for_plan(read_counts(counts_file), loaded.id)
    design = design_timing(loaded, demand_from_rows(loaded, rows, str(counts_file)), cycle_s=cycle_s,
                           period_h=period_min / 60.0)
    emit(design, as_json, _design_text(design, loaded.name))


@timing.command("corridor")
@click.argument("plan_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--counts", "counts_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with a plan column: plan, movement, motorcycle, car, heavy, unit")
@click.option("--step", "step_s", type=click.FloatRange(min=0.1, max=10), default=1.0, show_default=True,
              help="offset resolution (s)")
@click.option("--period-min", type=click.FloatRange(min=1, max=240), default=15.0, show_default=True,
              help="HCM analysis period (minutes)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def timing_corridor(plan_files: tuple[Path, ...], counts_file: Path, step_s: float, period_min: float,
                    as_json: bool) -> None:
    """Common cycle and offsets for the intersections of a corridor, with the green-wave bandwidth achieved."""
    from controllers.corridor import design_corridor
    from controllers.demand import demand_from_rows
    from infra.counts import read_counts, rows_for_plan
    from infra.plans import load_plan

    rows = read_counts(counts_file)
    items = []
    for path in plan_files:
        loaded = load_plan(path)
        items.append((loaded, demand_from_rows(loaded, rows_for_plan(rows, loaded.id), f"{counts_file} ({loaded.id})")))
    result = design_corridor(items, step_s=step_s, period_h=period_min / 60.0)
    lines = [f"corridor {result.corridor}: common cycle {result.cycle_s:.1f} s",
             f"green wave: outbound {result.bandwidth_outbound_s:.1f} s, inbound {result.bandwidth_inbound_s:.1f} s "
             f"(efficiency {result.efficiency:.0%} of the cycle)",
             f"{'plan':<6}{'chainage m':>11}{'offset s':>10}{'out green':>11}{'in green':>10}{'delay s':>9}{'LOS':>5}  name"]
    lines += [f"{i.plan:<6}{i.chainage_m:>11.0f}{i.offset_s:>10.1f}{i.outbound.length_s:>11.1f}{i.inbound.length_s:>10.1f}"
              f"{i.design.delay_s:>9.1f}{i.design.los:>5}  {i.name}" for i in result.intersections]
    lines += [f"note: {n}" for n in result.notes]
    emit(result, as_json, "\n".join(lines))


def _design_text(design: Any, name: str) -> str:
    webster = f"{design.webster_cycle_s:.1f} s" if design.webster_cycle_s is not None else "none (Y >= 1)"
    lines = [f"{design.plan} v{design.plan_version} {name} (plan checksum {design.plan_checksum[:12]})",
             f"cycle {design.cycle_s:.1f} s, offset {design.offset_s:.1f} s   Webster {webster}; critical path "
             f"Y = {design.critical_flow_ratio:.3f}, L = {design.critical_lost_time_s:.1f} s",
             f"{'stage':<8}{'green s':>9}{'X':>7}"]
    lines += [f"{s.stage:<8}{s.green_s:>9.1f}{s.degree_of_saturation:>7.2f}" for s in design.stages]
    lines.append(f"{'movement':<10}{'group':<7}{'pcu/h':>7}{'S pcu/h':>9}{'y':>7}{'g s':>7}{'X':>7}"
                 f"{'delay s':>9}{'LOS':>5}{'BoQ m':>9}")
    lines += [f"{m.movement:<10}{m.signal_group:<7}{m.flow_pcu_h:>7.0f}{m.saturation_pcu_h:>9.0f}{m.flow_ratio:>7.3f}"
              f"{m.effective_green_s:>7.1f}{m.degree_of_saturation:>7.2f}{m.delay_s:>9.1f}{m.los:>5}"
              f"{m.back_of_queue_m:>9.0f}" for m in design.movements]
    lines.append(f"intersection: delay {design.delay_s:.1f} s/pcu, LOS {design.los}")
    lines += [f"note: {n}" for n in design.notes]
    return "\n".join(lines)


@cli.group()
def deadletters() -> None:
    """Records that could not become events."""


@deadletters.command("list")
@data_dir_option
@database_option
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--reason", default=None, help="only this reason (malformed, oversized, unknown_type, schema)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (raw bytes in base64)")
def deadletters_list(data_dir: Path | None, database_url: str | None, limit: int, reason: str | None, as_json: bool) -> None:
    """List dead letters, newest first, with reason, source offset and raw bytes."""
    rows = list_dead_letters(database_url_for(settings_for(data_dir), database_url), limit, reason)
    if as_json:
        click.echo(json.dumps([{**msgspec.to_builtins(r), "raw": base64.b64encode(r.raw).decode()} for r in rows],
                              default=str))
        return
    if not rows:
        click.echo("no dead letters")
    for r in rows:
        preview = r.raw[:80].decode("utf-8", errors="replace")
        click.echo(f"#{r.id} {r.received_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z {r.topic}[{r.partition}]@{r.offset} "
                   f"{r.reason}: {r.detail}\n    raw ({len(r.raw)} bytes): {preview}")


@cli.group()
def pki() -> None:
    """The site PKI: CA, device certificates (OPC UA, Modbus/TCP Security) and device users."""


@pki.command("init")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="where to write [default: <data dir>/pki, data dir from LALIN_RUNTIME__DATA_DIR or ./.lalin]")
@click.option("--force", is_flag=True, help="replace existing files (new CA: every device must get new certificates)")
def pki_init(directory: Path | None, force: bool) -> None:
    """Create the site CA, certificates for the catalogued VMS boards, the central and Modbus TLS,
    and the users file (hashed passwords; generated passwords in private/<user>.password, 0600)."""
    from devices.pki import PkiError, init_pki

    target = directory if directory is not None else settings_for(None).runtime.data_dir / "pki"
    try:
        report = init_pki(target, force=force)
    except PkiError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"site PKI written to {report.directory}:")
    for path in report.written:
        mode = path.stat().st_mode & 0o777
        click.echo(f"  {path.relative_to(report.directory)}  ({mode:04o})")
    for user, role in report.users.items():
        click.echo(f"user {user} ({role.value}): password in private/{user}.password")


cli.add_command(vms)
cli.add_command(users)


def main() -> None:
    """Console entry point; lalin's own errors become a one-line message and exit code 2."""
    try:
        cli(standalone_mode=True)
    except LalinError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
