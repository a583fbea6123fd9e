"""The prior on a PrefEval subset, through the product path (skips without the shared data).

The full acceptance run (14 topics, k = 50, 5 folds) is ``bench/prior_prefeval.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prototypes.prefeval import CachedEmbedder, evaluate, load

pytestmark = [pytest.mark.shared, pytest.mark.slow]


def test_loader_pairs_histories_with_mcq(shared_prefeval: Path) -> None:
    rep = load(shared_prefeval)
    assert len(rep.users) >= 600 and rep.mismatched == 0 and rep.aligned_missing == 0
    u = rep.users[0]
    assert len(u.history) == 3 and len(u.options) == 4
    assert len({h.chosen for h in u.history}) == 1 and u.history[0].critique


def test_prior_on_three_topics(shared_prefeval: Path, minilm: Any, tmp_path: Path) -> None:
    r = evaluate(shared_prefeval, CachedEmbedder(minilm), k=10, folds=2, topics=3,
                 workdir=tmp_path)  # fmt: skip
    n = r["users"]
    for key in ("refined_full", "refined_single", "direction_full", "cold_prototype_z"):
        assert r[key]["pairs"] == 3 * n  # every pair counted, ties included
    assert r["refined_full"]["accuracy"] >= 0.9
    assert r["refined_full"]["accuracy"] - r["refined_single"]["accuracy"] <= 0.05
    assert r["cold_prototype_z"]["missing"] == 0
    assert 0.0 <= r["nmi_prototypes_topics"] <= 1.0
