"""The API's logic, between thin routers and :class:`stream.service.PgenrmService`.

Every method returns either its response model or an :class:`ErrorBody` value
(vLLM's pattern): the router maps an ``ErrorBody`` to its HTTP status. Expected
failures become typed errors here; anything else propagates to the app's
last-resort handler (a typed, logged 500). A bad request never reaches the
service: the routers validate bodies and paths against the contracts (422), so
a ``ValueError`` from the service is an internal error, not the client's.

Examples
--------
>>> err = error_from_exception(__import__("infra.exceptions").exceptions.BrokerError("down"))
>>> err.error.status, err.error.type
(503, 'unavailable')
"""

from __future__ import annotations

import logging

from infra.contracts import FeedbackEvent, RewardRequest, RewardResult, UserProfile
from infra.exceptions import BrokerError, InvalidEventError, PgenrmError
from prototypes.exceptions import PrototypeError
from reward.exceptions import RewardError
from stream.api.live import LiveStats
from stream.api.protocol import (
    ErrorBody,
    FeedbackAccepted,
    FeedbackPublisher,
    ProfileAccepted,
    ProfilePublisher,
    PrototypeList,
    PrototypeSummary,
    ScoringService,
    StatsSnapshot,
    UserSummary,
)

log = logging.getLogger(__name__)


def error_from_exception(exc: Exception) -> ErrorBody:
    """The typed error body of an expected failure."""
    if isinstance(exc, InvalidEventError) and exc.reason == "oversize":
        return ErrorBody.of(413, "payload_too_large", exc.detail)
    if isinstance(exc, BrokerError):
        return ErrorBody.of(503, "unavailable", f"broker unavailable: {exc}")
    if isinstance(exc, PrototypeError):
        return ErrorBody.of(503, "unavailable", f"store unavailable: {exc}")
    if isinstance(exc, RewardError):
        return ErrorBody.of(503, "backend_error", f"reward backend failed: {exc}")
    return ErrorBody.of(500, "internal_error", f"{type(exc).__name__}: {exc}")


class ApiServing:
    """Scores, publishes and reads through the shared service.

    Parameters
    ----------
    service
        The scoring and state service (a :class:`ScoringService`).
    publisher
        Publishes feedback to the feedback topic (and, when it is also a
        :class:`ProfilePublisher`, profiles to the profiles topic); ``None``
        makes ``POST /v1/feedback`` and ``POST /v1/profiles`` answer 503.
    live
        Receives every reward served over HTTP (the dashboard's feed).
    """

    def __init__(
        self,
        service: ScoringService,
        *,
        publisher: FeedbackPublisher | None,
        live: LiveStats,
    ) -> None:
        self.service = service
        self.publisher = publisher
        self.live = live

    def reward(self, request: RewardRequest) -> RewardResult | ErrorBody:
        try:
            result = self.service.serve(request)
        except PgenrmError as exc:
            log.warning("reward %s failed: %s", request.request_id, exc)
            return error_from_exception(exc)
        if result is None:
            return ErrorBody.of(
                409, "conflict", f"request_id {request.request_id!r} was already answered"
            )
        # the id is marked answered: a dashboard failure must not lose the answer (a retry is 409)
        self.live.try_record_reward(result, source="http")
        return result

    def feedback(self, event: FeedbackEvent) -> FeedbackAccepted | ErrorBody:
        if self.publisher is None:
            return ErrorBody.of(503, "unavailable", "no feedback publisher is configured")
        try:
            return self.publisher.publish(event)
        except PgenrmError as exc:
            return error_from_exception(exc)

    def profile(self, profile: UserProfile) -> ProfileAccepted | ErrorBody:
        if not isinstance(self.publisher, ProfilePublisher):
            return ErrorBody.of(503, "unavailable", "no profile publisher is configured")
        try:
            return self.publisher.publish_profile(profile)
        except PgenrmError as exc:
            return error_from_exception(exc)

    def user(self, user_id: str) -> UserSummary | ErrorBody:
        try:
            state = self.service.user(user_id)
        except PgenrmError as exc:
            return error_from_exception(exc)
        if state is None:
            return ErrorBody.of(404, "not_found", f"no state for user {user_id!r}")
        return UserSummary.from_state(state)

    def prototypes(self) -> PrototypeList | ErrorBody:
        try:
            protos = self.service.prototypes()
        except PgenrmError as exc:
            return error_from_exception(exc)
        items = [PrototypeSummary.from_prototype(p) for p in protos]
        items.sort(key=lambda p: p.prototype_id)
        return PrototypeList(prototypes=items, users=sum(p.size for p in items))

    def stats(self) -> StatsSnapshot:
        return self.live.snapshot()
