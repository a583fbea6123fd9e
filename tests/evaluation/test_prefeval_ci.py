"""CI gate: a small prior-only ``pgenrm eval`` on the shared PrefEval slice.

Runs the real CLI code path (infra.cli -> stream.eval_cli -> PgenrmService on a
fresh embedded store with the real MiniLM embedder) and fails when the prior
scorer's personalized accuracy drops below 0.9. Skipped when
../shared/data/prefeval is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.cli import app

pytestmark = pytest.mark.shared

THRESHOLD = 0.9


def test_prior_accuracy_on_prefeval(shared_prefeval: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "prefeval",
            str(shared_prefeval),
            "--scorer",
            "prior",
            "--limit",
            "150",
            "--mode",
            "personalized",
            "--feed-selected",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    res = json.loads((out / "results.json").read_text())
    row = next(r for r in res["results"] if r["scorer"] == "prior" and r["mode"] == "personalized")
    assert row["pairs"] == 150
    assert row["correct"] + row["wrong"] + row["ties"] + row["failures"] == 150
    assert row["errors"] == 0
    assert row["accuracy"] >= THRESHOLD, row
    assert (out / "results.md").is_file() and (out / "topics.png").is_file()
