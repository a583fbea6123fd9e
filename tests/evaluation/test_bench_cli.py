from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import stream.bench_cli as bench_cli
from infra.cli import app


def test_bench_dispatches_to_main_and_stamps_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bdir = tmp_path / "bench"
    bdir.mkdir()
    (bdir / "bench_store.py").write_text(
        "import json\n"
        "def main(out):\n"
        "    (out / 'store.json').write_text(json.dumps({'figure': 10.0, 'limit': 20.0}))\n"
        "    return 0\n"
    )
    monkeypatch.setattr(bench_cli, "BENCH_DIR", bdir)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["bench", "store", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "store.json").read_text())
    assert data["figure"] == 10.0
    assert data["machine"]["cores"] >= 1 and data["machine"]["python"]
    assert json.loads((out / "machine.json").read_text())["cpu"]


def test_bench_missing_or_unknown_exits_nonzero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_cli, "BENCH_DIR", tmp_path)
    assert CliRunner().invoke(app, ["bench", "reward", "--out", str(tmp_path)]).exit_code == 2
    assert CliRunner().invoke(app, ["bench", "nope", "--out", str(tmp_path)]).exit_code == 2


def test_readme_results_renders_numbers(tmp_path: Path) -> None:
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "bench" / "readme_results.py"
    spec = importlib.util.spec_from_file_location("readme_results", script)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from stream.evaluation.report import build_results

    rec = {
        "key": "k",
        "scorer": "prior",
        "mode": "personalized",
        "m": None,
        "n": None,
        "pair_id": "p",
        "user_id": "u",
        "topic": "t",
        "prototype_id": 1,
        "outcome": "tie",
        "swap_outcome": "correct",
        "signals": ["prior"],
        "component_outcomes": {"prior": "tie"},
        "served_mode": "personal",
        "latency_ms": 5.0,
        "orders": [],
    }
    res = build_results(
        [rec, {**rec, "key": "k2", "user_id": "v", "outcome": "correct"}],
        dataset={"name": "d", "users": 2, "events": 6, "pairs": 2, "skipped": {}},
        config={},
        sessions=[],
        selected_pairs=2,
        command="pgenrm eval d x",
    )
    path = tmp_path / "results.json"
    path.write_text(json.dumps(res))
    md = mod.render([path], [])
    assert "| prior | personalized (full history) |  |  | 2 | 75.0 | 50.0 |" in md
    assert "`pgenrm eval d x`" in md
