"""Bearer-token authentication for ``/v1/*`` (when ``PGENRM_API_TOKEN`` is set).

Without a configured token every route is open (and :func:`insecure_bind`
warns when that API listens beyond loopback). With one, protected routes need
``Authorization: Bearer <token>``; a missing or wrong token gets a typed 401
with ``WWW-Authenticate: Bearer``. Tokens are compared in constant time.

Examples
--------
>>> insecure_bind("0.0.0.0", None), insecure_bind("127.0.0.1", None), insecure_bind("::", "t")
(True, False, False)
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

bearer = HTTPBearer(auto_error=False, description="PGENRM_API_TOKEN, when one is configured")


class Unauthorized(Exception):
    """Raised by :func:`require_token`; the app answers a typed 401."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def insecure_bind(host: str, token: str | None) -> bool:
    """True when the API would listen beyond loopback without a token."""
    return not token and not is_loopback(host)


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """FastAPI dependency: check the bearer token if ``app.state.api_token`` is set."""
    expected: str | None = getattr(request.app.state, "api_token", None)
    if not expected:
        return
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token")
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise Unauthorized("wrong bearer token")
