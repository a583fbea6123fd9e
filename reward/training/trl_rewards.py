"""The composite rewards as TRL ``GRPOTrainer`` reward functions.

TRL calls each reward function as ``f(prompts=..., completions=..., **columns)``
where ``columns`` are the dataset's other columns, one value per completion (plus
``trainer_state``, ``log_metric`` ...). Build the dataset with :func:`trl_rows`
(a rendered text ``prompt`` plus ``context``, ``response_a``, ``response_b``,
``winner``, ``human_critique``, ``order``, ``prefix``) and pass
``make_reward_funcs(...)`` as ``reward_funcs``. The MetaRM is updated inside the
call, before rows without a critique are scored (update-then-use; see
:class:`~reward.training.rollout_rewards.RewardComputer`).

Prompts are plain text rendered with the policy's chat template
(:func:`reward.training.policy.render`), not conversations: TRL would close a
prefilled assistant turn and open a new one, while the product continues it.

Examples
--------
>>> from types import SimpleNamespace
>>> from reward.nlhf.rows import NlhfRow
>>> tok = SimpleNamespace(chat_template=None)  # renders "role: content" blocks
>>> rows = trl_rows([NlhfRow("q", "good", "bad", "A", "A is good.")], tok, seed=0)
>>> sorted(rows[0])
['context', 'human_critique', 'order', 'prefix', 'prompt', 'response_a', 'response_b', 'winner']
>>> rows[0]["prompt"].endswith("assistant:"), rows[0]["prefix"]
(True, '')
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from reward.nlhf.matchers import ArgumentMatcher
from reward.nlhf.metarm import MetaRMExample
from reward.nlhf.rows import NlhfRow
from reward.prompts import PromptTemplate
from reward.training.data import make_example
from reward.training.policy import render
from reward.training.rewards_types import RewardKindName
from reward.training.rollout_rewards import OnlineMetaRM, RewardComputer


def trl_rows(
    rows: Sequence[NlhfRow],
    tokenizer: Any,
    *,
    template: PromptTemplate | None = None,
    seed: int = 0,
    prefill: bool = False,
) -> list[dict[str, Any]]:
    """Dataset records for TRL: the rendered chain ``prompt`` plus the reward columns.

    Each row gets a seeded random candidate order; with ``prefill`` the prompt ends
    inside the assistant turn and ``prefix`` holds the prefilled text.
    """
    rng = random.Random(seed)
    out = []
    for r in rows:
        ex = make_example(r, rng=rng, prefill=prefill, template=template)
        out.append(
            {
                "prompt": render(tokenizer, ex.messages),
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
    kind: RewardKindName,
    matcher: ArgumentMatcher,
    metarm: OnlineMetaRM | None = None,
    *,
    gather: Callable[[list[MetaRMExample]], list[MetaRMExample]] | None = None,
) -> list[Callable[..., list[float]]]:
    """``[reward_func]`` for ``GRPOTrainer(reward_funcs=...)``; its ``.computer`` keeps counters.

    When TRL passes ``log_metric``, each call logs ``pgenrm/format_rate``,
    ``pgenrm/accuracy``, ``pgenrm/q_rate`` and, with a MetaRM, ``pgenrm/metarm_version``
    (and ``pgenrm/metarm_loss`` when known).
    """
    computer = RewardComputer(kind, matcher, metarm, gather=gather)

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
        out = computer(rows, texts, orders)
        log_metric = cols.get("log_metric")
        if log_metric is not None and out:
            log_metric("pgenrm/format_rate", sum(x.format_ok for x in out) / len(out))
            log_metric("pgenrm/accuracy", sum(x.correct for x in out) / len(out))
            log_metric("pgenrm/q_rate", sum(x.q for x in out) / len(out))
            if computer.metarm is not None:
                log_metric("pgenrm/metarm_version", float(computer.metarm.version))
                loss = getattr(computer.metarm, "last_loss", None)
                if loss is not None:
                    log_metric("pgenrm/metarm_loss", float(loss))
        return [x.reward for x in out]

    composite_reward.computer = computer  # type: ignore[attr-defined]
    composite_reward.__name__ = f"{kind}_composite_reward"
    return [composite_reward]
