"""Live statistics for the dashboard: small in-process ring buffers.

One :class:`LiveStats` per process (:data:`LIVE`, the module-level default)
collects what the dashboard draws. The stream worker and the HTTP API feed it
through three hooks, all thread-safe and cheap:

- :meth:`LiveStats.record_reward` once per reward result (also records the
  Prometheus series through :func:`stream.api.metrics.observe_result`, unless
  ``metrics=False``);
- :meth:`LiveStats.set_persona_queue_depth` when the persona queue changes (or
  :meth:`LiveStats.set_persona_queue_source` once, read every second);
- :meth:`LiveStats.set_lag` from the consumer-lag probe.

Throughput is not fed by hook: :meth:`LiveStats.tick` reads the
``pgenrm_events_processed_total`` counters of :mod:`infra.metrics` once per
second and differences them, so the worker only has to count events as it
already does (``infra.metrics.count_processed``).

Examples
--------
>>> from infra.contracts import CandidateScore, RewardResult
>>> live = LiveStats(clock=iter(range(100, 200)).__next__, record_metrics=False)
>>> r = RewardResult(request_id="r1", user_id="u1", mode="personal", model_id="m",
...                  latency_ms=250.0, scores=[CandidateScore(index=1, score=2.0, rank=1),
...                                            CandidateScore(index=0, score=1.0, rank=2)])
>>> live.record_reward(r, source="http")
>>> snap = live.snapshot()
>>> snap.rewards_total, snap.latest[0].best_index, snap.latency["personal"].p50_s
(1, 1, 0.25)
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from infra import metrics as im
from infra.contracts import RewardResult
from prototypes.protocol import Prototype
from stream.api import metrics as am
from stream.api.protocol import (
    LatencySummary,
    LatestReward,
    PartitionLag,
    Point,
    PrototypeSummary,
    StatsSnapshot,
)

log = logging.getLogger(__name__)

REWARDS_SERIES = "rewards"


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when empty).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([], 0.9)
    (2.0, None)
    """
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[k])


