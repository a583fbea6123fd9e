"""Metrics the API adds to :mod:`infra.metrics` (same ``pgenrm_`` catalogue).

``infra.metrics`` owns events processed and dead-lettered per topic, rewards by
mode, the reward latency histogram, parse failures, ties, outcomes and consumer
lag. This module adds what the issue asks for on top: samples and neighbours
used, the cold-start share, online accuracy overall and per prototype, persona
queue depth, prototype sizes, and HTTP request counts. Prototype ids are the
only per-entity labels (bounded by the number of clusters); user ids never are.

Per-prototype series are read from the service at scrape time by
:class:`PrototypeCollector`, so they are never stale.

Examples
--------
>>> from infra.contracts import CandidateScore, RewardResult
>>> r = RewardResult(request_id="r", user_id="u", mode="cold_start", model_id="m",
...                  latency_ms=12.0, samples_used=2,
...                  scores=[CandidateScore(index=0, score=1.0, rank=1)])
>>> before = SAMPLES_USED.labels(mode="cold_start")._value.get()
>>> observe_result(r)
>>> SAMPLES_USED.labels(mode="cold_start")._value.get() - before
2.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from infra import metrics as im
from infra.contracts import RewardResult
from prototypes.protocol import Prototype

SAMPLES_USED = Counter(
    "pgenrm_reward_samples_used",
    "Evaluation chains sampled with the user's own history (m), summed over rewards.",
    ["mode"],
)
NEIGHBOURS_USED = Counter(
    "pgenrm_reward_neighbours_used",
    "Similar users who re-scored a request (n), summed over rewards.",
    ["mode"],
)
COLD_START_SHARE = Gauge(
    "pgenrm_reward_cold_start_ratio",
    "Share of the most recent rewards (up to 1000) served in cold_start mode.",
)
PERSONA_QUEUE_DEPTH = Gauge(
    "pgenrm_persona_queue_depth",
    "Users whose persona is waiting to be (re)generated.",
)
HTTP_REQUESTS = Counter(
    "pgenrm_http_requests",
    "HTTP requests answered by the API, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "pgenrm_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LAG_PROBE_FAILURES = Counter(
    "pgenrm_lag_probe_failures",
    "Consumer-lag measurements that failed (broker unreachable or timed out).",
)
LIVE_RECORD_FAILURES = Counter(
    "pgenrm_live_record_failures",
    "Rewards the dashboard feed failed to record (still answered, over HTTP or the stream).",
)


def observe_result(result: RewardResult, *, latency_s: float | None = None) -> None:
    """Record one reward: the shared ``infra.metrics`` series plus samples/neighbours.

    Call once per reward result, whichever path (HTTP or stream) produced it;
    ``latency_s`` defaults to ``result.latency_ms``.
    """
    im.observe_reward(
        result.mode,
        result.latency_ms / 1000.0 if latency_s is None else latency_s,
        parse_failures=result.parse_failures,
        ties=result.ties,
        degraded=result.degraded,
        degraded_reason=result.degraded_reason,
    )
    mode = im.mode_label(result.mode)
    if result.samples_used:
        SAMPLES_USED.labels(mode=mode).inc(result.samples_used)
    if result.neighbours_used:
        NEIGHBOURS_USED.labels(mode=mode).inc(result.neighbours_used)


class PrototypeCollector(Collector):
    """Per-prototype size and online accuracy, read at scrape time.

    Parameters
    ----------
    source
        Returns the current prototypes (``PgenrmService.prototypes``).
    """

    def __init__(self, source: Callable[[], list[Prototype]] | None = None) -> None:
        self._source = source

    def set_source(self, source: Callable[[], list[Prototype]] | None) -> None:
        """Read prototypes from ``source`` from now on (``create_app`` sets it)."""
        self._source = source

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # no description: the registry must not call collect() on register

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self._source is None:
            return
        try:
            protos = self._source()
        except Exception:  # a scrape must not fail because a store is down
            return
        size = GaugeMetricFamily(
            "pgenrm_prototype_users", "Users assigned to each prototype.", labels=["prototype"]
        )
        acc = GaugeMetricFamily(
            "pgenrm_prototype_online_accuracy_ratio",
            "Share of revealed outcomes where the reward ranked the chosen response first, "
            "per prototype.",
            labels=["prototype"],
        )
        overall = GaugeMetricFamily(
            "pgenrm_online_accuracy_ratio",
            "Share of revealed outcomes where the reward ranked the chosen response first, "
            "over all prototypes.",
        )
        correct = outcomes = 0
        for p in protos:
            label = [str(p.prototype_id)]
            size.add_metric(label, p.size)
            if p.online_accuracy is not None:
                acc.add_metric(label, p.online_accuracy)
            correct += p.correct
            outcomes += p.outcomes
        if outcomes:
            overall.add_metric([], correct / outcomes)
        yield size
        yield acc
        yield overall


PROTOTYPE_COLLECTOR = PrototypeCollector()
"""Registered once on the default registry; ``create_app`` points it at the service."""
REGISTRY.register(PROTOTYPE_COLLECTOR)
