"""Loader for PersonalRewardBench (SynthesizeMe's Chatbot Arena-P and PRISM-P).

Schema (one row per comparison): ``user_id``, ``split`` (train/val/test, per
user), ``context`` (a list of ``{role, content}``), ``chosen`` and ``rejected``
(``{role, content}`` or plain strings). Extra columns are ignored.

As in P-GenRM's protocol, each user's few-shot history is ``history`` items
drawn (seeded) from that user's *train* rows; every *test* row becomes a test
pair. Users without test rows are not evaluated; test rows of users without
train rows are kept (they are cold-start users) and counted under
``skipped["no_train_rows"]`` as information.

Sources: a local ``.jsonl``/``.json`` file (always), a ``.parquet`` file or a
folder of them (when pyarrow or pandas imports), or a hub dataset id such as
``MichaelR207/prism_personalized_0125`` (only where the ``datasets`` package
and a hub are reachable).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from stream.evaluation.dataset import (
    EvalDataset,
    EvalUser,
    TestPair,
    as_context,
    check_text,
    make_event,
    safe_id,
)
from stream.evaluation.exceptions import DatasetError


def _content(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        c = value.get("content")
        return c if isinstance(c, str) else None
    if isinstance(value, list) and value:  # a list of messages: the last one answers
        return _content(value[-1])
    return None


def _messages(value: Any) -> list[dict[str, str]] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [{"role": "user", "content": value}]
    if hasattr(value, "tolist"):  # numpy arrays from parquet
        value = value.tolist()
    if not isinstance(value, list) or not value:
        return None
    out = []
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            return None
        role = m.get("role", "user")
        out.append(
            {
                "role": role if role in ("system", "user", "assistant") else "user",
                "content": m["content"],
            }
        )
    return out


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open() as fh:
        if path.suffix == ".json":
            data = json.load(fh)
            yield from (data if isinstance(data, list) else [data])
            return
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise DatasetError(f"{path}:{n}: not JSON ({exc})") from exc


def _iter_parquet(path: Path) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        try:
            import pandas as pd
        except ImportError as exc:
            raise DatasetError(
                f"{path}: reading parquet needs pyarrow or pandas; convert it to JSONL"
            ) from exc
        yield from pd.read_parquet(path).to_dict(orient="records")
        return
    yield from pq.read_table(path).to_pylist()


def _iter_hub(dataset_id: str) -> Iterator[dict[str, Any]]:
    try:
        import datasets
    except ImportError as exc:
        raise DatasetError(
            f"{dataset_id!r} is not a local path and the 'datasets' package is not installed; "
            "download the dataset and pass the file path"
        ) from exc
    try:
        ds = datasets.load_dataset(dataset_id)
    except Exception as exc:  # hub unreachable, gated, ...
        raise DatasetError(f"cannot load {dataset_id!r} from the hub: {exc}") from exc
    for split_name, split in ds.items():
        for row in split:
            yield {"split": split_name, **row}


def iter_rows(source: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a local JSONL/JSON/parquet file or folder, or of a hub dataset id."""
    path = Path(source)
    if path.is_dir():
        files = sorted([*path.glob("*.jsonl"), *path.glob("*.json"), *path.glob("*.parquet")])
        if not files:
            raise DatasetError(f"{path}: no .jsonl, .json or .parquet files")
        for f in files:
            yield from iter_rows(f)
    elif path.is_file():
        yield from _iter_parquet(path) if path.suffix == ".parquet" else _iter_jsonl(path)
    elif "/" in str(source) and not str(source).startswith((".", "/")):
        yield from _iter_hub(str(source))
    else:
        raise DatasetError(f"{source}: no such file or folder")


def load_personal_reward_bench(
    source: str | Path,
    *,
    history: int = 3,
    seed: int = 0,
    name: str | None = None,
    rows: Iterable[dict[str, Any]] | None = None,
) -> EvalDataset:
    """Read PersonalRewardBench rows into an :class:`EvalDataset`.

    Parameters
    ----------
    source
        File, folder or hub id (see the module docstring).
    history
        Few-shot items per user, drawn from the user's train rows with ``seed``.
    name
        Topic label for every pair; defaults to the file stem (``prism...``).
    rows
        Already-read rows (then ``source`` is only a label).
    """
    topic = name or Path(str(source)).stem or "personalrewardbench"
    skipped: Counter[str] = Counter()
    train: dict[str, list[tuple[list[dict[str, str]], str, str]]] = {}
    tests: dict[str, list[tuple[list[dict[str, str]], str, str]]] = {}
    for row in rows if rows is not None else iter_rows(source):
        uid = row.get("user_id")
        split = str(row.get("split", "")).lower()
        ctx = _messages(row.get("context"))
        chosen, rejected = _content(row.get("chosen")), _content(row.get("rejected"))
        if uid is None or ctx is None or chosen is None or rejected is None:
            skipped["missing_field"] += 1
            continue
        if chosen == rejected or not (check_text(chosen) and check_text(rejected)):
            skipped["bad_text"] += 1
            continue
        if any(len(m["content"]) > 32_000 for m in ctx):
            skipped["bad_text"] += 1
            continue
        bucket = {"train": train, "test": tests}.get(split)
        if bucket is None:
            skipped[f"split_{split or 'missing'}"] += 1
            continue
        bucket.setdefault(safe_id(uid), []).append((ctx[-64:], chosen, rejected))
    rng = random.Random(seed)
    users: dict[str, EvalUser] = {}
    pairs: list[TestPair] = []
    for uid in sorted(tests):
        rows_u = train.get(uid, [])
        if not rows_u:
            skipped["no_train_rows"] += 1
        picked = rng.sample(rows_u, min(history, len(rows_u)))
        events = tuple(
            make_event("prb", uid, k, ctx, ch, rj) for k, (ctx, ch, rj) in enumerate(picked)
        )
        users[uid] = EvalUser(uid, topic, events)
        for j, (ctx, ch, rj) in enumerate(tests[uid]):
            pairs.append(TestPair(f"{uid}#{j}", uid, tuple(as_context(ctx)), ch, rj, topic))
    skipped["users_without_test_rows"] += len(set(train) - set(tests))
    return EvalDataset("personalrewardbench", users, pairs, +skipped, source=str(source))
