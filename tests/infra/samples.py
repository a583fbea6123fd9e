"""Valid sample events (as JSON-ready dicts) shared by the infra tests."""

from __future__ import annotations

import json
from typing import Any

from infra.topics import FEEDBACK, PERSONAS, PROFILES, PROTOTYPES, REWARD_REQUESTS, REWARDS

CTX = [{"role": "user", "content": "Suggest a hotel in Lisbon"}]


def feedback(event_id: str = "e1", user_id: str = "u1", **kw: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "user_id": user_id,
        "context": CTX,
        "chosen": "A quiet spa hotel.",
        "rejected": "A party hostel.",
        **kw,
    }


def user_profile(event_id: str = "p1", user_id: str = "u1", **kw: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "user_id": user_id,
        "stated_preferences": "Quiet places, short answers.",
        "prototype_id": 4,
        **kw,
    }


def reward_request(request_id: str = "r1", user_id: str = "u1", **kw: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "user_id": user_id,
        "context": CTX,
        "candidates": ["A quiet spa hotel.", "A party hostel."],
        **kw,
    }


def reward_result(request_id: str = "r1", user_id: str = "u1", **kw: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "user_id": user_id,
        "scores": [
            {"index": 0, "score": 7.5, "rank": 1},
            {"index": 1, "score": 2.0, "rank": 2},
        ],
        "mode": "personal",
        "model_id": "smollm2",
        "latency_ms": 12.5,
        **kw,
    }


def persona_state(user_id: str = "u1", **kw: Any) -> dict[str, Any]:
    return {"user_id": user_id, "history_size": 3, "events_applied": 5, "version": 2, **kw}


def prototype_state(prototype_id: int = 4, **kw: Any) -> dict[str, Any]:
    return {"prototype_id": prototype_id, "size": 10, "centroid": [0.1, -0.2], "version": 1, **kw}


SAMPLES: dict[str, dict[str, Any]] = {
    FEEDBACK: feedback(),
    PROFILES: user_profile(),
    REWARD_REQUESTS: reward_request(),
    REWARDS: reward_result(),
    PERSONAS: persona_state(),
    PROTOTYPES: prototype_state(),
}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()
