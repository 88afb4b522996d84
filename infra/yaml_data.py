"""Declarative data from YAML files into validated pydantic models (register maps, fleets, models...)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel

from controllers.errors import ConfigurationError

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(model: type[M], path: Path, what: str) -> M:
    """``path`` parsed and validated as ``model``; ConfigurationError naming ``what``, the file and the fields."""
    try:
        return model.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValueError) as err:
        raise ConfigurationError(f"{what} {path}: {err}") from err
