"""Models of the HTTP API that are not event contracts, and the interfaces it needs.

``POST /v1/rewards`` takes and returns the topics' own contracts
(:class:`~infra.contracts.RewardRequest`, :class:`~infra.contracts.RewardResult`)
``POST /v1/feedback`` takes a :class:`~infra.contracts.FeedbackEvent` and
``POST /v1/profiles`` a :class:`~infra.contracts.UserProfile`; this module adds
the API-only bodies: the typed error body, the feedback and profile receipts, the
user and prototype summaries, readiness, and the live statistics of the
dashboard.

Every error the API returns has the same shape (:class:`ErrorBody`)::

    {"error": {"type": "validation_error", "status": 422,
               "message": "...", "details": [{"loc": [...], "msg": "...", "type": "..."}]}}

Examples
--------
>>> ErrorBody.of(404, "not_found", "no user 'u1'").model_dump()["error"]["status"]
404
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from infra.contracts import (
    Criterion,
    DegradedReason,
    FeedbackEvent,
    RewardMode,
    RewardRequest,
    RewardResult,
    UserProfile,
)
from prototypes.protocol import Prototype, UserState

ErrorType = Literal[
    "bad_request",
    "validation_error",
    "unauthorized",
    "not_found",
    "conflict",
    "method_not_allowed",
    "payload_too_large",
    "unsupported_media_type",
    "unavailable",
    "backend_error",
    "internal_error",
    "http_error",
]


class ErrorDetail(BaseModel):
    """One problem with a request (validation errors have one per field)."""

    loc: list[str | int] = Field(default_factory=list)
    msg: str
    type: str


class ErrorInfo(BaseModel):
    type: ErrorType
    status: int = Field(ge=400, le=599)
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer of the API."""

    error: ErrorInfo

    @classmethod
    def of(
        cls,
        status: int,
        type_: ErrorType,
        message: str,
        details: Sequence[ErrorDetail] = (),
    ) -> ErrorBody:
        return cls(
            error=ErrorInfo(type=type_, status=status, message=message, details=list(details))
        )


class FeedbackAccepted(BaseModel):
    """Where ``POST /v1/feedback`` put the event."""

    event_id: str
    user_id: str
    topic: str
    partition: int | None = None
    offset: int | None = None


class ProfileAccepted(FeedbackAccepted):
    """Where ``POST /v1/profiles`` put the profile (the worker registers the user)."""


class UserSummary(BaseModel):
    """``GET /v1/users/{user_id}``: what pgenrm knows about one user."""

    user_id: str
    history_size: int = Field(ge=0)
    events_applied: int = Field(ge=0)
    critiques: int = Field(ge=0)
    stated_preferences: str | None = None
    persona: str | None = None
    criteria: list[Criterion] = Field(default_factory=list)
    persona_stale: bool
    """True when feedback arrived after the persona was last generated."""
    prototype_id: int | None = None
    version: int = Field(ge=0)
    updated_at: datetime

    @classmethod
    def from_state(cls, state: UserState) -> UserSummary:
        return cls(
            user_id=state.user_id,
            history_size=state.history_size,
            events_applied=state.events_applied,
            critiques=state.critiques,
            stated_preferences=state.stated_preferences,
            persona=state.persona,
            criteria=list(state.criteria),
            persona_stale=state.persona is None or state.persona_version < state.version,
            prototype_id=state.prototype_id,
            version=state.version,
            updated_at=state.updated_at,
        )


class PrototypeSummary(BaseModel):
    """One prototype without its vectors (``GET /v1/prototypes``)."""

    prototype_id: int
    size: int = Field(ge=0)
    outcomes: int = Field(ge=0)
    correct: int = Field(ge=0)
    online_accuracy: float | None = Field(default=None, ge=0, le=1)
    dim: int = Field(ge=0)
    version: int = Field(ge=0)
    updated_at: datetime

    @classmethod
    def from_prototype(cls, p: Prototype) -> PrototypeSummary:
        return cls(
            prototype_id=p.prototype_id,
            size=p.size,
            outcomes=p.outcomes,
            correct=p.correct,
            online_accuracy=p.online_accuracy,
            dim=len(p.centroid),
            version=p.version,
            updated_at=p.updated_at,
        )