def _counter_by_label(counter: object, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in counter.collect():  # type: ignore[attr-defined]
        for s in family.samples:
            if s.name.endswith("_total"):
                key = s.labels.get(label, "")
                out[key] = out.get(key, 0.0) + float(s.value)
    return out


def outcome_accuracy() -> float | None:
    """correct / (correct + incorrect) from ``pgenrm_reward_outcomes_total`` (ties excluded)."""
    by = _counter_by_label(im.REWARD_OUTCOMES, "outcome")
    judged = by.get("correct", 0.0) + by.get("incorrect", 0.0)
    return by.get("correct", 0.0) / judged if judged else None


def prototype_accuracy(protos: Sequence[Prototype]) -> float | None:
    """Pooled online accuracy over prototypes (None before any outcome)."""
    outcomes = sum(p.outcomes for p in protos)
    return sum(p.correct for p in protos) / outcomes if outcomes else None


class LiveStats:
    """Thread-safe ring buffers behind ``GET /v1/stats``.

    Parameters
    ----------
    window
        Rewards kept for latency percentiles and the cold-start share.
    latest
        Recent rewards listed with their explanations.
    series_len
        Points kept per time series (one per second).
    clock
        Returns unix seconds (injectable for tests).
    record_metrics
        Also record each reward into the Prometheus series (default True).
    """

    def __init__(
        self,
        *,
        window: int = 1000,
        latest: int = 20,
        series_len: int = 300,
        clock: Callable[[], float] = time.time,
        record_metrics: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._record_metrics = record_metrics
        self._started = clock()
        self._window: deque[tuple[str, float]] = deque(maxlen=window)  # (mode, latency_s)
        self._latest: deque[LatestReward] = deque(maxlen=latest)
        self._series_len = series_len
        self._throughput: dict[str, deque[Point]] = {}
        self._latency_series: dict[str, deque[Point]] = {
            "p50": deque(maxlen=series_len),
            "p95": deque(maxlen=series_len),
        }
        self._accuracy_series: deque[Point] = deque(maxlen=series_len)
        self._rewards_total = 0
        self._rewards_by_mode: dict[str, int] = {}
        self._parse_failures = 0
        self._samples = 0
        self._neighbours = 0
        self._queue_depth = 0
        self._lag: list[PartitionLag] = []
        self._prototype_source: Callable[[], list[Prototype]] | None = None
        self._queue_source: Callable[[], int] | None = None
        self._prototypes: list[PrototypeSummary] = []
        self._accuracy: float | None = None
        self._last_tick: float | None = None
        self._last_counts: dict[str, float] = {}

    # --- hooks -----------------------------------------------------------------

    def try_record_reward(
        self, result: RewardResult, *, source: str, latency_s: float | None = None
    ) -> bool:
        """:meth:`record_reward`, for a reward already handed out: a failure is logged and
        counted (``pgenrm_live_record_failures``), never raised; False when it failed."""
        try:
            self.record_reward(result, source=source, latency_s=latency_s)
        except Exception:
            am.LIVE_RECORD_FAILURES.inc()
            log.exception("dashboard feed failed to record reward %s", result.request_id)
            return False
        return True

    def record_reward(
        self,
        result: RewardResult,
        *,
        source: str = "stream",
        latency_s: float | None = None,
        metrics: bool | None = None,
    ) -> None:
        """Record one reward result.

        Parameters
        ----------
        source
            ``"http"`` or ``"stream"`` (shown on the dashboard).
        latency_s
            The latency to record (default ``result.latency_ms``); the worker passes
            consume-to-publish time.
        metrics
            Also record the Prometheus series (``infra.metrics.observe_reward`` plus
            samples/neighbours); default: the constructor's ``record_metrics``.
            Pass False if the caller already called ``observe_reward`` itself.
        """
        latency = result.latency_ms / 1000.0 if latency_s is None else float(latency_s)
        if self._record_metrics if metrics is None else metrics:
            am.observe_result(result, latency_s=latency)
        best = min(result.scores, key=lambda s: s.rank)
        item = LatestReward(
            request_id=result.request_id,
            user_id=result.user_id,
            mode=result.mode,
            prototype_id=result.prototype_id,
            best_index=best.index,
            scores=[s.score for s in sorted(result.scores, key=lambda s: s.index)],
            samples_used=result.samples_used,
            neighbours_used=result.neighbours_used,
            parse_failures=result.parse_failures,
            degraded=result.degraded,
            degraded_reason=result.degraded_reason,
            latency_ms=latency * 1000.0,
            source=source,
            persona=result.explanation.persona,
            criteria=list(result.explanation.criteria),
            notes=list(result.explanation.notes),
            created_at=result.created_at,
        )
        with self._lock:
            self._window.append((result.mode, latency))
            self._latest.appendleft(item)
            self._rewards_total += 1
            self._rewards_by_mode[result.mode] = self._rewards_by_mode.get(result.mode, 0) + 1
            self._parse_failures += result.parse_failures
            self._samples += result.samples_used
            self._neighbours += result.neighbours_used
            share = self._cold_start_share_locked()
        if self._record_metrics and share is not None:
            am.COLD_START_SHARE.set(share)

    def set_persona_queue_depth(self, depth: int) -> None:
        """The number of users waiting for a persona (re)generation."""
        with self._lock:
            self._queue_depth = max(0, int(depth))
        am.PERSONA_QUEUE_DEPTH.set(max(0, int(depth)))

    def set_persona_queue_source(self, source: Callable[[], int] | None) -> None:
        """Read the persona queue depth from ``source`` at every tick (instead of pushing it)."""
        self._queue_source = source

    def set_lag(self, lag: Sequence[PartitionLag]) -> None:
        """The latest consumer-lag measurement (see :mod:`stream.api.lag`)."""
        with self._lock:
            self._lag = list(lag)

    def set_prototype_source(self, source: Callable[[], list[Prototype]] | None) -> None:
        """Where :meth:`tick` reads prototype sizes and accuracy (``service.prototypes``)."""
        self._prototype_source = source

    # --- sampling --------------------------------------------------------------

    def _cold_start_share_locked(self) -> float | None:
        if not self._window:
            return None
        return sum(1 for m, _ in self._window if m == "cold_start") / len(self._window)

    def tick(self, *, force: bool = False) -> bool:
        """Append one point to every series if a second has passed; True if it did."""
        now = self._clock()
        with self._lock:
            if not force and self._last_tick is not None and now - self._last_tick < 1.0:
                return False
            last, self._last_tick = self._last_tick, now
        counts = _counter_by_label(im.EVENTS_PROCESSED, "topic")
        if self._queue_source is not None:
            with contextlib.suppress(Exception):  # keep the last depth
                self.set_persona_queue_depth(self._queue_source())
        protos: list[Prototype] | None = None
        if self._prototype_source is not None:
            try:
                protos = self._prototype_source()
            except Exception:  # the dashboard keeps the last good prototypes
                protos = None
        accuracy = outcome_accuracy()
        if accuracy is None and protos is not None:
            accuracy = prototype_accuracy(protos)
        if protos is not None:
            im.PROTOTYPES.set(len(protos))
        with self._lock:
            counts[REWARDS_SERIES] = float(self._rewards_total)
            dt = (now - last) if last is not None else None
            for key, value in counts.items():
                series = self._throughput.setdefault(key, deque(maxlen=self._series_len))
                prev = self._last_counts.get(key, 0.0 if last is not None else value)
                rate = (value - prev) / dt if dt else 0.0
                series.append(Point(t=now, v=max(0.0, rate)))
            self._last_counts = counts
            lat = sorted(v for _, v in self._window)
            self._latency_series["p50"].append(Point(t=now, v=percentile(lat, 0.5)))
            self._latency_series["p95"].append(Point(t=now, v=percentile(lat, 0.95)))
            self._accuracy = accuracy
            self._accuracy_series.append(Point(t=now, v=accuracy))
            if protos is not None:
                self._prototypes = [PrototypeSummary.from_prototype(p) for p in protos]
        return True

    def snapshot(self) -> StatsSnapshot:
        """Everything the dashboard shows (ticks first when a second has passed)."""
        self.tick()
        events = _counter_by_label(im.EVENTS_PROCESSED, "topic")
        dead = _counter_by_label(im.EVENTS_DEAD_LETTERED, "topic")
        with self._lock:
            by_mode: dict[str, list[float]] = {}
            for mode, v in self._window:
                by_mode.setdefault(mode, []).append(v)
            by_mode["all"] = [v for _, v in self._window]
            latency = {}
            for mode, values in by_mode.items():
                values.sort()
                latency[mode] = LatencySummary(
                    count=len(values),
                    p50_s=percentile(values, 0.5),
                    p95_s=percentile(values, 0.95),
                    p99_s=percentile(values, 0.99),
                )
            return StatsSnapshot(
                now=self._clock(),
                uptime_s=max(0.0, self._clock() - self._started),
                events_total=events,
                dead_lettered_total=dead,
                rewards_total=self._rewards_total,
                rewards_by_mode=dict(self._rewards_by_mode),
                throughput={k: list(v) for k, v in self._throughput.items()},
                latency=latency,
                latency_series={k: list(v) for k, v in self._latency_series.items()},
                cold_start_share=self._cold_start_share_locked(),
                parse_failures_total=self._parse_failures,
                samples_used_total=self._samples,
                neighbours_used_total=self._neighbours,
                persona_queue_depth=self._queue_depth,
                lag=list(self._lag),
                prototypes=list(self._prototypes),
                accuracy=self._accuracy,
                accuracy_series=list(self._accuracy_series),
                latest=list(self._latest),
            )


LIVE = LiveStats()
"""The process-wide instance the worker and the API share by default."""
