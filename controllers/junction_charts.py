"""A junction's recent traffic state as chart series and small SVG line charts (pure).

From the fold's minute summaries (``TrafficMeasured``, oldest first): flows by vehicle class
(veh/h, all signalised movements, from the 1-min counts), mean occupancy (fraction), mean speed
(km/h) and the longest camera queue (m), one point per summary window end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape

from controllers.payloads import TrafficMeasured

Series = Mapping[str, Sequence[tuple[datetime, float]]]
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def chart_series(summaries: Sequence[TrafficMeasured]) -> dict[str, dict[str, list[tuple[datetime, float]]]]:
    """Per chart (flows, occupancy, speed, queue) its named series of (window end, value)."""
    flows: dict[str, list[tuple[datetime, float]]] = {"motorcycle": [], "car": [], "heavy": [], "unclassified": []}
    occupancy: list[tuple[datetime, float]] = []
    speed: list[tuple[datetime, float]] = []
    queue: list[tuple[datetime, float]] = []
    for s in summaries:
        t = s.window.end
        for name, values in flows.items():
            values.append((t, 60.0 * sum(getattr(m.volume_1min, name) for m in s.movements)))
        occ = [m.occupancy for m in s.movements if m.occupancy is not None]
        if occ:
            occupancy.append((t, sum(occ) / len(occ)))
        speeds = [m.mean_speed_kmh for m in s.movements if m.mean_speed_kmh is not None]
        if speeds:
            speed.append((t, sum(speeds) / len(speeds)))
        queues = [a.queue_length_m for a in s.approaches if a.queue_length_m is not None]
        if queues:
            queue.append((t, max(queues)))
    return {"flows_veh_h": flows, "occupancy": {"mean occupancy": occupancy}, "speed_kmh": {"mean speed": speed},
            "queue_m": {"longest queue": queue}}


def line_chart_svg(chart_id: str, title: str, unit: str, series: Series, width: int = 520, height: int = 180) -> str:
    """An SVG line chart of ``series`` (one polyline each, shared axes from 0), titled, with its unit."""
    points = [p for values in series.values() for p in values]
    left, right, top, bottom = 50.0, 10.0, 24.0, 22.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(chart_id)}" class="chart" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}"><text x="{left:g}" y="15" font-size="13">{escape(title)} ({escape(unit)})'
             '</text>']
    if not points:
        parts.append(f'<text x="{left:g}" y="{height / 2:g}" font-size="12">no data yet</text></svg>')
        return "".join(parts)
    t0 = min(t for t, _ in points).timestamp()
    span = max(max(t for t, _ in points).timestamp() - t0, 1.0)
    top_value = max(*(v for _, v in points), 1e-9)
    plot_w, plot_h = width - left - right, height - top - bottom

    def xy(t: datetime, v: float) -> str:
        return f"{left + (t.timestamp() - t0) / span * plot_w:.1f},{top + plot_h - v / top_value * plot_h:.1f}"

    parts.append(f'<line x1="{left:g}" y1="{top + plot_h:g}" x2="{width - right:g}" y2="{top + plot_h:g}" stroke="#999"/>')
    parts.append(f'<text x="4" y="{top + 8:g}" font-size="10">{top_value:.3g}</text>'
                 f'<text x="4" y="{top + plot_h:g}" font-size="10">0</text>')
    for k, (name, values) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        if values:
            parts.append(f'<polyline class="series" data-series="{escape(name)}" fill="none" stroke="{colour}" '
                         f'stroke-width="1.5" points="{" ".join(xy(t, v) for t, v in values)}"/>')
        parts.append(f'<text x="{left + 110 * k:g}" y="{height - 6:g}" font-size="10" fill="{colour}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
