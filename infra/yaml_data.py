"""Declarative data from YAML files into validated pydantic models (register maps, fleets, models...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

from controllers.errors import ConfigurationError

M = TypeVar("M", bound=BaseModel)

#: libyaml's parser when PyYAML was built with it (5-10x faster: plans are read on every start and replay)
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str) -> Any:
    """The data in YAML ``text`` (safe subset: no Python objects); raises yaml.YAMLError when malformed."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader


def load_yaml_model(model: type[M], path: Path, what: str) -> M:
    """``path`` parsed and validated as ``model``; ConfigurationError naming ``what``, the file and the fields."""
    try:
        return model.model_validate(parse_yaml(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValueError) as err:
        raise ConfigurationError(f"{what} {path}: {err}") from err
