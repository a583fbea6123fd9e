"""The process reward q of RM-NLHF: 1[core-argument F1 >= 0.5], only when it applies.

q is computed only when the row has a human critique
(:func:`~reward.nlhf.rows.has_human_critique`), the generation's format is
valid and its verdict is right; otherwise q = 0 without calling the matcher
(``computed`` is False and ``reason`` says why).

Examples
--------
>>> from reward.nlhf.rows import NlhfRow
>>> from reward.nlhf.verdict import Verdict
>>> row = NlhfRow("q", "a", "b", winner="A")
>>> process_reward(row, Verdict(True, "A", "A is good."), matcher=None).reason
'no_human_critique'
"""

from __future__ import annotations

from dataclasses import dataclass

from reward.nlhf.f1 import F1Result
from reward.nlhf.matchers import ArgumentMatcher
from reward.nlhf.rows import NlhfRow, has_human_critique
from reward.nlhf.verdict import Verdict


@dataclass(frozen=True)
class ProcessReward:
    """q and the evidence behind it."""

    q: int
    computed: bool
    reason: str
    f1: F1Result | None = None


def process_reward(
    row: NlhfRow,
    verdict: Verdict,
    matcher: ArgumentMatcher | None,
    *,
    require_correct: bool = True,
) -> ProcessReward:
    """q for one generation on one row (the matcher is called only when q can be non-zero).

    ``require_correct=False`` scores the critique of a wrong verdict too: P-GenRM's
    CRE process reward judges the chain apart from its outcome, where RM-NLHF's q
    counts only on a right verdict.
    """
    if not has_human_critique(row):
        return ProcessReward(0, False, "no_human_critique")
    if not verdict.format_ok:
        return ProcessReward(0, False, "format_error")
    if require_correct and verdict.choice != row.winner:
        return ProcessReward(0, False, "wrong_verdict")
    if matcher is None:
        raise ValueError("a row with a human critique needs a matcher")
    res = matcher.score(
        verdict.critique,
        row.human_critique or "",
        context=row.context,
        response_a=row.response_a,
        response_b=row.response_b,
    )
    return ProcessReward(res.q, True, res.reason, res)
