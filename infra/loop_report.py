"""The report at the end of a bounded ``lalin up``: the closed loop against the fixed time-of-day plans."""

from __future__ import annotations

from typing import Any, Protocol

from devices.twin.reports import TripMetrics
from infra.simclock import hhmm


class _Commands(Protocol):
    received: int
    expired: int
    outcomes: dict[str, int]


def comparison(live: TripMetrics, fixed: TripMetrics, commands: _Commands | None, begin_s: float,
               end_s: float) -> dict[str, Any]:
    """Both runs' trip metrics (same demand, same seed) and the relative change of delay and stops (%)."""
    def change(a: float, b: float) -> float | None:
        return round(100.0 * (a - b) / b, 1) if b else None

    return {
        "window": {"begin": hhmm(begin_s), "end": hhmm(end_s), "simulated_s": round(end_s - begin_s, 1)},
        "closed_loop": {"trips": live.completed, "mean_delay_s": round(live.mean_delay_s, 2),
                        "mean_stops": round(live.mean_stops, 3), "throughput_veh_h": round(live.throughput_veh_h, 1),
                        "still_running": live.running, "teleports": live.teleports},
        "fixed_time": {"trips": fixed.completed, "mean_delay_s": round(fixed.mean_delay_s, 2),
                       "mean_stops": round(fixed.mean_stops, 3), "throughput_veh_h": round(fixed.throughput_veh_h, 1),
                       "still_running": fixed.running, "teleports": fixed.teleports},
        "change_pct": {"mean_delay": change(live.mean_delay_s, fixed.mean_delay_s),
                       "mean_stops": change(live.mean_stops, fixed.mean_stops)},
        "commands": {"received": commands.received if commands else 0, "expired": commands.expired if commands else 0,
                     "outcomes": dict(commands.outcomes) if commands else {}},
    }


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as aligned text lines."""
    live, fixed, change = report["closed_loop"], report["fixed_time"], report["change_pct"]
    w = report["window"]

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:+.1f} %"

    return [
        f"report: {w['begin']}-{w['end']} WITA simulated ({w['simulated_s'] / 60:.0f} min), same demand and seed",
        f"  {'':24}{'closed loop':>14}{'fixed time':>14}{'change':>10}",
        f"  {'trips completed':24}{live['trips']:>14,}{fixed['trips']:>14,}",
        f"  {'mean delay (s/veh)':24}{live['mean_delay_s']:>14.1f}{fixed['mean_delay_s']:>14.1f}{pct(change['mean_delay']):>10}",
        f"  {'mean stops (per veh)':24}{live['mean_stops']:>14.2f}{fixed['mean_stops']:>14.2f}{pct(change['mean_stops']):>10}",
        f"  {'throughput (veh/h)':24}{live['throughput_veh_h']:>14,.0f}{fixed['throughput_veh_h']:>14,.0f}",
        f"  {'vehicles still on road':24}{live['still_running']:>14,}{fixed['still_running']:>14,}",
        f"  commands: {report['commands']['received']} received, outcomes {report['commands']['outcomes'] or 'none'}, "
        f"{report['commands']['expired']} expired",
    ]