class PrototypeList(BaseModel):
    prototypes: list[PrototypeSummary]
    users: int = Field(ge=0)
    """Sum of prototype sizes."""


class CheckResult(BaseModel):
    ok: bool
    detail: str = ""


class Readiness(BaseModel):
    """``GET /readyz`` (200 when every check is ok, else 503)."""

    ready: bool
    checks: dict[str, CheckResult]


class Liveness(BaseModel):
    status: Literal["alive"] = "alive"
    uptime_s: float = Field(ge=0)


# --- live statistics (``GET /v1/stats``, the dashboard's feed) -----------------


class Point(BaseModel):
    """One sample of a time series: unix seconds and a value."""

    t: float
    v: float | None


class LatencySummary(BaseModel):
    count: int = Field(ge=0)
    p50_s: float | None = None
    p95_s: float | None = None
    p99_s: float | None = None


class LatestReward(BaseModel):
    """A recent reward with its explanation, as the dashboard lists it."""

    request_id: str
    user_id: str
    mode: RewardMode
    prototype_id: int | None
    best_index: int
    scores: list[float]
    samples_used: int
    neighbours_used: int
    parse_failures: int
    degraded: bool
    degraded_reason: DegradedReason | None = None
    latency_ms: float
    source: str
    """``http`` or ``stream``."""
    persona: str | None = None
    criteria: list[Criterion] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    created_at: datetime


class PartitionLag(BaseModel):
    topic: str
    partition: int
    committed: int | None
    log_end: int
    lag: int = Field(ge=0)
    source: Literal["fetch", "list_offsets"]
    """Where ``log_end`` came from: the Fetch highwater (exact) or ListOffsets
    (a lower bound on tansu, whose ListOffsets(LATEST) is wrong)."""


class StatsSnapshot(BaseModel):
    """Everything the dashboard shows, as of ``now``."""

    model_config = ConfigDict(extra="forbid")

    now: float
    uptime_s: float
    events_total: dict[str, float]
    """Processed events per topic since start (the ``pgenrm_events_processed_total`` counter)."""
    dead_lettered_total: dict[str, float]
    rewards_total: int
    rewards_by_mode: dict[str, int]
    throughput: dict[str, list[Point]]
    """Events per second per topic, plus ``rewards``; one point per second."""
    latency: dict[str, LatencySummary]
    """Latency percentiles over the recent window, by mode and ``all``."""
    latency_series: dict[str, list[Point]]
    """``p50`` and ``p95`` over all modes, sampled once per second."""
    cold_start_share: float | None
    parse_failures_total: int
    samples_used_total: int
    neighbours_used_total: int
    persona_queue_depth: int
    lag: list[PartitionLag]
    prototypes: list[PrototypeSummary]
    accuracy: float | None
    accuracy_series: list[Point]
    latest: list[LatestReward]


# --- what the API needs from the rest of pgenrm --------------------------------


@runtime_checkable
class ScoringService(Protocol):
    """The slice of :class:`stream.service.PgenrmService` the API calls.

    ``serve`` answers a request once (None when its ``request_id`` was answered
    before) and logs the served reward so that later feedback can judge it.
    """

    def serve(self, request: RewardRequest) -> RewardResult | None: ...

    def user(self, user_id: str) -> UserState | None: ...

    def prototypes(self) -> list[Prototype]: ...


@runtime_checkable
class FeedbackPublisher(Protocol):
    """Puts a feedback event on ``pgenrm.feedback.v1``, keyed by user id."""

    def publish(self, event: FeedbackEvent) -> FeedbackAccepted: ...

    def close(self) -> None: ...


@runtime_checkable
class ProfilePublisher(Protocol):
    """Puts a user profile on ``pgenrm.profiles.v1``, keyed by user id."""

    def publish_profile(self, profile: UserProfile) -> ProfileAccepted: ...


ReadinessCheck = Callable[[], "CheckResult | bool"]
"""A zero-argument callable: ok or not, with an optional detail."""
