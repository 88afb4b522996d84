"""The topic catalogue is validated data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controllers.errors import ConfigurationError
from controllers.event_types import EVENT_TYPES
from infra.topics import CATALOGUE_PATH, load_catalogue


def test_every_event_type_has_exactly_one_topic() -> None:
    catalogue = load_catalogue()
    assert set(catalogue.topic_of_type) == set(EVENT_TYPES)
    event_topics = [t for t in catalogue.topics if t.event_types]
    assert len({t.partitions for t in event_topics}) == 1, "event topics must be co-partitioned"


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda d: d["topics"][0]["event_types"].append("Teleported"), "unknown ['Teleported']"),
    (lambda d: d["topics"][0]["event_types"].clear(), "without a topic ['DetectorCounted', 'DetectorsCounted']"),
    (lambda d: d["topics"][1]["event_types"].append("DetectorCounted"), "on two topics ['DetectorCounted']"),
    (lambda d: d["topics"].pop(), "lalin.meta"),
    (lambda d: d["topics"][0].update(partitions=0), "partitions"),
    (lambda d: d["topics"][0].update(colour="red"), "colour"),
])
def test_broken_catalogues_are_refused(tmp_path: Path, mutate, needle) -> None:
    data = yaml.safe_load(CATALOGUE_PATH.read_text())
    mutate(data)
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigurationError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_catalogue(path)
