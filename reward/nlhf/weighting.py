"""MetaRM-weighted individual scaling: weight the m chains by predicted critique quality.

P-GenRM averages the valid chains' scores per candidate with equal weight.
Here each chain's weight is the MetaRM's prediction of its composite label
(clipped below at ``floor`` so no valid chain is silenced), and the
per-candidate score is the weighted mean over the chains that scored it.

The MetaRM is pairwise: for two candidates a chain is judged on (candidate 0,
candidate 1); for more, on its own top two candidates.

Examples
--------
>>> weighted_mean([[8.0, 2.0], None, [4.0, 6.0]], [3.0, 1.0, 1.0])
[7.0, 3.0]
>>> weighted_mean([[8.0, 2.0], [4.0, 6.0]], [1.0, 1.0])
[6.0, 4.0]
>>> weighted_mean([None], [1.0])
[]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from reward.nlhf.verdict import critique_from_chain
from reward.protocol import ScoreResult


class CritiqueQuality(Protocol):
    """What the weighting needs from a MetaRM."""

    def predict(self, context: str, response_a: str, response_b: str, critique: str) -> float: ...


def weighted_mean(
    scores_per_chain: Sequence[Sequence[float] | None], weights: Sequence[float]
) -> list[float | None]:
    """Per-candidate weighted mean over chains with scores (None rows are failed chains).

    A candidate whose chains' weights sum to zero gets None. With no valid chain
    at all the result is an empty list.
    """
    if len(scores_per_chain) != len(weights):
        raise ValueError("one weight per chain")
    valid = [(s, w) for s, w in zip(scores_per_chain, weights, strict=True) if s is not None]
    if not valid:
        return []
    n = len(valid[0][0])
    out: list[float | None] = []
    for i in range(n):
        num = sum(w * s[i] for s, w in valid)
        den = sum(w for _, w in valid)
        out.append(num / den if den > 0 else None)
    return out


def chain_weights(
    result: ScoreResult,
    metarm: CritiqueQuality,
    *,
    context: str,
    candidates: Sequence[str],
    floor: float = 0.05,
) -> list[float]:
    """The MetaRM weight of every chain of ``result`` (0 for failed chains)."""
    weights = []
    for ch in result.chains:
        if not ch.ok or ch.scores is None:
            weights.append(0.0)
            continue
        if len(candidates) == 2:
            ia, ib = 0, 1
        else:
            top = sorted(range(len(ch.scores)), key=lambda i: -ch.scores[i])  # type: ignore[index]
            ia, ib = top[0], top[1]
        # the critique names the two candidates the MetaRM is shown as A and B
        shown = ch.order or list(range(len(candidates)))
        slots = [0 if k == ia else (1 if k == ib else -1) for k in shown]
        crit = critique_from_chain(ch.text, slots)
        pred = metarm.predict(context, candidates[ia], candidates[ib], crit)
        weights.append(max(floor, float(pred)))
    return weights


def metarm_weighted_scores(
    result: ScoreResult,
    metarm: CritiqueQuality,
    *,
    context: str,
    candidates: Sequence[str],
    floor: float = 0.05,
) -> list[float | None]:
    """Per-candidate scores of ``result`` re-averaged with MetaRM chain weights.

    Same length as ``result.scores``; None where no valid chain scored a candidate.
    """
    w = chain_weights(result, metarm, context=context, candidates=candidates, floor=floor)
    rows = [ch.scores if ch.ok else None for ch in result.chains]
    out = weighted_mean(rows, w)
    return out if out else [None] * len(result.scores)
