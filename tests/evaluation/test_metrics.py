from __future__ import annotations

import math
from typing import cast

from stream.evaluation.metrics import PairOutcome, macro, outcome, summarize, swap_consistency


def P(
    user: str, proto: int | None, o: str, swap: str | None = None, topic: str = "t"
) -> PairOutcome:
    return PairOutcome(user, topic, proto, o, swap)  # type: ignore[arg-type]


def test_outcomes_including_nan_and_none() -> None:
    assert outcome(2.0, 1.0) == "correct"
    assert outcome(1.0, 2.0) == "wrong"
    assert outcome(3.0, 3.0) == "tie"
    assert outcome(None, 1.0) == "failure"
    assert outcome(math.nan, 1.0) == "failure"


def test_hand_computed_summary() -> None:
    recs = [
        P("a", 0, "correct"),
        P("a", 0, "correct"),
        P("a", 0, "tie"),  # a: 2.5/3
        P("b", 0, "wrong"),  # b: 0
        P("c", 1, "failure"),
        P("c", 1, "correct"),  # c: 0.5
    ]
    s = summarize(recs)
    assert s["pairs"] == 6
    assert (s["correct"], s["wrong"], s["ties"], s["failures"]) == (3, 1, 1, 1)
    assert s["accuracy"] == (3 + 0.5) / 6
    assert s["accuracy_strict"] == 3 / 6
    assert math.isclose(cast(float, s["macro_user"]), (2.5 / 3 + 0 + 0.5) / 3)
    # prototype 0 pools a and b: 2.5 / 4; prototype 1: 0.5
    assert math.isclose(cast(float, s["macro_prototype"]), (2.5 / 4 + 0.5) / 2)
    assert s["per_prototype"] == {"0": 0.625, "1": 0.5}


def test_macro_strict_and_none_group() -> None:
    recs = [P("a", None, "tie"), P("b", 2, "correct")]
    assert macro(recs, lambda r: r.prototype_id) == (0.75, {"2": 1.0, "none": 0.5})
    assert macro(recs, lambda r: r.prototype_id, strict=True) == (0.5, {"2": 1.0, "none": 0.0})


def test_swap_consistency_counts_failures_as_inconsistent() -> None:
    recs = [
        P("a", 0, "correct", "correct"),
        P("a", 0, "wrong", "wrong"),
        P("a", 0, "tie", "tie"),
        P("a", 0, "failure", "failure"),
        P("a", 0, "correct", "wrong"),
        P("a", 0, "correct"),  # one order only: not in the swap statistics
    ]
    s = swap_consistency(recs)
    assert s["swapped_pairs"] == 5 and s["consistent"] == 3
    assert s["consistency"] == 3 / 5
    assert s["accuracy_both_orders"] == (2 + 0 + 1 + 0 + 1) / 10


def test_empty() -> None:
    s = summarize([])
    assert s["pairs"] == 0 and s["accuracy"] is None and s["macro_user"] is None
