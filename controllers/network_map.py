"""The network as a schematic SVG map, drawn from the network data (pure; no map tiles: a command centre
may be offline), and the colours of level of service.

A coordinated corridor is drawn as a horizontal road (in two columns when there are more than three
corridors, for a wide video wall), its junctions placed by chainage (m) on a common scale; the boards
facing outbound traffic stand above the road, those facing inbound below, at their chainage; junctions
and boards off a corridor are listed beside it. Every live element carries an ``id`` (``junction-K01``,
``board-vms-sunset-01``) and a ``data-*`` role the live page updates: ``.los`` (a junction's fill),
``.stage`` (its running stage), ``.board-text``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from controllers.capacity import level_of_service
from controllers.plan import Plan
from controllers.vms_config import BoardSite

#: HCM level of service -> fill colour (A green ... F red), and unknown (grey)
LOS_COLOURS: Mapping[str, str] = {"A": "#1a9850", "B": "#66bd63", "C": "#d9ef8b", "D": "#fee08b", "E": "#fc8d59",
                                  "F": "#d73027", "?": "#9e9e9e"}
WIDTH, MARGIN, ROAD_Y, ROW_H = 1200.0, 80.0, 180.0, 310.0
#: More corridors than this are drawn in two columns (a video wall is wide, not tall).
ONE_COLUMN_MAX = 3


def los_of(delay_s: float | None, degree_of_saturation: float | None) -> str:
    """The HCM level of service of a control delay (s/veh) and degree of saturation; ``?`` when unknown."""
    if delay_s is None:
        return "?" if degree_of_saturation is None else ("F" if degree_of_saturation > 1.0 else "?")
    return level_of_service(delay_s, degree_of_saturation or 0.0)


def _corridors(plans: Mapping[str, Plan]) -> dict[str, list[tuple[float, str]]]:
    out: dict[str, list[tuple[float, str]]] = {}
    for junction, plan in sorted(plans.items()):
        if plan.coordination is not None:
            out.setdefault(plan.coordination.corridor, []).append((plan.coordination.chainage_m, junction))
    return {name: sorted(items) for name, items in sorted(out.items())}


def network_svg(plans: Mapping[str, Plan], boards: Sequence[BoardSite]) -> str:
    """The schematic map (SVG text) of the junctions of ``plans`` and the ``boards`` (see the module docstring)."""
    corridors = _corridors(plans)
    placed = {j for items in corridors.values() for _, j in items}
    others = [j for j in sorted(plans) if j not in placed]
    loose = [b for b in boards if b.corridor is None or b.corridor not in corridors]
    junction_rows, board_rows = -(-len(others) // 4), -(-len(loose) // 4)  # ceiling divisions
    columns = 1 if len(corridors) <= ONE_COLUMN_MAX else 2
    rows = -(-len(corridors) // columns)
    height = ROW_H * rows + 70.0 * junction_rows + 90.0 * board_rows + 40.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="network-map" viewBox="0 0 {WIDTH * columns:g} {height:g}" '
             f'role="img" aria-label="lalin network map">',
             '<style>.road{stroke:#555;stroke-width:14}.label{font:14px sans-serif;fill:#222}'
             '.small{font:11px monospace;fill:#222}.board{fill:#111;stroke:#888}.board-text{font:10px monospace;fill:#ffb000}'
             '.junction{stroke:#222;stroke-width:2}</style>']
    for index, (corridor, items) in enumerate(corridors.items()):
        row, column = divmod(index, columns)
        y0, left = ROW_H * row + ROAD_Y, WIDTH * column
        on_it = [b for b in boards if b.corridor == corridor and b.chainage_m is not None]
        lo = min([c for c, _ in items] + [b.chainage_m for b in on_it if b.chainage_m is not None])
        hi = max([c for c, _ in items] + [b.chainage_m for b in on_it if b.chainage_m is not None])
        scale = (WIDTH - 2 * MARGIN) / max(hi - lo, 1.0)

        def x_of(chainage: float, lo: float = lo, scale: float = scale, left: float = left) -> float:
            return left + MARGIN + (chainage - lo) * scale

        parts.append(f'<text class="label" x="{left + MARGIN:g}" y="{y0 - 150:g}">{escape(corridor)} '
                     f'(outbound: increasing chainage, left to right)</text>')
        parts.append(f'<line class="road" x1="{left + MARGIN - 30:g}" y1="{y0:g}" x2="{left + WIDTH - MARGIN + 30:g}" '
                     f'y2="{y0:g}"/>')
        for chainage, junction in items:
            x = x_of(chainage)
            parts.append(_junction(junction, plans[junction], x, y0))
        for board in on_it:
            assert board.chainage_m is not None
            parts.append(_board(board, x_of(board.chainage_m), y0 - 120 if board.facing == "outbound" else y0 + 75))
    y = ROW_H * rows + 20
    if others or loose:
        parts.append(f'<text class="label" x="{MARGIN:g}" y="{y:g}">Off the modelled corridors</text>')
    for k, junction in enumerate(others):
        parts.append(_junction(junction, plans[junction], MARGIN + 200 * (k % 4), y + 40 + 70 * (k // 4)))
    for k, board in enumerate(loose):
        parts.append(_board(board, MARGIN + 100 + 280 * (k % 4), y + 30 + 70 * junction_rows + 90 * (k // 4)))
    parts.append("</svg>")
    return "\n".join(parts)


def _junction(junction: str, plan: Plan, x: float, y: float) -> str:
    name = escape(plan.name or junction)
    return (f'<g id="junction-{escape(junction)}" class="junction-group" data-junction="{escape(junction)}">'
            f'<title>{name}</title><a href="junction/{escape(junction)}">'
            f'<circle class="junction los" cx="{x:.1f}" cy="{y:.1f}" r="18" fill="{LOS_COLOURS["?"]}"/>'
            f'<text class="label" x="{x:.1f}" y="{y + 5:.1f}" text-anchor="middle">{escape(junction)}</text></a>'
            f'<text class="small stage" x="{x:.1f}" y="{y + 40:.1f}" text-anchor="middle">-</text>'
            f'<text class="small measure" x="{x:.1f}" y="{y + 55:.1f}" text-anchor="middle"></text></g>')


def _board(board: BoardSite, x: float, y: float) -> str:
    arrow = {"outbound": "&#8594;", "inbound": "&#8592;"}.get(board.facing or "", "")
    width, line_h = 150.0, 12.0
    lines = "".join(f'<text class="board-text line{n}" x="{x - width / 2 + 6:.1f}" y="{y + 16 + n * line_h:.1f}"></text>'
                    for n in range(board.lines))
    return (f'<g id="board-{escape(board.id)}" class="board-group" data-board="{escape(board.id)}">'
            f'<title>{escape(board.id)}</title>'
            f'<rect class="board" x="{x - width / 2:.1f}" y="{y:.1f}" width="{width:g}" height="{10 + board.lines * line_h:g}"/>'
            f'{lines}<text class="small" x="{x - width / 2:.1f}" y="{y - 4:.1f}">{escape(board.id)} {arrow}</text></g>')
