"""PrefEval choice-based conversations as RM-NLHF rows (read in place, never copied).

Each entry of ``implicit_preference/choice-based/<topic>.json`` has a query, four
options, the aligned option and a conversation in which the user picks it and
says why (``user_selection``): that sentence is the human critique. One row per
(entry, non-aligned option): the aligned option against a rejected one, sides
assigned by a seeded coin. The user's ``preference`` statement is kept in
``meta["preference"]`` (it is what the user told the assistant earlier).

``user_id`` is ``<topic>/<index>`` (each entry is one synthetic user).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from reward.nlhf.rows import NlhfRow


def topics(root: Path) -> list[str]:
    """Topic names present under ``root`` (sorted)."""
    return sorted(
        p.stem for p in (Path(root) / "implicit_preference" / "choice-based").glob("*.json")
    )


def load_rows(
    root: Path,
    *,
    topic_names: list[str] | None = None,
    per_topic: int | None = None,
    rejected_per_entry: int = 1,
    seed: int = 0,
) -> Iterator[NlhfRow]:
    """Rows from the choice-based files under ``root`` (the PrefEval folder)."""
    rng = random.Random(seed)
    for topic in topic_names or topics(root):
        path = Path(root) / "implicit_preference" / "choice-based" / f"{topic}.json"
        entries = json.loads(path.read_text())
        for i, e in enumerate(entries[: per_topic or len(entries)]):
            conv = e.get("conversation") or {}
            aligned = e.get("aligned_op")
            options = [o for o in e.get("options", []) if o != aligned]
            critique = conv.get("user_selection")
            if not aligned or not options or not critique:
                continue
            query = conv.get("query") or e.get("implicit_query") or e.get("question", "")
            for k, rejected in enumerate(
                rng.sample(options, min(rejected_per_entry, len(options)))
            ):
                a_wins = rng.random() < 0.5
                yield NlhfRow(
                    context=query,
                    response_a=aligned if a_wins else rejected,
                    response_b=rejected if a_wins else aligned,
                    winner="A" if a_wins else "B",
                    human_critique=critique,
                    user_id=f"{topic}/{i}",
                    row_id=f"{topic}/{i}/{k}",
                    meta={"topic": topic, "preference": e.get("preference", "")},
                )
