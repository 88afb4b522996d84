"""The Purdue coordination diagram (PCD) of a coordinated group as a small SVG chart (pure).

x: time of day over the period; y: time in cycle (s, from the begin of red at the bottom).
Each complete cycle is a column from its start to its end: red up to the begin of green, green
up to the begin of yellow, yellow up to the cycle's length; each arrival is a dot at its time
of day and its time in the cycle (:mod:`controllers.signal_performance`). Same look as
:mod:`controllers.junction_charts`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from html import escape

from controllers.signal_performance import CoordinatedGroupPerformance

BANDS = (("red", "#f4c7c3"), ("green", "#b7e1cd"), ("yellow", "#fce8b2"))
DOT = "#1f1f1f"


def pcd_svg(perf: CoordinatedGroupPerformance, start: datetime, end: datetime, *, tz: tzinfo = UTC,
            chart_id: str = "pcd", width: int = 720, height: int = 300) -> str:
    """An SVG PCD of ``perf`` over [``start``, ``end``) (time-of-day labels in ``tz``), titled with AoG and Rp."""
    left, right, top, bottom = 46.0, 10.0, 24.0, 22.0
    plot_w, plot_h = width - left - right, height - top - bottom
    t0, span = start.timestamp(), max((end - start).total_seconds(), 1.0)
    top_s = max([c.length_s for c in perf.cycles] + [1.0])
    aog = f"{perf.aog_pct:.0f} %" if perf.aog_pct is not None else "-"
    rp = f"{perf.platoon_ratio:.2f}" if perf.platoon_ratio is not None else "-"
    title = f"PCD group {perf.group}: {perf.arrivals} arrivals, AoG {aog}, platoon ratio {rp}"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(chart_id)}" class="chart pcd" viewBox="0 0 {width} '
             f'{height}" width="{width}" height="{height}" data-group="{escape(perf.group)}">'
             f'<text x="{left:g}" y="15" font-size="13">{escape(title)}</text>']
    if not perf.cycles:
        parts.append(f'<text x="{left:g}" y="{height / 2:g}" font-size="12">no complete cycle logged in this period</text>'
                     '</svg>')
        return "".join(parts)

    def x(seconds: float) -> float:
        return left + min(max((seconds - t0) / span, 0.0), 1.0) * plot_w

    def y(in_cycle_s: float) -> float:
        return top + plot_h - in_cycle_s / top_s * plot_h

    for c in perf.cycles:
        x0, x1 = x(c.start.timestamp()), x(c.start.timestamp() + c.length_s)
        for (name, colour), (a, b) in zip(BANDS, ((0.0, c.green_s), (c.green_s, c.yellow_s), (c.yellow_s, c.length_s)),
                                          strict=True):
            parts.append(f'<rect class="band {name}" x="{x0:.1f}" y="{y(b):.1f}" width="{max(x1 - x0, 0.5):.1f}" '
                         f'height="{max(y(a) - y(b), 0.0):.1f}" fill="{colour}"/>')
    for c in perf.cycles:
        s0 = c.start.timestamp()
        parts += [f'<circle class="arrival" cx="{x(s0 + a):.1f}" cy="{y(a):.1f}" r="1.6" fill="{DOT}"/>'
                  for a in c.arrivals_s]
    parts.append(f'<line x1="{left:g}" y1="{top + plot_h:g}" x2="{width - right:g}" y2="{top + plot_h:g}" stroke="#999"/>')
    parts.append(f'<text x="4" y="{top + 8:g}" font-size="10">{top_s:.0f} s</text>'
                 f'<text x="4" y="{top + plot_h:g}" font-size="10">0 s</text>')
    for k in range(5):
        at = start + timedelta(seconds=span * k / 4)
        anchor = "start" if k == 0 else "end" if k == 4 else "middle"
        parts.append(f'<text x="{left + plot_w * k / 4:.1f}" y="{height - 6:g}" font-size="10" text-anchor="{anchor}">'
                     f'{at.astimezone(tz):%H:%M}</text>')
    parts.append("</svg>")
    return "".join(parts)
