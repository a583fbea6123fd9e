"""Status codes and metric labels of the API's edge cases, on the in-memory FakeService.

What is checked here is the HTTP layer's own logic (auth and body checks, error
mapping, labels), not scoring, so the cheap fake stands in for the real service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from infra.contracts import RewardRequest, RewardResult
from infra.settings import ApiSettings, Settings
from stream.api import metrics as am
from stream.api.app import create_app
from stream.api.live import LiveStats
from tests.api.conftest import feedback, reward_request
from tests.api.fakes import FakeService
from tests.api.test_app import assert_error

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"content-type": "application/json"}


def fake_client(tmp_path: Path, service: Any = None, *, token: str | None = None, **kw: Any):
    settings = Settings(
        data_dir=tmp_path / "data", api=ApiSettings(token=SecretStr(token) if token else None)
    )
    kw.setdefault("readiness", {"ok": lambda: True})
    kw.setdefault("live", LiveStats(record_metrics=False))
    app = create_app(settings, service if service is not None else FakeService(), **kw)
    return TestClient(app, raise_server_exceptions=False)


class BrokenLive(LiveStats):
    def record_reward(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("dashboard hook failed")


def test_dashboard_failure_still_returns_the_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = fake_client(tmp_path, live=BrokenLive(record_metrics=False))
    req = reward_request("u1", rid="r-live").model_dump(mode="json")
    before = am.LIVE_RECORD_FAILURES._value.get()
    r = c.post("/v1/rewards", json=req)
    assert r.status_code == 200, r.text
    assert RewardResult.model_validate(r.json()).request_id == "r-live"
    assert am.LIVE_RECORD_FAILURES._value.get() == before + 1
    assert "dashboard feed failed to record reward r-live" in caplog.text
    assert_error(c.post("/v1/rewards", json=req), 409, "conflict")  # it was answered once


class FailingService(FakeService):
    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.exc = exc

    def serve(self, request: RewardRequest) -> RewardResult | None:
        raise self.exc


def _internal_validation_error() -> Exception:
    try:
        RewardResult.model_validate({"request_id": "r"})
    except ValueError as exc:
        return exc
    raise AssertionError("expected a ValidationError")


@pytest.mark.parametrize(
    "exc",
    [ValueError("operands could not be broadcast together"), _internal_validation_error()],
    ids=["numpy", "pydantic"],
)
def test_internal_value_errors_are_500_not_422(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, exc: Exception
) -> None:
    c = fake_client(tmp_path, FailingService(exc))
    r = c.post("/v1/rewards", json=reward_request("u1").model_dump(mode="json"))
    assert_error(r, 500, "internal_error")
    assert "unhandled error on POST /v1/rewards" in caplog.text
    # the client's own invalid input is still a 422
    bad = reward_request("u1").model_dump(mode="json") | {"candidates": ["one"]}
    assert_error(c.post("/v1/rewards", json=bad), 422, "validation_error")


def _http_series() -> set[tuple[str, str, str]]:
    return {
        (s.labels["route"], s.labels["method"], s.labels["status"])
        for f in am.HTTP_REQUESTS.collect()
        for s in f.samples
        if s.name.endswith("_total")
    }


def test_junk_methods_share_one_metric_label(tmp_path: Path) -> None:
    c = fake_client(tmp_path)
    for i in range(20):
        assert c.request(f"X{i}", "/healthz").status_code == 405
    assert c.request("PATCH", "/healthz").status_code == 405
    methods = {m for route, m, _ in _http_series() if route == "/healthz"}
    assert {"other", "PATCH"} <= methods
    assert not any(m.startswith("X") for m in methods), methods


@pytest.mark.parametrize("path", ["/v1/users/team%2Falice", "/v1/users/team/alice"])
def test_user_ids_may_contain_a_slash(tmp_path: Path, path: str) -> None:
    svc = FakeService()
    svc.apply_feedback([feedback("team/alice", 0), feedback("alice", 0)])
    c = fake_client(tmp_path, svc)
    r = c.get(path)
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == "team/alice"
    assert c.get("/v1/users/alice").json()["user_id"] == "alice"
    assert_error(c.get("/v1/users/team/bob"), 404, "not_found")
    # the other /v1 routes are not shadowed, and the metric label stays the template
    assert c.get("/v1/prototypes").status_code == 200
    assert c.get("/v1/stats").status_code == 200
    assert ("/v1/users/{user_id}", "GET", "200") in _http_series()


def test_token_is_checked_before_the_body(tmp_path: Path) -> None:
    c = fake_client(tmp_path, token=TOKEN)
    for headers, body in [
        (JSON, b"{not json"),
        (JSON, b"\xff\xfe"),
        ({"content-type": "text/plain"}, b"{}"),
        ({}, b"{}"),
        (JSON, b'{"x": 1}'),
    ]:
        r = c.post("/v1/rewards", content=body, headers=headers)
        assert_error(r, 401, "unauthorized")
        wrong = {**headers, "Authorization": "Bearer nope"}
        assert_error(c.post("/v1/feedback", content=body, headers=wrong), 401, "unauthorized")


@pytest.mark.parametrize("route", ["/v1/rewards", "/v1/feedback", "/v1/profiles"])
def test_undecodable_bodies_are_400_and_other_media_types_415(tmp_path: Path, route: str) -> None:
    c = fake_client(tmp_path, token=TOKEN)
    assert_error(c.post(route, content=b"{not json", headers=AUTH | JSON), 400, "bad_request")
    assert_error(c.post(route, content=b'{"a": "\xff"}', headers=AUTH | JSON), 400, "bad_request")
    for media in ("text/plain", "application/x-www-form-urlencoded"):
        r = c.post(route, content=b"{}", headers=AUTH | {"content-type": media})
        assert_error(r, 415, "unsupported_media_type")
    assert_error(c.post(route, content=b"{}", headers=AUTH), 415, "unsupported_media_type")
    # JSON that breaks the schema stays a 422; a parameterised JSON media type is JSON
    charset = {"content-type": "application/json; charset=utf-8"}
    assert_error(
        c.post(route, content=b'{"x": 1}', headers=AUTH | charset), 422, "validation_error"
    )


def test_oversize_error_maps_to_413() -> None:
    from infra.exceptions import InvalidEventError
    from stream.api.serving import error_from_exception

    err = error_from_exception(InvalidEventError("oversize", "too big", "pgenrm.feedback.v1"))
    assert (err.error.status, err.error.type, err.error.message) == (
        413,
        "payload_too_large",
        "too big",
    )


def test_lag_probe_finds_topics_created_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API may start before the worker creates its topics (test_kafka checks that on the
    broker); partitions added later need CreatePartitions, which tansu does not implement, so
    the clients are stand-ins here."""
    import infra.kafka
    from stream.api.lag import LagProbe

    partitions: dict[str, list[int]] = {}

    class Consumer:
        def __init__(self) -> None:
            self.assigned: list[Any] = []

        def partitions_for_topic(self, topic: str) -> set[int]:
            return set(partitions.get(topic, ()))

        def assign(self, tps: list[Any]) -> None:
            self.assigned = list(tps)

        def assignment(self) -> set[Any]:
            return set(self.assigned)

        def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
            return {tp: 10 for tp in tps}

        def seek(self, tp: Any, offset: int) -> None:
            pass

        def poll(self, **kw: Any) -> dict[Any, Any]:
            return {}

        def highwater(self, tp: Any) -> int:
            return 10

        def close(self) -> None:
            pass

    class Admin:
        def list_group_offsets(self, query: Any) -> dict[str, Any]:
            return {}

        def close(self) -> None:
            pass

    monkeypatch.setattr(infra.kafka, "make_consumer", lambda *a, **k: Consumer())
    monkeypatch.setattr(infra.kafka, "admin_client", lambda *a, **k: Admin())
    probe = LagProbe(Settings(), "grp", topics=["t"], fetch_timeout_s=0.1, rediscover_s=3600)
    assert probe.measure() == []
    partitions["t"] = [0, 1]  # the topic is created
    assert [(x.partition, x.lag) for x in probe.measure()] == [(0, 10), (1, 10)]
    partitions["t"] = [0, 1, 2]  # more partitions: found at the next rediscovery
    assert len(probe.measure()) == 2
    probe.rediscover_s = 0
    assert [x.partition for x in probe.measure()] == [0, 1, 2]
