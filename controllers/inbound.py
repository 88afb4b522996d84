"""A Kafka record at lalin's edge: its value decoded, its topic and key checked against the envelope.

:func:`decode_record` is what every consumer calls on a record (the archiver, the stream
worker's fold and decision tasks, the command executor, the VMS loop). Beyond
:func:`~controllers.envelope.decode_event` it refuses an event on a topic the catalogue does
not give its type (``wrong_topic``: a ``DetectorCounted`` on ``lalin.command`` is not a
command) and a record whose Kafka key is not the envelope's key (``key_mismatch``: the key
decides the partition, so a lying key would put an intersection's events where its fold and
its sequence check do not look). Whatever the bytes, it returns a valid event or raises an
:class:`~controllers.errors.InvalidEvent`; it reads no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import msgspec

from controllers.envelope import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_FUTURE_S, DEFAULT_MAX_PAST_S, Decoded, decode_event
from controllers.errors import KeyMismatch, WrongTopic


class Limits(msgspec.Struct, frozen=True):
    """What an inbound record must satisfy.

    ``max_event_bytes`` caps its size (bytes); its event and ingest times lie within
    ``max_past_s`` seconds before and ``max_future_s`` seconds after the clock; when
    ``topic_of_type`` (event type -> topic, from the topic catalogue) is given, every event
    must arrive on its type's topic.
    """

    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_future_s: float = DEFAULT_MAX_FUTURE_S
    max_past_s: float = DEFAULT_MAX_PAST_S
    topic_of_type: Mapping[str, str] | None = None


DEFAULT_LIMITS = Limits()


def decode_record(topic: str, key: bytes | None, value: bytes, now: datetime, limits: Limits = DEFAULT_LIMITS) -> Decoded:
    """Decode one record of ``topic`` with Kafka key ``key`` at clock time ``now`` (aware).

    Raises an :class:`~controllers.errors.InvalidEvent` subclass, and nothing else, when the
    value is not a valid event (see :func:`~controllers.envelope.decode_event`), its type
    belongs to another topic, or ``key`` is not the envelope's key encoded in UTF-8.
    """
    decoded = decode_event(value, now, max_bytes=limits.max_event_bytes, max_future_s=limits.max_future_s,
                           max_past_s=limits.max_past_s)
    event = decoded.event
    if limits.topic_of_type is not None:
        expected = limits.topic_of_type.get(event.type)
        if expected != topic:
            raise WrongTopic(f"{event.type} arrived on {topic!r}; its topic is {expected!r}")
    if key != event.key.encode():
        shown = "no key" if key is None else f"key {key[:80]!r}"
        raise KeyMismatch(f"the record has {shown} but the envelope's key is {event.key!r}")
    return decoded
