"""The common in-memory form every loader produces.

A dataset is a set of users, each with a feedback history (as
:class:`~infra.contracts.FeedbackEvent`), an optional stated preference and a
topic label, plus test pairs ``(user_id, context, aligned, other, topic)`` in
which ``aligned`` is the answer the user prefers.

Examples
--------
>>> from stream.evaluation.dataset import EvalDataset, TestPair, EvalUser, make_event
>>> ev = make_event("demo", "u1", 0, "Suggest a hotel", "A quiet spa.", "A party hotel.")
>>> ds = EvalDataset(name="demo", users={"u1": EvalUser("u1", "travel", (ev,))},
...                  pairs=[TestPair("u1#0", "u1", "Another hotel?", "Calm inn.", "Club hotel.",
...                                  "travel")])
>>> ds.summary()["pairs"], ds.summary()["events"]
(1, 1)
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from infra.contracts import MAX_TEXT_CHARS, ChatMessage, FeedbackEvent

_ID_OK = re.compile(r"^[\x21-\x7e]{1,200}$")


def safe_id(raw: object) -> str:
    """Turn any raw identifier into a contract-valid ``Id`` (printable, no spaces).

    Ids that already qualify are kept; others are replaced by a stable hash.

    >>> safe_id("travel/3"), safe_id("has space")[:2]
    ('travel/3', 'h:')
    """
    text = str(raw)
    if _ID_OK.match(text):
        return text
    return "h:" + hashlib.sha1(text.encode()).hexdigest()[:20]


def as_context(context: str | Sequence[object]) -> list[ChatMessage]:
    """A context given as a plain query or a list of ``{role, content}`` dicts.

    >>> [m.role for m in as_context("hi")]
    ['user']
    """
    if isinstance(context, str):
        return [ChatMessage(role="user", content=context)]
    out: list[ChatMessage] = []
    for item in context:
        if isinstance(item, ChatMessage):
            out.append(item)
        elif isinstance(item, dict):
            out.append(ChatMessage(role=item.get("role", "user"), content=str(item["content"])))
        else:
            out.append(ChatMessage(role="user", content=str(item)))
    return out


def make_event(
    dataset: str,
    user_id: str,
    k: int,
    context: str | Sequence[object],
    chosen: str,
    rejected: str,
    critique: str | None = None,
    stated_preferences: str | None = None,
) -> FeedbackEvent:
    """Build the ``k``-th history event of a user with a deterministic event id."""
    return FeedbackEvent(
        event_id=safe_id(f"{dataset}:{user_id}:h{k}"),
        user_id=user_id,
        context=as_context(context)[-64:],
        chosen=chosen,
        rejected=rejected,
        critique=critique,
        stated_preferences=stated_preferences,
    )


@dataclass(frozen=True)
class EvalUser:
    """A user of the evaluation set."""

    user_id: str
    topic: str
    history: tuple[FeedbackEvent, ...]
    stated_preference: str | None = None


@dataclass(frozen=True)
class TestPair:
    """One test comparison: the user prefers ``aligned`` over ``other``."""

    __test__ = False  # not a pytest class

    pair_id: str
    user_id: str
    context: str | tuple[ChatMessage, ...]
    aligned: str
    other: str
    topic: str

    def messages(self) -> list[ChatMessage]:
        return as_context(self.context)


@dataclass
class EvalDataset:
    """Users, their histories and the test pairs, plus what the loader skipped."""

    name: str
    users: dict[str, EvalUser]
    pairs: list[TestPair]
    skipped: Counter[str] = field(default_factory=Counter)
    """Reason -> number of entries the loader could not use (never silently dropped)."""
    source: str = ""

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "source": self.source,
            "users": len(self.users),
            "events": sum(len(u.history) for u in self.users.values()),
            "pairs": len(self.pairs),
            "topics": sorted({p.topic for p in self.pairs}),
            "skipped": dict(self.skipped),
        }

    def select(self, limit: int | None) -> list[TestPair]:
        """The first ``limit`` pairs in a topic-interleaved order (stable).

        Users are taken round-robin across topics so that a small limit still
        covers every topic; all of a user's pairs stay together.

        >>> ds = EvalDataset("d", {}, [TestPair(f"{t}{i}", f"{t}/{i}", "q", "a", "b", t)
        ...                          for t in "xy" for i in range(2)])
        >>> [p.pair_id for p in ds.select(3)]
        ['x0', 'y0', 'x1']
        """
        by_topic: dict[str, dict[str, list[TestPair]]] = {}
        for p in self.pairs:
            by_topic.setdefault(p.topic, {}).setdefault(p.user_id, []).append(p)
        queues = [list(users.values()) for _, users in sorted(by_topic.items())]
        ordered: list[TestPair] = []
        depth = 0
        while any(depth < len(q) for q in queues):
            for q in queues:
                if depth < len(q):
                    ordered.extend(q[depth])
            depth += 1
        return ordered if limit is None else ordered[:limit]


def check_text(text: str) -> bool:
    """Whether a response fits the contracts' text limit."""
    return 0 < len(text) <= MAX_TEXT_CHARS
