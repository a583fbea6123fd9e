"""The Kafka feedback/profile publisher and the consumer-lag probe, on the real tansu broker."""

from __future__ import annotations

import uuid

from infra.contracts import UserProfile
from infra.settings import Settings
from stream.api.lag import LagProbe
from stream.api.publisher import KafkaFeedbackPublisher
from tests.api.conftest import feedback


def _topic(kafka_settings: Settings, name: str) -> str:
    from infra.kafka import ensure_topics
    from infra.topics import TopicSpec

    ensure_topics(kafka_settings, [TopicSpec(name, 2)])
    return name


def test_publisher_keys_by_user(kafka_settings: Settings) -> None:
    from kafka import TopicPartition

    from infra.kafka import make_consumer

    topic = _topic(kafka_settings, f"api-fb-{uuid.uuid4().hex[:8]}")
    pub = KafkaFeedbackPublisher(kafka_settings, topic=topic)
    try:
        receipts = [pub.publish(feedback(u, i)) for i, u in enumerate(["ann", "ben", "ann", "ann"])]
    finally:
        pub.close()
    by_user: dict[str, set[int | None]] = {}
    for r in receipts:
        by_user.setdefault(r.user_id, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in by_user.values())  # one partition per user
    assert [r.topic for r in receipts] == [topic] * 4
    consumer = make_consumer(kafka_settings, group_id=None)
    try:
        parts = sorted({r.partition for r in receipts if r.partition is not None})
        consumer.assign([TopicPartition(topic, p) for p in parts])
        consumer.seek_to_beginning()
        got: list = []
        for _ in range(50):
            for recs in consumer.poll(timeout_ms=200).values():
                got.extend(recs)
            if len(got) >= len(receipts):
                break
    finally:
        consumer.close()
    assert sorted((r.key, r.partition) for r in got) == sorted(
        (x.user_id.encode(), x.partition) for x in receipts
    )


def test_publisher_puts_profiles_on_their_topic_keyed_by_user(kafka_settings: Settings) -> None:
    from kafka import TopicPartition

    from infra.kafka import make_consumer
    from infra.topics import PROFILES

    pub = KafkaFeedbackPublisher(kafka_settings)  # the default topics, as `pgenrm up` uses
    profiles = [
        UserProfile(event_id=f"p-{uuid.uuid4().hex[:8]}", user_id=u, prototype_id=i)
        for i, u in enumerate(["gus", "hal", "gus"])
    ]
    try:
        receipts = [pub.publish_profile(p) for p in profiles]
    finally:
        pub.close()
    assert [r.topic for r in receipts] == [PROFILES] * 3
    assert receipts[0].partition == receipts[2].partition  # one user, one partition
    consumer = make_consumer(kafka_settings, group_id=None)
    got: dict[tuple[int, int], tuple[bytes, UserProfile]] = {}
    try:
        parts = sorted({r.partition for r in receipts if r.partition is not None})
        consumer.assign([TopicPartition(PROFILES, p) for p in parts])
        consumer.seek_to_beginning()
        want = {(r.partition, r.offset) for r in receipts}
        for _ in range(50):
            for recs in consumer.poll(timeout_ms=200).values():
                for rec in recs:
                    got[(rec.partition, rec.offset)] = (
                        rec.key,
                        UserProfile.model_validate_json(rec.value),
                    )
            if want <= set(got):
                break
    finally:
        consumer.close()
    assert [got[(r.partition, r.offset)] for r in receipts] == [  # type: ignore[index]
        (p.user_id.encode(), p) for p in profiles
    ]


def test_lag_probe_uses_fetch_highwater(kafka_settings: Settings, unique_group: str) -> None:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from infra.kafka import consumer_kwargs, encode_value, make_producer

    topic = _topic(kafka_settings, f"api-lag-{uuid.uuid4().hex[:8]}")
    producer = make_producer(kafka_settings, linger_ms=200)
    # 12 records for one key, sent together: tansu stores them as one batch, whose
    # ListOffsets(LATEST) answer is the batch base + 1, not 12 (stack.md bug B).
    futures = [
        producer.send(topic, key=b"same-user", value=encode_value(feedback("x", i)))
        for i in range(12)
    ]
    producer.flush()
    metas = [f.get(timeout=10) for f in futures]
    producer.close()
    part = metas[0].partition
    assert {m.partition for m in metas} == {part}
    true_end = max(m.offset for m in metas) + 1

    probe = LagProbe(kafka_settings, unique_group, topics=[topic])
    try:
        first = {(x.topic, x.partition): x for x in probe.measure()}
        row = first[(topic, part)]
        assert row.source == "fetch"
        assert row.log_end == true_end
        assert row.committed is None and row.lag == true_end

        committer = KafkaConsumer(**consumer_kwargs(kafka_settings, unique_group))
        tp = TopicPartition(topic, part)
        committer.assign([tp])
        committer.commit({tp: OffsetAndMetadata(5, "", -1)})
        committer.close()

        row = {(x.topic, x.partition): x for x in probe.measure()}[(topic, part)]
        assert row.committed == 5
        assert row.lag == true_end - 5
    finally:
        probe.close()

    from prometheus_client import REGISTRY

    assert (
        REGISTRY.get_sample_value("pgenrm_consumer_lag", {"topic": "other", "partition": str(part)})
        is not None
    )


