"""Pairwise accuracy, macro accuracy, tie and failure counts, position-swap consistency.

Every scored pair has an *outcome* per candidate order:

* ``correct`` — the aligned answer scored strictly higher;
* ``wrong`` — the other answer scored strictly higher;
* ``tie`` — equal scores;
* ``failure`` — no valid score for one of the two (parse failure, error).

Nothing is dropped: every pair is in the denominator. Two accuracies are
reported: ``accuracy`` counts a tie as half right (the expected accuracy of
breaking it by a coin flip) and failures as wrong; ``accuracy_strict`` counts
ties and failures as wrong. *Macro* accuracies first compute the accuracy
within each group (user, prototype, topic) and then average the groups with
equal weight ([PG] Tables 9-10 use prototype groups).

Examples
--------
>>> recs = [PairOutcome("u1", "t", 0, "correct"), PairOutcome("u1", "t", 0, "tie"),
...         PairOutcome("u2", "t", 1, "wrong"), PairOutcome("u2", "t", 1, "failure")]
>>> s = summarize(recs)
>>> s["accuracy"], s["accuracy_strict"], s["ties"], s["failures"]
(0.375, 0.25, 1, 1)
>>> s["macro_user"]  # u1: (1 + 0.5) / 2 = 0.75, u2: 0 -> mean 0.375
0.375
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["correct", "wrong", "tie", "failure"]
OUTCOMES: tuple[Outcome, ...] = ("correct", "wrong", "tie", "failure")
_CREDIT: dict[str, float] = {"correct": 1.0, "tie": 0.5, "wrong": 0.0, "failure": 0.0}


def outcome(aligned: float | None, other: float | None) -> Outcome:
    """Compare the aligned answer's score with the other's.

    >>> outcome(0.9, 0.1), outcome(0.1, 0.9), outcome(0.5, 0.5), outcome(None, 0.2)
    ('correct', 'wrong', 'tie', 'failure')
    """
    if aligned is None or other is None or aligned != aligned or other != other:  # NaN
        return "failure"
    if aligned > other:
        return "correct"
    if aligned < other:
        return "wrong"
    return "tie"


@dataclass(frozen=True)
class PairOutcome:
    """The outcome of one pair under one configuration (and maybe the swapped order)."""

    user_id: str
    topic: str
    prototype_id: int | None
    outcome: Outcome
    swap_outcome: Outcome | None = None


def credit(o: Outcome, *, strict: bool = False) -> float:
    """Score of one outcome: ties are worth 0.5 unless ``strict``."""
    if strict and o == "tie":
        return 0.0
    return _CREDIT[o]


def accuracy(outcomes: Sequence[Outcome], *, strict: bool = False) -> float | None:
    """Mean credit, or None for an empty sequence.

    >>> accuracy(["correct", "tie", "wrong", "wrong"]), accuracy([], strict=True)
    (0.375, None)
    """
    if not outcomes:
        return None
    return sum(credit(o, strict=strict) for o in outcomes) / len(outcomes)


def macro(
    records: Iterable[PairOutcome], key: Callable[[PairOutcome], Hashable], *, strict: bool = False
) -> tuple[float | None, dict[str, float]]:
    """Per-group accuracy and the unweighted mean over groups.

    Groups whose key is None (e.g. no prototype assigned) form one group ``"none"``.

    >>> recs = [PairOutcome("a", "t", None, "correct")] * 3 + [PairOutcome("b", "t", None, "wrong")]
    >>> macro(recs, lambda r: r.user_id)
    (0.5, {'a': 1.0, 'b': 0.0})
    """
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for r in records:
        k = key(r)
        groups["none" if k is None else str(k)].append(r.outcome)
    per = {k: accuracy(v, strict=strict) or 0.0 for k, v in sorted(groups.items())}
    return (sum(per.values()) / len(per) if per else None), per


def swap_consistency(records: Iterable[PairOutcome]) -> dict[str, float | int | None]:
    """How often the decision survives swapping the two candidates' positions.

    A pair is consistent when both orders give the same non-failure outcome
    (correct/correct, wrong/wrong or tie/tie). Pairs scored in one order only
    are not counted here (they are in ``pairs``).

    >>> swap_consistency([PairOutcome("u", "t", None, "correct", "correct"),
    ...                   PairOutcome("u", "t", None, "correct", "wrong")])
    {'swapped_pairs': 2, 'consistent': 1, 'consistency': 0.5, 'accuracy_both_orders': 0.75}
    """
    both = [r for r in records if r.swap_outcome is not None]
    consistent = sum(1 for r in both if r.outcome == r.swap_outcome and r.outcome != "failure")
    credits = [credit(r.outcome) + credit(r.swap_outcome or "failure") for r in both]
    return {
        "swapped_pairs": len(both),
        "consistent": consistent,
        "consistency": consistent / len(both) if both else None,
        "accuracy_both_orders": sum(credits) / (2 * len(both)) if both else None,
    }


def summarize(records: Sequence[PairOutcome]) -> dict[str, object]:
    """All metrics of one configuration (see the module docstring)."""
    counts = Counter(r.outcome for r in records)
    outs = [r.outcome for r in records]
    macro_user, _ = macro(records, lambda r: r.user_id)
    macro_proto, per_proto = macro(records, lambda r: r.prototype_id)
    macro_topic, per_topic = macro(records, lambda r: r.topic)
    return {
        "pairs": len(records),
        **{k: counts.get(k, 0) for k in ("correct", "wrong")},
        "ties": counts.get("tie", 0),
        "failures": counts.get("failure", 0),
        "accuracy": accuracy(outs),
        "accuracy_strict": accuracy(outs, strict=True),
        "macro_user": macro_user,
        "macro_prototype": macro_proto,
        "macro_topic": macro_topic,
        "per_prototype": per_proto,
        "per_topic": per_topic,
        "swap": swap_consistency(records),
    }
