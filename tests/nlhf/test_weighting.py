"""MetaRM-weighted individual scaling."""

from __future__ import annotations

import pytest

from reward.nlhf.metarm import MetaRM
from reward.nlhf.weighting import chain_weights, metarm_weighted_scores, weighted_mean
from reward.protocol import ChainParse
from reward.scoring import aggregate


def chain(scores: list[float] | None, text: str, order: list[int] | None = None) -> ChainParse:
    if scores is None:
        return ChainParse(ok=False, failure="no_json", order=order or [0, 1], text=text)
    return ChainParse(ok=True, scores=scores, order=order or [0, 1], text=text)


class KeywordQuality:
    """A transparent quality model: high for critiques that mention 'quiet'."""

    def predict(self, context: str, response_a: str, response_b: str, critique: str) -> float:
        return 1.5 if "quiet" in critique else 0.0


def test_weighted_mean_edge_cases() -> None:
    assert weighted_mean([[1.0, 3.0], [3.0, 1.0]], [1.0, 3.0]) == [2.5, 1.5]
    assert weighted_mean([[1.0, 3.0]], [0.0]) == [None, None]
    with pytest.raises(ValueError):
        weighted_mean([[1.0, 2.0]], [1.0, 2.0])


def test_weighting_follows_the_better_critique() -> None:
    chains = [
        chain([8.0, 2.0], "Response 1 is quiet and calm."),
        chain([3.0, 7.0], "Response 2 has parties.", order=[1, 0]),
        chain([2.0, 9.0], "Response 2 is fun."),
        chain(None, "garbage"),
    ]
    res = aggregate(chains, 2, samples=4)
    assert res.scores[0] is not None and res.scores[1] is not None
    assert res.scores[0] < res.scores[1]  # the plain mean prefers candidate 1
    w = chain_weights(res, KeywordQuality(), context="q", candidates=["a", "b"], floor=0.05)
    assert w == [1.5, 0.05, 0.05, 0.0]
    ws = metarm_weighted_scores(res, KeywordQuality(), context="q", candidates=["a", "b"])
    assert ws[0] is not None and ws[1] is not None and ws[0] > ws[1]


class Recorder:
    """Records what the MetaRM is shown."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def predict(self, context: str, response_a: str, response_b: str, critique: str) -> float:
        self.seen.append((response_a, response_b, critique))
        return 1.0


def test_more_than_two_candidates_critique_names_the_pair_shown() -> None:
    """With 3 candidates the MetaRM sees the chain's top two as A and B, and the
    critique must call those two A and B (not request candidates 0 and 1)."""
    text = "Response 1 is quiet. Response 2 is ok. Response 3 is loud."
    # slot k shows request candidate order[k]: slot 1 = c2, slot 2 = c1, slot 3 = c0
    res = aggregate([chain([9.0, 2.0, 5.0], text, order=[2, 1, 0])], 3, samples=1)
    rec = Recorder()
    chain_weights(res, rec, context="q", candidates=["c0", "c1", "c2"])
    a, b, critique = rec.seen[0]
    assert (a, b) == ("c0", "c2")  # top two by score: c0 (9), then c2 (5)
    assert critique == "Response B is quiet. Response 2 is ok. Response A is loud."


def test_with_a_real_metarm(embedder) -> None:
    res = aggregate([chain([8.0, 2.0], "Response 1 is quiet."), chain(None, "x")], 2, samples=2)
    ws = metarm_weighted_scores(res, MetaRM(embedder), context="q", candidates=["a", "b"])
    assert ws == pytest.approx([8.0, 2.0])
    none = aggregate([chain(None, "x")], 2, samples=1)
    assert metarm_weighted_scores(none, MetaRM(embedder), context="q", candidates=["a", "b"]) == [
        None,
        None,
    ]
