"""The faust agents under faust's test context (no broker), over the real service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra.contracts import ChatMessage, PersonaState, RewardRequest, RewardResult, UserProfile
from infra.kafka import encode_value
from infra.settings import Settings
from infra.topics import FEEDBACK, PERSONAS, PROFILES, PROTOTYPES, REWARD_REQUESTS, REWARDS, dlq
from stream.app import create_app
from stream.config import StreamConfig
from stream.runtime import MemoryPublisher, StreamRuntime
from stream.service import PgenrmService
from tests.stream.helpers import fb, until


@pytest.fixture
def harness(
    svc_settings: Settings, embedder: Any, stream_config: StreamConfig
) -> Iterator[tuple[Any, StreamRuntime, MemoryPublisher]]:
    svc = PgenrmService.open(svc_settings, embedder=embedder, config=stream_config)
    pub = MemoryPublisher()
    rt = StreamRuntime(svc_settings, publisher=pub, config=stream_config, service=svc)
    app = create_app(
        svc_settings.model_copy(
            update={"broker": svc_settings.broker.model_copy(update={"urls": "127.0.0.1:1"})}
        ),
        config=stream_config,
        runtime=rt,
        app_id="pgenrm-harness",
    )
    try:
        yield app, rt, pub
    finally:
        svc.close()


def _dlq_reasons(pub: MemoryPublisher, topic: str) -> list[str]:
    return [dict(h)["pgenrm-error-reason"].decode() for t, _, _, h in pub.sent if t == dlq(topic)]


def test_feedback_agent_applies_dead_letters_and_publishes(
    harness: tuple[Any, StreamRuntime, MemoryPublisher],
) -> None:
    app, rt, pub = harness
    good = [fb(f"h{i}", f"u{i % 2}", critique="short" if i == 0 else None) for i in range(6)]
    raw: list[bytes] = [encode_value(e) for e in good]
    bad = [
        b"{not json",
        json.dumps({"event_id": "b1", "user_id": "u0"}).encode(),  # schema violation
        json.dumps({**json.loads(raw[0]), "schema_version": 99}).encode(),
        b"{" + b" " * 2_000_000 + b"}",  # oversize
        raw[1],  # a duplicate of h1
    ]
    stream = raw[:3] + bad + raw[3:]

    async def main() -> None:
        agent = app.agents["feedback"]
        async with agent.test_context() as ctx:
            for _i, value in enumerate(stream):
                await ctx.put(value=value, key=b"k", partition=0, wait=False)
            await until(
                lambda: (
                    rt.counters["feedback_applied"] == 6 and len(_dlq_reasons(pub, FEEDBACK)) == 5
                )
            )

    asyncio.run(main())
    assert sorted(_dlq_reasons(pub, FEEDBACK)) == sorted(
        ["invalid_json", "schema_violation", "unknown_schema_version", "oversize", "duplicate_id"]
    )
    # the dead letters carry the original bytes
    dl = [v for t, _, v, _ in pub.sent if t == dlq(FEEDBACK)]
    assert b"{not json" in dl and raw[1] in dl
    cut = [dict(h) for t, _, _, h in pub.sent if t == dlq(FEEDBACK)]
    assert [h["pgenrm-value-truncated"] for h in cut if "pgenrm-value-truncated" in h] == [
        str(len(bad[3])).encode()
    ]
    states = [PersonaState.model_validate_json(v) for v in pub.on(PERSONAS)]  # type: ignore[arg-type]
    last = {s.user_id: s for s in states}
    assert last["u0"].events_applied == 3 and last["u1"].events_applied == 3
    assert last["u0"].critiques == 1 and last["u0"].prototype_id is not None
    assert pub.on(PROTOTYPES)
    u0 = rt._service.user("u0")  # type: ignore[union-attr]
    assert u0 is not None and [h.chosen for h in u0.history] == [good[i].chosen for i in (0, 2, 4)]


def test_a_replayed_feedback_event_publishes_its_stored_states_again(
    harness: tuple[Any, StreamRuntime, MemoryPublisher],
) -> None:
    """Written before a crash, offset not committed: the states may never have been sent."""
    app, rt, pub = harness
    svc = rt._service
    assert svc is not None
    ev = fb("r0", "rita")
    (before,) = svc.apply_feedback([ev], [(0, 0)])  # the write the crash interrupted
    assert before.status == "applied" and not pub.on(PERSONAS)

    async def main() -> None:
        async with app.agents["feedback"].test_context() as ctx:
            await ctx.put(value=encode_value(ev), key=b"rita", partition=0, wait=False)  # offset 0
            await until(lambda: rt.counters["feedback_replay"] == 1 and bool(pub.on(PERSONAS)))

    asyncio.run(main())
    (state,) = [PersonaState.model_validate_json(v) for v in pub.on(PERSONAS)]  # type: ignore[arg-type]
    assert state.user_id == "rita" and state.events_applied == 1
    assert state.prototype_id == before.prototype_id and pub.on(PROTOTYPES)
    assert rt.counters["feedback_replay"] == 1 and not _dlq_reasons(pub, FEEDBACK)


def test_a_repeated_profile_is_dead_lettered_and_its_user_state_sent_again(
    harness: tuple[Any, StreamRuntime, MemoryPublisher],
) -> None:
    """The first delivery's PersonaState may have been lost with a crashed worker."""
    app, rt, pub = harness
    profile = UserProfile(event_id="pr-1", user_id="pia", stated_preferences="Short answers.")

    async def main() -> None:
        async with app.agents["profiles"].test_context() as ctx:
            for _ in range(2):
                await ctx.put(value=encode_value(profile), key=b"pia", partition=0)

    asyncio.run(main())
    states = [PersonaState.model_validate_json(v) for v in pub.on(PERSONAS)]  # type: ignore[arg-type]
    assert [s.user_id for s in states] == ["pia", "pia"] and states[0].version == states[1].version
    assert _dlq_reasons(pub, PROFILES) == ["duplicate_id"]
    assert rt.counters["profiles_applied"] == 1 and rt.counters["profiles_duplicate"] == 1


