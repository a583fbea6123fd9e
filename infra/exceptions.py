"""Root of pgenrm's exception tree.

Every package (``infra``, ``stream``, ``reward``, ``prototypes``) has its own
``exceptions.py`` whose classes derive from :class:`PgenrmError`, so callers can
catch everything pgenrm raises with one ``except``::

    PgenrmError
    ├── ConfigurationError          (infra)
    ├── BrokerError                 (infra)
    │   └── BrokerStartError
    ├── InvalidEventError           (infra: bad input bound for a dead-letter topic)
    ├── FeedbackFileError           (infra: `pgenrm send-feedback` found bad lines)
    ├── ResultTimeoutError          (infra: `pgenrm request-reward` got no result in time)
    ├── ModelInstallError           (reward)
    ├── BackendError                (reward)
    ├── StoreError                  (prototypes)
    └── NotBuiltError               (a CLI capability that does not exist yet)
"""

from __future__ import annotations

from typing import Literal

ErrorReason = Literal[
    "invalid_json",
    "schema_violation",
    "unknown_schema_version",
    "oversize",
    "candidate_count",
    "duplicate_id",
    "unknown_prototype",
    "user_has_history",
    "processing_error",
]
"""Stable reason codes of :class:`InvalidEventError` (the ``pgenrm-error-reason`` header).

``invalid_json``: not UTF-8 JSON (or a null value); ``schema_violation``: JSON that
breaks the contract; ``unknown_schema_version``: a ``schema_version`` this build
does not know; ``oversize``: more than ``max_bytes``; ``candidate_count``: fewer
than 2 or more than 16 candidates; ``duplicate_id``: an id already processed
(raised by processors); ``unknown_prototype``: a profile names a prototype that
does not exist; ``user_has_history``: a profile assigns a prototype to a user who
already has feedback (their prototype follows it); ``processing_error``: a processor
failed on a valid event and its error callback chose to dead-letter it.
"""
ERROR_REASONS: tuple[ErrorReason, ...] = ErrorReason.__args__  # type: ignore[attr-defined]


class PgenrmError(Exception):
    """Base class of every error pgenrm raises on purpose."""


class ConfigurationError(PgenrmError):
    """A setting is missing or inconsistent."""


class BrokerError(PgenrmError):
    """The Kafka-protocol broker could not be reached or misbehaved."""


class BrokerStartError(BrokerError):
    """The embedded broker binary could not be started or never answered."""


class NotBuiltError(PgenrmError):
    """A capability that is declared but not implemented yet."""


class InvalidEventError(PgenrmError):
    """A record that cannot be processed; it carries the record that caused it.

    Parameters
    ----------
    reason
        One of :data:`ERROR_REASONS`.
    detail
        Human-readable explanation (may be long; dead-letter headers truncate it).
    topic, partition, offset
        Where the record came from (``None`` when decoded outside a consumer).
    value, key
        The record's original bytes, kept verbatim for the dead-letter topic.

    >>> e = InvalidEventError("oversize", "too big", "pgenrm.feedback.v1", 0, 7, b"x")
    >>> e.reason, e.offset, str(e)
    ('oversize', 7, 'oversize: too big (pgenrm.feedback.v1[0]@7)')
    """

    def __init__(
        self,
        reason: ErrorReason,
        detail: str,
        topic: str,
        partition: int | None = None,
        offset: int | None = None,
        value: bytes | None = None,
        *,
        key: bytes | None = None,
    ) -> None:
        if reason not in ERROR_REASONS:
            raise ValueError(f"unknown error reason {reason!r}")
        self.reason: ErrorReason = reason
        self.detail = detail
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.value = value
        self.key = key
        super().__init__(f"{reason}: {detail} ({topic}[{partition}]@{offset})")

    def at(
        self, partition: int | None, offset: int | None, key: bytes | None = None
    ) -> InvalidEventError:
        """The same error, located at ``partition``/``offset`` (and ``key``)."""
        return InvalidEventError(
            self.reason,
            self.detail,
            self.topic,
            partition,
            offset,
            self.value,
            key=key if key is not None else self.key,
        )


class FeedbackFileError(PgenrmError):
    """An event JSONL file (feedback or profiles) has invalid lines; ``problems`` lists
    ``(line, reason, detail)``."""

    def __init__(self, path: str, problems: list[tuple[int, str, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = "; ".join(f"line {n}: {r}: {d[:200]}" for n, r, d in problems[:10])
        more = f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"{path}: {len(problems)} invalid line(s): {lines}{more}")


class ResultTimeoutError(PgenrmError):
    """No reward result arrived for a request within the timeout."""
