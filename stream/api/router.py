"""Thin FastAPI routers: parse, call :class:`~stream.api.serving.ApiServing`, map errors.

The serving object lives on ``app.state.serving``; an :class:`ErrorBody` value
becomes a JSON response with its own status.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from infra.contracts import FeedbackEvent, RewardRequest, RewardResult, UserProfile
from stream.api.auth import require_token
from stream.api.protocol import (
    ErrorBody,
    FeedbackAccepted,
    ProfileAccepted,
    PrototypeList,
    StatsSnapshot,
    UserSummary,
)
from stream.api.serving import ApiServing

UserId = Annotated[
    str, Path(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$", description="A user id.")
]


def _err(status: int, text: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": text}


COMMON: dict[int | str, dict[str, Any]] = {
    400: _err(400, "The body could not be decoded (not UTF-8 JSON)"),
    401: _err(401, "Missing or wrong bearer token"),
    413: _err(413, "Body larger than the configured limit"),
    422: _err(422, "The request does not match the schema"),
}


def serving_of(request: Request) -> ApiServing:
    serving: ApiServing = request.app.state.serving
    return serving


Serving = Annotated[ApiServing, Depends(serving_of)]


def _respond(value: Any, status: int = 200) -> Any:
    if isinstance(value, ErrorBody):
        return JSONResponse(value.model_dump(mode="json"), status_code=value.error.status)
    if status != 200:
        return JSONResponse(value.model_dump(mode="json"), status_code=status)
    return value


router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], responses=COMMON)


@router.post(
    "/rewards",
    response_model=RewardResult,
    tags=["rewards"],
    summary="Score candidates for a user, synchronously",
    responses={
        409: _err(409, "This request_id was answered before"),
        503: _err(503, "Backend, store or broker unavailable"),
    },
)
def post_reward(body: RewardRequest, serving: Serving) -> Any:
    """Same request and result models as ``pgenrm.reward-requests.v1`` / ``pgenrm.rewards.v1``."""
    return _respond(serving.reward(body))


@router.post(
    "/feedback",
    status_code=202,
    response_model=FeedbackAccepted,
    tags=["feedback"],
    summary="Publish a feedback event to pgenrm.feedback.v1",
    responses={503: _err(503, "Broker unavailable or no publisher configured")},
)
def post_feedback(body: FeedbackEvent, serving: Serving) -> Any:
    """Accepted means written to the topic; the worker applies it asynchronously."""
    return _respond(serving.feedback(body), 202)


@router.post(
    "/profiles",
    status_code=202,
    response_model=ProfileAccepted,
    tags=["profiles"],
    summary="Publish an onboarding profile to pgenrm.profiles.v1",
    responses={503: _err(503, "Broker unavailable or no publisher configured")},
)
def post_profile(body: UserProfile, serving: Serving) -> Any:
    """Accepted means written to the topic; the worker registers the user asynchronously.

    Their rewards are then scored in ``prototype`` mode until their first feedback.
    An unknown ``prototype_id``, or one for a user who already has feedback, is
    dead-lettered by the worker (``unknown_prototype``, ``user_has_history``).
    """
    return _respond(serving.profile(body), 202)


@router.get(
    "/users/{user_id}",
    response_model=UserSummary,
    tags=["state"],
    summary="History size, persona and prototype of one user",
    responses={404: _err(404, "No state for this user"), 503: _err(503, "Store unavailable")},
)
def get_user(user_id: UserId, serving: Serving) -> Any:
    return _respond(serving.user(user_id))


@router.get(
    "/prototypes",
    response_model=PrototypeList,
    tags=["state"],
    summary="Prototypes with their sizes and online accuracy",
    responses={503: _err(503, "Store unavailable")},
)
def get_prototypes(serving: Serving) -> Any:
    return _respond(serving.prototypes())


@router.get(
    "/stats",
    response_model=StatsSnapshot,
    tags=["dashboard"],
    summary="Live statistics (the dashboard's feed)",
)
def get_stats(serving: Serving) -> Any:
    return serving.stats()
