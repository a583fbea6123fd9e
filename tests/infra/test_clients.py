"""send-feedback, send-profiles and request-reward client helpers on the real broker."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from infra.clients import (
    read_feedback_file,
    request_reward,
    send_feedback,
    send_profiles,
    send_profiles_file,
)
from infra.codec import decode
from infra.contracts import FeedbackEvent, RewardRequest, RewardResult, UserProfile
from infra.exceptions import FeedbackFileError, ResultTimeoutError
from infra.kafka import encode_value, event_key, make_consumer, make_producer, seek_to_highwater
from infra.settings import Settings
from infra.topics import FEEDBACK, PROFILES, REWARD_REQUESTS, REWARDS

from .samples import feedback, reward_request, reward_result, user_profile


def _watch(settings: Settings, topic: str) -> KafkaConsumer:
    consumer = make_consumer(settings, group_id=None)
    parts = consumer.partitions_for_topic(topic)
    assert parts
    consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
    seek_to_highwater(consumer)
    return consumer


def _read(consumer: KafkaConsumer, n: int, within_s: float = 15.0) -> list[bytes]:
    out: list[bytes] = []
    end = time.monotonic() + within_s
    while len(out) < n and time.monotonic() < end:
        for records in consumer.poll(timeout_ms=300).values():
            out += [r.value for r in records]
    return out


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_send_feedback_produces_every_valid_line(kafka_settings: Settings, tmp_path: Path) -> None:
    run = time.monotonic_ns()
    events = [feedback(event_id=f"sf-{run}-{i}", user_id=f"user{i % 2}") for i in range(3)]
    path = _write(
        tmp_path / "fb.jsonl",
        [json.dumps(e) for e in events[:2]] + ["", "   ", json.dumps(events[2])],
    )
    watch = _watch(kafka_settings, FEEDBACK)
    try:
        assert send_feedback(kafka_settings, path) == 3
        got = [decode(FEEDBACK, v, max_bytes=10**6) for v in _read(watch, 3)]
    finally:
        watch.close()
    assert sorted(e.event_id for e in got if isinstance(e, FeedbackEvent)) == sorted(
        e["event_id"] for e in events
    )


def test_send_profiles_produces_every_profile(kafka_settings: Settings) -> None:
    run = time.monotonic_ns()
    profiles = [
        UserProfile.model_validate(user_profile(event_id=f"sp-{run}-{i}", user_id=f"user{i}"))
        for i in range(2)
    ]
    watch = _watch(kafka_settings, PROFILES)
    try:
        assert send_profiles(kafka_settings, profiles) == 2
        assert send_profiles(kafka_settings, []) == 0
        got = _read(watch, 2)
    finally:
        watch.close()
    assert sorted(got) == sorted(encode_value(p) for p in profiles)


def test_send_profiles_file_validates_every_line_first(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    run = time.monotonic_ns()
    good = user_profile(event_id=f"pf-{run}", user_id=f"pf-user-{run}")
    neither = user_profile(event_id=f"pf-bad-{run}", stated_preferences=None, prototype_id=None)
    path = _write(tmp_path / "p.jsonl", [json.dumps(good), "", json.dumps(neither)])
    watch = _watch(kafka_settings, PROFILES)
    try:
        with pytest.raises(FeedbackFileError) as info:
            send_profiles_file(kafka_settings, path)
        assert [(n, r) for n, r, _ in info.value.problems] == [(3, "schema_violation")]
        assert _read(watch, 1, within_s=1.5) == []  # nothing was sent
        assert send_profiles_file(kafka_settings, path, skip_invalid=True) == 1
        (value,) = _read(watch, 1)
    finally:
        watch.close()
    sent = decode(PROFILES, value, max_bytes=10**6)
    assert isinstance(sent, UserProfile)
    assert (sent.event_id, sent.user_id, sent.prototype_id) == (
        good["event_id"],
        good["user_id"],
        4,
    )


def test_send_feedback_refuses_a_file_with_bad_lines(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    run = time.monotonic_ns()
    path = _write(
        tmp_path / "bad.jsonl",
        [
            json.dumps(feedback(event_id=f"ok-{run}")),
            "{broken",
            json.dumps(feedback(event_id=f"same-{run}", rejected="A quiet spa hotel.")),
            json.dumps(feedback(event_id=f"v9-{run}", schema_version=9)),
        ],
    )
    watch = _watch(kafka_settings, FEEDBACK)
    try:
        with pytest.raises(FeedbackFileError) as info:
            send_feedback(kafka_settings, path)
        assert [(n, r) for n, r, _ in info.value.problems] == [
            (2, "invalid_json"),
            (3, "schema_violation"),
            (4, "unknown_schema_version"),
        ]
        assert "line 2: invalid_json" in str(info.value)
        assert _read(watch, 1, within_s=1.5) == []  # nothing was sent

        assert send_feedback(kafka_settings, path, skip_invalid=True) == 1
        (value,) = _read(watch, 1)
    finally:
        watch.close()
    event = decode(FEEDBACK, value, max_bytes=10**6)
    assert isinstance(event, FeedbackEvent) and event.event_id == f"ok-{run}"


def test_read_feedback_file_reports_line_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.jsonl", ["", json.dumps(feedback()), "[1]"])
    parsed = read_feedback_file(path)
    assert len(parsed.events) == 1
    assert [(n, r) for n, r, _ in parsed.problems] == [(3, "schema_violation")]


def test_request_reward_returns_the_matching_result(kafka_settings: Settings) -> None:
    run = time.monotonic_ns()
    request = RewardRequest.model_validate(
        reward_request(request_id=f"rq-{run}", user_id=f"ru-{run}")
    )
    requests_seen = _watch(kafka_settings, REWARD_REQUESTS)
    errors: list[BaseException] = []

    def responder() -> None:  # a stand-in reward worker: answers after noise
        producer = make_producer(kafka_settings)
        try:
            end = time.monotonic() + 20
            while time.monotonic() < end:
                for records in requests_seen.poll(timeout_ms=200).values():
                    for rec in records:
                        got = decode(REWARD_REQUESTS, rec.value, max_bytes=10**6)
                        if getattr(got, "request_id", None) != request.request_id:
                            continue
                        assert rec.key == request.user_id.encode()
                        producer.send(REWARDS, value=b"{garbage", key=rec.key)
                        other = RewardResult.model_validate(
                            reward_result(request_id=f"other-{run}", user_id=request.user_id)
                        )
                        producer.send(REWARDS, value=encode_value(other), key=event_key(other))
                        mine = RewardResult.model_validate(
                            reward_result(
                                request_id=request.request_id,
                                user_id=request.user_id,
                                mode="cold_start",
                            )
                        )
                        producer.send(REWARDS, value=encode_value(mine), key=event_key(mine))
                        producer.flush()
                        return
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            producer.close(timeout=5)

    thread = threading.Thread(target=responder, daemon=True)
    thread.start()
    try:
        result = request_reward(kafka_settings, request, timeout_s=20)
    finally:
        thread.join(timeout=25)
        requests_seen.close()
    assert not errors, errors
    assert result.request_id == request.request_id
    assert result.user_id == request.user_id
    assert result.mode == "cold_start"


def test_request_reward_times_out_without_a_worker(kafka_settings: Settings) -> None:
    request = RewardRequest.model_validate(
        reward_request(request_id=f"lonely-{time.monotonic_ns()}")
    )
    with pytest.raises(ResultTimeoutError, match="lonely-"):
        request_reward(kafka_settings, request, timeout_s=2)
