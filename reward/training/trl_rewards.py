"""The composite rewards as TRL ``GRPOTrainer`` reward functions.

TRL calls each reward function as ``f(prompts=..., completions=..., **columns)``
where ``columns`` are the dataset's other columns, one value per completion.
Build the dataset with :func:`trl_rows` (columns ``context``, ``response_a``,
``response_b``, ``winner``, ``human_critique``, ``order``, ``prefix``) and pass
``make_reward_funcs(...)`` as ``reward_funcs``. The MetaRM is updated inside
the call, before rows without a critique are scored (update-then-use), exactly
as in :mod:`reward.training.grpo`.

Examples
--------
>>> from reward.nlhf.rows import NlhfRow
>>> rows = trl_rows([NlhfRow("q", "good", "bad", "A", "A is good.")], seed=0)
>>> sorted(rows[0])
['context', 'human_critique', 'order', 'prefix', 'prompt', 'response_a', 'response_b', 'winner']
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from reward.nlhf.matchers import ArgumentMatcher
from reward.nlhf.rows import NlhfRow
from reward.training.data import make_example
from reward.training.rewards_types import RewardKindName
from reward.training.rollout_rewards import OnlineMetaRM, RewardComputer


def trl_rows(
    rows: Sequence[NlhfRow], *, seed: int = 0, prefill: bool = False
) -> list[dict[str, Any]]:
    """Dataset records for TRL: a conversational ``prompt`` plus the reward columns."""
    rng = random.Random(seed)
    out = []
    for r in rows:
        ex = make_example(r, rng=rng, prefill=prefill)
        out.append(
            {
                "prompt": [{"role": m.role, "content": m.content} for m in ex.messages],
                "context": r.context,
                "response_a": r.response_a,
                "response_b": r.response_b,
                "winner": r.winner,
                "human_critique": r.human_critique or "",
                "order": list(ex.order),
                "prefix": ex.prefix,
            }
        )
    return out


def _text(c: Any) -> str:
    if isinstance(c, str):
        return c
    if isinstance(c, list) and c and isinstance(c[-1], dict):  # conversational completion
        return str(c[-1].get("content", ""))
    return str(c)


def make_reward_funcs(
    kind: RewardKindName, matcher: ArgumentMatcher, metarm: OnlineMetaRM | None = None
) -> list[Callable[..., list[float]]]:
    """``[reward_func]`` for ``GRPOTrainer(reward_funcs=...)``; its ``.computer`` keeps counters."""
    computer = RewardComputer(kind, matcher, metarm)

    def composite_reward(prompts: Any = None, completions: Any = None, **cols: Any) -> list[float]:
        n = len(completions or [])
        rows = [
            NlhfRow(
                cols["context"][i],
                cols["response_a"][i],
                cols["response_b"][i],
                cols["winner"][i],
                cols["human_critique"][i] or None,
            )
            for i in range(n)
        ]
        prefixes = cols.get("prefix") or [""] * n
        texts = [str(prefixes[i]) + _text(completions[i]) for i in range(n)]
        orders = [list(cols["order"][i]) for i in range(n)]
        return [x.reward for x in computer(rows, texts, orders)]

    composite_reward.computer = computer  # type: ignore[attr-defined]
    composite_reward.__name__ = f"{kind}_composite_reward"
    return [composite_reward]
