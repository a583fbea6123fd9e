"""pgenrm's HTTP API, Prometheus endpoint and live dashboard.

Heavy parts (uvicorn, kafka) are imported inside functions; importing this
package costs FastAPI and prometheus_client only.

>>> from stream.api import create_app, serve, LIVE
"""

from __future__ import annotations

from stream.api.app import ApiRuntime, ServerHandle, create_app, serve, start_api
from stream.api.live import LIVE, LiveStats

__all__ = [
    "LIVE",
    "ApiRuntime",
    "LiveStats",
    "ServerHandle",
    "create_app",
    "serve",
    "start_api",
]
