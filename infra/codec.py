"""The input boundary: bytes from a topic become a contract, or a dead letter.

:func:`decode` turns a record's value into the contract of its topic and raises
:class:`~infra.exceptions.InvalidEventError` with a stable reason code otherwise.
:func:`dead_letter` produces the *original bytes* of a rejected record to
``<topic>.dlq``, keyed by the original key, with the reason and provenance in
headers (the Kafka Connect convention). :class:`DeadLetterPolicy` is the error
callback shape (Quix style): ``on_error(exc, record)`` returns
``"dead_letter"``, ``"skip"`` or ``"raise"``.

Examples
--------
>>> ev = decode("pgenrm.feedback.v1", b'{"event_id": "e1", "user_id": "u1", '
...     b'"context": [{"role": "user", "content": "hi"}], "chosen": "a", "rejected": "b"}',
...     max_bytes=10_000)
>>> type(ev).__name__, ev.user_id
('FeedbackEvent', 'u1')
>>> try:
...     decode("pgenrm.feedback.v1", b"{oops", max_bytes=10_000)
... except InvalidEventError as exc:
...     print(exc.reason)
invalid_json
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import ValidationError

from infra.contracts import (
    MAX_CANDIDATES,
    MIN_CANDIDATES,
    SCHEMA_VERSION,
    Contract,
    FeedbackEvent,
    PersonaState,
    PrototypeState,
    RewardRequest,
    RewardResult,
    UserProfile,
)
from infra.exceptions import InvalidEventError
from infra.metrics import count_dead_lettered, count_skipped
from infra.topics import (
    FEEDBACK,
    PERSONAS,
    PROFILES,
    PROTOTYPES,
    REWARD_REQUESTS,
    REWARDS,
    dlq,
)

if TYPE_CHECKING:
    from kafka import KafkaProducer
    from kafka.producer.future import FutureRecordMetadata

log = logging.getLogger(__name__)

TOPIC_MODELS: dict[str, type[Contract]] = {
    FEEDBACK: FeedbackEvent,
    PROFILES: UserProfile,
    REWARD_REQUESTS: RewardRequest,
    REWARDS: RewardResult,
    PERSONAS: PersonaState,
    PROTOTYPES: PrototypeState,
}
"""The contract each topic carries."""

KNOWN_SCHEMA_VERSIONS = frozenset({SCHEMA_VERSION})
MAX_DETAIL_BYTES = 1000
"""Longest ``pgenrm-error-detail`` header value (longer details are cut, with ``…``)."""

H_REASON = "pgenrm-error-reason"
H_DETAIL = "pgenrm-error-detail"
H_TOPIC = "pgenrm-source-topic"
H_PARTITION = "pgenrm-source-partition"
H_OFFSET = "pgenrm-source-offset"
H_AT = "pgenrm-error-at"

ErrorAction = Literal["dead_letter", "skip", "raise"]


def model_for(topic: str) -> type[Contract]:
    """The contract carried by ``topic`` (also accepts its ``.dlq`` twin).

    >>> model_for("pgenrm.reward-requests.v1").__name__
    'RewardRequest'
    """
    base = topic.removesuffix(".dlq")
    try:
        return TOPIC_MODELS[base]
    except KeyError:
        raise KeyError(f"no contract is registered for topic {topic!r}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _candidate_count_error(exc: ValidationError) -> str | None:
    for err in exc.errors():
        loc = err.get("loc", ())
        if loc and loc[0] == "candidates" and err.get("type") in ("too_short", "too_long"):
            return f"candidates must number {MIN_CANDIDATES}..{MAX_CANDIDATES}: {err.get('msg')}"
    return None


def decode(
    topic: str,
    value: bytes | None,
    *,
    max_bytes: int,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
) -> Contract:
    """Validate ``value`` as the contract of ``topic``.

    Checks, in order: size (``oversize``), UTF-8 JSON object (``invalid_json``;
    NaN/Infinity and a null value count as invalid), ``schema_version``
    (``unknown_schema_version``), candidate count (``candidate_count``), the
    rest of the contract (``schema_violation``).

    Raises
    ------
    InvalidEventError
        Carrying ``topic``/``partition``/``offset``/``key`` and the original ``value``.
    KeyError
        ``topic`` carries no pgenrm contract (a programming error, not bad input).
    """
    model = model_for(topic)

    def fail(reason: Any, detail: str) -> InvalidEventError:
        return InvalidEventError(reason, detail, topic, partition, offset, value, key=key)

    if value is None:
        raise fail("invalid_json", "null value (tombstone) on an event topic")
    if len(value) > max_bytes:
        raise fail("oversize", f"{len(value)} bytes > max {max_bytes}")
    try:
        obj = json.loads(value, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise fail("invalid_json", str(exc)) from None
    if not isinstance(obj, dict):
        raise fail("schema_violation", f"expected a JSON object, got {type(obj).__name__}")
    version = obj.get("schema_version", SCHEMA_VERSION)
    if type(version) is not int or version not in KNOWN_SCHEMA_VERSIONS:
        raise fail(
            "unknown_schema_version",
            f"schema_version {version!r} is not one of {sorted(KNOWN_SCHEMA_VERSIONS)}",
        )
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        count_detail = _candidate_count_error(exc)
        if count_detail is not None:
            raise fail("candidate_count", count_detail) from None
        raise fail("schema_violation", _short_errors(exc)) from None


def _short_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "<root>"
        parts.append(f"{loc}: {err.get('msg')}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; (+{more} more)" if more > 0 else "")


class SourceRecord(Protocol):
    """What a consumed record offers (kafka-python's and aiokafka's ``ConsumerRecord``,
    the stream runtime's ``Record``); read-only."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


def decode_record(record: SourceRecord, *, max_bytes: int) -> Contract:
    """:func:`decode` a consumed record, locating errors at its partition and offset."""
    return decode(
        record.topic,
        record.value,
        max_bytes=max_bytes,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
    )


# -- dead letters -------------------------------------------------------------
def _truncate(text: str, limit: int = MAX_DETAIL_BYTES) -> bytes:
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return raw
    return raw[: limit - 3].decode("utf-8", "ignore").encode() + "…".encode()


@dataclass(frozen=True)
class DeadLetter:
    """A dead-letter record, ready for any producer (kafka-python or aiokafka)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def dead_letter_message(exc: InvalidEventError, *, now: datetime | None = None) -> DeadLetter:
    """The record :func:`dead_letter` sends for ``exc`` (original key and bytes).

    >>> e = InvalidEventError("oversize", "x" * 5000, "pgenrm.feedback.v1", 2, 9, b"{}", key=b"u1")
    >>> m = dead_letter_message(e)
    >>> m.topic, m.key, m.value, dict(m.headers)["pgenrm-source-offset"]
    ('pgenrm.feedback.v1.dlq', b'u1', b'{}', b'9')
    >>> len(dict(m.headers)["pgenrm-error-detail"]) <= 1000
    True
    """
    at = (now or datetime.now(UTC)).isoformat()
    headers = [
        (H_REASON, exc.reason.encode()),
        (H_DETAIL, _truncate(exc.detail)),
        (H_TOPIC, exc.topic.encode()),
        (H_PARTITION, b"" if exc.partition is None else str(exc.partition).encode()),
        (H_OFFSET, b"" if exc.offset is None else str(exc.offset).encode()),
        (H_AT, at.encode()),
    ]
    return DeadLetter(dlq(exc.topic), exc.key, exc.value, headers)


def dead_letter(
    producer: KafkaProducer, exc: InvalidEventError, *, now: datetime | None = None
) -> FutureRecordMetadata:
    """Produce the rejected record to ``dlq(exc.topic)`` and count it.

    Returns the send future; call ``.get()`` (or ``producer.flush()``) before
    committing the source offset.
    """
    msg = dead_letter_message(exc, now=now)
    future = producer.send(msg.topic, value=msg.value, key=msg.key, headers=msg.headers)
    count_dead_lettered(exc.topic, exc.reason)
    log.warning("dead-lettered %s", exc)
    return future


def as_invalid(exc: BaseException, record: SourceRecord) -> InvalidEventError:
    """``exc`` as an :class:`InvalidEventError` located at ``record``.

    An ``InvalidEventError`` gets the record's location, key and bytes where it
    lacks them (processors raise ``duplicate_id`` without them); any other
    exception becomes ``processing_error`` with ``"<Type>: <message>"`` as detail.
    """
    if isinstance(exc, InvalidEventError):
        return InvalidEventError(
            exc.reason,
            exc.detail,
            exc.topic,
            exc.partition if exc.partition is not None else record.partition,
            exc.offset if exc.offset is not None else record.offset,
            exc.value if exc.value is not None else record.value,
            key=exc.key if exc.key is not None else record.key,
        )
    return InvalidEventError(
        "processing_error",
        f"{type(exc).__name__}: {exc}",
        record.topic,
        record.partition,
        record.offset,
        record.value,
        key=record.key,
    )


ErrorCallback = Callable[[BaseException, SourceRecord | None], ErrorAction]
"""``on_error(exc, record) -> "dead_letter" | "skip" | "raise"``."""


def default_on_error(exc: BaseException, record: SourceRecord | None) -> ErrorAction:
    """Dead-letter invalid events, raise everything else.

    >>> default_on_error(InvalidEventError("oversize", "", "t"), None)
    'dead_letter'
    >>> default_on_error(RuntimeError("bug"), None)
    'raise'
    """
    return "dead_letter" if isinstance(exc, InvalidEventError) else "raise"


class DeadLetterPolicy:
    """Apply an error callback to a failed record.

    Parameters
    ----------
    producer
        A kafka-python producer for the ``.dlq`` topics.
    on_error
        ``on_error(exc, record) -> "dead_letter" | "skip" | "raise"``; default
        :func:`default_on_error`.

    ``handle`` returns the action it took; counts are in :attr:`dead_lettered`
    and :attr:`skipped` (and the ``pgenrm_events_*`` metrics).
    """

    def __init__(
        self, producer: KafkaProducer, *, on_error: ErrorCallback = default_on_error
    ) -> None:
        self.producer = producer
        self.on_error = on_error
        self.dead_lettered = 0
        self.skipped = 0

    def handle(self, exc: BaseException, record: SourceRecord | None = None) -> ErrorAction:
        """Dead-letter, skip or re-raise ``exc`` as the callback decides.

        Dead-lettering needs the record (or an :class:`InvalidEventError`, which
        carries one); without either the exception is re-raised.
        """
        action = self.on_error(exc, record)
        if action == "raise":
            raise exc
        if action == "skip":
            self.skipped += 1
            reason = exc.reason if isinstance(exc, InvalidEventError) else "processing_error"
            topic = (
                exc.topic
                if isinstance(exc, InvalidEventError)
                else getattr(record, "topic", "other")
            )
            count_skipped(topic, reason)
            log.info("skipped %s", exc)
            return action
        if action != "dead_letter":
            raise ValueError(f"on_error returned {action!r}; expected dead_letter|skip|raise")
        if record is not None:
            invalid = as_invalid(exc, record)
        elif isinstance(exc, InvalidEventError):
            invalid = exc
        else:
            raise exc
        dead_letter(self.producer, invalid).get(timeout=30)
        self.dead_lettered += 1
        return action
