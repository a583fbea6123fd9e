"""The live dashboard in headless Chromium (Debian's ``chromium``), via the DevTools pipe.

The page is opened once; events then flow (rewards over HTTP, feedback applied
by the service and counted as the worker counts it) and the test polls the DOM
until the numbers on the page change. Skips only when no Chromium binary exists
(``apt-get install -y chromium``; ``PGENRM_CHROMIUM`` points at another one).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra import metrics as im
from infra.topics import FEEDBACK
from stream.api.app import ServerHandle, create_app, serve
from stream.api.live import LiveStats
from tests.api.cdp import Browser, Page, find_chromium
from tests.api.conftest import feedback, make_settings, reward_request

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium found: apt-get install -y chromium (or PGENRM_CHROMIUM)"
)

KPIS = ("kpi-events", "kpi-rewards", "kpi-p50", "kpi-accuracy")


def read_kpis(page: Page) -> dict[str, str]:
    js = "JSON.stringify(Object.fromEntries(%s.map(id => [id, document.getElementById(id)"
    js += ".textContent])))"
    import json

    return dict(json.loads(page.evaluate(js % json.dumps(list(KPIS)))))


def updates(page: Page) -> int:
    return int(page.evaluate("Number(document.body.dataset.updates || 0)"))


@pytest.fixture
def running(tmp_path: Path, models_dir: Path, service) -> Iterator[tuple[ServerHandle, object]]:
    settings = make_settings(tmp_path, models_dir, token="dash-token")
    settings.api.port = 0
    live = LiveStats()
    handle = serve(
        create_app(settings, service, live=live, readiness={"ok": lambda: True}), settings
    )
    try:
        yield handle, service
    finally:
        handle.stop()


def test_dashboard_numbers_change_as_events_flow(running) -> None:
    handle, service = running
    auth = {"Authorization": "Bearer dash-token"}
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as browser:
        page = browser.open(f"{handle.url}/dashboard#token=dash-token")
        page.wait_for("Number(document.body.dataset.updates || 0) >= 1", timeout_s=60)
        before = read_kpis(page)
        assert before["kpi-rewards"] == "0"
        assert page.evaluate("document.getElementById('status').className") == ""

        # events flow: feedback applied (and counted, as the worker counts it) and rewards
        # served over HTTP, while the page stays open
        events = [feedback("erin", i) for i in range(5)]
        service.apply_feedback(events)
        im.count_processed(FEEDBACK, len(events))
        for _ in range(3):
            r = httpx.post(
                f"{handle.url}/v1/rewards",
                headers=auth,
                timeout=60,
                json=reward_request("erin").model_dump(mode="json"),
            )
            assert r.status_code == 200, r.text

        seen = updates(page)
        page.wait_for("document.getElementById('kpi-rewards').textContent === '3'", timeout_s=30)
        after = read_kpis(page)
        assert updates(page) > seen  # the page polled again, it was not reloaded
        assert float(after["kpi-events"]) >= float(before["kpi-events"]) + len(events)
        assert after["kpi-p50"] != "–"
        rows = page.evaluate("document.querySelectorAll('#latest-table tbody tr').length")
        assert rows == 3
        users = page.evaluate(
            "[...document.querySelectorAll('#latest-table tbody tr td:nth-child(2)')]"
            ".map(td => td.textContent)"
        )
        assert set(users) == {"erin"}
        # charts were drawn (SVG paths), not left empty
        paths = page.evaluate("document.querySelectorAll('#chart-throughput path').length")
        assert paths >= 1


def test_dashboard_without_token_shows_the_401(running) -> None:
    handle, _ = running
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as browser:
        page = browser.open(f"{handle.url}/dashboard")
        status = page.wait_for(
            "document.getElementById('status').className === 'err' && "
            "document.getElementById('status').textContent",
            timeout_s=60,
        )
        assert "401" in status
