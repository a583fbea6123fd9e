"""Plain kafka-python clients behind ``pgenrm send-feedback``, ``pgenrm send-profiles`` and
``pgenrm request-reward``.

Examples
--------
>>> from infra.settings import Settings
>>> n = send_feedback(Settings(), "feedback.jsonl")  # doctest: +SKIP
>>> n = send_profiles(Settings(), [UserProfile(event_id="p1", user_id="u1", prototype_id=3)])
...     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from infra.codec import decode
from infra.contracts import Contract, FeedbackEvent, RewardRequest, RewardResult, UserProfile
from infra.exceptions import (
    BrokerError,
    FeedbackFileError,
    InvalidEventError,
    ResultTimeoutError,
)
from infra.kafka import ensure_topics, make_consumer, make_producer, produce, seek_to_highwater
from infra.topics import FEEDBACK, PROFILES, REWARD_REQUESTS, REWARDS

if TYPE_CHECKING:
    from kafka import KafkaProducer

    from infra.settings import Settings

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Contract)


@dataclass
class EventFile(Generic[E]):
    """The events of a JSONL file and the ``(line, reason, detail)`` of its bad lines."""

    events: list[E] = field(default_factory=list)
    problems: list[tuple[int, str, str]] = field(default_factory=list)


FeedbackFile = EventFile[FeedbackEvent]


def read_event_file(
    path: str | Path, topic: str, kind: type[E], *, max_bytes: int = 1_000_000
) -> EventFile[E]:
    """Validate every non-blank line of ``path`` as an event of ``topic`` (a ``kind``).

    Uses the same boundary as the processors (:func:`infra.codec.decode`), so a
    line accepted here is never dead-lettered for its shape.
    """
    out: EventFile[E] = EventFile()
    with Path(path).open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                event = decode(topic, line, max_bytes=max_bytes)
            except InvalidEventError as exc:
                out.problems.append((lineno, exc.reason, exc.detail))
                continue
            assert isinstance(event, kind)
            out.events.append(event)
    return out


def read_feedback_file(path: str | Path, *, max_bytes: int = 1_000_000) -> FeedbackFile:
    """Validate every non-blank line of ``path`` as a :class:`FeedbackEvent`."""
    return read_event_file(path, FEEDBACK, FeedbackEvent, max_bytes=max_bytes)


def _checked(parsed: EventFile[E], path: str | Path, skip_invalid: bool) -> list[E]:
    """The file's events; raises on bad lines unless ``skip_invalid`` (then logs them)."""
    if parsed.problems:
        if not skip_invalid:
            raise FeedbackFileError(str(path), parsed.problems)
        for lineno, reason, detail in parsed.problems:
            log.warning("%s line %d skipped: %s: %s", path, lineno, reason, detail)
    return parsed.events


def send_feedback(
    settings: Settings,
    path: str | Path,
    *,
    skip_invalid: bool = False,
    producer: KafkaProducer | None = None,
) -> int:
    """Produce the FeedbackEvents of a JSONL file to ``pgenrm.feedback.v1``; returns the count.

    Every line is validated first. With a bad line nothing is sent and
    :class:`FeedbackFileError` lists each bad line's number, reason and detail,
    unless ``skip_invalid`` (then the good lines are sent and the bad ones logged).
    Events are keyed by ``user_id``; the call returns after the broker acked all.
    """
    parsed = read_feedback_file(path, max_bytes=settings.broker.max_message_bytes)
    events = _checked(parsed, path, skip_invalid)
    return _produce_all(settings, FEEDBACK, events, producer)


def send_profiles_file(
    settings: Settings,
    path: str | Path,
    *,
    skip_invalid: bool = False,
    producer: KafkaProducer | None = None,
) -> int:
    """Produce the UserProfiles of a JSONL file (all lines validated first, as
    :func:`send_feedback` does); returns the count."""
    parsed = read_event_file(
        path, PROFILES, UserProfile, max_bytes=settings.broker.max_message_bytes
    )
    return send_profiles(settings, _checked(parsed, path, skip_invalid), producer=producer)


def send_profiles(
    settings: Settings,
    profiles: Sequence[UserProfile],
    *,
    producer: KafkaProducer | None = None,
) -> int:
    """Produce onboarding profiles to ``pgenrm.profiles.v1``; returns the count.

    Keyed by ``user_id``; returns after the broker acked all. The worker
    registers each user once per ``event_id`` (their rewards are then scored
    in ``prototype`` mode) or dead-letters the profile with its reason.
    """
    return _produce_all(settings, PROFILES, profiles, producer)


def _produce_all(
    settings: Settings,
    topic: str,
    events: Sequence[Contract],
    producer: KafkaProducer | None,
) -> int:
    """Send ``events`` to ``topic`` keyed by user and wait for every ack; the count."""
    if not events:
        return 0
    ensure_topics(settings)  # before tansu auto-creates them with its defaults (bug D)
    own = producer is None
    prod = producer or make_producer(settings)
    try:
        futures = [produce(prod, topic, ev) for ev in events]
        prod.flush()
        for f in futures:
            f.get(timeout=30)
    except Exception as exc:
        if isinstance(exc, BrokerError):
            raise
        raise BrokerError(f"sending to {topic} on {settings.broker.urls} failed: {exc}") from exc
    finally:
        if own:
            with contextlib.suppress(Exception):
                prod.close(timeout=5)
    return len(events)


def request_reward(
    settings: Settings, request: RewardRequest, timeout_s: float = 60.0
) -> RewardResult:
    """Produce ``request`` and wait for its :class:`RewardResult` on ``pgenrm.rewards.v1``.

    A group-less consumer is assigned every partition of the rewards topic and
    positioned at the Fetch highwater *before* the request is sent (tansu's
    ``end_offsets`` is wrong, bug B), then reads until a result with the same
    ``request_id`` and ``user_id`` arrives. Results that do not decode are skipped.

    Raises
    ------
    ResultTimeoutError
        No matching result within ``timeout_s`` (is ``pgenrm up`` running?).
    BrokerError
        The broker cannot be reached or the rewards topic does not exist.
    """
    from kafka import TopicPartition

    deadline = time.monotonic() + timeout_s
    ensure_topics(settings)  # before tansu auto-creates them with its defaults (bug D)
    consumer = make_consumer(settings, group_id=None)
    producer = None
    try:
        parts = consumer.partitions_for_topic(REWARDS)
        if not parts:
            raise BrokerError(f"topic {REWARDS} does not exist; start `pgenrm up` first")
        consumer.assign([TopicPartition(REWARDS, p) for p in sorted(parts)])
        seek_to_highwater(consumer, timeout_s=max(deadline - time.monotonic(), 1.0))
        producer = make_producer(settings)
        produce(producer, REWARD_REQUESTS, request).get(timeout=30)
        skipped = 0
        while time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=200)
            for records in batches.values():
                for rec in records:
                    try:
                        result = decode(
                            REWARDS, rec.value, max_bytes=settings.broker.max_message_bytes
                        )
                    except InvalidEventError:
                        skipped += 1
                        continue
                    assert isinstance(result, RewardResult)
                    if (
                        result.request_id == request.request_id
                        and result.user_id == request.user_id
                    ):
                        return result
        raise ResultTimeoutError(
            f"no result for request {request.request_id!r} within {timeout_s}s "
            f"({skipped} undecodable results skipped); is `pgenrm up` running?"
        )
    finally:
        with contextlib.suppress(Exception):
            consumer.close()
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.close(timeout=5)
