"""The dependency arrows: cext <- controllers <- streams / devices / infra.

The core (``controllers``, ``cext``) does no I/O, reads no clock and makes no random ids —
that is what makes a replay reproduce every decision. This test reads the source (ast) and
fails on any import or call that would break it. The devices' firmware and protocol logic
(``PURE_DEVICE_MODULES``) is held to the same rule: only the simulators and drivers around it
touch sockets and clocks; it may import the devices' data models.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ["controllers", "cext"]
FORBIDDEN_IMPORTS = {"infra", "streams", "devices", "faust", "aiokafka", "psycopg", "psycopg_pool", "pymodbus",
                     "asyncua", "asyncio", "socket", "subprocess", "requests", "random", "time", "os", "yaml"}
# the switch that picks the pure-Python twins (LALIN_NO_EXTENSIONS)
ALLOWED = {("cext/_select.py", "os")}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "uuid1", "uuid4", "time", "monotonic", "perf_counter", "open"}


PURE_DEVICE_MODULES = ["devices/controller_logic.py", "devices/controller_protocol.py", "devices/controller_log.py",
                       "devices/vms_board.py"]


def core_files() -> list[Path]:
    return sorted(p for package in CORE for p in (ROOT / package).rglob("*.py")) + [ROOT / m for m in PURE_DEVICE_MODULES]


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_core_imports_no_io_and_reads_no_clock(path: Path) -> None:
    relative = str(path.relative_to(ROOT))
    tree = ast.parse(path.read_text(encoding="utf-8"))
    problems = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module.split(".")[0]]
        allowed = ALLOWED | ({(relative, "devices")} if relative in PURE_DEVICE_MODULES else set())
        problems += [f"imports {n}" for n in names if n in FORBIDDEN_IMPORTS and (relative, n) not in allowed]
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in FORBIDDEN_CALLS:
                problems.append(f"calls {name}() at line {node.lineno}")
    assert problems == [], f"{relative}: {problems}"
