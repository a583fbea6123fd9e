"""Dead letters on the real broker: each bad-input class lands in <topic>.dlq, good ones go on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from infra.codec import (
    H_AT,
    H_DETAIL,
    H_OFFSET,
    H_PARTITION,
    H_REASON,
    H_TOPIC,
    DeadLetterPolicy,
    decode_record,
)
from infra.contracts import Contract
from infra.exceptions import InvalidEventError
from infra.kafka import make_consumer, make_producer, seek_to_highwater
from infra.metrics import count_processed
from infra.settings import Settings
from infra.topics import FEEDBACK, REWARD_REQUESTS, dlq

from .samples import dumps, feedback, reward_request

MAX_BYTES = 4_000

# (topic, original bytes, expected reason)
BAD: list[tuple[str, bytes, str]] = [
    (FEEDBACK, b"{not json", "invalid_json"),
    (FEEDBACK, b"\xff\xfe", "invalid_json"),
    (FEEDBACK, dumps(feedback(extra=1)), "schema_violation"),
    (FEEDBACK, dumps(feedback(schema_version=7)), "unknown_schema_version"),
    (FEEDBACK, dumps(feedback(chosen="x" * MAX_BYTES)), "oversize"),
    (REWARD_REQUESTS, dumps(reward_request(candidates=["only one"])), "candidate_count"),
    (
        REWARD_REQUESTS,
        dumps(reward_request(candidates=[str(i) for i in range(17)])),
        "candidate_count",
    ),
    (REWARD_REQUESTS, dumps(reward_request(candidates=[1, 2])), "schema_violation"),
]


@pytest.fixture
def producer(kafka_settings: Settings) -> Iterator[KafkaProducer]:
    p = make_producer(kafka_settings)
    yield p
    p.close(timeout=5)


def _assign_all(settings: Settings, *topics: str) -> KafkaConsumer:
    consumer = make_consumer(settings, group_id=None)
    tps = []
    for topic in topics:
        parts = consumer.partitions_for_topic(topic)
        assert parts, topic
        tps += [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    return consumer


def _drain(consumer: KafkaConsumer, n: int, within_s: float = 20.0) -> list[Any]:
    out: list[Any] = []
    end = time.monotonic() + within_s
    while len(out) < n and time.monotonic() < end:
        for records in consumer.poll(timeout_ms=300).values():
            out.extend(records)
    return out


def test_each_bad_class_is_dead_lettered_and_good_events_continue(
    kafka_settings: Settings, producer: KafkaProducer
) -> None:
    run = str(time.monotonic_ns())
    key = f"dlq-user-{run}".encode()  # one key: one partition per topic, strict order
    dlq_watch = _assign_all(kafka_settings, dlq(FEEDBACK), dlq(REWARD_REQUESTS))
    source = _assign_all(kafka_settings, FEEDBACK, REWARD_REQUESTS)
    try:
        seek_to_highwater(dlq_watch)
        seek_to_highwater(source)

        # bad, good, bad, good, ... then two trailing good events per topic
        expected_good: list[str] = []
        plan: list[tuple[str, bytes, str | None]] = []
        for i, (topic, value, reason) in enumerate(BAD):
            plan.append((topic, value, reason))
            good_id = f"{run}-good-{i}"
            good = (
                feedback(event_id=good_id)
                if topic == FEEDBACK
                else reward_request(request_id=good_id)
            )
            plan.append((topic, dumps(good), None))
            expected_good.append(good_id)
        for topic in (FEEDBACK, REWARD_REQUESTS):
            good_id = f"{run}-tail-{topic}"
            tail = (
                feedback(event_id=good_id)
                if topic == FEEDBACK
                else reward_request(request_id=good_id)
            )
            plan.append((topic, dumps(tail), None))
            expected_good.append(good_id)

        where: dict[tuple[str, int, int], str | None] = {}
        for topic, value, expected in plan:
            md = producer.send(topic, value=value, key=key).get(timeout=10)
            where[(topic, md.partition, md.offset)] = expected

        before = {
            (t, r): REGISTRY.get_sample_value(
                "pgenrm_events_dead_lettered_total", {"topic": t, "reason": r}
            )
            or 0.0
            for t, _, r in BAD
        }
        policy = DeadLetterPolicy(producer)
        processed: list[Contract] = []
        records = _drain(source, len(plan))
        assert len(records) == len(plan)
        for rec in records:
            try:
                event = decode_record(rec, max_bytes=MAX_BYTES)
            except InvalidEventError as exc:
                assert exc.reason == where[(rec.topic, rec.partition, rec.offset)]
                assert policy.handle(exc, rec) == "dead_letter"
                continue
            processed.append(event)
            count_processed(rec.topic)

        assert policy.dead_lettered == len(BAD)
        ids = [str(getattr(e, "event_id", None) or getattr(e, "request_id", "")) for e in processed]
        assert sorted(ids) == sorted(expected_good)  # every good event, none of the bad

        letters = _drain(dlq_watch, len(BAD))
        assert len(letters) == len(BAD)
        seen = []
        for letter in letters:
            headers = {k: v for k, v in letter.headers}
            src_topic = headers[H_TOPIC].decode()
            src = (src_topic, int(headers[H_PARTITION]), int(headers[H_OFFSET]))
            assert letter.topic == dlq(src_topic)
            assert headers[H_REASON].decode() == where[src]
            assert letter.key == key
            assert headers[H_DETAIL]
            assert headers[H_AT].decode().startswith("20")
            original = [v for t, v, _ in BAD if (t, v) == (src_topic, letter.value)]
            assert original, "the dead letter must carry the original bytes"
            seen.append(src)
        assert len(set(seen)) == len(BAD)  # one letter per bad record, no duplicates

        for (t, r), old in before.items():
            n = sum(1 for tt, _, rr in BAD if (tt, rr) == (t, r))
            new = REGISTRY.get_sample_value(
                "pgenrm_events_dead_lettered_total", {"topic": t, "reason": r}
            )
            assert new == old + n
    finally:
        dlq_watch.close()
        source.close()


def test_oversize_record_is_dead_lettered_whole(
    kafka_settings: Settings, producer: KafkaProducer
) -> None:
    # bigger than the processor limit but within the broker's: the DLQ keeps all of it
    big = dumps(feedback(event_id=f"big-{time.monotonic_ns()}", chosen="y" * 50_000))
    dlq_watch = _assign_all(kafka_settings, dlq(FEEDBACK))
    try:
        seek_to_highwater(dlq_watch)
        md = producer.send(FEEDBACK, value=big, key=b"big-user").get(timeout=10)
        src = make_consumer(kafka_settings, group_id=None)
        try:
            tp = TopicPartition(FEEDBACK, md.partition)
            src.assign([tp])
            src.seek(tp, md.offset)
            (rec,) = _drain(src, 1)[:1]
            assert rec.offset == md.offset
        finally:
            src.close()
        with pytest.raises(InvalidEventError) as info:
            decode_record(rec, max_bytes=MAX_BYTES)
        DeadLetterPolicy(producer).handle(info.value, rec)
        (letter,) = _drain(dlq_watch, 1)
        assert letter.value == big
        assert dict(letter.headers)[H_REASON] == b"oversize"
    finally:
        dlq_watch.close()
