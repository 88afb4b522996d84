"""The twin's SUMO inputs besides the net: demand (routes), detectors and the simulation configuration.

Written by hand with fixed number formats so the files are byte-deterministic. SUMO time is
seconds after local midnight (WITA): the morning peak runs from 21600 (06:00) to 32400 (09:00).
"""

from __future__ import annotations

from typing import Any

from controllers.errors import ConfigurationError
from devices.twin.demand import PERIOD_S, PROFILE, Origin, seconds_of_day
from devices.twin.links import advance_e1_id, e1_id, e2_id
from devices.twin.network import Corridor
from devices.twin.plainxml import HEADER, PREFIX, q

#: Vehicle types: Bali's motorcycle-heavy mix. Without the sublane model vehicles ride in single file, so
#: one SUMO ``motorcycle`` stands for :data:`MOTORCYCLES_PER_VEHICLE` motorcycles riding abreast (as they
#: do in a Balinese lane): its flows run at a third of the counted rate and every report counts it three
#: times. ``heavy`` is a distribution of buses and trucks. See docs/twin.md.
VTYPES = """    <vType id="motorcycle" vClass="motorcycle" length="2.20" width="2.40" minGap="0.50" maxSpeed="16.70" \
accel="3.00" decel="6.00" sigma="0.20" impatience="1.00" jmTimegapMinor="0.50"/>
    <vType id="car" vClass="passenger" length="4.50" width="1.80" minGap="2.00" maxSpeed="16.70" accel="2.60" decel="4.50" \
sigma="0.30" impatience="0.50" jmTimegapMinor="0.70"/>
    <vTypeDistribution id="heavy">
        <vType id="bus" vClass="bus" length="11.00" width="2.50" minGap="2.50" maxSpeed="13.90" accel="1.20" decel="4.00" \
sigma="0.50" probability="0.40"/>
        <vType id="truck" vClass="truck" length="8.00" width="2.40" minGap="2.50" maxSpeed="13.90" accel="1.10" decel="4.00" \
sigma="0.50" probability="0.60"/>
    </vTypeDistribution>
"""
MOTORCYCLES_PER_VEHICLE = 3
#: vType id -> lalin's vehicle class (controllers.demand.CLASSES).
VTYPE_CLASS = {"motorcycle": "motorcycle", "car": "car", "bus": "heavy", "truck": "heavy"}
#: Real vehicles one SUMO vehicle of each class stands for.
CLASS_WEIGHT = {"motorcycle": MOTORCYCLES_PER_VEHICLE, "car": 1, "heavy": 1}
DEMAND_BEGIN_S = seconds_of_day(PROFILE[0][0])
DEMAND_END_S = seconds_of_day(PROFILE[-1][0]) + PERIOD_S
E1_BEFORE_END_M = 0.1  # at the stop line: vehicles waiting (1.0 m before the end) or to change lanes (0.5 m) stay off it
E2_LENGTH_M = 120.0  # queue detectors cover the last 120 m of each approach lane
ADVANCE_MIN_FROM_LANE_START_M = 1.0  # an advance loop lies at least this far into its approach lane


def routes_xml(origins: list[Origin]) -> str:
    """``<routes>``: vehicle types, a route distribution per origin and class, and a flow per origin, class and
    15-minute period (Poisson departures at the period's rate in SUMO vehicles), sorted by begin."""
    lines = [HEADER.rstrip("\n"), "<routes>", VTYPES.rstrip("\n")]
    for o in origins:
        lines.append(f"    <routeDistribution id={q(_name(o))}>")
        lines += [f"        <route id={q(f'{_name(o)}.{k}')} edges={q(' '.join(r.edges))} probability=\"{r.probability:.6f}\"/>"
                  for k, r in enumerate(o.routes)]
        lines.append("    </routeDistribution>")
    flows = []
    for hhmm, factor in PROFILE:
        begin, tag = seconds_of_day(hhmm), hhmm.replace(":", "")
        for o in origins:
            rate_per_s = o.rate_veh_h * factor / 3600.0 / CLASS_WEIGHT[o.vehicle_class]
            flows.append(f"    <flow id={q(f'{_name(o)}.{tag}')} type={q(o.vehicle_class)} route={q(_name(o))} "
                         f"begin=\"{begin}\" end=\"{begin + PERIOD_S}\" period=\"exp({rate_per_s:.6f})\" "
                         "departLane=\"best\" departSpeed=\"max\"/>")
    return "\n".join([*lines, *flows, "</routes>"]) + "\n"


