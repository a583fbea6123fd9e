"""/metrics: one pgenrm_ prefix, base units, bounded labels (never a user id)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from infra.settings import Settings
from stream.api.app import create_app
from stream.api.live import LiveStats
from tests.api.conftest import feedback, reward_request

SECRET_USER = "user-with-a-secret-id-7731"


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_names_units_and_labels(api_settings: Settings, service) -> None:
    c = TestClient(
        create_app(api_settings, service, live=LiveStats(), readiness={"ok": lambda: True})
    )
    service.apply_feedback([feedback(SECRET_USER, i) for i in range(3)])
    for _ in range(2):
        assert (
            c.post(
                "/v1/rewards", json=reward_request(SECRET_USER).model_dump(mode="json")
            ).status_code
            == 200
        )
    r = c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert SECRET_USER not in text
    fams = families(text)
    ours = [n for n in fams if n.startswith("pgenrm")]
    assert ours
    for name in ours:
        assert name.startswith("pgenrm_"), name
        assert not name.endswith("_milliseconds"), name
    for required in (
        "pgenrm_events_processed",
        "pgenrm_events_dead_lettered",
        "pgenrm_rewards",
        "pgenrm_reward_latency_seconds",
        "pgenrm_reward_parse_failures",
        "pgenrm_reward_samples_used",
        "pgenrm_reward_neighbours_used",
        "pgenrm_reward_cold_start_ratio",
        "pgenrm_persona_queue_depth",
        "pgenrm_consumer_lag",
        "pgenrm_http_requests",
    ):
        assert required in fams, required
    counters = [f for f in fams.values() if f.type == "counter"]
    for f in counters:
        for s in f.samples:
            assert s.name.endswith("_total") or s.name.endswith("_created"), s.name
    lat = fams["pgenrm_reward_latency_seconds"]
    modes = {s.labels.get("mode") for s in lat.samples}
    assert {"personal", "cold_start", "prototype"} <= modes
    personal = [
        s for s in lat.samples if s.name.endswith("_count") and s.labels.get("mode") == "personal"
    ]
    assert personal and personal[0].value >= 2
    # route labels are templates, never raw paths with ids
    c.get(f"/v1/users/{SECRET_USER}")
    assert SECRET_USER not in c.get("/metrics").text


def test_prototype_series_are_read_at_scrape_time(api_settings: Settings, service) -> None:
    c = TestClient(
        create_app(api_settings, service, live=LiveStats(), readiness={"ok": lambda: True})
    )
    service.apply_feedback([feedback(f"p{k}", i) for k in range(3) for i in range(2)])
    protos = service.prototypes()
    fams = families(c.get("/metrics").text)
    sizes = {s.labels["prototype"]: s.value for s in fams["pgenrm_prototype_users"].samples}
    assert sizes == {str(p.prototype_id): float(p.size) for p in protos}
