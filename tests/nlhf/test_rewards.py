"""Composite reward tables (RM-NLHF and P-GenRM CRE) and GRPO advantages."""

from __future__ import annotations

import pytest

from reward.nlhf.rewards import composite_label, cre_reward, group_advantages, nlhf_reward


@pytest.mark.parametrize(
    ("format_ok", "correct", "has_critique", "q", "metarm", "expected"),
    [
        (False, True, True, 1, None, -1.0),
        (False, False, False, 0, 1.5, -1.0),
        (True, True, True, 1, None, 1.5),
        (True, True, True, 0, None, 1.0),
        (True, False, True, 0, None, 0.0),
        (True, False, True, 1, None, 0.5),  # q only ever 1 when right; the formula still holds
        (True, True, False, 0, 1.5, 1.25),
        (True, True, False, 0, 1.2, 1.1),
        (True, True, False, 0, 0.4, 1.0),  # max(0, m - 1)
        (True, True, False, 0, None, 1.0),
        (True, False, False, 0, 1.5, 0.0),
    ],
)
def test_nlhf_reward_table(format_ok, correct, has_critique, q, metarm, expected) -> None:
    got = nlhf_reward(
        format_ok=format_ok, correct=correct, has_critique=has_critique, q=q, metarm=metarm
    )
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("pr", "outcome", "format_error", "expected"),
    [
        (1.0, 1, False, 1.5),
        (0.0, 1, False, 1.0),
        (1.0, 0, False, 0.5),
        (0.0, 0, False, 0.0),
        (0.0, 0, True, -0.1),
        (0.4, 1, True, 1.1),
        (2.0, 1, False, 1.5),  # PR is clipped to [0, 1]
    ],
)
def test_cre_reward_table(pr, outcome, format_error, expected) -> None:
    assert cre_reward(pr=pr, outcome=outcome, format_error=format_error) == pytest.approx(expected)


def test_composite_label_values() -> None:
    assert {composite_label(c, q) for c in (True, False) for q in (0, 1)} == {0.0, 0.5, 1.0, 1.5}


def test_group_advantages() -> None:
    adv = group_advantages([1.5, 1.0, -1.0, 0.5])
    assert sum(adv) == pytest.approx(0.0, abs=1e-9)
    assert adv[0] > adv[1] > adv[3] > adv[2]
    assert group_advantages([1.0, 1.0, 1.0]) == [0.0, 0.0, 0.0]
