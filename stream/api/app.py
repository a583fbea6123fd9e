"""The HTTP API and live dashboard: :func:`create_app` and :func:`serve`.

FastAPI, because the request/response models already are pydantic contracts
(one definition gives validation, typed 422s and the OpenAPI schema at
``/openapi.json``, which the schemathesis test drives), and because it is
already in the dependency set (no second web stack next to faust's aiohttp).

Routes
------
========================  =====  ==================================================
``POST /v1/rewards``      token  score synchronously (RewardRequest -> RewardResult)
``POST /v1/feedback``     token  publish a FeedbackEvent to ``pgenrm.feedback.v1``
``POST /v1/profiles``     token  publish a UserProfile to ``pgenrm.profiles.v1``
``GET /v1/users/{id}``    token  history size, persona, prototype
``GET /v1/prototypes``    token  prototypes with sizes and online accuracy
``GET /v1/stats``         token  live statistics (the dashboard's feed)
``GET /healthz``                 liveness (200)
``GET /readyz``                  readiness (200, or 503 naming the failing check)
``GET /metrics``                 Prometheus text format
``GET /dashboard``               the live dashboard (``/`` redirects there)
``GET /openapi.json``            the OpenAPI schema (``/docs`` renders it)
========================  =====  ==================================================

"token": needs ``Authorization: Bearer $PGENRM_API_TOKEN`` when a token is set.

Examples
--------
>>> from infra.settings import Settings
>>> app = create_app(Settings(), service=None)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from stream.api import metrics as am
from stream.api.auth import Unauthorized, insecure_bind
from stream.api.health import default_checks, make_router
from stream.api.limits import BodySizeLimit
from stream.api.live import LIVE, LiveStats
from stream.api.protocol import (
    ErrorBody,
    ErrorDetail,
    ErrorType,
    FeedbackPublisher,
    ReadinessCheck,
    ScoringService,
)
from stream.api.router import router as v1_router
from stream.api.serving import ApiServing

if TYPE_CHECKING:
    from infra.settings import Settings

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
DASHBOARD = STATIC / "dashboard.html"

_STATUS_TYPES: dict[int, ErrorType] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "unavailable",
}


def _error_response(body: ErrorBody, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        body.model_dump(mode="json"), status_code=body.error.status, headers=dict(headers or {})
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        bad_json = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if bad_json:  # a body that is not JSON at all is undecodable (400), not invalid (422)
            ctx = bad_json[0].get("ctx") or {}
            return _error_response(
                ErrorBody.of(400, "bad_request", f"the body is not JSON: {ctx.get('error', '')}")
            )
        details = [
            ErrorDetail(
                loc=[str(x) if not isinstance(x, int) else x for x in e.get("loc", ())],
                msg=str(e.get("msg", "")),
                type=str(e.get("type", "")),
            )
            for e in exc.errors()
        ]
        return _error_response(
            ErrorBody.of(422, "validation_error", f"{len(details)} validation error(s)", details)
        )

    @app.exception_handler(Unauthorized)
    async def on_unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        return _error_response(
            ErrorBody.of(401, "unauthorized", str(exc)), {"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _STATUS_TYPES.get(exc.status_code, "http_error")
        status = exc.status_code if 400 <= exc.status_code <= 599 else 500
        return _error_response(
            ErrorBody.of(status, kind, str(exc.detail)), getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def on_any(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error_response(ErrorBody.of(500, "internal_error", type(exc).__name__))


_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


def method_label(method: str) -> str:
    """``method``, or ``other`` for a non-standard one (clients choose it: unbounded).

    >>> method_label("GET"), method_label("X1")
    ('GET', 'other')
    """
    return method if method in _METHODS else "other"


class _HttpMetrics:
    """ASGI middleware counting requests by route template (bounded labels)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            # path_format: "/v1/users/{user_id}", without the ":path" converter
            template = getattr(route, "path_format", None) or "unmatched"
            am.HTTP_REQUESTS.labels(
                route=template, method=method_label(scope.get("method", "")), status=str(status[0])
            ).inc()
            am.HTTP_LATENCY.labels(route=template).observe(time.perf_counter() - t0)


def _init_series() -> None:
    """Export zero-valued series from the start (so ``/metrics`` is complete at once)."""
    from prometheus_client import disable_created_metrics

    from infra import metrics as im
    from infra.topics import INPUT_TOPICS

    disable_created_metrics()
    for topic in INPUT_TOPICS:
        im.EVENTS_PROCESSED.labels(topic=topic)
    for mode in im.MODES:
        im.REWARDS.labels(mode=mode)
        im.REWARD_LATENCY.labels(mode=mode)


