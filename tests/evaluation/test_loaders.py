from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from stream.evaluation.exceptions import DatasetError
from stream.evaluation.loaders import load_dataset
from stream.evaluation.personal_reward_bench import load_personal_reward_bench

from .conftest import prb_rows


def test_prefeval_history_pairs_and_mismatch(prefeval_dir: Path) -> None:
    ds = load_dataset("prefeval", prefeval_dir)
    # 2 topics x 2 entries, one travel_hotel entry has a different mcq preference
    assert sorted(ds.users) == ["lifestyle_dietary/0", "lifestyle_dietary/1", "travel_hotel/0"]
    assert ds.skipped["preference_mismatch"] == 1
    user = ds.users["travel_hotel/0"]
    assert len(user.history) == 3
    assert {e.chosen for e in user.history} == {"A quiet spa resort far from casinos."}
    assert user.history[0].critique == "I pick the first one (0)."
    assert user.history[0].stated_preferences is None
    assert user.stated_preference == "I avoid hotels with a bustling nightlife. (0)"
    pairs = [p for p in ds.pairs if p.user_id == "travel_hotel/0"]
    assert [p.pair_id for p in pairs] == [
        "travel_hotel/0#1",
        "travel_hotel/0#2",
        "travel_hotel/0#3",
    ]
    assert all(p.aligned == "A calm quiet resort with a spa." for p in pairs)
    assert len(ds.pairs) == 9


def test_prefeval_stated_and_limit_interleaves_topics(prefeval_dir: Path) -> None:
    ds = load_dataset("prefeval", prefeval_dir, stated=True)
    assert all(e.stated_preferences for u in ds.users.values() for e in u.history)
    first = ds.select(6)
    assert {p.topic for p in first} == {"lifestyle_dietary", "travel_hotel"}


def test_prefeval_rejects_other_layouts(tmp_path: Path) -> None:
    with pytest.raises(DatasetError):
        load_dataset("prefeval", tmp_path)


def test_prb_jsonl_history_from_train_rows(tmp_path: Path) -> None:
    path = tmp_path / "prism_personalized.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in prb_rows()) + "\n")
    ds = load_dataset("personalrewardbench", path, history=3, seed=1)
    assert sorted(ds.users) == ["u1", "u2"]
    u1 = ds.users["u1"]
    assert len(u1.history) == 3
    assert all(e.chosen.startswith("good answer") for e in u1.history)
    assert len({e.chosen for e in u1.history}) == 3  # sampled without replacement
    assert ds.users["u2"].history == ()
    assert [p.pair_id for p in ds.pairs] == ["u1#0", "u1#1", "u2#0"]
    assert ds.pairs[0].aligned == "good answer 0" and ds.pairs[0].other == "bad answer 0"
    assert ds.pairs[0].topic == "prism_personalized"
    assert ds.skipped == {
        "missing_field": 1,
        "split_val": 1,
        "no_train_rows": 1,
        "users_without_test_rows": 1,
    }
    again = load_dataset("prb", path, history=3, seed=1)
    assert [e.chosen for e in again.users["u1"].history] == [e.chosen for e in u1.history]


@pytest.mark.skipif(
    importlib.util.find_spec("pyarrow") is None, reason="pyarrow not installed (JSONL is tested)"
)
def test_prb_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [r for r in prb_rows() if r["context"] is not None]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "arena.parquet")
    ds = load_personal_reward_bench(tmp_path / "arena.parquet")
    assert len(ds.pairs) == 3 and len(ds.users["u1"].history) == 3


def test_prb_missing_source() -> None:
    with pytest.raises(DatasetError):
        load_personal_reward_bench("./does/not/exist.jsonl")


def test_plain_jsonl(tmp_path: Path) -> None:
    lines = [
        {"type": "user", "user_id": "u1", "topic": "food", "stated_preferences": "vegan"},
        {
            "type": "feedback",
            "user_id": "u1",
            "context": "lunch?",
            "chosen": "tofu",
            "rejected": "steak",
            "critique": "no meat",
        },
        {"type": "feedback", "user_id": "u1", "context": "x", "chosen": "same", "rejected": "same"},
        {
            "type": "pair",
            "user_id": "u1",
            "context": [{"role": "user", "content": "dinner?"}],
            "aligned": "lentils",
            "other": "ribs",
        },
        {
            "type": "pair",
            "user_id": "u2",
            "context": "q",
            "aligned": "a",
            "other": "b",
            "topic": "t",
        },
        {"type": "bogus"},
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    ds = load_dataset("jsonl", path)
    assert ds.users["u1"].topic == "food" and ds.users["u1"].stated_preference == "vegan"
    assert [e.critique for e in ds.users["u1"].history] == ["no meat"]
    assert ds.users["u2"].history == () and ds.users["u2"].topic == "t"
    assert [p.aligned for p in ds.pairs] == ["lentils", "a"]
    assert ds.pairs[0].messages()[0].content == "dinner?"
    assert ds.skipped == {"invalid_feedback": 1, "unknown_type_bogus": 1, "not_json": 1}


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError):
        load_dataset("nope", tmp_path)
