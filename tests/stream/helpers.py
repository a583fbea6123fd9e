"""Event builders shared by the stream tests."""

from __future__ import annotations

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
