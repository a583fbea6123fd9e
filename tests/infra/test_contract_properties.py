"""Property tests: every contract survives JSON and decode() only raises InvalidEventError."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from infra.codec import decode
from infra.contracts import (
    MAX_CANDIDATES,
    MIN_CANDIDATES,
    CandidateScore,
    ChatMessage,
    Contract,
    Criterion,
    DegradedReason,
    Explanation,
    FeedbackEvent,
    PersonaState,
    PrototypeState,
    RewardOverrides,
    RewardRequest,
    RewardResult,
    UserProfile,
)
from infra.exceptions import InvalidEventError
from infra.kafka import encode_value
from infra.topics import FEEDBACK, PERSONAS, PROFILES, PROTOTYPES, REWARD_REQUESTS, REWARDS

MAX = 10_000_000
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=24)
texts = st.text(max_size=60)
nonempty = st.text(min_size=1, max_size=60)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
stamps = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)
messages = st.builds(
    ChatMessage, role=st.sampled_from(["system", "user", "assistant"]), content=texts
)
contexts = st.lists(messages, min_size=1, max_size=4)
criteria = st.lists(
    st.builds(Criterion, name=texts, weight=st.floats(min_value=0, max_value=100)), max_size=3
)
small = st.integers(min_value=0, max_value=10**6)

pairs = st.tuples(nonempty, nonempty).filter(lambda p: p[0].strip() != p[1].strip())


@st.composite
def feedback_events(draw: st.DrawFn) -> FeedbackEvent:
    chosen, rejected = draw(pairs)
    return FeedbackEvent(
        event_id=draw(ids),
        user_id=draw(ids),
        timestamp=draw(stamps),
        context=draw(contexts),
        chosen=chosen,
        rejected=rejected,
        critique=draw(st.none() | texts),
        stated_preferences=draw(st.none() | texts),
        request_id=draw(st.none() | ids),
    )


@st.composite
def user_profiles(draw: st.DrawFn) -> UserProfile:
    prefs = draw(st.none() | nonempty.filter(str.strip))
    proto = draw((st.none() | small) if prefs is not None else small)
    return UserProfile(
        event_id=draw(ids),
        user_id=draw(ids),
        timestamp=draw(stamps),
        stated_preferences=prefs,
        prototype_id=proto,
    )


reward_requests = st.builds(
    RewardRequest,
    request_id=ids,
    user_id=ids,
    timestamp=stamps,
    context=contexts,
    candidates=st.lists(texts, min_size=MIN_CANDIDATES, max_size=MAX_CANDIDATES),
    overrides=st.none()
    | st.builds(
        RewardOverrides,
        samples=st.none() | st.integers(0, 64),
        neighbours=st.none() | st.integers(0, 32),
        deadline_ms=st.none() | st.integers(1, 600_000),
    ),
)
scores = st.builds(
    CandidateScore,
    index=st.integers(0, 15),
    score=finite,
    rank=st.integers(1, 16),
    std=st.none() | finite,
    valid_samples=st.integers(0, 64),
)
DEGRADATIONS: list[tuple[bool, DegradedReason | None]] = [
    (False, None),
    (True, None),  # from a producer older than degraded_reason
    *((True, r) for r in DegradedReason.__args__),  # type: ignore[attr-defined]
]


def _reward_result(degradation: tuple[bool, DegradedReason | None], **fields: Any) -> RewardResult:
    degraded, reason = degradation
    return RewardResult(degraded=degraded, degraded_reason=reason, **fields)


reward_results = st.builds(
    _reward_result,
    request_id=ids,
    user_id=ids,
    scores=st.lists(scores, min_size=1, max_size=MAX_CANDIDATES),
    mode=st.sampled_from(["personal", "prototype", "cold_start"]),
    prototype_id=st.none() | small,
    samples_used=small,
    neighbours_used=small,
    parse_failures=small,
    ties=small,
    degradation=st.sampled_from(DEGRADATIONS),
    components=st.dictionaries(
        st.sampled_from(["prior", "individual", "prototype"]),
        st.lists(finite, max_size=4),
        max_size=3,
    ),
    explanation=st.builds(
        Explanation,
        persona=st.none() | texts,
        criteria=criteria,
        critique_summary=st.none() | texts,
        notes=st.lists(texts, max_size=2),
    ),
    model_id=texts,
    latency_ms=st.floats(min_value=0, allow_infinity=False),
    created_at=stamps,
)
persona_states = st.builds(
    PersonaState,
    user_id=ids,
    history_size=small,
    events_applied=small,
    critiques=small,
    prototype_id=st.none() | small,
    persona=st.none() | texts,
    criteria=criteria,
    version=small,
    updated_at=stamps,
)
prototype_states = st.builds(
    PrototypeState,
    prototype_id=small,
    size=small,
    centroid=st.lists(finite, max_size=16),
    online_accuracy=st.none() | st.floats(0, 1),
    outcomes=small,
    version=small,
    updated_at=stamps,
)


def _roundtrip(topic: str, event: Contract) -> None:
    back = decode(topic, encode_value(event), max_bytes=MAX)
    assert back == event
    assert encode_value(back) == encode_value(event)


@PROPS
@given(feedback_events())
def test_feedback_event_roundtrip(event: FeedbackEvent) -> None:
    _roundtrip(FEEDBACK, event)


@PROPS
@given(user_profiles())
def test_user_profile_roundtrip(event: UserProfile) -> None:
    _roundtrip(PROFILES, event)


@PROPS
@given(reward_requests)
def test_reward_request_roundtrip(event: RewardRequest) -> None:
    _roundtrip(REWARD_REQUESTS, event)


@PROPS
@given(reward_results)
def test_reward_result_roundtrip(event: RewardResult) -> None:
    _roundtrip(REWARDS, event)


@PROPS
@given(persona_states)
def test_persona_state_roundtrip(event: PersonaState) -> None:
    _roundtrip(PERSONAS, event)


@PROPS
@given(prototype_states)
def test_prototype_state_roundtrip(event: PrototypeState) -> None:
    _roundtrip(PROTOTYPES, event)


TOPICS = [FEEDBACK, PROFILES, REWARD_REQUESTS, REWARDS, PERSONAS, PROTOTYPES]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TOPICS), st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_invalid_event(topic: str, value: bytes) -> None:
    try:
        decode(topic, value, max_bytes=200)
    except InvalidEventError as exc:
        assert exc.value == value
        assert exc.reason != "duplicate_id"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(TOPICS),
    st.dictionaries(
        st.sampled_from(
            [
                "schema_version",
                "user_id",
                "event_id",
                "request_id",
                "candidates",
                "context",
                "chosen",
                "rejected",
                "scores",
                "prototype_id",
                "x",
            ]
        ),
        json_values,
        max_size=8,
    ),
)
def test_arbitrary_json_objects_only_raise_invalid_event(topic: str, obj: dict[str, Any]) -> None:
    try:
        decode(topic, json.dumps(obj).encode(), max_bytes=MAX)
    except InvalidEventError as exc:
        assert exc.reason in {"schema_violation", "unknown_schema_version", "candidate_count"}


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_scores_never_round_trip_silently(bad: float) -> None:
    # JSON has no NaN/Infinity: such a result must be refused, at build time or at decode.
    try:
        result = RewardResult(
            request_id="r",
            user_id="u",
            scores=[CandidateScore(index=0, score=bad, rank=1)],
            mode="personal",
            model_id="m",
            latency_ms=1.0,
        )
    except ValidationError:
        return
    with pytest.raises(InvalidEventError):
        decode(REWARDS, encode_value(result), max_bytes=MAX)


def test_a_degraded_reason_needs_degraded_and_older_results_still_decode() -> None:
    fields: dict[str, Any] = {
        "request_id": "r",
        "user_id": "u",
        "scores": [CandidateScore(index=0, score=1.0, rank=1)],
        "mode": "personal",
        "model_id": "m",
        "latency_ms": 1.0,
    }
    with pytest.raises(ValidationError, match="degraded_reason is set but degraded is false"):
        RewardResult(degraded_reason="deadline", **fields)
    older = json.loads(encode_value(RewardResult(degraded=True, **fields)))
    del older["degraded_reason"]  # a producer from before the field
    back = decode(REWARDS, json.dumps(older).encode(), max_bytes=MAX)
    assert isinstance(back, RewardResult) and back.degraded and back.degraded_reason is None


@pytest.mark.parametrize("rejected", ["Quiet hotel.", " Quiet hotel.\n"])
def test_responses_equal_up_to_whitespace_are_not_a_choice(rejected: str) -> None:
    # the outcome of a served reward is matched on stripped text: such a pair would
    # never match a candidate pair, and says nothing about the user either
    with pytest.raises(ValidationError, match="identical"):
        FeedbackEvent(
            event_id="e",
            user_id="u",
            context=[ChatMessage(role="user", content="q")],
            chosen="Quiet hotel.",
            rejected=rejected,
        )
