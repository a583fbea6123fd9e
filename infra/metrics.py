"""pgenrm's Prometheus metrics: the one catalogue every package records into.

All names start with ``pgenrm_``, use base units and end counters in ``_total``.
Label values are bounded: ``topic`` is one of pgenrm's topic names (anything
else becomes ``"other"``), ``reason`` one of the error reasons, ``mode`` one of
the reward modes, ``outcome`` one of :data:`OUTCOMES`. User ids never become
labels. The Grafana dashboard in ``infra/grafana/`` plots exactly these series.

Examples
--------
>>> topic_label("pgenrm.feedback.v1"), topic_label("someone.elses.topic")
('pgenrm.feedback.v1', 'other')
>>> before = EVENTS_PROCESSED.labels(topic="pgenrm.feedback.v1")._value.get()
>>> count_processed("pgenrm.feedback.v1")
>>> EVENTS_PROCESSED.labels(topic="pgenrm.feedback.v1")._value.get() - before
1.0
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import Counter, Gauge, Histogram

from infra.contracts import DegradedReason, RewardMode
from infra.exceptions import ERROR_REASONS
from infra.topics import all_topics

KNOWN_TOPICS = frozenset(t.name for t in all_topics(1))
MODES: tuple[str, ...] = RewardMode.__args__  # type: ignore[attr-defined]
DEGRADED_REASONS: tuple[str, ...] = DegradedReason.__args__  # type: ignore[attr-defined]
OUTCOMES = ("correct", "incorrect", "tie")
Outcome = Literal["correct", "incorrect", "tie"]

EVENTS_PROCESSED = Counter(
    "pgenrm_events_processed",
    "Events consumed and processed successfully, by source topic.",
    ["topic"],
)
EVENTS_DEAD_LETTERED = Counter(
    "pgenrm_events_dead_lettered",
    "Events routed to a dead-letter topic, by source topic and reason.",
    ["topic", "reason"],
)
EVENTS_SKIPPED = Counter(
    "pgenrm_events_skipped",
    "Invalid events dropped (error callback returned 'skip'), by source topic and reason.",
    ["topic", "reason"],
)
REWARDS = Counter(
    "pgenrm_rewards",
    "Reward results published, by mode (personal, prototype, cold_start).",
    ["mode"],
)
REWARD_LATENCY = Histogram(
    "pgenrm_reward_latency_seconds",
    "Time from consuming a reward request to publishing its result, by mode.",
    ["mode"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
)
REWARD_PARSE_FAILURES = Counter(
    "pgenrm_reward_parse_failures",
    "Evaluation chains whose score could not be parsed.",
)
REWARD_TIES = Counter(
    "pgenrm_reward_ties",
    "Reward results where two candidates got the same score.",
)
REWARDS_DEGRADED = Counter(
    "pgenrm_rewards_degraded",
    "Reward results that fell back to the prior-only score, by why "
    "(deadline, backend_unavailable, generation_failed; unknown from older producers).",
    ["reason"],
)
REWARD_OUTCOMES = Counter(
    "pgenrm_reward_outcomes",
    "Feedback judged against the reward published for its request: did the reward "
    "rank the user's chosen response first? Online accuracy = correct / (correct + incorrect).",
    ["mode", "outcome"],
)
GC_PAUSES = Histogram(
    "pgenrm_gc_pause_seconds",
    "Time each cyclic garbage collection of the worker held the GIL, by generation.",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2),
)
PROTOTYPES = Gauge("pgenrm_prototypes", "Number of user prototypes (clusters).")
USERS = Gauge("pgenrm_users", "Users with stored preference state.")
CONSUMER_LAG = Gauge(
    "pgenrm_consumer_lag",
    "Records between a consumer's position and the partition highwater "
    "(from Fetch; tansu's ListOffsets is wrong).",
    ["topic", "partition"],
)


def topic_label(topic: str) -> str:
    """``topic`` when it is one of pgenrm's topics, else ``"other"`` (bounded labels)."""
    return topic if topic in KNOWN_TOPICS else "other"


def reason_label(reason: str) -> str:
    """``reason`` when it is a known error reason, else ``"other"``."""
    return reason if reason in ERROR_REASONS else "other"


def mode_label(mode: str) -> str:
    """``mode`` when it is a reward mode, else ``"other"``."""
    return mode if mode in MODES else "other"


def count_processed(topic: str, n: int = 1) -> None:
    """Count ``n`` successfully processed events from ``topic``."""
    EVENTS_PROCESSED.labels(topic=topic_label(topic)).inc(n)


def count_dead_lettered(topic: str, reason: str) -> None:
    """Count one event dead-lettered from ``topic`` for ``reason``."""
    EVENTS_DEAD_LETTERED.labels(topic=topic_label(topic), reason=reason_label(reason)).inc()


def count_skipped(topic: str, reason: str) -> None:
    """Count one invalid event dropped from ``topic`` for ``reason``."""
    EVENTS_SKIPPED.labels(topic=topic_label(topic), reason=reason_label(reason)).inc()


def observe_reward(
    mode: str,
    latency_s: float,
    *,
    parse_failures: int = 0,
    ties: int = 0,
    degraded: bool = False,
    degraded_reason: str | None = None,
) -> None:
    """Record one published reward result."""
    REWARDS.labels(mode=mode_label(mode)).inc()
    REWARD_LATENCY.labels(mode=mode_label(mode)).observe(latency_s)
    if parse_failures:
        REWARD_PARSE_FAILURES.inc(parse_failures)
    if ties:
        REWARD_TIES.inc(ties)
    if degraded:
        reason = degraded_reason if degraded_reason in DEGRADED_REASONS else "unknown"
        REWARDS_DEGRADED.labels(reason=reason).inc()


def observe_outcome(mode: str, outcome: Outcome) -> None:
    """Record whether a published reward agreed with the user's later feedback."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    REWARD_OUTCOMES.labels(mode=mode_label(mode), outcome=outcome).inc()


def set_lag(topic: str, partition: int, lag: int) -> None:
    """Set the consumer lag gauge of one partition."""
    CONSUMER_LAG.labels(topic=topic_label(topic), partition=str(partition)).set(lag)


def observe_gc_pause(generation: int, seconds: float) -> None:
    """Record one garbage collection's pause."""
    GC_PAUSES.labels(generation=str(generation)).observe(seconds)
