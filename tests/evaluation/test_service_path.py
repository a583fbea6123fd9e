"""The evaluation through the real PgenrmService (embedded Qdrant Edge, real MiniLM) on the
tiny PrefEval-shaped fixture: every mode runs, served modes are what the modes mean, and
nothing errors."""

from __future__ import annotations

from pathlib import Path

from infra.settings import Settings
from stream.evaluation.evaluate import run_evaluation


def test_prior_all_modes_through_service(
    prefeval_dir: Path, tmp_path: Path, tmp_settings: Settings
) -> None:
    res = run_evaluation(
        "prefeval", prefeval_dir, out=tmp_path / "out", settings=tmp_settings, command="t"
    )
    rows = {r["mode"]: r for r in res["results"]}
    assert res["errors_total"] == 0
    assert all(r["pairs"] == 9 for r in rows.values())
    assert rows["personalized"]["served_modes"] == {"personal": 9}
    assert rows["sparse"]["served_modes"] == {"personal": 9}
    assert rows["prototype_only"]["served_modes"] == {"cold_start": 9}
    assert rows["non_personalized"]["served_modes"] == {"cold_start": 9}
    # the user's own direction separates these fixtures' aligned answers
    assert rows["personalized"]["accuracy"] >= 0.6
    assert rows["personalized"]["components"]["prior"]["failures"] == 0
    session = res["sessions"][0]
    assert session["events_fed"] == 3 * 3 + 3
    assert session["apply_outcomes"] == {"applied": 12}
    assert not any(p.name.startswith("store-") for p in (tmp_path / "out").iterdir())
