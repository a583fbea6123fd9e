"""Thin FastAPI routers: parse, call :class:`~stream.api.serving.ApiServing`, map errors.

The serving object lives on ``app.state.serving``; an :class:`ErrorBody` value
becomes a JSON response with its own status.

Every ``/v1`` route checks, in this order: the bearer token (401), then for a
body its media type (415, not ``application/json``) and encoding (400, not
UTF-8; the app answers 400 for UTF-8 that is not JSON), then the schema (422).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from infra.contracts import FeedbackEvent, RewardRequest, RewardResult, UserProfile
from stream.api.auth import bearer, require_token
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
    415: _err(415, "The body is not application/json"),
    422: _err(422, "The request does not match the schema"),
}


def _is_json(content_type: str) -> bool:
    """``application/json`` or ``application/*+json``, parameters ignored."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def check_body(request: Request) -> None:
    """415 unless the body is declared JSON, 400 unless it is UTF-8."""
    body = await request.body()
    if not body:
        return  # a missing body is a schema error (422)
    if not _is_json(request.headers.get("content-type", "")):
        raise HTTPException(415, "the body must be JSON (Content-Type: application/json)")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, f"the body is not UTF-8: {exc}") from exc


class CheckedRoute(APIRoute):
    """Checks the token, then the body (:func:`check_body`), before FastAPI parses it.

    FastAPI parses and validates the body before it solves dependencies, so a
    token dependency alone would answer an unauthenticated, malformed request
    with 422 instead of 401.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        has_body = self.body_field is not None

        async def checked(request: Request) -> Response:
            require_token(request, await bearer(request))
            if has_body:
                await check_body(request)
            return await handler(request)

        return checked


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


# the dependency only declares the bearer scheme in the OpenAPI schema: CheckedRoute checks
# the token, before FastAPI reads the body
router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(bearer)],
    responses=COMMON,
    route_class=CheckedRoute,
)


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
    "/users/{user_id:path}",  # an Id may contain "/"
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
