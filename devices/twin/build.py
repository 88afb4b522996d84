"""Build the twin's committed data: ``python -m devices.twin.build [--out DIR] [--report]``.

From the fleet (``devices/catalogue/controllers.yaml``), the plans (``infra/catalogue/plans``) and
the corridor's AM-peak counts (``infra/catalogue/counts/sunset_road_am_peak.csv``) it writes into
``devices/twin/data/`` (or ``--out``):

* the plain-XML network (``sunset_road.{nod,edg,typ,con}.xml``) and ``sunset_road.netccfg``;
* ``sunset_road.net.xml`` from netconvert, its timestamp comment stripped (byte-deterministic);
* ``sunset_road.rou.xml`` (demand), ``sunset_road.det.xml`` (E1 and E2 detectors),
  ``sunset_road.sumocfg`` and ``signal_links.yaml`` (lalin's ids -> SUMO's).

``--report`` prints how each main-road link's arriving traffic was reconciled with the next
junction's counts (see :mod:`devices.twin.demand`). A unit test rebuilds into a temporary
directory and compares bytes, so the committed files cannot drift from their sources.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import yaml

from controllers.demand import MovementDemand, demand_from_rows
from controllers.errors import ConfigurationError
from controllers.plan import Plan
from devices.fleet import FLEET_FILE, Fleet, load_fleet
from devices.twin import DATA_DIR
from devices.twin.demand import Counts, link_balances, origins
from devices.twin.links import LINKS_FILE, derive_links
from devices.twin.network import Corridor, derive_corridor
from devices.twin.plainxml import PREFIX, plain_files
from devices.twin.sumo_files import detectors_xml, routes_xml, sumo_config
from infra.counts import read_counts, rows_for_plan
from infra.plans import PLANS_DIR

COUNTS_FILE = Path(__file__).resolve().parents[2] / "infra" / "catalogue" / "counts" / "sunset_road_am_peak.csv"
#: The simulation settings written into the .sumocfg (chosen by measurement, see docs/twin.md).
STEP_LENGTH_S = 1.0
LATERAL_RESOLUTION_M = 0.0  # 0: no sublane model
TIME_TO_TELEPORT_S = 300.0
_NETCONVERT_STAMP = re.compile(rb"<!-- generated on .*?-->\n\n", re.S)


def load_inputs(fleet_file: Path = FLEET_FILE, plans_dir: Path = PLANS_DIR,
                counts_file: Path = COUNTS_FILE) -> tuple[Fleet, dict[str, Plan], Counts]:
    """The fleet, each controller's plan (by controller id) and the counts (controller id -> movement -> veh/h by class)."""
    fleet = load_fleet(fleet_file)
    plans = {site.id: site.load_plan(plans_dir) for site in fleet.controllers}
    rows = read_counts(counts_file)
    counts: dict[str, dict[str, MovementDemand]] = {
        site.id: demand_from_rows(plans[site.id], rows_for_plan(rows, plans[site.id].id), source=str(counts_file))
        for site in fleet.controllers}
    return fleet, plans, counts


def netconvert(out_dir: Path) -> Path:
    """Run netconvert on the plain XML in ``out_dir``; the net without netconvert's timestamp comment."""
    import sumo  # noqa: F401  (sets SUMO_HOME, so netconvert validates its inputs)
    from sumolib import checkBinary

    result = subprocess.run([checkBinary("netconvert"), "-c", f"{PREFIX}.netccfg"], cwd=out_dir,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigurationError(f"netconvert failed in {out_dir} (exit {result.returncode}): {result.stderr.strip()}")
    net_file = out_dir / f"{PREFIX}.net.xml"
    net_file.write_bytes(_NETCONVERT_STAMP.sub(b"", net_file.read_bytes(), count=1))
    return net_file


def build(out_dir: Path = DATA_DIR, corridor: Corridor | None = None) -> dict[str, Path]:
    """Write every file of the twin into ``out_dir``; file name -> path."""
    import sumolib

    fleet, plans, counts = load_inputs()
    corridor = corridor or derive_corridor(fleet, plans)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = plain_files(corridor)
    for name, text in texts.items():
        (out_dir / name).write_text(text, encoding="utf-8")
    net_file = netconvert(out_dir)
    net = sumolib.net.readNet(str(net_file))
    texts = {**texts,
             f"{PREFIX}.rou.xml": routes_xml(origins(corridor, counts)),
             f"{PREFIX}.det.xml": detectors_xml(net, corridor),
             f"{PREFIX}.sumocfg": sumo_config(STEP_LENGTH_S, LATERAL_RESOLUTION_M, TIME_TO_TELEPORT_S),
             LINKS_FILE: _links_yaml(net, corridor, fleet)}
    for name, text in texts.items():
        (out_dir / name).write_text(text, encoding="utf-8")
    return {name: out_dir / name for name in [*texts, net_file.name]}


def _links_yaml(net: object, corridor: Corridor, fleet: Fleet) -> str:
    links = derive_links(net, corridor, fleet)
    header = ("# lalin's ids -> the SUMO twin's ids, derived from sunset_road.net.xml by python -m devices.twin.build:\n"
              "# do not edit. See devices/twin/links.py and docs/twin.md.\n")
    return header + yaml.safe_dump(links.model_dump(), sort_keys=False, default_flow_style=None, width=200)


def report() -> str:
    """How each main-road link's arriving traffic was reconciled with the next junction's count (veh/h)."""
    fleet, plans, counts = load_inputs()
    corridor = derive_corridor(fleet, plans)
    lines = ["link       class       arriving  counted  sink  source (veh/h)"]
    lines += [f"{b.from_junction}->{b.to_junction}   {b.vehicle_class:<10} {b.arriving_veh_h:8.0f} {b.counted_veh_h:8.0f} "
              f"{b.sink_fraction:5.1%} {b.source_veh_h:7.0f}" for b in link_balances(corridor, counts)]
    entering = sum(o.rate_veh_h for o in origins(corridor, counts))
    lines.append(f"entering the corridor at the peak hour: {entering:.0f} veh/h")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: build into ``--out`` (default the committed data directory), or ``--report``."""
    parser = argparse.ArgumentParser(prog="python -m devices.twin.build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="directory to write (default: devices/twin/data)")
    parser.add_argument("--report", action="store_true", help="print the count reconciliation instead of building")
    args = parser.parse_args(argv)
    if args.report:
        sys.stdout.write(report() + "\n")
        return 0
    for path in build(args.out).values():
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
