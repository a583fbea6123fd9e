"""POST /v1/rewards through the real generative backend (SmolLM2-135M on CPU).

The other API tests use the scripted LLM stand-in (see conftest); this one loads
the installed ``models/smollm2`` folder through ``reward.backends.load_backend``
and scores one request with m=1 own-history chain. Skips when the model folder
is not installed (``pgenrm models install smollm2``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from infra.settings import ApiSettings, ModelSettings, Settings
from stream.api.app import create_app
from stream.api.live import LiveStats
from tests.api.conftest import feedback, reward_request


@pytest.mark.slow
def test_reward_with_the_real_model(tmp_path: Path, models_dir: Path) -> None:
    if not (models_dir / "smollm2" / "config.json").exists():
        pytest.skip("models/smollm2 not installed (pgenrm models install smollm2)")
    from stream.service import PgenrmService

    settings = Settings(
        data_dir=tmp_path / "data",
        models_dir=models_dir,
        models=ModelSettings(samples=1, neighbours=0, max_new_tokens=48),
        api=ApiSettings(),
    )
    svc = PgenrmService.open(settings)
    try:
        svc.apply_feedback([feedback("gus", i) for i in range(2)])
        live = LiveStats()
        c = TestClient(create_app(settings, svc, live=live, readiness={"ok": lambda: True}))
        r = c.post("/v1/rewards", json=reward_request("gus").model_dump(mode="json"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["mode"] == "personal"
        assert body["model_id"] != "scripted-test-backend"
        assert body["samples_used"] == 1
        # a 135M model often writes unparseable chains: they are counted, never hidden
        assert body["parse_failures"] + max(s["valid_samples"] for s in body["scores"]) >= 1
        snap = live.snapshot()
        assert snap.rewards_total == 1
        assert snap.parse_failures_total == body["parse_failures"]
        assert "individual" in body["components"] or body["parse_failures"] >= 1
    finally:
        svc.close()