def test_start_api_publishes_feedback_and_reports_lag(
    kafka_settings: Settings, unique_group: str, service
) -> None:
    import time

    import httpx

    from infra.topics import FEEDBACK, PROFILES, REWARD_REQUESTS
    from stream.api.app import start_api
    from stream.api.live import LiveStats

    settings = kafka_settings.model_copy(deep=True)
    settings.api.port = 0
    api = start_api(
        settings,
        service,
        group_id=unique_group,
        require_model=False,
        persona_queue_depth=lambda: 7,
        live=LiveStats(),
    )
    try:
        ev = feedback("fay", 1)
        r = httpx.post(f"{api.url}/v1/feedback", json=ev.model_dump(mode="json"), timeout=30)
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["topic"] == FEEDBACK and body["offset"] >= 0
        ready = httpx.get(f"{api.url}/readyz", timeout=30)
        assert ready.status_code == 200, ready.text
        stats: dict = {}
        row: dict = {}

        def feedback_row() -> dict:
            rows = [
                x
                for x in stats["lag"]
                if x["topic"] == FEEDBACK and x["partition"] == body["partition"]
            ]
            return rows[0] if rows else {}

        # the lag poller measures right away (possibly before the POST landed), then every
        # 5 s: wait for a measurement that has seen the event
        for _ in range(150):
            stats = httpx.get(f"{api.url}/v1/stats", timeout=30).json()
            row = feedback_row()
            if row.get("log_end", 0) >= body["offset"] + 1 and stats["persona_queue_depth"] == 7:
                break
            time.sleep(0.2)
        topics = {row["topic"] for row in stats["lag"]}
        assert topics == {FEEDBACK, REWARD_REQUESTS, PROFILES}
        assert row["log_end"] >= body["offset"] + 1
        assert row["lag"] == row["log_end"]  # the fresh group never committed
        assert stats["persona_queue_depth"] == 7
    finally:
        api.stop()
    assert api.publisher is None


def test_lag_probe_finds_a_topic_created_after_it_started(
    kafka_settings: Settings, unique_group: str
) -> None:
    from infra.kafka import encode_value, make_producer

    topic = f"api-lag-late-{uuid.uuid4().hex[:8]}"
    probe = LagProbe(kafka_settings, unique_group, topics=[topic], fetch_timeout_s=1.0)
    try:
        assert probe.measure() == []  # the worker has not created its topics yet
        _topic(kafka_settings, topic)
        producer = make_producer(kafka_settings)
        meta = producer.send(topic, key=b"u", value=encode_value(feedback("u", 0))).get(10)
        producer.close()
        rows = {(x.topic, x.partition): x for x in probe.measure()}
        assert sorted(rows) == [(topic, 0), (topic, 1)]
        assert rows[(topic, meta.partition)].lag == meta.offset + 1
    finally:
        probe.close()


def test_feedback_over_the_record_limit_is_413_not_503(kafka_settings: Settings) -> None:
    from fastapi.testclient import TestClient

    from stream.api.app import create_app
    from stream.api.live import LiveStats
    from tests.api.fakes import FakeService

    topic = _topic(kafka_settings, f"api-fb-big-{uuid.uuid4().hex[:8]}")
    settings = kafka_settings.model_copy(deep=True)
    settings.broker.max_message_bytes = 4_000  # the body limit stays api.max_body_bytes (1 MB)
    pub = KafkaFeedbackPublisher(settings, topic=topic)
    app = create_app(
        settings, FakeService(), publisher=pub, readiness={}, live=LiveStats(record_metrics=False)
    )
    try:
        c = TestClient(app)
        ev = feedback("big", 0, chosen="x" * 3_900).model_dump(mode="json")
        r = c.post("/v1/feedback", json=ev)
        assert r.status_code == 413, r.text
        assert r.json()["error"]["type"] == "payload_too_large"
        assert "too large" in r.json()["error"]["message"]
        ok = feedback("big", 1).model_dump(mode="json")
        assert c.post("/v1/feedback", json=ok).status_code == 202
    finally:
        pub.close()
