from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from stream.evaluation.evaluate import run_evaluation
from stream.evaluation.exceptions import ResumeMismatchError

from .conftest import WordService


def _factory(svc: WordService):
    return lambda data_dir: svc


def test_full_run_writes_outputs_and_counts(prefeval_dir: Path, tmp_path: Path) -> None:
    svc = WordService()
    out = tmp_path / "out"
    res = run_evaluation("prefeval", prefeval_dir, out=out, factory=_factory(svc), command="t")
    assert (out / "results.json").is_file() and (out / "results.md").is_file()
    assert (out / "topics.png").is_file() and (out / "modes.png").is_file()
    rows = {r["mode"]: r for r in res["results"]}
    assert set(rows) == {"personalized", "non_personalized", "sparse", "prototype_only"}
    pers = rows["personalized"]
    assert pers["pairs"] == 9
    assert pers["correct"] + pers["wrong"] + pers["ties"] + pers["failures"] == 9
    assert pers["accuracy"] > 0.5  # word overlap with the history does separate these fixtures
    # fresh users without history: the double scores 0 vs 0, every pair a tie, none dropped
    cold = rows["prototype_only"]
    assert cold["ties"] == 9 and cold["accuracy"] == 0.5 and cold["accuracy_strict"] == 0.0
    assert cold["swap"]["swapped_pairs"] == 9
    assert rows["sparse"]["served_modes"] == {"personal": 9}
    assert svc.closed
    saved = json.loads((out / "results.json").read_text())
    assert saved["schema"] == "pgenrm.eval.results/1"
    assert saved["results"] == json.loads(json.dumps(res["results"]))
    assert (
        saved["sessions"][0]["events_fed"] == 3 * 3 + 3
    )  # 3 users x 3 triples + 3 sparse users x 1
    assert "| prior | personalized |" in (out / "results.md").read_text()


def test_resume_after_interrupt_scores_each_pair_once(prefeval_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = WordService(fail_after=7)  # 7 score calls = 3 pairs in both orders, then 1 more
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(
            "prefeval", prefeval_dir, out=out, factory=_factory(first), modes=["personalized"]
        )
    done = [json.loads(x) for x in (out / "progress.jsonl").read_text().splitlines()]
    assert len(done) == 3
    second = WordService()
    res = run_evaluation(
        "prefeval", prefeval_dir, out=out, factory=_factory(second), modes=["personalized"]
    )
    # the second run scored only the 6 remaining pairs (2 orders each)
    assert sum(second.calls.values()) == 12
    keys = [json.loads(x)["key"] for x in (out / "progress.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 9
    # Finished pairs were never scored again; only the pair cut off mid-way (its first
    # order had been asked when the interruption came) was asked again.
    assert len(first.calls) == 7
    assert len(set(first.calls) & set(second.calls)) == 1
    assert res["results"][0]["pairs"] == 9
    assert len(json.loads((out / "run.json").read_text())["sessions"]) == 2
    # a third run has nothing to do
    third = WordService()
    run_evaluation(
        "prefeval", prefeval_dir, out=out, factory=_factory(third), modes=["personalized"]
    )
    assert sum(third.calls.values()) == 0


def test_truncated_last_line_is_rescored(prefeval_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_evaluation(
        "prefeval",
        prefeval_dir,
        out=out,
        factory=_factory(WordService()),
        modes=["personalized"],
        limit=3,
    )
    text = (out / "progress.jsonl").read_text()
    (out / "progress.jsonl").write_text(text[: len(text) - 20])  # cut the last record
    svc = WordService()
    res = run_evaluation(
        "prefeval", prefeval_dir, out=out, factory=_factory(svc), modes=["personalized"], limit=3
    )
    assert sum(svc.calls.values()) == 2  # just the damaged pair, both orders
    assert res["results"][0]["pairs"] == 3


def test_resume_refuses_other_configuration(prefeval_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_evaluation(
        "prefeval",
        prefeval_dir,
        out=out,
        factory=_factory(WordService()),
        modes=["personalized"],
        limit=3,
    )
    with pytest.raises(ResumeMismatchError):
        run_evaluation(
            "prefeval",
            prefeval_dir,
            out=out,
            factory=_factory(WordService()),
            modes=["personalized"],
            limit=3,
            swap=False,
        )
    res = run_evaluation(
        "prefeval",
        prefeval_dir,
        out=out,
        factory=_factory(WordService()),
        modes=["personalized"],
        limit=3,
        swap=False,
        restart=True,
    )
    assert res["results"][0]["swap"]["swapped_pairs"] == 0


def test_scorer_errors_are_counted_not_dropped(prefeval_dir: Path, tmp_path: Path) -> None:
    class Flaky(WordService):
        def score(self, request, **kw):
            if "lifestyle" in request.user_id:
                raise ValueError("backend exploded")
            return super().score(request, **kw)

    res = run_evaluation(
        "prefeval",
        prefeval_dir,
        out=tmp_path / "o",
        factory=_factory(Flaky()),
        modes=["personalized"],
    )
    row = res["results"][0]
    assert row["pairs"] == 9 and row["failures"] == 6 and row["errors"] == 12
    assert res["errors_total"] == 12  # failed service calls, both orders


def test_chain_grid_and_blend_tasks(prefeval_dir: Path, tmp_path: Path) -> None:
    res = run_evaluation(
        "prefeval",
        prefeval_dir,
        out=tmp_path / "o",
        factory=_factory(WordService()),
        scorers=["chain", "blend"],
        samples=[0, 1],
        neighbours=[0, 2],
        chain_limit=2,
    )
    got = Counter((r["scorer"], r["mode"]) for r in res["results"])
    # blend skips non_personalized (the same request as chain's) and the grid
    assert got == {
        ("chain", "personalized"): 1,
        ("chain", "non_personalized"): 1,
        ("chain", "sparse"): 1,
        ("chain", "prototype_only"): 1,
        ("chain", "grid"): 3,
        ("blend", "personalized"): 1,
        ("blend", "sparse"): 1,
        ("blend", "prototype_only"): 1,
    }
    grid = [(r["m"], r["n"], r["pairs"]) for r in res["results"] if r["mode"] == "grid"]
    assert grid == [(0, 2, 2), (1, 0, 2), (1, 2, 2)]
    assert all(r["pairs"] == 2 for r in res["results"])
    # chain scorers debias inside ChainScorer: no second (swapped) request by default
    assert all(r["swap"]["swapped_pairs"] == 0 for r in res["results"])
    assert (tmp_path / "o" / "scaling_m_chain.png").is_file()
    assert (tmp_path / "o" / "scaling_n_chain.png").is_file()


def test_no_requested_signal_is_a_failure_not_a_tie(prefeval_dir: Path, tmp_path: Path) -> None:
    # The double only ever returns a "prior" component: asked for chains (individual,
    # prototype) it has no valid score, like a model whose every chain fails to parse.
    res = run_evaluation(
        "prefeval",
        prefeval_dir,
        out=tmp_path / "o",
        factory=_factory(WordService()),
        scorers=["chain"],
        modes=["personalized"],
        samples=[1],
        neighbours=[0],
        chain_limit=3,
    )
    pers = next(r for r in res["results"] if r["mode"] == "personalized")
    assert (pers["pairs"], pers["failures"], pers["ties"]) == (3, 3, 0)
    assert pers["accuracy"] == 0.0
    assert pers["components"]["individual"]["failures"] == 3
