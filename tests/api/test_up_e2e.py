"""Acceptance: ``pgenrm up`` on the embedded default, probed like the README's curl lines,
with the dashboard open in headless Chromium while events flow through Kafka and HTTP.

Runs ``python -m infra.cli up --no-backend`` (prior-only rewards: no LLM load) in
its own session on free ports with a fresh data folder, then: /healthz, /readyz,
/metrics, POST /v1/rewards with and without the token, and the dashboard's
numbers before and after feedback is produced to ``pgenrm.feedback.v1`` and
reward requests to ``pgenrm.reward-requests.v1``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.broker import free_port
from tests.api.cdp import Browser, find_chromium
from tests.api.conftest import feedback, reward_request

REPO = Path(__file__).resolve().parents[2]
TOKEN = "e2e-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def pgenrm_up(tmp_path: Path) -> Iterator[tuple[str, str]]:
    api_port, broker_port = free_port(), free_port()
    env = {
        **os.environ,
        "PGENRM_DATA_DIR": str(tmp_path / "data"),
        "PGENRM_MODELS_DIR": str(REPO / "models"),
        "PGENRM_BROKER__URLS": f"127.0.0.1:{broker_port}",
        "PGENRM_API_PORT": str(api_port),
        "PGENRM_API_TOKEN": TOKEN,
        "PGENRM_MODELS__SAMPLES": "0",
        "PGENRM_MODELS__NEIGHBOURS": "0",
    }
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.cli",
            "up",
            "--no-backend",
            "--app-id",
            f"e2e-{uuid.uuid4().hex[:8]}",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"pgenrm up exited {proc.returncode}:\n"
                    f"{(tmp_path / 'up.log').read_text()[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"pgenrm up not ready in 300 s:\n{(tmp_path / 'up.log').read_text()[-3000:]}"
                )
            time.sleep(1)
        yield url, f"127.0.0.1:{broker_port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _metric(text: str, name: str, labels: str) -> float:
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def test_pgenrm_up_curl_and_dashboard(pgenrm_up: tuple[str, str]) -> None:
    url, bootstrap = pgenrm_up
    # the README's curl lines
    assert httpx.get(f"{url}/healthz").json()["status"] == "alive"
    ready = httpx.get(f"{url}/readyz").json()
    assert ready["ready"] and set(ready["checks"]) == {"broker", "store", "model"}
    req = reward_request("e2e-user").model_dump(mode="json")
    assert httpx.post(f"{url}/v1/rewards", json=req).status_code == 401
    r = httpx.post(f"{url}/v1/rewards", json=req, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["mode"] == "cold_start"
    metrics = httpx.get(f"{url}/metrics").text
    assert "pgenrm_reward_latency_seconds_bucket" in metrics

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium found: apt-get install -y chromium (curl part passed)")
    from kafka import KafkaProducer

    from infra.kafka import encode_value
    from infra.topics import FEEDBACK, REWARD_REQUESTS

    with Browser(chromium) as browser:
        page = browser.open(f"{url}/dashboard#token={TOKEN}")
        page.wait_for("Number(document.body.dataset.updates || 0) >= 1", timeout_s=60)
        before = json.loads(
            page.evaluate(
                "JSON.stringify({e: document.getElementById('kpi-events').textContent,"
                " r: document.getElementById('kpi-rewards').textContent})"
            )
        )
        producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all")
        for i in range(6):
            ev = feedback(f"e2e-{i % 2}", i)
            producer.send(FEEDBACK, key=ev.user_id.encode(), value=encode_value(ev))
        rr = reward_request("e2e-0")
        producer.send(REWARD_REQUESTS, key=b"e2e-0", value=encode_value(rr))
        producer.flush()
        producer.close()
        want_events = float(before["e"]) + 7  # 6 feedback + 1 reward request
        page.wait_for(
            f"Number(document.getElementById('kpi-events').textContent) >= {want_events}",
            timeout_s=240,
        )
        page.wait_for(
            f"Number(document.getElementById('kpi-rewards').textContent) >= "
            f"{float(before['r']) + 1}",
            timeout_s=240,
        )
        sources = page.evaluate("[...document.querySelectorAll('#latest-table tbody tr')].length")
        assert sources >= 2
    metrics = httpx.get(f"{url}/metrics").text
    assert _metric(metrics, "pgenrm_events_processed_total", f'topic="{FEEDBACK}"') >= 6
    user = httpx.get(f"{url}/v1/users/e2e-0", headers=AUTH).json()
    assert user["history_size"] >= 1
