"""The publisher behind ``POST /v1/feedback`` and ``POST /v1/profiles``: a kafka-python producer.

Feedback goes to ``pgenrm.feedback.v1`` and profiles to ``pgenrm.profiles.v1``,
keyed by ``user_id`` (so one user's events stay ordered in one partition)
through :func:`infra.kafka.produce`. Both wait for the broker's
acknowledgement, so a 202 means the event is in the log. A body under
``api.max_body_bytes`` can still make a record over ``broker.max_message_bytes``
(defaults such as ``timestamp`` are added); that is the client's to fix (413),
not a broker outage (503).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, TypeVar

from infra.contracts import Contract, FeedbackEvent, UserProfile
from infra.exceptions import BrokerError, InvalidEventError
from infra.topics import FEEDBACK, PROFILES
from stream.api.protocol import FeedbackAccepted, ProfileAccepted

if TYPE_CHECKING:
    from infra.settings import Settings

A = TypeVar("A", bound=FeedbackAccepted)


class KafkaFeedbackPublisher:
    """Publishes feedback and profiles with a lazily created, shared ``KafkaProducer``.

    Parameters
    ----------
    settings
        Broker connection settings.
    topic
        Destination of feedback (default ``pgenrm.feedback.v1``).
    profile_topic
        Destination of profiles (default ``pgenrm.profiles.v1``).
    timeout_s
        How long to wait for the broker's acknowledgement.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str = FEEDBACK,
        profile_topic: str = PROFILES,
        timeout_s: float = 10.0,
    ):
        self.settings = settings
        self.topic = topic
        self.profile_topic = profile_topic
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
        InvalidEventError
            ``oversize``: the record is larger than the producer's (or broker's) limit.
        """
        return self._publish(self.topic, event, FeedbackAccepted)

    def publish_profile(self, profile: UserProfile) -> ProfileAccepted:
        """Send ``profile`` and wait for the acknowledgement (raises as :meth:`publish`)."""
        return self._publish(self.profile_topic, profile, ProfileAccepted)

    def _publish(self, topic: str, event: FeedbackEvent | UserProfile, receipt: type[A]) -> A:
        """Send ``event`` and say where it landed, as a ``receipt``."""
        meta = self._send(topic, event)
        return receipt(
            event_id=event.event_id,
            user_id=event.user_id,
            topic=meta.topic,
            partition=meta.partition,
            offset=meta.offset,
        )

    def _send(self, topic: str, event: Contract) -> Any:
        """Produce ``event`` keyed by user and return the broker's record metadata."""
        from kafka.errors import KafkaError, MessageSizeTooLargeError

        from infra.kafka import produce

        try:
            return produce(self._get(), topic, event).get(timeout=self.timeout_s)
        except MessageSizeTooLargeError as exc:  # raised by send() itself, or by the broker
            kind = type(event).__name__
            detail = f"{kind} is too large for {topic} ({exc})"
            raise InvalidEventError("oversize", detail, topic) from exc
        except (KafkaError, OSError) as exc:
            kind = type(event).__name__
            raise BrokerError(f"could not publish {kind} to {topic}: {exc}") from exc

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