def test_reward_agent_answers_once_and_dead_letters_bad_requests(
    harness: tuple[Any, StreamRuntime, MemoryPublisher],
) -> None:
    app, _rt, pub = harness
    req = RewardRequest(
        request_id="rq-1",
        user_id="alice",
        context=[ChatMessage(role="user", content="Plan my weekend")],
        candidates=["A long plan with many details and caveats.", "Hike, then dinner."],
    )
    one_candidate = json.loads(encode_value(req))
    one_candidate["candidates"] = ["only one"]
    one_candidate["request_id"] = "rq-2"
    values = [encode_value(req), json.dumps(one_candidate).encode(), encode_value(req)]

    async def main() -> None:
        agent = app.agents["rewards"]
        async with agent.test_context() as ctx:
            for v in values:
                await ctx.put(value=v, key=b"alice", partition=0)

    asyncio.run(main())
    results = [RewardResult.model_validate_json(v) for v in pub.on(REWARDS)]  # type: ignore[arg-type]
    assert [r.request_id for r in results] == ["rq-1"]
    assert results[0].mode == "cold_start"
    assert [k for t, k, _, _ in pub.sent if t == REWARDS] == [b"alice"]
    assert sorted(_dlq_reasons(pub, REWARD_REQUESTS)) == ["candidate_count", "duplicate_id"]


def test_reward_agent_serves_a_registered_user_in_prototype_mode(
    harness: tuple[Any, StreamRuntime, MemoryPublisher],
) -> None:
    app, rt, pub = harness
    svc = rt._service
    assert svc is not None
    svc.apply_feedback([fb(f"p{i}", f"member{i % 2}", query=f"question {i}") for i in range(4)])
    member = svc.user("member0")
    assert member is not None and member.prototype_id is not None
    svc.register_user("newcomer", prototype_id=member.prototype_id)
    req = RewardRequest(
        request_id="rq-proto",
        user_id="newcomer",
        context=[ChatMessage(role="user", content="Plan my weekend")],
        candidates=["A long plan with many details and caveats.", "Hike, then dinner."],
    )

    async def main() -> None:
        async with app.agents["rewards"].test_context() as ctx:
            await ctx.put(value=encode_value(req), key=b"newcomer", partition=0)

    asyncio.run(main())
    results = [RewardResult.model_validate_json(v) for v in pub.on(REWARDS)]  # type: ignore[arg-type]
    assert [(r.request_id, r.mode, r.prototype_id) for r in results] == [
        ("rq-proto", "prototype", member.prototype_id)
    ]
    assert rt.counters["rewards_prototype"] == 1
    assert rt.stage_ms["reward.serve"] > 0  # stage timings are kept per path


def test_worker_consumer_fetch_wait_comes_from_the_config(svc_settings: Settings) -> None:
    # faust hard-codes fetch_max_wait_ms=1500 (tansu then holds empty fetches that long)
    cfg = StreamConfig(fetch_max_wait_ms=20, persona_refresh=False, load_backend=False)
    settings = svc_settings.model_copy(
        update={"broker": svc_settings.broker.model_copy(update={"urls": "127.0.0.1:1"})}
    )
    rt = StreamRuntime(settings, publisher=MemoryPublisher(), config=cfg)
    app = create_app(settings, config=cfg, runtime=rt, app_id="pgenrm-fetch-wait")

    async def main() -> int:
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    assert asyncio.run(main()) == 20


def test_a_failing_feedback_stage_crashes_the_worker(
    harness: tuple[Any, StreamRuntime, MemoryPublisher], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, rt, _pub = harness

    async def broker_refuses(batch: Any) -> Any:
        raise ConnectionError("broker refused the outputs")

    monkeypatch.setattr(rt, "apply_prepared", broker_refuses)

    async def main() -> None:
        agent = app.agents["feedback"]
        async with agent.test_context() as ctx:
            await ctx.put(value=encode_value(fb("x1", "u0")), key=b"u0", partition=0, wait=False)
            await until(lambda: app.crash_reason is not None, timeout_s=60)

    asyncio.run(main())
    assert isinstance(app.crash_reason, ConnectionError)
    assert rt.counters["pipeline_failures"] == 1
    assert rt.counters["feedback_applied"] == 0
