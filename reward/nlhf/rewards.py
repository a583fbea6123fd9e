"""Composite rewards as plain functions, usable by any trainer (TRL, verl, our GRPO).

RM-NLHF (``weight_rule = 1.0``, ``weight_model = 0.5`` in its code), o = 1[label right]:

============================  =====================================
case                          reward
============================  =====================================
format error                  -1
row with a human critique     o + 0.5 q
row without one, o = 1        1 + 0.5 max(0, m_hat - 1)
row without one, o = 0        0
============================  =====================================

P-GenRM CRE: R = 0.5 PR + 1.0 OR, minus 0.1 on a format error, with
OR = 1[s_chosen > s_rejected] and PR in [0, 1].

Examples
--------
>>> nlhf_reward(format_ok=False, correct=True, has_critique=True, q=1)
-1.0
>>> nlhf_reward(format_ok=True, correct=True, has_critique=True, q=1)
1.5
>>> nlhf_reward(format_ok=True, correct=True, has_critique=False, metarm=1.4)
1.2
>>> cre_reward(pr=0.6, outcome=1, format_error=False)
1.3
>>> group_advantages([1.0, 0.0, 1.0, 0.0])
[1.0, -1.0, 1.0, -1.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

FORMAT_ERROR_REWARD = -1.0
WEIGHT_RULE = 1.0
WEIGHT_MODEL = 0.5
CRE_ALPHA = 0.5
CRE_BETA = 1.0
CRE_FORMAT_PENALTY = 0.1


def nlhf_reward(
    *,
    format_ok: bool,
    correct: bool,
    has_critique: bool,
    q: int = 0,
    metarm: float | None = None,
) -> float:
    """RM-NLHF's composite reward of one generation.

    ``metarm`` (m_hat) is needed only for a correct row without a human critique;
    when it is None there the reward is the outcome alone (1.0).
    """
    if not format_ok:
        return FORMAT_ERROR_REWARD
    o = 1.0 if correct else 0.0
    if has_critique:
        return WEIGHT_RULE * o + WEIGHT_MODEL * float(q)
    if not correct:
        return 0.0
    bonus = max(0.0, (metarm if metarm is not None else 1.0) - 1.0)
    return WEIGHT_RULE + WEIGHT_MODEL * bonus


def composite_label(correct: bool, q: int) -> float:
    """The MetaRM's regression target y = o + 0.5 q, in {0, 1, 1.5}.

    >>> composite_label(True, 1), composite_label(False, 0)
    (1.5, 0.0)
    """
    return WEIGHT_RULE * float(correct) + WEIGHT_MODEL * float(q)


def cre_reward(*, pr: float, outcome: int | bool, format_error: bool) -> float:
    """P-GenRM's CRE reward 0.5 PR + 1.0 OR - 0.1 [format error] (PR clipped to [0, 1])."""
    pr = min(1.0, max(0.0, float(pr)))
    r = CRE_ALPHA * pr + CRE_BETA * float(bool(outcome))
    return round(r - (CRE_FORMAT_PENALTY if format_error else 0.0), 10)


def group_advantages(rewards: Sequence[float], eps: float = 1e-6) -> list[float]:
    """GRPO's group-relative advantages (r - mean) / std; zeros when all are equal."""
    n = len(rewards)
    if n == 0:
        return []
    mu = sum(rewards) / n
    sd = math.sqrt(sum((r - mu) ** 2 for r in rewards) / n)
    if sd < eps:
        return [0.0] * n
    return [round((r - mu) / sd, 10) for r in rewards]
