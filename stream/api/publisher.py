"""The feedback publisher behind ``POST /v1/feedback``: a kafka-python producer.

Events go to ``pgenrm.feedback.v1`` keyed by ``user_id`` (so one user's events
stay ordered in one partition) through :func:`infra.kafka.produce`. ``publish``
waits for the broker's acknowledgement, so a 202 means the event is in the log.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from infra.contracts import FeedbackEvent
from infra.exceptions import BrokerError
from infra.topics import FEEDBACK
from stream.api.protocol import FeedbackAccepted

if TYPE_CHECKING:
    from infra.settings import Settings


class KafkaFeedbackPublisher:
    """Publishes feedback with a lazily created, shared ``KafkaProducer``.

    Parameters
    ----------
    settings
        Broker connection settings.
    topic
        Destination topic (default ``pgenrm.feedback.v1``).
    timeout_s
        How long to wait for the broker's acknowledgement.
    """

    def __init__(self, settings: Settings, *, topic: str = FEEDBACK, timeout_s: float = 10.0):
        self.settings = settings
        self.topic = topic
        self.timeout_s = timeout_s
        self._producer: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._producer is None:
                from infra.kafka import make_producer

                self._producer = make_producer(self.settings, client_id="pgenrm-api")
            return self._producer

    def publish(self, event: FeedbackEvent) -> FeedbackAccepted:
        """Send ``event`` and wait for the acknowledgement.

        Raises
        ------
        BrokerError
            The broker is unreachable or did not acknowledge in time.
        """
        from kafka.errors import KafkaError

        from infra.kafka import produce

        try:
            meta = produce(self._get(), self.topic, event).get(timeout=self.timeout_s)
        except (KafkaError, OSError) as exc:
            raise BrokerError(f"could not publish feedback to {self.topic}: {exc}") from exc
        return FeedbackAccepted(
            event_id=event.event_id,
            user_id=event.user_id,
            topic=meta.topic,
            partition=meta.partition,
            offset=meta.offset,
        )

    def connected(self) -> bool:
        """True when the producer's bootstrap connection is up (a readiness check)."""
        try:
            return bool(self._get().bootstrap_connected())
        except (BrokerError, OSError):
            return False

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None
