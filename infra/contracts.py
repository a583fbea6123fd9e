"""Event contracts: the pydantic models that travel on pgenrm's topics.

This module owns every message schema. Each message carries ``schema_version``;
a consumer rejects (dead-letters) versions it does not know. New optional
fields get defaults so that old producers stay compatible (BACKWARD).

Examples
--------
>>> from infra.contracts import FeedbackEvent
>>> ev = FeedbackEvent(event_id="e1", user_id="u1",
...                    context=[{"role": "user", "content": "Suggest a hotel"}],
...                    chosen="A quiet spa hotel.", rejected="A party hotel.")
>>> FeedbackEvent.model_validate_json(ev.model_dump_json()) == ev
True
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION: Literal[1] = 1
MAX_CANDIDATES = 16
MIN_CANDIDATES = 2
MAX_TEXT_CHARS = 32_000
MAX_PREFERENCE_CHARS = 4_000
"""Longest ``UserProfile.stated_preferences`` (an onboarding answer, not a document)."""
MAX_PROTOTYPE_ID = 2**31 - 1

Id = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
RewardMode = Literal["personal", "prototype", "cold_start"]
DegradedReason = Literal["deadline", "backend_unavailable", "generation_failed"]
"""Why a reward that wanted evaluation chains was answered from the prior alone."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """Base of every message: strict about unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    schema_version: Literal[1] = SCHEMA_VERSION


class ChatMessage(BaseModel):
    """One chat turn, OpenAI style."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    role: Literal["system", "user", "assistant"]
    content: Text


class FeedbackEvent(Contract):
    """A user preferred ``chosen`` over ``rejected`` in answer to ``context``."""

    event_id: Id
    user_id: Id
    timestamp: datetime = Field(default_factory=utcnow)
    context: list[ChatMessage] = Field(min_length=1, max_length=64)
    chosen: Text = Field(min_length=1)
    rejected: Text = Field(min_length=1)
    critique: Text | None = None
    """The user's own words on why ``chosen`` is better (RM-NLHF's human critique)."""
    stated_preferences: Text | None = None
    request_id: Id | None = None
    """The reward request whose candidates this feedback judges, if any."""

    @model_validator(mode="after")
    def _distinct_responses(self) -> FeedbackEvent:
        # compared as the outcome matching compares candidates (stream.served.text_hash)
        if self.chosen.strip() == self.rejected.strip():
            raise ValueError("chosen and rejected are identical (up to surrounding whitespace)")
        return self


class UserProfile(Contract):
    """What a user told pgenrm at onboarding, before any feedback.

    Makes ``user_id`` known, so their reward requests are scored in
    ``prototype`` mode instead of ``cold_start``: ``prototype_id`` assigns them
    to a prototype (an onboarding quiz, an operator), ``stated_preferences``
    route them to the prototype whose members' queries are nearest. At least
    one of the two is set (not null). Applied once per ``event_id``.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {
                    "required": ["stated_preferences"],
                    "properties": {"stated_preferences": {"type": "string"}},
                },
                {
                    "required": ["prototype_id"],
                    "properties": {"prototype_id": {"type": "integer"}},
                },
            ]
        }
    )

    event_id: Id
    user_id: Id
    timestamp: datetime = Field(default_factory=utcnow)
    stated_preferences: str | None = Field(
        default=None, min_length=1, max_length=MAX_PREFERENCE_CHARS, pattern=r"\S"
    )
    """The user's own words on what they want from answers (not blank)."""
    prototype_id: int | None = Field(default=None, ge=0, le=MAX_PROTOTYPE_ID)

    @model_validator(mode="after")
    def _something_to_register(self) -> UserProfile:
        if self.stated_preferences is None and self.prototype_id is None:
            raise ValueError("a profile needs stated_preferences or prototype_id")
        return self


class RewardOverrides(BaseModel):
    """Per-request overrides of the scaling settings."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    samples: int | None = Field(default=None, ge=0, le=64)
    """m: evaluation chains sampled with the user's own history (0 = none)."""
    neighbours: int | None = Field(default=None, ge=0, le=32)
    """n: similar users who re-score with their own histories (0 = none)."""
    deadline_ms: int | None = Field(default=None, ge=1, le=600_000)


class RewardRequest(Contract):
    """How would ``user_id`` score these candidates for ``context``?"""

    request_id: Id
    user_id: Id
    timestamp: datetime = Field(default_factory=utcnow)
    context: list[ChatMessage] = Field(min_length=1, max_length=64)
    candidates: list[Text] = Field(min_length=MIN_CANDIDATES, max_length=MAX_CANDIDATES)
    overrides: RewardOverrides | None = None


class Criterion(BaseModel):
    """One weighted criterion of an evaluation chain."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    weight: float = Field(ge=0, le=100)


class Explanation(BaseModel):
    """Why a reward came out as it did."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    persona: str | None = None
    criteria: list[Criterion] = Field(default_factory=list)
    critique_summary: str | None = None
    notes: list[str] = Field(default_factory=list)


class CandidateScore(BaseModel):
    """The score of one candidate; rank 1 is best."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    index: int = Field(ge=0)
    score: float
    rank: int = Field(ge=1)
    std: float | None = None
    valid_samples: int = Field(default=0, ge=0)


class RewardResult(Contract):
    """The answer to a :class:`RewardRequest`, published keyed by user."""

    request_id: Id
    user_id: Id
    scores: list[CandidateScore] = Field(min_length=1, max_length=MAX_CANDIDATES)
    mode: RewardMode
    prototype_id: int | None = None
    samples_used: int = Field(default=0, ge=0)
    neighbours_used: int = Field(default=0, ge=0)
    parse_failures: int = Field(default=0, ge=0)
    ties: int = Field(default=0, ge=0)
    degraded: bool = False
    """True when evaluation chains were wanted but the reward fell back to the prior."""
    degraded_reason: DegradedReason | None = None
    """Why it fell back; ``None`` when not degraded (or from a producer older than this field)."""
    components: dict[str, list[float]] = Field(default_factory=dict)
    """Per-signal scores before combination (``prior``, ``individual``, ``prototype``)."""
    explanation: Explanation = Field(default_factory=Explanation)
    model_id: str
    latency_ms: float = Field(ge=0)
    created_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _reason_only_when_degraded(self) -> RewardResult:
        if self.degraded_reason is not None and not self.degraded:
            raise ValueError("degraded_reason is set but degraded is false")
        return self


class PersonaState(Contract):
    """Compacted per-user state published on ``pgenrm.personas.v1``."""

    user_id: Id
    history_size: int = Field(ge=0)
    events_applied: int = Field(ge=0)
    critiques: int = Field(default=0, ge=0)
    prototype_id: int | None = None
    persona: str | None = None
    criteria: list[Criterion] = Field(default_factory=list)
    version: int = Field(ge=0)
    updated_at: datetime = Field(default_factory=utcnow)


class PrototypeState(Contract):
    """Compacted per-prototype state published on ``pgenrm.prototypes.v1``."""

    prototype_id: int = Field(ge=0)
    size: int = Field(ge=0)
    centroid: list[float] = Field(default_factory=list)
    online_accuracy: float | None = Field(default=None, ge=0, le=1)
    outcomes: int = Field(default=0, ge=0)
    version: int = Field(ge=0)
    updated_at: datetime = Field(default_factory=utcnow)


MESSAGES: dict[str, type[Contract]] = {
    "FeedbackEvent": FeedbackEvent,
    "UserProfile": UserProfile,
    "RewardRequest": RewardRequest,
    "RewardResult": RewardResult,
    "PersonaState": PersonaState,
    "PrototypeState": PrototypeState,
}
