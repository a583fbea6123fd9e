"""Event builders, a counting embedder and a polling helper shared by the stream tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from infra.contracts import ChatMessage, FeedbackEvent

CONCISE = "Short answer: three steps."
VERBOSE = (
    "A long, winding explanation that covers the background, the history, every option and "
    "many caveats before it finally arrives at a recommendation."
)


def fb(
    event_id: str,
    user: str,
    *,
    query: str = "How do I plan a trip?",
    chosen: str = CONCISE,
    rejected: str = VERBOSE,
    critique: str | None = None,
    request_id: str | None = None,
) -> FeedbackEvent:
    return FeedbackEvent(
        event_id=event_id,
        user_id=user,
        context=[ChatMessage(role="user", content=query)],
        chosen=chosen,
        rejected=rejected,
        critique=critique,
        request_id=request_id,
    )


class CountingEmbedder:
    """The real embedder, with its calls counted and the thread each ran in."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.calls: list[int] = []
        self.threads: list[str] = []
        """Name of the calling thread, pool index dropped (``pgenrm-embed``)."""

    def embed(self, texts: Any) -> np.ndarray:
        self.calls.append(len(texts))
        self.threads.append(threading.current_thread().name.rsplit("_", 1)[0])
        return np.asarray(self.inner.embed(texts))


async def until(pred: Callable[[], bool], timeout_s: float = 30.0, step_s: float = 0.02) -> None:
    """Poll ``pred`` on the running loop until it holds; fail after ``timeout_s``."""
    for _ in range(int(timeout_s / step_s)):
        if pred():
            return
        await asyncio.sleep(step_s)
    raise AssertionError("condition not reached")