def _name(origin: Origin) -> str:
    return f"{origin.edge}.{origin.vehicle_class}"


def detectors_xml(net: Any, corridor: Corridor) -> str:
    """``<additional>``: an E1 loop just past where vehicles wait at the stop line and an E2 over the last
    :data:`E2_LENGTH_M` metres of every approach lane, then an E1 for each advance detector ``distance_m`` before
    the end of its lane (the stop line); no output files (``NUL``). ConfigurationError naming the junction, approach
    and lane length when an advance detector lies further upstream than its approach lane begins."""
    lines = [HEADER.rstrip("\n"), "<additional>"]
    for j in corridor.junctions:
        for a in j.approaches:
            for lane in a.lanes:
                lane_id = a.lane_id(lane)
                length = float(net.getLane(lane_id).getLength())
                lines.append(f"    <inductionLoop id={q(e1_id(j.id, lane))} lane={q(lane_id)} "
                             f"pos=\"{length - E1_BEFORE_END_M:.2f}\" period=\"3600\" file=\"NUL\"/>")
                lines.append(f"    <laneAreaDetector id={q(e2_id(j.id, lane))} lane={q(lane_id)} "
                             f"pos=\"{max(0.0, length - E2_LENGTH_M):.2f}\" endPos=\"{length - 0.1:.2f}\" "
                             "period=\"3600\" file=\"NUL\"/>")
    for j in corridor.junctions:
        approaches = {a.id: a for a in j.approaches}
        for loop in j.advance_loops:
            lane_id = approaches[loop.approach].lane_id(loop.lane)
            lines.append(f"    <inductionLoop id={q(advance_e1_id(loop.detector_id))} lane={q(lane_id)} "
                         f"pos=\"{advance_position_m(net, j.id, loop.approach, lane_id, loop.distance_m):.2f}\" "
                         "period=\"3600\" file=\"NUL\"/>")
    return "\n".join([*lines, "</additional>"]) + "\n"


def advance_position_m(net: Any, junction: str, approach: str, lane_id: str, distance_m: float) -> float:
    """Where on ``lane_id`` (m from its start) a loop ``distance_m`` upstream of the stop line (the lane's end) lies.

    The twin's approach lane runs from the mid-block node (or the corridor's or side street's end) to the stop line;
    a distance beyond its start cannot be built: ConfigurationError naming the junction, approach, lane length and
    the furthest distance that fits (the loop would otherwise sit on another road, or its travel time be wrong)."""
    length = float(net.getLane(lane_id).getLength())
    furthest = length - ADVANCE_MIN_FROM_LANE_START_M
    if distance_m > furthest:
        raise ConfigurationError(
            f"junction {junction}, approach {approach}: an advance detector {distance_m:g} m upstream of the stop line "
            f"does not fit on lane {lane_id}, which is {length:.1f} m long: the furthest is {furthest:.1f} m "
            "(devices/catalogue/controllers.yaml, advance_detectors.distance_m)")
    return length - distance_m


def sumo_config(step_length_s: float, lateral_resolution_m: float, time_to_teleport_s: float) -> str:
    """The ``.sumocfg``: net, demand and detectors; the morning peak; the chosen step and lateral resolution."""
    lateral = f"\n        <lateral-resolution value=\"{lateral_resolution_m:g}\"/>" if lateral_resolution_m > 0 else ""
    return f"""{HEADER}<configuration>
    <input>
        <net-file value="{PREFIX}.net.xml"/>
        <route-files value="{PREFIX}.rou.xml"/>
        <additional-files value="{PREFIX}.det.xml"/>
    </input>
    <time>
        <begin value="{DEMAND_BEGIN_S}"/>
        <end value="{DEMAND_END_S}"/>
        <step-length value="{step_length_s:g}"/>
    </time>
    <processing>{lateral}
        <time-to-teleport value="{time_to_teleport_s:g}"/>
    </processing>
    <random_number>
        <seed value="42"/>
    </random_number>
    <report>
        <no-step-log value="true"/>
    </report>
</configuration>
"""
