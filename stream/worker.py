"""Run the faust worker in this process (``pgenrm up``), with the embedded broker if asked.

The worker handles SIGINT/SIGTERM itself: it stops the agents, commits what
was acked, runs the app's shutdown hook (flush + close the store) and returns.
Then the embedded broker (if this process started it) is stopped.
"""

from __future__ import annotations

import logging
from typing import Any

from infra.settings import Settings
from stream.config import StreamConfig

log = logging.getLogger(__name__)


def run_worker(
    settings: Settings,
    *,
    config: StreamConfig | None = None,
    app_id: str = "pgenrm",
    loglevel: str = "warning",
) -> int:
    """Start (embedded broker), ensure topics, run the worker until stopped; exit code."""
    import faust

    from infra.broker import EmbeddedBroker
    from infra.kafka import ensure_topics
    from stream.app import create_app

    broker: EmbeddedBroker | None = None
    code: Any = 0
    try:
        if settings.broker.embedded:
            broker = EmbeddedBroker.from_settings(settings).start()
            log.warning("embedded tansu broker on %s", broker.bootstrap)
        ensure_topics(settings)
        app = create_app(settings, config=config, app_id=app_id)
        worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            code = exc.code or 0
    finally:
        if broker is not None:
            broker.stop()
    return int(code) if isinstance(code, int) else 1
