"""The schematic map is drawn from the network data: every junction and board, placed by chainage."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from controllers.network_map import LOS_COLOURS, los_of, network_svg
from infra.vms_catalogue import vms_network

NETWORK = vms_network()
SVG = "{http://www.w3.org/2000/svg}"


def test_every_junction_and_board_is_drawn_in_corridor_order() -> None:
    root = ET.fromstring(network_svg(NETWORK.plans, NETWORK.boards))
    groups = {g.get("id"): g for g in root.iter(f"{SVG}g")}
    assert {f"junction-{j}" for j in NETWORK.plans} <= set(groups)
    assert {f"board-{b.id}" for b in NETWORK.boards} <= set(groups)
    x = {j: float(next(groups[f"junction-{j}"].iter(f"{SVG}circle")).get("cx", "nan")) for j in NETWORK.plans}
    assert sorted(x, key=x.get) == ["K04", "K01", "K02", "K05", "K03"]  # chainage 0, 1,200, 2,300, 3,300, 4,100 m
    road_y = float(next(groups["junction-K01"].iter(f"{SVG}circle")).get("cy", "nan"))
    assert next(groups["junction-K01"].iter(f"{SVG}a")).get("href") == "junction/K01"  # the junction's page
    def board_y(board_id: str) -> float:
        return float(groups[f"board-{board_id}"].find(f"{SVG}rect").get("y"))  # type: ignore[union-attr]
    assert board_y("vms-sunset-01") < road_y < board_y("vms-sunset-02")  # outbound boards above the road, inbound below
    for board in NETWORK.boards:  # one text line per board line, for the live page to fill
        lines = [t for t in groups[f"board-{board.id}"].iter(f"{SVG}text") if "board-text" in (t.get("class") or "")]
        assert len(lines) == board.lines


def test_level_of_service_follows_hcm_and_is_unknown_without_data() -> None:
    assert los_of(8.0, 0.5) == "A" and los_of(50.0, 0.8) == "D" and los_of(30.0, 1.1) == "F"
    assert los_of(None, None) == "?" and los_of(None, 1.2) == "F"
    assert set("ABCDEF?") == set(LOS_COLOURS)


def test_a_junctions_last_hour_becomes_chart_series_and_svg_line_charts() -> None:
    from datetime import UTC, datetime, timedelta

    from controllers.junction_charts import chart_series, line_chart_svg
    from tests.unit.test_vms_policy import summary

    t0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    summaries = [summary("K01", t0 + timedelta(minutes=k), x=0.5, queue_m=10.0 * k) for k in range(1, 6)]
    series = chart_series(summaries)
    movements = len(summaries[0].movements)
    assert series["flows_veh_h"]["car"][0] == (t0 + timedelta(minutes=1), 60.0 * 10 * movements)  # 10 cars a minute each
    assert [v for _, v in series["queue_m"]["longest queue"]] == [10.0, 20.0, 30.0, 40.0, 50.0]
    root = ET.fromstring(line_chart_svg("chart-queue", "Queue", "m", series["queue_m"]))
    line = root.find(f"{SVG}polyline")
    assert line is not None and len(line.get("points", "").split()) == 5
    assert "no data yet" in line_chart_svg("empty", "Queue", "m", {"longest queue": []})


def test_many_corridors_are_drawn_in_two_columns_for_a_wide_video_wall() -> None:
    import re

    template = NETWORK.plans["K01"]
    assert template.coordination is not None
    plans = {f"J{n:02d}": template.model_copy(update={"id": f"J{n:02d}", "coordination": template.coordination.model_copy(
        update={"corridor": f"Corridor {n % 8}", "chainage_m": 500.0 * (n // 8)})}) for n in range(41)}
    svg = network_svg(plans, [])
    width, height = (float(v) for v in re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg).groups())  # type: ignore[union-attr]
    assert width == 2400 and height < width / 1.5  # eight corridors: four rows of two, wider than tall
    root = ET.fromstring(svg)
    x = [float(c.get("cx", "nan")) for c in root.iter(f"{SVG}circle")]
    assert len(x) == 41 and min(x) < 1200 < max(x)
