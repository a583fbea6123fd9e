"""LiveStats: throughput from the processed-events counters, percentiles, shares, accuracy."""

from __future__ import annotations

from typing import Any

from infra import metrics as im
from infra.contracts import CandidateScore, Explanation, RewardResult
from infra.topics import FEEDBACK
from prototypes.protocol import Prototype
from stream.api.live import LiveStats, percentile


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def result(mode: Any, latency_ms: float, rid: str = "r", **kw: Any) -> RewardResult:
    return RewardResult(
        request_id=rid,
        user_id="u",
        mode=mode,
        model_id="m",
        latency_ms=latency_ms,
        scores=[
            CandidateScore(index=0, score=1.0, rank=2),
            CandidateScore(index=1, score=3.0, rank=1),
        ],
        explanation=Explanation(persona="likes brevity", notes=["combination=paper"]),
        **kw,
    )


def test_percentile_nearest_rank() -> None:
    values = sorted(float(i) for i in range(1, 101))
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0


def test_throughput_is_the_counter_rate_per_second() -> None:
    clock = Clock()
    live = LiveStats(clock=clock, record_metrics=False)
    assert live.tick()
    assert not live.tick()  # at most one point per second
    im.count_processed(FEEDBACK, 30)
    clock.t += 2.0
    assert live.tick()
    series = live.snapshot().throughput[FEEDBACK]
    assert series[-1].v == 15.0  # 30 events over 2 s
    clock.t += 1.0
    live.tick()
    assert live.snapshot().throughput[FEEDBACK][-1].v == 0.0


def test_latency_shares_and_latest() -> None:
    live = LiveStats(clock=Clock(), record_metrics=False, latest=3)
    for i in range(10):
        live.record_reward(
            result(
                "cold_start" if i < 3 else "personal",
                100.0 * (i + 1),
                rid=f"r{i}",
                samples_used=2,
                neighbours_used=1,
                parse_failures=i % 2,
            )
        )
    snap = live.snapshot()
    assert snap.rewards_total == 10
    assert snap.rewards_by_mode == {"cold_start": 3, "personal": 7}
    assert snap.cold_start_share == 0.3
    assert snap.latency["all"].p50_s == 0.5 and snap.latency["all"].p99_s == 1.0
    assert snap.latency["cold_start"].p95_s == 0.3
    assert snap.samples_used_total == 20 and snap.neighbours_used_total == 10
    assert snap.parse_failures_total == 5
    assert [r.request_id for r in snap.latest] == ["r9", "r8", "r7"]
    assert snap.latest[0].best_index == 1 and snap.latest[0].scores == [1.0, 3.0]
    assert snap.latest[0].persona == "likes brevity"


def test_accuracy_and_prototypes_from_the_source() -> None:
    clock = Clock()
    protos = [
        Prototype(prototype_id=0, centroid=[1.0], size=4, outcomes=4, correct=3),
        Prototype(prototype_id=1, centroid=[0.0], size=2, outcomes=0, correct=0),
    ]
    live = LiveStats(clock=clock, record_metrics=False)
    live.set_prototype_source(lambda: protos)
    live.tick(force=True)
    snap = live.snapshot()
    assert [p.size for p in snap.prototypes] == [4, 2]
    assert snap.prototypes[0].online_accuracy == 0.75
    assert snap.accuracy_series[-1].v is not None


def test_a_failing_prototype_source_keeps_the_last_good_value() -> None:
    clock = Clock()
    calls = {"n": 0}

    def source() -> list[Prototype]:
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("store down")
        return [Prototype(prototype_id=5, centroid=[1.0], size=9)]

    live = LiveStats(clock=clock, record_metrics=False)
    live.set_prototype_source(source)
    live.tick(force=True)
    clock.t += 1
    live.tick(force=True)
    assert [p.prototype_id for p in live.snapshot().prototypes] == [5]
