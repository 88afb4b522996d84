"""The automatic-VMS policy's inputs from the catalogues: the policy file, the boards as the core sees
them, the network (plans and detectors) and the configuration checksum every VMS command cites."""

from __future__ import annotations

import hashlib
import string
from functools import cache
from pathlib import Path

from controllers.errors import ConfigurationError
from controllers.vms_config import BoardSite, VmsPolicyConfig
from controllers.vms_state import VmsNetwork
from controllers.vms_text import TextError, render
from devices.vms_model import BoardCatalogue, capabilities, check_placements, load_boards, load_model
from infra.yaml_data import load_yaml_model
from streams.topology import Topology, load_topology

POLICY_FILE = Path(__file__).parent / "catalogue" / "vms_policy.yaml"


@cache
def load_policy(path: Path = POLICY_FILE) -> VmsPolicyConfig:
    """The policy in ``path`` (cached); ConfigurationError naming the file and the fields when invalid."""
    return load_yaml_model(VmsPolicyConfig, path, "VMS policy")


def board_sites(catalogue: BoardCatalogue | None = None) -> list[BoardSite]:
    """Every catalogued board as the policy sees it (capabilities resolved against the OPC UA model)."""
    catalogue = catalogue or load_boards()
    model = load_model()
    out = []
    for spec in catalogue.boards:
        caps = capabilities(model, spec)
        place = spec.placement
        out.append(BoardSite(id=spec.id, lines=caps.lines, characters_per_line=caps.characters_per_line,
                             max_pages=caps.max_pages, charset=caps.charset, min_page_time_s=caps.min_page_time_s,
                             max_duration_s=caps.max_duration_s, road=place.road if place else None,
                             corridor=place.corridor if place else None, chainage_m=place.chainage_m if place else None,
                             facing=place.facing if place else None, downstream=tuple(place.downstream) if place else ()))
    return out


def vms_network(topology: Topology | None = None, catalogue: BoardCatalogue | None = None) -> VmsNetwork:
    """The network the policy decides on: the plans, each junction's detectors per movement, the boards (whose
    placements are checked against the plans first)."""
    topology = topology or load_topology()
    catalogue = catalogue or load_boards()
    junctions = {i: (p.coordination.corridor, p.coordination.chainage_m) for i, p in topology.plans.items()
                 if p.coordination is not None}
    check_placements(catalogue, junctions)
    detectors: dict[str, dict[str, list[str]]] = {}
    for junction, layout in topology.layouts.items():
        for d in layout.stop_line_detectors():  # the ones that measure a movement (advance loops do not)
            detectors.setdefault(junction, {}).setdefault(d.movement, []).append(d.id)
    return VmsNetwork(plans=topology.plans, detectors=detectors, boards=board_sites(catalogue))


def vms_checksum(policy: VmsPolicyConfig, network: VmsNetwork) -> str:
    """SHA-256 (hex) over the policy, the boards and the plans: the configuration a VMS command cites."""
    digest = hashlib.sha256(policy.checksum().encode())
    for board in network.boards:
        digest.update(repr((board.id, board.lines, board.characters_per_line, board.max_pages, sorted(board.charset),
                            board.min_page_time_s, board.max_duration_s, board.road, board.corridor, board.chainage_m,
                            board.facing, board.downstream)).encode())
    for junction in sorted(network.plans):
        digest.update(f"{junction}={network.plans[junction].checksum()};".encode())
    return digest.hexdigest()


def check_policy(policy: VmsPolicyConfig, network: VmsNetwork) -> None:
    """Places named for every junction a board can talk about; calendar boards that exist; rule templates using only the
    rules' placeholders; every calendar entry's text fitting every board it is announced on. ConfigurationError naming
    every problem."""
    problems = []
    talked_about = {j for b in network.boards for j in b.downstream}
    problems += [f"junction {j} has no place name for the boards" for j in sorted(talked_about - set(policy.places))]
    known = {b.id for b in network.boards}
    problems += [f"calendar {e.id}: unknown board {b}" for e in policy.calendar for b in e.boards if b not in known]
    rule_params = {"what", "place", "dest", "minutes"}
    rule_templates = {r.template for r in policy.incidents} | {r.template for r in (
        policy.signals_out, policy.congestion, policy.travel_time) if r is not None}
    for name in sorted(rule_templates):
        for variant in policy.templates[name].variants:
            used = {f for line in [*variant.id, *variant.en] for _, f, _, _ in string.Formatter().parse(line) if f}
            problems += [f"template {name}: unknown placeholder {{{p}}} (rules give {sorted(rule_params)})"
                         for p in sorted(used - rule_params)]
    for entry in policy.calendar:
        words = policy.words.get(entry.kind)
        params = {"what": (words.id, words.en) if words else (entry.kind, entry.kind),
                  **{k: (v, v) for k, v in entry.params.items()}}
        for board in network.boards:
            if board.id in entry.boards or board.road in entry.roads:
                try:
                    pages, why = render(policy.templates[entry.template], params, board, policy.display.page_time_s)
                except TextError as err:
                    pages, why = None, str(err)
                if pages is None:
                    problems.append(f"calendar {entry.id} on {board.id}: {why}")
    if problems:
        raise ConfigurationError("VMS policy: " + "; ".join(problems))
