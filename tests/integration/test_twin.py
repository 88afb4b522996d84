"""The SUMO twin for real (libsumo): signals obeyed, detector entries conserved, determinism, incidents,
and the child-process wrapper with the fixed-time baseline.

Each world runs in this process (libsumo allows one at a time); TwinProcess tests run it in a
spawned child. Runs are short (minutes of simulated time from 06:00, the start of the demand).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import pytest

from controllers.errors import ConfigurationError
from devices.fleet import load_fleet
from devices.twin.build import STEP_LENGTH_S
from devices.twin.errors import MissingAspect, TwinProcessError, UnknownCamera
from devices.twin.fixed_time import DEFAULT_DATE, FixedTimeCorridor
from devices.twin.process import TwinProcess, run_fixed_time, run_fixed_time_in_child
from devices.twin.reports import TripMetrics
from devices.twin.sumo_files import MOTORCYCLES_PER_VEHICLE
from devices.twin.world import StepReport, SumoWorld

STEP_S = STEP_LENGTH_S  # the twin's own step (1 s)


def all_red(world: SumoWorld) -> dict[str, dict[str, str]]:
    return {cid: dict.fromkeys(world.signal_groups(cid), "red") for cid in world.controllers()}


def fixed_time(world: SumoWorld) -> FixedTimeCorridor:
    plans = {site.id: site.load_plan() for site in load_fleet().controllers}
    return FixedTimeCorridor(plans, DEFAULT_DATE, world.time_of_day_s)


def run(world: SumoWorld, seconds: float, aspects: Mapping[str, Mapping[str, str]]) -> list[StepReport]:
    return [world.step(aspects) for _ in range(round(seconds / world.step_s))]


def run_fixed(world: SumoWorld, seconds: float, corridor: FixedTimeCorridor) -> list[StepReport]:
    reports = []
    for _ in range(round(seconds / world.step_s)):
        reports.append(world.step(corridor.aspects()))
        corridor.advance(world.step_s)
    return reports


def entered(reports: list[StepReport]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for report in reports:
        for detector, step in report.detectors.items():
            out.setdefault(detector, []).extend(e.vehicle_id for e in step.entries)
    return out


def test_all_red_lets_no_vehicle_over_a_signalised_stop_line_and_one_green_only_its_own() -> None:
    with SumoWorld(seed=7, step_s=STEP_S) as world:
        assert world.time_s == 21600.0 and world.time_of_day_s == 6 * 3600
        red = run(world, 120, all_red(world))
        assert world.time_s == pytest.approx(21720.0)
        stop_line = {det for c in world.links.controllers.values() for det, d in c.detectors.items()
                     if d.kind == "stop_line"}
        assert {d: v for d, v in entered(red).items() if v and d in stop_line} == {}
        assert sum(s.occupied_s for r in red for d, s in r.detectors.items() if d in stop_line) == 0.0
        # the advance loops 120 m upstream see the arrivals, and the queues growing back over them
        assert {d.rsplit("-", 1)[1] for d, v in entered(red).items() if v} <= {"A1", "A2", "A3"}
        assert any(v for d, v in entered(red).items() if d not in stop_line)
        free_flow = world.camera_observation("CAM-K03-N")  # its free-flow left lane keeps moving under red
        assert free_flow.motorcycle + free_flow.car + free_flow.heavy > 0 and free_flow.queue_m > 0
        aspects = all_red(world)
        aspects["K03"]["A"] = "green"
        green = entered(run(world, 60, aspects))
        moved = {d for d, v in green.items() if v and d in stop_line}
        assert moved and moved <= {"K03-N_T-1", "K03-N_T-2", "K03-N_T-3"}


def test_detector_entries_are_each_vehicle_crossing_once_and_motorcycle_heavy() -> None:
    with SumoWorld(seed=3, step_s=STEP_S) as world:
        detectors = {det: d for c in world.links.controllers.values() for det, d in c.detectors.items()
                     if d.kind == "stop_line"}
        advance = {det: d for c in world.links.controllers.values() for det, d in c.detectors.items()
                   if d.kind == "advance"}
        approach_of = {d.lane: (d.lane.rsplit("_", 1)[0]) for d in detectors.values()}
        on_loop: dict[str, set[str]] = {det: set() for det in detectors}
        on_lane: dict[str, set[str]] = {lane: set() for lane in approach_of}
        crossed: dict[str, set[str]] = {edge: set() for edge in approach_of.values()}
        corridor = fixed_time(world)
        sumo = world._sumo
        amber = {cid: dict.fromkeys(groups, "amber") for cid, groups in all_red(world).items()}
        reports = []
        for k in range(round(600 / STEP_S)):  # the last 30 s: amber, then all red, so every loop is cleared
            aspects = corridor.aspects() if k < round(570 / STEP_S) else amber if k < round(575 / STEP_S) else all_red(world)
            reports.append(world.step(aspects))
            corridor.advance(STEP_S)
            for det, d in detectors.items():  # SUMO's own record of the loops, step by step
                on_loop[det] |= set(sumo.inductionloop.getLastStepVehicleIDs(d.e1))
            for lane, before in on_lane.items():  # independent truth: vehicles leaving a signalised lane into the junction
                now = set(sumo.lane.getLastStepVehicleIDs(lane))
                crossed[approach_of[lane]] |= {v for v in before - now if str(sumo.vehicle.getLaneID(v)).startswith(":")}
                on_lane[lane] = now
        everything = entered(reports)
        counts = {det: v for det, v in everything.items() if det in detectors}
        # advance loops: their own count, each vehicle once per approach's advance loops, beside its stop-line count
        per_advance: dict[str, list[str]] = {}
        for det, d in advance.items():
            per_advance.setdefault(d.lane.rsplit("_", 1)[0], []).extend(everything[det])
        assert set(per_advance) == {f"{j}_{arm}_in" for j in world.controllers() for arm in "NS"}
        for edge, vehicles in per_advance.items():
            assert vehicles and len(vehicles) == len(set(vehicles)), edge
        per_approach: dict[str, list[str]] = {}
        seen_by_sumo: dict[str, set[str]] = {}
        for det, vehicles in counts.items():
            edge = approach_of[detectors[det].lane]
            per_approach.setdefault(edge, []).extend(vehicles)
            seen_by_sumo.setdefault(edge, set()).update(on_loop[det])
        for edge, vehicles in per_approach.items():  # a vehicle may swap lanes on the stop line: counted once per approach
            assert len(vehicles) == len(set(vehicles)), edge  # each vehicle once
            sumo_vehicles = {v.split("#")[0] for v in vehicles}
            assert sumo_vehicles == seen_by_sumo[edge] == crossed[edge], edge  # none lost, none extra
            assert len(vehicles) == sum(MOTORCYCLES_PER_VEHICLE if ".motorcycle." in v else 1 for v in sumo_vehicles)
        total = sum(len(v) for v in counts.values())
        assert total > 1000
        classes = [e.vehicle_class for r in reports for s in r.detectors.values() for e in s.entries]
        assert classes.count("motorcycle") / len(classes) > 0.6 and "car" in classes
        busy = [s.occupied_s for r in reports for s in r.detectors.values() if s.entries]
        assert busy and all(0 <= o <= STEP_S + 1e-9 for o in busy) and max(busy) > 0
        metrics = world.metrics()
        assert metrics.completed > 500 and metrics.mean_delay_s > 0 and metrics.mean_stops > 0
        assert metrics.inserted == metrics.completed + metrics.running


def _short_run(seed: int) -> tuple[list[StepReport], object]:
    with SumoWorld(seed=seed, step_s=STEP_S) as world:
        reports = run_fixed(world, 240, fixed_time(world))
        return reports, world.metrics()


def test_same_seed_and_aspects_give_identical_reports_and_another_seed_differs() -> None:
    first, first_metrics = _short_run(11)
    again, again_metrics = _short_run(11)
    other, other_metrics = _short_run(12)
    assert first == again and first_metrics == again_metrics
    assert first != other and first_metrics != other_metrics


def test_a_stalled_vehicle_grows_the_cameras_queue_and_flags_the_incident() -> None:
    with SumoWorld(seed=5, step_s=STEP_S) as world:
        aspects = all_red(world)
        aspects["K01"].update(D="green", E="green")  # Jl. Dewi Sri runs freely: no signal queue on its one lane
        run(world, 150, aspects)
        before = world.camera_observation("CAM-K01-W")
        assert not before.incident
        with pytest.raises(UnknownCamera, match="CAM-K09-N"):
            world.stall_vehicle("CAM-K09-N", 60)
        vehicle = world.stall_vehicle("CAM-K01-W", 200)
        while vehicle is None:  # until a vehicle is in the camera's view
            world.step(aspects)
            vehicle = world.stall_vehicle("CAM-K01-W", 200)
        assert vehicle.startswith("K01_W_in.")
        run(world, 150, aspects)
        during = world.camera_observation("CAM-K01-W")
        assert during.incident and during.queue_m > before.queue_m + 20 and during.halting > before.halting + 3
        assert world._sumo.vehicle.getSpeed(vehicle) == 0.0
        assert not world.camera_observation("CAM-K01-E").incident
        run(world, 60, aspects)
        assert not world.camera_observation("CAM-K01-W").incident  # released after 200 s
        assert world._sumo.vehicle.getSpeed(vehicle) > 0.0


def test_missing_group_is_refused_and_absent_controllers_keep_their_state() -> None:
    with SumoWorld(seed=1, step_s=STEP_S) as world:
        aspects = all_red(world)
        aspects["K01"]["A"] = "green"
        world.step(aspects)
        state = world._sumo.trafficlight.getRedYellowGreenState("K01")
        assert "G" in state
        del aspects["K02"]["D"]
        with pytest.raises(MissingAspect, match=r"K02.*'D'"):
            world.step(aspects)
        world.step({})  # no controller given: every light keeps its state
        assert world._sumo.trafficlight.getRedYellowGreenState("K01") == state


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_twin_process_round_trip_child_errors_and_clean_close() -> None:
    async def scenario() -> int:
        async with TwinProcess(seed=2, step_s=STEP_S) as twin:
            assert twin.pid is not None
            pid_before = twin.pid
            groups = await twin.signal_groups("K01")
            assert groups == ["A", "B", "C", "D", "E"]
            assert "CAM-K01-N" in await twin.cameras()
            aspects = {cid: dict.fromkeys(await twin.signal_groups(cid), "red") for cid in await twin.controllers()}
            report = await twin.step(aspects)
            assert report.time_s == 21600 + STEP_S and "K01-N_T-1" in report.detectors
            with pytest.raises(TwinProcessError, match=r"MissingAspect.*K01") as caught:
                await twin.step({"K01": {"A": "green"}})
            assert caught.value.child_type == "MissingAspect"
            with pytest.raises(TwinProcessError, match="UnknownCamera"):
                await twin.camera_observation("CAM-nowhere")
            for _ in range(20):  # the child carries on after an error
                report = await twin.step(aspects)
            assert report.time_s == 21600 + 21 * STEP_S
            reading = await twin.camera_observation("CAM-K01-N")
            assert reading.interval_s == pytest.approx(21 * STEP_S)
            assert (await twin.metrics()).inserted > 0
            # A caller cancelled mid-step (the loop's task stopped at shutdown): the next answer is still its own.
            for _ in range(5):
                stepping = asyncio.create_task(twin.step(aspects))
                await asyncio.sleep(0)  # the request is in the pipe
                stepping.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await stepping
                metrics = await twin.metrics()
                assert isinstance(metrics, TripMetrics) and metrics.time_s >= 21600 + 21 * STEP_S
            assert twin.pid == pid_before
            pid = twin.pid
        assert twin.pid is None
        return pid

    pid = asyncio.run(scenario())
    assert _gone(pid)


def test_fixed_time_baseline_in_a_child_while_another_world_runs_here() -> None:
    async def scenario() -> object:
        baseline = asyncio.ensure_future(run_fixed_time_in_child(seed=4, begin_s=21600, end_s=21600 + 1800))
        with SumoWorld(seed=4, step_s=STEP_S, end_s=21660) as world:  # the main process stays free meanwhile
            run(world, 30, all_red(world))
        return await baseline

    metrics = asyncio.run(scenario())
    assert metrics.completed > 2000  # type: ignore[attr-defined]
    assert metrics.mean_delay_s > 0 and metrics.mean_stops > 0  # type: ignore[attr-defined]
    assert metrics.throughput_veh_h > 4000  # type: ignore[attr-defined]


def test_run_fixed_time_is_the_same_in_process_and_in_a_child() -> None:
    here = run_fixed_time(seed=9, begin_s=21600, end_s=21600 + 120)
    there = asyncio.run(run_fixed_time_in_child(seed=9, begin_s=21600, end_s=21600 + 120))
    assert here == there and here.inserted > 100


def test_a_warm_up_is_left_out_of_the_measured_trips() -> None:
    """Same seed, same demand: measured from 06:03 after a warm-up from 06:00, the run counts the trips that
    departed from 06:03 on — the whole run's departures less the warm-up's, never a warm-up vehicle's trip."""
    whole = run_fixed_time(seed=9, begin_s=21600, end_s=21600 + 360)
    warm_up = run_fixed_time(seed=9, begin_s=21600, end_s=21600 + 180)
    measured = run_fixed_time(seed=9, begin_s=21600, end_s=21600 + 360, measure_from_s=21600 + 180)
    assert warm_up.inserted > 100 and warm_up.completed > 0
    # a vehicle still waiting to enter when the warm-up ends is the warm-up's
    assert whole.inserted - warm_up.inserted - warm_up.waiting_to_insert <= measured.inserted
    assert measured.inserted <= whole.inserted - warm_up.inserted
    # the same simulation, counted from 06:03: warm-up vehicles still on the road then finish later, in the whole
    # run's trips, not in the measured ones
    assert measured.running == whole.running and measured.time_s == whole.time_s
    assert 0 < measured.completed <= whole.completed - warm_up.completed
    assert measured.throughput_veh_h == pytest.approx(measured.completed / (180 / 3600))
    with pytest.raises(ConfigurationError, match="not within the run"):
        run_fixed_time(seed=9, begin_s=21600, end_s=21660, measure_from_s=21700)
