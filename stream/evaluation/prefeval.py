"""Loader for PrefEval's raw layout (amazon-science/PrefEval ``benchmark_dataset/``).

For each topic file and entry index ``i`` (user id ``"<topic>/<i>"``):

* **history** comes from ``implicit_preference/choice-based``: the user picked
  ``aligned_op`` among ``options``; one triple (``implicit_query``, aligned,
  other) per other option, with the user's ``conversation.user_selection``
  sentence as the critique;
* **test pairs** come from ``mcq_options``: ``question`` with the first of
  ``classification_task_options`` (aligned) against each other option;
* **stated preference** is the ``preference`` of ``explicit_preference``;
  it travels on the feedback events only when ``stated=True``.

Entries whose ``preference`` differs between the implicit and the mcq folder
at the same index, or that lack fields, are skipped and counted in
``EvalDataset.skipped``; a differing explicit wording is only counted.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from stream.evaluation.dataset import EvalDataset, EvalUser, TestPair, check_text, make_event
from stream.evaluation.exceptions import DatasetError

CHOICE_DIR = Path("implicit_preference") / "choice-based"
MCQ_DIR = Path("mcq_options")
EXPLICIT_DIR = Path("explicit_preference")


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list")
    return data


def load_prefeval(
    root: Path, *, stated: bool = False, topics: list[str] | None = None
) -> EvalDataset:
    """Read a PrefEval ``benchmark_dataset`` folder into an :class:`EvalDataset`.

    Parameters
    ----------
    root
        The folder holding ``mcq_options/`` and ``implicit_preference/choice-based/``.
    stated
        Attach the explicit preference to every history event as ``stated_preferences``.
    topics
        Only these topic names (file stems); default all topics present in both folders.
    """
    root = Path(root)
    if not (root / MCQ_DIR).is_dir() or not (root / CHOICE_DIR).is_dir():
        raise DatasetError(f"{root} is not a PrefEval folder (needs {MCQ_DIR} and {CHOICE_DIR})")
    names = sorted(
        p.stem for p in (root / MCQ_DIR).glob("*.json") if (root / CHOICE_DIR / p.name).exists()
    )
    if topics:
        names = [n for n in names if n in set(topics)]
    if not names:
        raise DatasetError(f"{root}: no topic present in both {MCQ_DIR} and {CHOICE_DIR}")
    skipped: Counter[str] = Counter()
    users: dict[str, EvalUser] = {}
    pairs: list[TestPair] = []
    for topic in names:
        choice = _read(root / CHOICE_DIR / f"{topic}.json")
        mcq = _read(root / MCQ_DIR / f"{topic}.json")
        explicit_path = root / EXPLICIT_DIR / f"{topic}.json"
        explicit = _read(explicit_path) if explicit_path.exists() else []
        if len(choice) != len(mcq):
            skipped["length_mismatch"] += abs(len(choice) - len(mcq))
        for i in range(min(len(choice), len(mcq))):
            c, m = choice[i], mcq[i]
            pref = c.get("preference")
            if pref is None or pref != m.get("preference"):
                skipped["preference_mismatch"] += 1
                continue
            if i < len(explicit) and explicit[i].get("preference") != pref:
                # Only wording differs in the released files ("I absolutely avoid" vs
                # "I avoid"); the user is kept and the mcq wording is the stated one.
                skipped["explicit_wording_differs(kept)"] += 1
            user_id = f"{topic}/{i}"
            try:
                options = list(c["options"])
                aligned = c["aligned_op"]
                query = c.get("implicit_query") or c["conversation"]["query"]
                critique = (c.get("conversation") or {}).get("user_selection")
                question = m["question"]
                mcq_opts = list(m["classification_task_options"])
            except (KeyError, TypeError):
                skipped["missing_field"] += 1
                continue
            if aligned not in options or len(mcq_opts) < 2:
                skipped["bad_options"] += 1
                continue
            texts = [*options, *mcq_opts, question, query]
            if not all(isinstance(t, str) and check_text(t) for t in texts):
                skipped["bad_text"] += 1
                continue
            history = tuple(
                make_event(
                    "prefeval",
                    user_id,
                    k,
                    query,
                    aligned,
                    other,
                    critique=critique,
                    stated_preferences=pref if stated else None,
                )
                for k, other in enumerate(o for o in options if o != aligned)
            )
            users[user_id] = EvalUser(user_id, topic, history, pref)
            for j, other in enumerate(mcq_opts[1:], start=1):
                if other == mcq_opts[0]:
                    skipped["identical_options"] += 1
                    continue
                pairs.append(
                    TestPair(f"{user_id}#{j}", user_id, question, mcq_opts[0], other, topic)
                )
    return EvalDataset("prefeval", users, pairs, skipped, source=str(root))
