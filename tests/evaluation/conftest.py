"""Fixtures of the evaluation tests: tiny datasets written here and a small service double.

The double (:class:`WordService`) has the three methods the runner uses and
scores by word overlap with the user's chosen/rejected history; it stands in
only for the runner's bookkeeping tests (resumption, counting). The real
``PgenrmService`` path is exercised by ``test_prefeval_ci.py`` on real data.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from infra.contracts import CandidateScore, FeedbackEvent, RewardRequest, RewardResult


def _words(text: str) -> set[str]:
    return {w.strip(".,!?").lower() for w in text.split() if len(w) > 3}


class WordService:
    """Scores a candidate by (words shared with chosen) - (words shared with rejected)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.history: dict[str, list[FeedbackEvent]] = {}
        self.calls: Counter[str] = Counter()
        self.fail_after = fail_after
        self.closed = False

    def apply_feedback(self, events: Sequence[FeedbackEvent], positions: Any = None) -> list[Any]:
        for ev in events:
            self.history.setdefault(ev.user_id, []).append(ev)
        return [None] * len(events)

    def score(
        self,
        request: RewardRequest,
        *,
        signals: set[str] | None = None,
        combination: str | None = None,
    ) -> RewardResult:
        if self.fail_after is not None and sum(self.calls.values()) >= self.fail_after:
            raise KeyboardInterrupt  # an interruption, like Ctrl-C
        self.calls[request.request_id] += 1
        hist = self.history.get(request.user_id, [])
        scores = []
        for cand in request.candidates:
            w = _words(cand)
            scores.append(
                float(sum(len(w & _words(e.chosen)) - len(w & _words(e.rejected)) for e in hist))
            )
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        return RewardResult(
            request_id=request.request_id,
            user_id=request.user_id,
            scores=[
                CandidateScore(index=i, score=s, rank=order.index(i) + 1)
                for i, s in enumerate(scores)
            ],
            mode="personal" if hist else "cold_start",
            prototype_id=0 if hist else None,
            components={"prior": scores},
            model_id="words",
            latency_ms=0.1,
        )

    def close(self) -> None:
        self.closed = True


TOPICS = {
    "travel_hotel": (
        "I avoid hotels with a bustling nightlife.",
        "Where should I stay in Vegas?",
        [
            "A quiet spa resort far from casinos.",
            "A party hotel with nightclubs.",
            "A casino hotel with loud bars.",
            "A nightlife hub downtown.",
        ],
        "Which hotel for my trip?",
        [
            "A calm quiet resort with a spa.",
            "A hotel with nightclubs and parties.",
            "A loud casino hotel.",
            "A rooftop bar hotel.",
        ],
    ),
    "lifestyle_dietary": (
        "I eat gluten-free.",
        "Quick lunch ideas?",
        [
            "A gluten-free salad with chicken.",
            "A wheat pasta dish.",
            "A bread sandwich.",
            "A pizza slice.",
        ],
        "Dinner recommendation?",
        [
            "A gluten-free rice bowl with chicken salad.",
            "Wheat pasta with bread.",
            "A bread sandwich with cheese.",
            "A pizza.",
        ],
    ),
}


def write_prefeval(root: Path, *, users: int = 2, mismatch: bool = True) -> Path:
    """A PrefEval-shaped folder: 2 topics x ``users`` entries; one mcq preference mismatch."""
    for sub in ("implicit_preference/choice-based", "mcq_options", "explicit_preference"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for topic, (pref, iq, opts, q, mcq) in TOPICS.items():
        choice, mcqs, explicit = [], [], []
        for i in range(users):
            p = f"{pref} ({i})"
            choice.append(
                {
                    "preference": p,
                    "question": q,
                    "explanation": "x",
                    "implicit_query": iq,
                    "options": opts,
                    "aligned_op": opts[0],
                    "conversation": {
                        "query": iq,
                        "assistant_options": "...",
                        "user_selection": f"I pick the first one ({i}).",
                        "assistant_acknowledgment": "ok",
                    },
                }
            )
            bad = mismatch and topic == "travel_hotel" and i == users - 1
            mcqs.append(
                {
                    "preference": p + (" changed" if bad else ""),
                    "question": q,
                    "explanation": "x",
                    "classification_task_options": mcq,
                }
            )
            explicit.append({"preference": p, "question": q, "explanation": "x"})
        (root / "implicit_preference/choice-based" / f"{topic}.json").write_text(json.dumps(choice))
        (root / "mcq_options" / f"{topic}.json").write_text(json.dumps(mcqs))
        (root / "explicit_preference" / f"{topic}.json").write_text(json.dumps(explicit))
    return root


def prb_rows() -> list[dict[str, Any]]:
    """PRB-shaped rows: u1 (4 train, 2 test), u2 (0 train, 1 test), u3 (train only)."""

    def row(uid: str, split: str, k: int) -> dict[str, Any]:
        return {
            "user_id": uid,
            "split": split,
            "context": [{"role": "user", "content": f"question {uid} {k}"}],
            "chosen": {"role": "assistant", "content": f"good answer {k}"},
            "rejected": {"role": "assistant", "content": f"bad answer {k}"},
            "chosen_score": 80,
            "rejected_score": 20,
        }

    rows = [row("u1", "train", k) for k in range(4)] + [row("u1", "test", k) for k in range(2)]
    rows += [row("u2", "test", 0), row("u3", "train", 0), row("u1", "val", 9)]
    rows.append(
        {"user_id": "u1", "split": "train", "context": None, "chosen": "a", "rejected": "b"}
    )
    return rows


@pytest.fixture
def prefeval_dir(tmp_path: Path) -> Path:
    return write_prefeval(tmp_path / "prefeval")


@pytest.fixture
def word_service() -> WordService:
    return WordService()
