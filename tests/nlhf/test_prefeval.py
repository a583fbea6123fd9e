"""PrefEval choice-based rows: the user's selection sentence is a usable human critique."""

from __future__ import annotations

from pathlib import Path

import pytest

from reward.nlhf.prefeval import load_rows, topics
from reward.nlhf.rows import has_human_critique
from reward.training.data import synthetic_chain
from reward.training.rollout_rewards import RewardComputer

pytestmark = pytest.mark.shared


def test_rows_have_critiques_and_balanced_sides(shared_prefeval: Path) -> None:
    names = topics(shared_prefeval)
    assert len(names) >= 10
    rows = list(load_rows(shared_prefeval, per_topic=10, seed=0))
    assert len(rows) >= 100
    assert all(has_human_critique(r) for r in rows)
    assert all(r.chosen != r.rejected for r in rows)
    share_a = sum(r.winner == "A" for r in rows) / len(rows)
    assert 0.3 < share_a < 0.7
    assert len({r.row_id for r in rows}) == len(rows)


def test_a_chain_restating_the_users_reasons_earns_the_process_reward(
    shared_prefeval: Path,
    matcher,
) -> None:
    """End to end through the flag: critique rows give q = 1 to a chain that argues as the user
    did, and q = 0 to the same chain with the verdict flipped (wrong verdict, no F1)."""
    rows = list(load_rows(shared_prefeval, topic_names=topics(shared_prefeval)[:4], per_topic=5))
    computer = RewardComputer("nlhf", matcher)
    texts = [synthetic_chain(r, [0, 1]) for r in rows]
    out = computer(rows, texts, [[0, 1]] * len(rows))
    assert all(o.format_ok and o.correct for o in out)
    q_rate = sum(o.q for o in out) / len(out)
    assert q_rate >= 0.5, [o.f1 for o in out]
    flipped = [synthetic_chain(r, [0, 1]).replace("8.0", "0.5") for r in rows]
    out2 = computer(rows, flipped, [[0, 1]] * len(rows))
    assert all(o.q == 0 and not o.correct for o in out2)
