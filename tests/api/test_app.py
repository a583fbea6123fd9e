"""The HTTP API through FastAPI's TestClient, on the real service (see conftest)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from infra.settings import Settings
from stream.api.app import create_app, serve
from stream.api.live import LiveStats
from stream.api.protocol import CheckResult, ErrorBody, FeedbackAccepted, ProfileAccepted
from tests.api.conftest import feedback, make_settings, reward_request


class ListPublisher:
    """Records published events and profiles (the Kafka publisher has its own test)."""

    def __init__(self) -> None:
        self.events: list = []
        self.profiles: list = []

    def publish(self, event):
        self.events.append(event)
        return FeedbackAccepted(
            event_id=event.event_id,
            user_id=event.user_id,
            topic="pgenrm.feedback.v1",
            partition=0,
            offset=len(self.events),
        )

    def publish_profile(self, profile):
        self.profiles.append(profile)
        return ProfileAccepted(
            event_id=profile.event_id,
            user_id=profile.user_id,
            topic="pgenrm.profiles.v1",
            partition=0,
            offset=len(self.profiles),
        )

    def close(self) -> None:
        pass


def client(settings: Settings, service: Any, **kw: Any) -> TestClient:
    kw.setdefault("readiness", {"always": lambda: True})
    kw.setdefault("live", LiveStats())
    return TestClient(create_app(settings, service, **kw))


def assert_error(resp: httpx.Response, status: int, type_: str) -> ErrorBody:
    assert resp.status_code == status, resp.text
    body = ErrorBody.model_validate(resp.json())
    assert body.error.status == status
    assert body.error.type == type_
    return body


def test_reward_roundtrip_uses_service_state(api_settings: Settings, service) -> None:
    c = client(api_settings, service)
    cold = c.post("/v1/rewards", json=reward_request("newbie").model_dump(mode="json"))
    assert cold.status_code == 200, cold.text
    assert cold.json()["mode"] == "cold_start"
    service.apply_feedback([feedback("alice", i) for i in range(3)])
    warm = c.post("/v1/rewards", json=reward_request("alice").model_dump(mode="json"))
    assert warm.status_code == 200, warm.text
    body = warm.json()
    assert body["user_id"] == "alice" and body["mode"] == "personal"
    assert sorted(s["rank"] for s in body["scores"]) == [1, 2]
    # the dashboard feed saw both rewards, newest first
    latest = c.get("/v1/stats").json()["latest"]
    assert [r["user_id"] for r in latest[:2]] == ["alice", "newbie"]
    assert latest[0]["source"] == "http"


def test_repeated_request_id_is_a_typed_409(api_settings: Settings, service) -> None:
    c = client(api_settings, service)
    req = reward_request("bob", rid="same-id").model_dump(mode="json")
    assert c.post("/v1/rewards", json=req).status_code == 200
    assert_error(c.post("/v1/rewards", json=req), 409, "conflict")


def test_user_and_prototypes(api_settings: Settings, service) -> None:
    c = client(api_settings, service)
    assert_error(c.get("/v1/users/nobody"), 404, "not_found")
    service.apply_feedback([feedback("carol", i) for i in range(4)])
    u = c.get("/v1/users/carol")
    assert u.status_code == 200, u.text
    assert u.json()["history_size"] == 4 and u.json()["events_applied"] == 4
    protos = c.get("/v1/prototypes").json()
    assert protos["users"] == sum(p["size"] for p in protos["prototypes"])


def test_validation_errors_are_typed(api_settings: Settings, service) -> None:
    c = client(api_settings, service)
    bad = reward_request("u").model_dump(mode="json")
    bad["candidates"] = ["only one"]
    body = assert_error(c.post("/v1/rewards", json=bad), 422, "validation_error")
    assert any("candidates" in d.loc for d in body.error.details)
    assert_error(  # not JSON at all: undecodable, not invalid (test_http_errors has more)
        c.post("/v1/rewards", content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "bad_request",
    )
    assert_error(c.get("/v1/users/has space"), 422, "validation_error")
    assert_error(c.get("/v1/nothing-here"), 404, "not_found")
    assert_error(c.delete("/v1/prototypes"), 405, "method_not_allowed")


def test_body_size_limit_413(tmp_path: Path, models_dir: Path, service) -> None:
    settings = make_settings(tmp_path, models_dir, max_body=2_000)
    c = client(settings, service)
    req = reward_request("u").model_dump(mode="json")
    req["candidates"][0] = "x" * 5_000
    assert_error(c.post("/v1/rewards", json=req), 413, "payload_too_large")

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(10):
            yield b" " * 500

    assert_error(
        c.post("/v1/rewards", content=chunks(), headers={"content-type": "application/json"}),
        413,
        "payload_too_large",
    )
    small = reward_request("u").model_dump(mode="json")
    assert c.post("/v1/rewards", json=small).status_code == 200


def test_bearer_token(tmp_path: Path, models_dir: Path, service) -> None:
    settings = make_settings(tmp_path, models_dir, token="s3cret")
    c = client(settings, service, publisher=ListPublisher())
    req = reward_request("u").model_dump(mode="json")
    r = c.post("/v1/rewards", json=req)
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    assert_error(
        c.post("/v1/rewards", json=req, headers={"Authorization": "Bearer nope"}),
        401,
        "unauthorized",
    )
    assert_error(
        c.get("/v1/prototypes", headers={"Authorization": "Basic czNjcmV0"}), 401, "unauthorized"
    )
    for path in ("/v1/prototypes", "/v1/stats", "/v1/users/u"):
        assert_error(c.get(path), 401, "unauthorized")
    ok = c.post("/v1/rewards", json=req, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    # probes, metrics, schema and the dashboard page stay open
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/dashboard"):
        assert c.get(path).status_code == 200, path


def test_token_from_env_alias(monkeypatch: pytest.MonkeyPatch, service) -> None:
    monkeypatch.setenv("PGENRM_API_TOKEN", "from-env")
    monkeypatch.setenv("PGENRM_API_PORT", "18080")
    settings = Settings()
    assert settings.api.port == 18080
    c = client(settings, service)
    assert c.get("/v1/prototypes").status_code == 401
    assert c.get("/v1/prototypes", headers={"Authorization": "Bearer from-env"}).status_code == 200


def test_feedback_publishes_or_503(api_settings: Settings, service) -> None:
    ev = feedback("dora", 1).model_dump(mode="json")
    assert_error(client(api_settings, service).post("/v1/feedback", json=ev), 503, "unavailable")
    pub = ListPublisher()
    r = client(api_settings, service, publisher=pub).post("/v1/feedback", json=ev)
    assert r.status_code == 202, r.text
    assert r.json()["event_id"] == ev["event_id"]
    assert [e.event_id for e in pub.events] == [ev["event_id"]]
    same = dict(ev, rejected=ev["chosen"])
    assert_error(
        client(api_settings, service, publisher=pub).post("/v1/feedback", json=same),
        422,
        "validation_error",
    )


def test_profiles_publish_or_422(api_settings: Settings, service) -> None:
    good = {"event_id": "p-1", "user_id": "newbie", "prototype_id": 3}
    assert_error(client(api_settings, service).post("/v1/profiles", json=good), 503, "unavailable")
    pub = ListPublisher()
    c = client(api_settings, service, publisher=pub)
    r = c.post("/v1/profiles", json=good)
    assert r.status_code == 202, r.text
    assert r.json() == {
        "event_id": "p-1",
        "user_id": "newbie",
        "topic": "pgenrm.profiles.v1",
        "partition": 0,
        "offset": 1,
    }
    prefs = {"event_id": "p-2", "user_id": "newbie", "stated_preferences": "short answers"}
    assert c.post("/v1/profiles", json=prefs).status_code == 202
    assert [(p.event_id, p.prototype_id, p.stated_preferences) for p in pub.profiles] == [
        ("p-1", 3, None),
        ("p-2", None, "short answers"),
    ]
    bad = [
        {"event_id": "p-3", "user_id": "newbie"},  # neither field
        {"event_id": "p-3", "user_id": "newbie", "prototype_id": None, "stated_preferences": None},
        {"event_id": "p-3", "user_id": "newbie", "stated_preferences": "   "},
        {"event_id": "p-3", "user_id": "newbie", "stated_preferences": "x" * 4001},
        {"event_id": "p-3", "user_id": "newbie", "prototype_id": -1},
        {"event_id": "p-3", "user_id": "has space", "prototype_id": 1},
        {"user_id": "newbie", "prototype_id": 1},  # no event_id
        {"event_id": "p-3", "user_id": "newbie", "prototype_id": 1, "extra": 1},
    ]
    for body in bad:
        assert_error(c.post("/v1/profiles", json=body), 422, "validation_error")
    assert len(pub.profiles) == 2  # nothing invalid was published


def test_readiness_503_names_the_failing_check(api_settings: Settings, service) -> None:
    checks = {"broker": lambda: CheckResult(ok=False, detail="down"), "store": lambda: True}
    r = client(api_settings, service, readiness=checks).get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["broker"] == {"ok": False, "detail": "down"}
    assert r.json()["checks"]["store"]["ok"] is True
    assert client(api_settings, service).get("/healthz").status_code == 200


def test_default_readiness_sees_a_dead_broker(tmp_path: Path, models_dir: Path, service) -> None:
    from infra.broker import free_port
    from infra.settings import BrokerSettings

    settings = make_settings(tmp_path, models_dir).model_copy(
        update={"broker": BrokerSettings(urls=f"127.0.0.1:{free_port()}", embedded=False)}
    )
    app = create_app(settings, service, live=LiveStats())  # default checks
    r = TestClient(app).get("/readyz")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["broker"]["ok"] is False
    assert checks["store"]["ok"] is True


def test_default_readiness_ok_with_broker(kafka_settings: Settings, service) -> None:
    app = create_app(kafka_settings, service, live=LiveStats(), readiness=None)
    r = TestClient(app).get("/readyz")
    checks = r.json()["checks"]
    assert checks["broker"]["ok"] is True, checks
    assert checks["store"]["ok"] is True
    # the model is loaded lazily; the scripted backend counts as loaded when injected
    assert r.status_code == (200 if all(c["ok"] for c in checks.values()) else 503)


def test_openapi_schema(api_settings: Settings, service) -> None:
    schema = client(api_settings, service).get("/openapi.json").json()
    paths = schema["paths"]
    for p in (
        "/v1/rewards",
        "/v1/feedback",
        "/v1/profiles",
        "/v1/users/{user_id}",
        "/v1/prototypes",
        "/healthz",
        "/readyz",
    ):
        assert p in paths, p
    post = paths["/v1/rewards"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/RewardRequest"
    )
    assert post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody"
    )
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_serve_runs_uvicorn_and_stops(
    tmp_path: Path, models_dir: Path, service, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, models_dir)
    settings.api.port = 0
    handle = serve(
        create_app(settings, service, live=LiveStats(), readiness={"ok": lambda: True}), settings
    )
    try:
        assert handle.port > 0
        assert httpx.get(f"{handle.url}/healthz").status_code == 200
        r = httpx.post(
            f"{handle.url}/v1/rewards", json=reward_request("u").model_dump(mode="json"), timeout=60
        )
        assert r.status_code == 200, r.text
        assert "pgenrm_rewards_total" in httpx.get(f"{handle.url}/metrics").text
    finally:
        handle.stop()
    assert not handle.thread.is_alive()
    assert "without a token" not in caplog.text


def test_serve_warns_beyond_loopback_without_token(
    tmp_path: Path, models_dir: Path, service, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, models_dir)
    settings.api.host, settings.api.port = "0.0.0.0", 0
    with caplog.at_level(logging.WARNING, logger="stream.api.app"):
        handle = serve(
            create_app(settings, service, live=LiveStats(), readiness={"ok": lambda: True}),
            settings,
        )
        handle.stop()
    assert "without a token" in caplog.text
