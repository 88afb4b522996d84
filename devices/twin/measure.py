"""Measure the twin's speed under the fixed-time plans: ``python -m devices.twin.measure [options]``.

Runs the demand from ``--begin`` to ``--end`` (s after local midnight) with libsumo in this
process, every junction on lalin's controller firmware and every detector read each step (as
:class:`~devices.twin.world.SumoWorld` always does), and prints simulated seconds per wall-clock
second every simulated half hour and at the end, with the trip metrics.
"""

from __future__ import annotations

import argparse
import sys
import time

from devices.fleet import load_fleet
from devices.twin.build import LATERAL_RESOLUTION_M, STEP_LENGTH_S, TIME_TO_TELEPORT_S
from devices.twin.fixed_time import DEFAULT_DATE, FixedTimeCorridor
from devices.twin.sumo_files import DEMAND_BEGIN_S, DEMAND_END_S
from devices.twin.world import SumoWorld

REPORT_EVERY_S = 1800.0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m devices.twin.measure", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--step", type=float, default=STEP_LENGTH_S, help="step length (s)")
    parser.add_argument("--lateral", type=float, default=LATERAL_RESOLUTION_M, help="sublane resolution (m), 0 = off")
    parser.add_argument("--teleport", type=float, default=TIME_TO_TELEPORT_S, help="time to teleport (s), -1 = never")
    parser.add_argument("--begin", type=float, default=DEMAND_BEGIN_S)
    parser.add_argument("--end", type=float, default=DEMAND_END_S)
    args = parser.parse_args(argv)
    plans = {site.id: site.load_plan() for site in load_fleet().controllers}
    world = SumoWorld(seed=args.seed, step_s=args.step, begin_s=args.begin, end_s=args.end,
                      lateral_resolution_m=args.lateral, time_to_teleport_s=args.teleport)
    started = time.perf_counter()
    with world:
        corridor = FixedTimeCorridor(plans, DEFAULT_DATE, world.time_of_day_s)
        next_report = args.begin + REPORT_EVERY_S
        while world.time_s < args.end - 1e-9:
            world.step(corridor.aspects())
            corridor.advance(args.step)
            if world.time_s >= next_report - 1e-9 or world.time_s >= args.end - 1e-9:
                next_report += REPORT_EVERY_S
                wall = time.perf_counter() - started
                m = world.metrics()
                speed = (world.time_s - args.begin) / wall
                sys.stdout.write(f"{_clock(world.time_s)}  wall {wall:6.1f} s  {speed:6.1f} sim-s/s  "
                                 f"completed {m.completed}  delay {m.mean_delay_s:.1f} s  stops {m.mean_stops:.2f}  "
                                 f"running {m.running}  waiting to enter {m.waiting_to_insert}  teleports {m.teleports}\n")
                sys.stdout.flush()
    return 0


def _clock(time_s: float) -> str:
    minutes = int(time_s // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


if __name__ == "__main__":
    sys.exit(main())
