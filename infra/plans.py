"""Loading signal plans from YAML files into the validated :class:`controllers.plan.Plan`."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from controllers.errors import ConfigurationError
from controllers.plan import Plan
from infra.yaml_data import parse_yaml

PLANS_DIR = Path(__file__).parent / "catalogue" / "plans"


def load_plan(path: Path) -> Plan:
    """The plan in ``path``; ConfigurationError naming the file and the fields when it is invalid."""
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigurationError(f"plan {path}: {err}") from err
    try:
        return Plan.model_validate(data)
    except ValidationError as err:
        raise ConfigurationError(f"plan {path}: {err}") from err
