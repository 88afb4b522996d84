"""The topic catalogue: declared in ``catalogue/topics.yaml``, validated here.

:func:`load_catalogue` returns a :class:`TopicCatalogue` that knows which topic carries each
event type. Provisioning against a broker lives in :mod:`infra.kafka`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controllers.errors import ConfigurationError
from controllers.event_types import EVENT_TYPES
from infra.yaml_data import load_yaml_model

CATALOGUE_PATH = Path(__file__).parent / "catalogue" / "topics.yaml"
META_TOPIC = "lalin.meta"
DEADLETTER_TOPIC = "lalin.deadletter"


class TopicSpec(BaseModel):
    """One topic: name, partitions, what keys it, retention (ms, -1 = forever) and its events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9._-]{1,200}$")
    partitions: int = Field(ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=7)
    key: str
    retention_ms: int = Field(ge=-1)
    cleanup_policy: Literal["delete", "compact", "compact,delete"]
    archived: bool
    event_types: list[str]
    description: str


class TopicCatalogue(BaseModel):
    """All topics; each event type belongs to exactly one, and the two system topics exist."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topics: list[TopicSpec]

    @model_validator(mode="after")
    def _check(self) -> TopicCatalogue:
        names = [t.name for t in self.topics]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate topic names in {names}")
        carried = [e for t in self.topics for e in t.event_types]
        unknown = sorted(set(carried) - set(EVENT_TYPES))
        missing = sorted(set(EVENT_TYPES) - set(carried))
        twice = sorted({e for e in carried if carried.count(e) > 1})
        if unknown or missing or twice:
            raise ValueError(f"event types unknown {unknown}, without a topic {missing}, on two topics {twice}")
        for required in (META_TOPIC, DEADLETTER_TOPIC):
            if required not in names:
                raise ValueError(f"the catalogue must declare {required}")
        return self

    @cached_property
    def topic_of_type(self) -> dict[str, str]:
        """Event type -> the topic that carries it."""
        return {e: t.name for t in self.topics for e in t.event_types}

    @property
    def archived_topics(self) -> list[str]:
        """Topics the archiver consumes."""
        return [t.name for t in self.topics if t.archived]

    def spec(self, name: str) -> TopicSpec:
        """The spec of topic ``name``."""
        for topic in self.topics:
            if topic.name == name:
                return topic
        raise ConfigurationError(f"topic {name!r} is not in the catalogue")


def load_catalogue(path: Path = CATALOGUE_PATH) -> TopicCatalogue:
    """Load and validate the catalogue at ``path`` (YAML); raises ConfigurationError when invalid."""
    return load_yaml_model(TopicCatalogue, path, "topic catalogue")
