"""Liveness and readiness: ``GET /healthz`` and ``GET /readyz``.

``/healthz`` answers 200 while the process can answer HTTP at all (a failing
liveness probe means *restart me*). ``/readyz`` answers 200 only when every
dependency is usable, else 503 with the failing checks (*take me out of
service*): the broker answers a metadata request, the store is open and
readable, and the model is loaded. Both are unauthenticated and cheap, so they
serve as compose healthchecks::

    healthcheck:
      test: ["CMD", "curl", "-fsS", "http://127.0.0.1:8080/readyz"]

Checks are plain callables returning a bool or a :class:`CheckResult`; a check
that raises counts as failed, with the exception as its detail.

Examples
--------
>>> run_checks({"ok": lambda: True, "bad": lambda: 1 / 0}).checks["bad"].detail
'ZeroDivisionError: division by zero'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from stream.api.protocol import CheckResult, Liveness, Readiness, ReadinessCheck

if TYPE_CHECKING:
    from infra.settings import Settings


def run_checks(checks: Mapping[str, ReadinessCheck]) -> Readiness:
    """Run every check (exceptions count as failures)."""
    results: dict[str, CheckResult] = {}
    for name, check in checks.items():
        try:
            value = check()
            results[name] = value if isinstance(value, CheckResult) else CheckResult(ok=bool(value))
        except Exception as exc:
            results[name] = CheckResult(ok=False, detail=f"{type(exc).__name__}: {exc}")
    return Readiness(ready=all(r.ok for r in results.values()), checks=results)


class Cached:
    """A check whose result is reused for ``ttl_s`` (keeps probes cheap)."""

    def __init__(self, check: ReadinessCheck, ttl_s: float = 2.0) -> None:
        self._check = check
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._at = -1e18
        self._value: CheckResult | bool = False

    def __call__(self) -> CheckResult | bool:
        with self._lock:
            if time.monotonic() - self._at > self._ttl:
                try:
                    self._value = self._check()
                except Exception as exc:
                    self._value = CheckResult(ok=False, detail=f"{type(exc).__name__}: {exc}")
                self._at = time.monotonic()
            return self._value


def broker_check(settings: Settings, timeout_s: float = 2.0) -> ReadinessCheck:
    """The broker answers a Kafka metadata request."""
    from infra.broker import metadata_ready

    def check() -> CheckResult:
        boot = settings.broker.bootstrap
        if not boot:
            return CheckResult(ok=False, detail="no bootstrap servers configured")
        ok = metadata_ready(boot[0], timeout_s=timeout_s)
        return CheckResult(ok=ok, detail=boot[0] if ok else f"no metadata from {boot[0]}")

    return Cached(check)


def store_check(service: Any) -> ReadinessCheck:
    """The store is open and answers a read (``service.prototypes()``)."""

    def check() -> CheckResult:
        if getattr(service, "_closed", False):
            return CheckResult(ok=False, detail="service closed")
        n = len(service.prototypes())
        return CheckResult(ok=True, detail=f"{n} prototypes")

    return check


def model_check(service: Any, *, load: bool = False, required: bool = True) -> ReadinessCheck:
    """The generative model is loaded (with ``load``, loading it if needed).

    ``PgenrmService`` loads its backend lazily; ``pgenrm up`` warms it at start
    (``service.scorer``), so readiness turns green once the model is in memory.
    With ``required=False`` (prior-only serving, ``pgenrm up --no-backend``) the
    check passes and says so.
    """

    def check() -> CheckResult:
        if not required:
            return CheckResult(ok=True, detail="not required (prior-only rewards)")
        backend = service.backend if load else getattr(service, "_backend", None)
        if backend is None:
            return CheckResult(ok=False, detail="model not loaded yet")
        return CheckResult(ok=True, detail=str(getattr(backend, "model_id", "loaded")))

    return check


def default_checks(
    settings: Settings, service: Any, *, require_model: bool = True
) -> dict[str, ReadinessCheck]:
    """broker, store and model checks for a service built from ``settings``."""
    return {
        "broker": broker_check(settings),
        "store": store_check(service),
        "model": model_check(service, required=require_model),
    }


def make_router(checks_of: Callable[[Request], Mapping[str, ReadinessCheck]]) -> APIRouter:
    """``/healthz`` and ``/readyz``; ``checks_of`` finds the checks for a request."""
    router = APIRouter(tags=["health"])
    started = time.monotonic()

    @router.get("/healthz", response_model=Liveness, summary="Liveness: the process is alive")
    def healthz() -> Liveness:
        return Liveness(uptime_s=time.monotonic() - started)

    @router.get(
        "/readyz",
        response_model=Readiness,
        summary="Readiness: broker reachable, store open, model loaded",
        responses={503: {"model": Readiness, "description": "A dependency is not ready"}},
    )
    def readyz(request: Request) -> JSONResponse:
        result = run_checks(checks_of(request))
        return JSONResponse(result.model_dump(), status_code=200 if result.ready else 503)

    return router
