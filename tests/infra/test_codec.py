"""The input boundary: decode() accepts every contract and names each kind of bad input."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from infra.codec import (
    H_DETAIL,
    H_OFFSET,
    H_PARTITION,
    H_REASON,
    H_TOPIC,
    MAX_DETAIL_BYTES,
    TOPIC_MODELS,
    DeadLetterPolicy,
    as_invalid,
    dead_letter_message,
    decode,
    decode_record,
    model_for,
)
from infra.contracts import MAX_CANDIDATES, FeedbackEvent, RewardRequest
from infra.exceptions import ERROR_REASONS, InvalidEventError, PgenrmError
from infra.topics import FEEDBACK, PROFILES, REWARD_REQUESTS

from .samples import SAMPLES, dumps, feedback, reward_request, user_profile

MAX = 100_000


def reason_of(topic: str, value: bytes | None, max_bytes: int = MAX) -> str:
    with pytest.raises(InvalidEventError) as info:
        decode(topic, value, max_bytes=max_bytes)
    assert info.value.topic == topic
    assert info.value.value == value  # the original bytes travel with the error
    return info.value.reason


@pytest.mark.parametrize("topic", sorted(SAMPLES))
def test_every_topic_decodes_its_contract(topic: str) -> None:
    event = decode(topic, dumps(SAMPLES[topic]), max_bytes=MAX)
    assert type(event) is TOPIC_MODELS[topic]
    assert event.schema_version == 1


def test_model_for_accepts_dlq_twin_and_rejects_unknown_topics() -> None:
    assert model_for("pgenrm.feedback.v1.dlq") is FeedbackEvent
    with pytest.raises(KeyError):
        model_for("not.a.pgenrm.topic")


@pytest.mark.parametrize(
    "value",
    [
        b"{not json",
        b"",
        b"\xff\xfe\x00garbage",  # not UTF-8
        b'{"event_id": NaN}',  # NaN is not JSON
        b'{"x": Infinity}',
        b"[" * 50_000,  # nesting deep enough to exhaust the parser
        None,  # a tombstone on an event topic
    ],
    ids=["syntax", "empty", "not-utf8", "nan", "infinity", "deep", "null"],
)
def test_invalid_json(value: bytes | None) -> None:
    assert reason_of(FEEDBACK, value) == "invalid_json"


@pytest.mark.parametrize(
    ("topic", "obj"),
    [
        (FEEDBACK, [feedback()]),  # not an object
        (FEEDBACK, "just a string"),
        (FEEDBACK, {k: v for k, v in feedback().items() if k != "user_id"}),  # missing field
        (FEEDBACK, feedback(extra_field=1)),  # unknown field (extra=forbid)
        (FEEDBACK, feedback(rejected="A quiet spa hotel.")),  # chosen == rejected
        (FEEDBACK, feedback(user_id="has space")),  # id pattern
        (FEEDBACK, feedback(context=[])),  # context must not be empty
        (FEEDBACK, feedback(context=[{"role": "robot", "content": "x"}])),
        (FEEDBACK, feedback(timestamp="yesterday")),
        (REWARD_REQUESTS, reward_request(candidates=[1, 2])),  # right count, wrong type
        (REWARD_REQUESTS, reward_request(candidates="ab")),
        (REWARD_REQUESTS, reward_request(overrides={"samples": -1})),
        (PROFILES, user_profile(stated_preferences=None, prototype_id=None)),  # nothing to set
        (PROFILES, {"event_id": "p1", "user_id": "u1"}),
        (PROFILES, user_profile(stated_preferences=" \n ", prototype_id=None)),  # blank
        (PROFILES, user_profile(stated_preferences="x" * 4001)),
        (PROFILES, user_profile(prototype_id=-1)),
        (PROFILES, user_profile(context=[])),  # a feedback field (extra=forbid)
    ],
)
def test_schema_violation(topic: str, obj: Any) -> None:
    assert reason_of(topic, dumps(obj)) == "schema_violation"


@pytest.mark.parametrize("version", [2, 0, "1", True, None, 1.5])
def test_unknown_schema_version(version: object) -> None:
    assert reason_of(FEEDBACK, dumps(feedback(schema_version=version))) == "unknown_schema_version"


def test_missing_schema_version_means_version_1() -> None:
    obj = feedback()
    obj.pop("schema_version", None)
    assert decode(FEEDBACK, dumps(obj), max_bytes=MAX).schema_version == 1


def test_oversize_is_checked_before_parsing() -> None:
    value = dumps(feedback())
    event = decode(FEEDBACK, value, max_bytes=len(value))  # exactly at the limit
    assert isinstance(event, FeedbackEvent) and event.user_id == "u1"
    assert reason_of(FEEDBACK, value, max_bytes=len(value) - 1) == "oversize"
    assert reason_of(FEEDBACK, b"{" * 200, max_bytes=100) == "oversize"  # not even JSON


@pytest.mark.parametrize("n", [0, 1, MAX_CANDIDATES + 1, 100])
def test_candidate_count(n: int) -> None:
    obj = reward_request(candidates=[f"answer {i}" for i in range(n)])
    with pytest.raises(InvalidEventError) as info:
        decode(REWARD_REQUESTS, dumps(obj), max_bytes=MAX)
    assert info.value.reason == "candidate_count"
    assert "candidates" in info.value.detail


@pytest.mark.parametrize("n", [2, MAX_CANDIDATES])
def test_candidate_count_bounds_are_accepted(n: int) -> None:
    obj = reward_request(candidates=[f"answer {i}" for i in range(n)])
    req = decode(REWARD_REQUESTS, dumps(obj), max_bytes=MAX)
    assert isinstance(req, RewardRequest) and len(req.candidates) == n


def test_error_carries_the_record_and_location() -> None:
    rec = SimpleNamespace(topic=FEEDBACK, partition=3, offset=41, key=b"u9", value=b"{bad")
    with pytest.raises(InvalidEventError) as info:
        decode_record(rec, max_bytes=MAX)
    exc = info.value
    assert isinstance(exc, PgenrmError)
    assert (exc.reason, exc.topic, exc.partition, exc.offset, exc.key, exc.value) == (
        "invalid_json",
        FEEDBACK,
        3,
        41,
        b"u9",
        b"{bad",
    )
    assert "pgenrm.feedback.v1[3]@41" in str(exc)


def test_reason_codes_are_stable() -> None:
    assert set(ERROR_REASONS) >= {
        "invalid_json",
        "schema_violation",
        "unknown_schema_version",
        "oversize",
        "candidate_count",
        "duplicate_id",
        "unknown_prototype",
        "user_has_history",
    }
    with pytest.raises(ValueError, match="unknown error reason"):
        InvalidEventError("bad_reason", "x", FEEDBACK)  # type: ignore[arg-type]


def test_dead_letter_message_keeps_original_bytes_and_truncates_detail() -> None:
    exc = InvalidEventError("schema_violation", "é" * 5000, FEEDBACK, 1, 2, b"\x00raw", key=b"k")
    msg = dead_letter_message(exc)
    headers = dict(msg.headers)
    assert msg.topic == "pgenrm.feedback.v1.dlq"
    assert (msg.key, msg.value) == (b"k", b"\x00raw")
    assert headers[H_REASON] == b"schema_violation"
    assert headers[H_TOPIC] == FEEDBACK.encode()
    assert (headers[H_PARTITION], headers[H_OFFSET]) == (b"1", b"2")
    assert len(headers[H_DETAIL]) <= MAX_DETAIL_BYTES
    assert headers[H_DETAIL].decode().endswith("…")  # still valid UTF-8 after the cut


class _FakeFuture:
    def get(self, timeout: float | None = None) -> None:
        return None


class _RecordingProducer:
    """Records sends; the real-broker path is covered in test_dead_letter.py."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, topic: str, **kw: Any) -> _FakeFuture:
        self.sent.append({"topic": topic, **kw})
        return _FakeFuture()


