"""Loader for a plain JSONL file of feedback events and test pairs.

One JSON object per line, told apart by ``type``:

* ``{"type": "feedback", ...}`` — a :class:`~infra.contracts.FeedbackEvent`
  (``event_id`` optional; ``context`` a string or a list of messages);
* ``{"type": "pair", "user_id", "context", "aligned", "other", "topic"?, "pair_id"?}``;
* ``{"type": "user", "user_id", "topic"?, "stated_preferences"?}`` (optional).

Lines that fail validation are skipped and counted by reason.

Examples
--------
>>> import json, tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
>>> _ = p.write_text("\\n".join(json.dumps(x) for x in [
...     {"type": "feedback", "user_id": "u", "context": "q", "chosen": "a", "rejected": "b"},
...     {"type": "pair", "user_id": "u", "context": "q2", "aligned": "c", "other": "d"}]))
>>> ds = load_jsonl(p)
>>> len(ds.users["u"].history), ds.pairs[0].aligned
(1, 'c')
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pydantic import ValidationError

from infra.contracts import FeedbackEvent
from stream.evaluation.dataset import (
    EvalDataset,
    EvalUser,
    TestPair,
    as_context,
    check_text,
    safe_id,
)
from stream.evaluation.exceptions import DatasetError


def load_jsonl(path: Path) -> EvalDataset:
    """Read a plain feedback + pairs JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    skipped: Counter[str] = Counter()
    history: dict[str, list[FeedbackEvent]] = {}
    meta: dict[str, dict[str, str | None]] = {}
    pairs: list[TestPair] = []
    with path.open() as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                skipped["not_json"] += 1
                continue
            kind = obj.pop("type", None)
            try:
                if kind == "feedback":
                    uid = safe_id(obj["user_id"])
                    k = len(history.get(uid, []))
                    obj.setdefault("event_id", safe_id(f"jsonl:{uid}:h{k}"))
                    obj["user_id"] = uid
                    if isinstance(obj.get("context"), str):
                        obj["context"] = [{"role": "user", "content": obj["context"]}]
                    history.setdefault(uid, []).append(FeedbackEvent.model_validate(obj))
                elif kind == "pair":
                    uid = safe_id(obj["user_id"])
                    aligned, other = str(obj["aligned"]), str(obj["other"])
                    if aligned == other or not (check_text(aligned) and check_text(other)):
                        skipped["bad_text"] += 1
                        continue
                    ctx = obj["context"]
                    context = ctx if isinstance(ctx, str) else tuple(as_context(ctx))
                    pid = str(obj.get("pair_id") or f"{uid}#{n}")
                    topic = str(obj.get("topic") or "default")
                    pairs.append(TestPair(pid, uid, context, aligned, other, topic))
                elif kind == "user":
                    meta[safe_id(obj["user_id"])] = {
                        "topic": obj.get("topic"),
                        "stated": obj.get("stated_preferences"),
                    }
                else:
                    skipped[f"unknown_type_{kind}"] += 1
            except (KeyError, TypeError, ValidationError):
                skipped[f"invalid_{kind}"] += 1
    topic_of = {p.user_id: p.topic for p in pairs}
    users: dict[str, EvalUser] = {}
    for uid in sorted(set(history) | set(topic_of) | set(meta)):
        m = meta.get(uid, {})
        users[uid] = EvalUser(
            uid,
            m.get("topic") or topic_of.get(uid, "default"),
            tuple(history.get(uid, [])),
            m.get("stated"),
        )
    return EvalDataset("jsonl", users, pairs, skipped, source=str(path))