def create_app(
    settings: Settings,
    service: ScoringService,
    *,
    publisher: FeedbackPublisher | None = None,
    readiness: Mapping[str, ReadinessCheck] | None = None,
    live: LiveStats | None = None,
    lag_group: str | None = None,
    lag_interval_s: float = 5.0,
) -> FastAPI:
    """Build the API around an open service.

    Parameters
    ----------
    settings
        ``settings.api`` gives the token and the body limit.
    service
        The shared :class:`~stream.service.PgenrmService` (or anything with
        ``serve``, ``user`` and ``prototypes``).
    publisher
        Publishes ``POST /v1/feedback`` events (and ``POST /v1/profiles`` ones
        when it has ``publish_profile``); None answers 503 there.
    readiness
        Named checks for ``/readyz``; default: broker, store and model
        (:func:`stream.api.health.default_checks`).
    live
        The live statistics to show and feed (default: :data:`stream.api.live.LIVE`).
    lag_group
        Consumer group whose lag to measure every ``lag_interval_s`` while
        the app runs (None: no lag probe).
    """
    live = live if live is not None else LIVE
    checks = dict(readiness) if readiness is not None else default_checks(settings, service)
    token = settings.api.token.get_secret_value() if settings.api.token else None
    live.set_prototype_source(service.prototypes)
    _init_series()
    am.PROTOTYPE_COLLECTOR.set_source(service.prototypes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()

        def ticker() -> None:
            while not stop.wait(1.0):
                try:
                    live.tick()
                except Exception as exc:  # the dashboard must not take the API down
                    log.debug("live tick failed: %s", exc)

        thread = threading.Thread(target=ticker, name="pgenrm-live", daemon=True)
        thread.start()
        poller = probe = None
        if lag_group:
            from stream.api.lag import LagPoller, LagProbe

            probe = LagProbe(settings, lag_group)
            poller = LagPoller(probe.measure, live.set_lag, interval_s=lag_interval_s).start()
        try:
            yield
        finally:
            stop.set()
            if poller is not None:
                poller.stop()
            if probe is not None:
                probe.close()
            thread.join(timeout=5)

    app = FastAPI(
        title="pgenrm",
        summary="Personalized reward signals from streaming feedback.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.serving = ApiServing(service, publisher=publisher, live=live)
    app.state.api_token = token
    app.state.readiness = checks
    app.state.live = live
    _install_error_handlers(app)
    app.include_router(make_router(lambda request: request.app.state.readiness))
    app.include_router(v1_router)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/dashboard", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(DASHBOARD, media_type="text/html")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    app.add_middleware(BodySizeLimit, max_bytes=settings.api.max_body_bytes)
    app.add_middleware(_HttpMetrics)
    return app


@dataclass
class ServerHandle:
    """A uvicorn server running in a background thread."""

    server: Any
    thread: threading.Thread
    host: str
    port: int
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask uvicorn to exit (finishing in-flight requests) and join the thread."""
        if self._stopped:
            return
        self._stopped = True
        self.server.should_exit = True
        self.thread.join(timeout=timeout_s)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout=timeout_s)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(app: FastAPI, settings: Settings, *, timeout_s: float = 30.0) -> ServerHandle:
    """Run ``app`` on ``settings.api.host:port`` in a daemon thread; return once listening.

    Port 0 picks a free port (see ``ServerHandle.port``). Logs a warning when the
    API binds beyond loopback without a token.

    Raises
    ------
    ConfigurationError
        The server did not start listening within ``timeout_s`` (port taken?).
    """
    import uvicorn

    from infra.exceptions import ConfigurationError

    host, port = settings.api.host, settings.api.port
    token = settings.api.token.get_secret_value() if settings.api.token else None
    if insecure_bind(host, token):
        log.warning(
            "the API listens on %s without a token: anyone who can reach port %s can score "
            "and publish feedback; set PGENRM_API_TOKEN",
            host,
            port,
        )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="pgenrm-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise ConfigurationError(f"the API did not start on {host}:{port}")
        time.sleep(0.02)
    bound = port
    for srv in getattr(server, "servers", []):
        for sock in getattr(srv, "sockets", []) or []:
            bound = int(sock.getsockname()[1])
            break
    return ServerHandle(server=server, thread=thread, host=host, port=bound)


@dataclass
class ApiRuntime:
    """What :func:`start_api` started: the server and the feedback publisher."""

    handle: ServerHandle
    publisher: FeedbackPublisher | None

    @property
    def url(self) -> str:
        return self.handle.url

    def stop(self) -> None:
        """Stop the server, then close the publisher's producer. Idempotent."""
        self.handle.stop()
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None


def start_api(
    settings: Settings,
    service: ScoringService,
    *,
    group_id: str | None = None,
    require_model: bool = True,
    persona_queue_depth: Callable[[], int] | None = None,
    live: LiveStats | None = None,
) -> ApiRuntime:
    """Everything ``pgenrm up`` needs in one call: app, Kafka publisher, lag probe, server.

    Parameters
    ----------
    settings
        ``settings.api`` (host, port, token, body limit) and ``settings.broker``.
    service
        The worker's open :class:`~stream.service.PgenrmService` (shared).
    group_id
        The worker's consumer group (faust app id), for the lag probe.
    require_model
        False when the worker serves prior-only rewards (``--no-backend``).
    persona_queue_depth
        Returns the persona refresher's queue length (read once a second).
    """
    from stream.api.health import default_checks
    from stream.api.publisher import KafkaFeedbackPublisher

    live = live if live is not None else LIVE
    if persona_queue_depth is not None:
        live.set_persona_queue_source(persona_queue_depth)
    publisher = KafkaFeedbackPublisher(settings)
    app = create_app(
        settings,
        service,
        publisher=publisher,
        readiness=default_checks(settings, service, require_model=require_model),
        live=live,
        lag_group=group_id,
    )
    try:
        handle = serve(app, settings)
    except Exception:
        publisher.close()
        raise
    log.warning("pgenrm API on %s (dashboard: %s/dashboard)", handle.url, handle.url)
    return ApiRuntime(handle=handle, publisher=publisher)