def _rec(value: bytes = b"{}", offset: int = 5) -> SimpleNamespace:
    return SimpleNamespace(
        topic=REWARD_REQUESTS, partition=0, offset=offset, key=b"u1", value=value
    )


def test_policy_default_dead_letters_invalid_and_raises_the_rest() -> None:
    prod = _RecordingProducer()
    policy = DeadLetterPolicy(prod)
    rec = _rec(b"{bad")
    labels = {"topic": REWARD_REQUESTS, "reason": "invalid_json"}
    before = REGISTRY.get_sample_value("pgenrm_events_dead_lettered_total", labels) or 0.0
    with pytest.raises(InvalidEventError) as info:
        decode_record(rec, max_bytes=MAX)
    assert policy.handle(info.value, rec) == "dead_letter"
    assert REGISTRY.get_sample_value("pgenrm_events_dead_lettered_total", labels) == before + 1
    assert prod.sent[0]["topic"] == "pgenrm.reward-requests.v1.dlq"
    assert prod.sent[0]["value"] == b"{bad"
    with pytest.raises(RuntimeError, match="bug"):
        policy.handle(RuntimeError("bug"), rec)
    assert policy.dead_lettered == 1 and len(prod.sent) == 1


def test_policy_callback_can_skip_or_dead_letter_processing_errors() -> None:
    prod = _RecordingProducer()
    skip = DeadLetterPolicy(prod, on_error=lambda e, r: "skip")
    assert skip.handle(InvalidEventError("oversize", "x", FEEDBACK), None) == "skip"
    assert skip.skipped == 1 and prod.sent == []

    dl_all = DeadLetterPolicy(prod, on_error=lambda e, r: "dead_letter")
    assert (
        dl_all.handle(ZeroDivisionError("division by zero"), _rec(b'{"x":1}', 9)) == "dead_letter"
    )
    headers = dict(prod.sent[-1]["headers"])
    assert headers[H_REASON] == b"processing_error"
    assert headers[H_DETAIL].startswith(b"ZeroDivisionError")
    assert headers[H_OFFSET] == b"9" and prod.sent[-1]["value"] == b'{"x":1}'
    with pytest.raises(ZeroDivisionError):  # nothing to dead-letter without a record
        dl_all.handle(ZeroDivisionError("no record"), None)

    bad = DeadLetterPolicy(prod, on_error=lambda e, r: "retry")  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="retry"):
        bad.handle(ValueError("x"), _rec())


def test_duplicate_id_from_a_processor_is_located_at_its_record() -> None:
    rec = _rec(json.dumps(reward_request()).encode(), offset=12)
    exc = as_invalid(InvalidEventError("duplicate_id", "r1 seen", REWARD_REQUESTS), rec)
    assert (exc.reason, exc.partition, exc.offset, exc.key, exc.value) == (
        "duplicate_id",
        0,
        12,
        b"u1",
        rec.value,
    )
