"""Composite rewards of a batch of rollouts, with the online MetaRM (update-then-use).

Used by the TRL reward functions (:mod:`reward.training.trl_rewards`) that
:mod:`reward.training.grpo` trains with. For each rollout (a row, the
generated chain text, the candidate order shown):

1. parse the chain (:func:`reward.parser.parse_chain`) into a verdict and critique;
2. on rows with a human critique, q from the matcher (only when the verdict is
   right and the format valid);
3. **update** the MetaRM on this batch's valid-format human-critique rollouts
   (label y = o + 0.5 q), *then* predict m_hat for correct rows without a critique
   (with several training processes, ``gather`` first collects every process's
   examples so all copies of the MetaRM take the same update);
4. assemble the reward: ``nlhf`` (RM-NLHF) or ``cre`` (P-GenRM). For ``cre`` the
   process reward PR is the core-argument F1 against the human critique where
   there is one, else ``clip((m_hat - 1) / 0.5, 0, 1)`` from the MetaRM (0 without one).
   Unlike RM-NLHF's q, CRE's PR is computed for wrong verdicts too (P-GenRM's PR judges
   the chain apart from the outcome, so a PR-only ablation does not learn the outcome
   through PR); the MetaRM's labels keep RM-NLHF's rule (q counts only when right).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from reward.nlhf.matchers import ArgumentMatcher
from reward.nlhf.metarm import MetaRMExample
from reward.nlhf.process import process_reward
from reward.nlhf.rewards import composite_label, cre_reward, nlhf_reward
from reward.nlhf.rows import NlhfRow, has_human_critique
from reward.nlhf.verdict import Verdict, verdict_from_chain
from reward.parser import parse_chain
from reward.training.rewards_types import RewardKindName as RewardKind


class OnlineMetaRM(Protocol):
    """What the rewards need of a MetaRM (``reward.nlhf.metarm.MetaRM`` or ``LMMetaRM``)."""

    version: int

    def update(self, batch: Sequence[MetaRMExample]) -> None: ...

    def predict(self, context: str, response_a: str, response_b: str, critique: str) -> float: ...


@dataclass(frozen=True)
class RolloutReward:
    reward: float
    format_ok: bool
    correct: bool
    has_critique: bool
    q: int = 0
    f1: float | None = None
    metarm: float | None = None
    failure: str | None = None


@dataclass
class RewardComputer:
    """Turns rollouts into rewards; keeps counters of what happened.

    Parameters
    ----------
    kind:
        ``nlhf`` or ``cre``.
    matcher:
        Core-argument matcher for rows with a human critique.
    metarm:
        Optional MetaRM; updated online before it scores rows without a critique.
    online:
        Update the MetaRM on every batch (RM-NLHF's online MetaRM).
    gather:
        Optional collective that turns this process's update examples into every
        process's, in the same order on each (``accelerate.utils.gather_object``).
    """

    kind: RewardKind
    matcher: ArgumentMatcher
    metarm: OnlineMetaRM | None = None
    online: bool = True
    gather: Callable[[list[MetaRMExample]], list[MetaRMExample]] | None = None
    counts: Counter[str] = field(default_factory=Counter)

    def verdicts(self, texts: Sequence[str], orders: Sequence[list[int]]) -> list[Verdict]:
        return [
            verdict_from_chain(parse_chain(t, 2, list(o)))
            for t, o in zip(texts, orders, strict=True)
        ]

    def __call__(
        self, rows: Sequence[NlhfRow], texts: Sequence[str], orders: Sequence[list[int]]
    ) -> list[RolloutReward]:
        verdicts = self.verdicts(texts, orders)
        # CRE's process reward judges the chain whatever its verdict; RM-NLHF's q needs it right
        procs = [
            process_reward(r, v, self.matcher, require_correct=self.kind == "nlhf")
            for r, v in zip(rows, verdicts, strict=True)
        ]
        # (3) update-then-use.
        if self.metarm is not None and self.online:
            batch = [
                MetaRMExample(
                    r.context,
                    r.response_a,
                    r.response_b,
                    v.critique,
                    composite_label(v.correct(r.winner), p.q if v.correct(r.winner) else 0),
                )
                for r, v, p in zip(rows, verdicts, procs, strict=True)
                if has_human_critique(r) and v.format_ok
            ]
            if self.gather is not None:  # every process must call it, even with nothing to add
                batch = list(self.gather(batch))
            if batch:
                self.metarm.update(batch)
                self.counts["metarm_updates"] += 1
                self.counts["metarm_examples"] += len(batch)
        out = []
        for r, v, p in zip(rows, verdicts, procs, strict=True):
            crit = has_human_critique(r)
            correct = v.correct(r.winner)
            m_hat = None
            wanted = correct or (self.kind == "cre" and v.format_ok)
            if not crit and wanted and self.metarm is not None:
                m_hat = float(
                    self.metarm.predict(r.context, r.response_a, r.response_b, v.critique)
                )
            if self.kind == "nlhf":
                reward = nlhf_reward(
                    format_ok=v.format_ok, correct=correct, has_critique=crit, q=p.q, metarm=m_hat
                )
            else:
                if p.f1 is not None:
                    pr = p.f1.f1
                elif m_hat is not None:
                    pr = min(1.0, max(0.0, (m_hat - 1.0) / 0.5))
                else:
                    pr = 0.0
                reward = cre_reward(pr=pr, outcome=correct, format_error=not v.format_ok)
            self.counts["rollouts"] += 1
            self.counts["format_ok"] += v.format_ok
            self.counts["correct"] += correct
            self.counts["critique_rows"] += crit
            self.counts["q"] += p.q
            self.counts[f"process:{p.reason}"] += 1
            out.append(
                RolloutReward(
                    reward,
                    v.format_ok,
                    correct,
                    crit,
                    p.q,
                    p.f1.f1 if p.f1 else None,
                    m_hat,
                    v.failure,
                )
            )
        return out
