"""The faust-streaming app: three small agents over :class:`~stream.runtime.StreamRuntime`.

``feedback``  ``pgenrm.feedback.v1`` through :class:`~stream.pipeline.FeedbackPipeline`:
              greedy batches are decoded and embedded while the previous one
              is applied exactly once in effect; then PersonaState /
              PrototypeState are published and the users offered to the
              persona refresher. Events are acked by hand (``stream.noack()``)
              only after their batch is durable in the store and flushed, so
              committed offsets never run ahead of durable state.
``rewards``   ``pgenrm.reward-requests.v1`` one by one: answer once, publish
              RewardResult keyed by user.
``profiles``  ``pgenrm.profiles.v1`` one by one: register the user once per
              event_id (``prototype`` mode before any feedback), publish
              PersonaState (:mod:`stream.profiles`).
refresher     a background task (not an agent): debounced persona generation.

Topics are consumed as raw bytes (``value_serializer="raw"``) because pgenrm
validates and dead-letters itself (:mod:`infra.codec`). Input topics are keyed
by ``user_id``, so per-user order is the partition order; no repartitioning.
No faust Tables: their changelog recovery loses records on tansu (bug B); all
state lives in the store. Session timeout 6 s / heartbeat 2 s (tansu bug A).

Examples
--------
>>> from infra.settings import Settings
>>> app = create_app(Settings(), app_id="pgenrm-doc")  # doctest: +SKIP
>>> sorted(app.agents)  # doctest: +SKIP
['stream.app.feedback', 'stream.app.profiles', 'stream.app.rewards']
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence
from typing import Any

from infra.settings import Settings
from infra.topics import FEEDBACK, PROFILES, REWARD_REQUESTS
from stream.config import StreamConfig
from stream.pipeline import FeedbackPipeline
from stream.profiles import handle_profile
from stream.runtime import Record, StreamRuntime

log = logging.getLogger(__name__)


class FaustPublisher:
    """A :class:`~stream.runtime.Publisher` over the app's producer (raw bytes)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._topics: dict[str, Any] = {}
        self._pending: list[asyncio.Future[Any]] = []

    def _topic(self, name: str) -> Any:
        t = self._topics.get(name)
        if t is None:
            t = self.app.topic(
                name,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
            )
            self._topics[name] = t
        return t

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        fut = await self._topic(topic).send(
            key=key, value=value, headers=list(headers) if headers else None
        )
        self._pending.append(fut)

    async def flush(self) -> None:
        """Wait until everything sent so far is acknowledged by the broker."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)


def _record(event: Any) -> Record:
    m = event.message
    ts = getattr(m, "timestamp", None)
    return Record(m.topic, m.partition, m.offset, m.key, m.value, float(ts) if ts else None)


def transport_class(fetch_max_wait_ms: int) -> type:
    """faust's aiokafka transport with the worker consumer's ``fetch_max_wait_ms`` set.

    faust-streaming builds the worker's ``AIOKafkaConsumer`` with
    ``fetch_max_wait_ms=1500`` and no setting to change it; tansu holds an
    empty Fetch for that long even when records arrive, which put hundreds of
    ms between a produced request and the worker seeing it. The consumer keeps
    the value in ``_fetch_max_wait_ms`` until ``start()`` builds its fetcher,
    so it is replaced right after construction (aiokafka is pinned).
    """
    from faust.transport.drivers import aiokafka as drv

    class ConsumerThread(drv.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            if not hasattr(consumer, "_fetch_max_wait_ms"):  # pragma: no cover - aiokafka moved
                raise RuntimeError("aiokafka has no _fetch_max_wait_ms; check the pinned version")
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class Consumer(drv.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(drv.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


def create_app(
    settings: Settings,
    *,
    config: StreamConfig | None = None,
    runtime: StreamRuntime | None = None,
    app_id: str = "pgenrm",
) -> Any:
    """Build the faust app (nothing connects until a worker starts it).

    Parameters
    ----------
    settings
        Broker address, data and model locations.
    config
        Stream tuning (batch sizes, refresher); default from ``PGENRM_STREAM_*``.
    runtime
        A prepared runtime (tests inject one with an in-memory publisher);
        default: one publishing through this app's producer.
    app_id
        Faust app id, which is also the consumer group id (use a fresh one per
        test run: tansu bug C).
    """
    import faust

    config = config or StreamConfig()
    web = config.web_port is not None
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=[f"kafka://{u}" for u in settings.broker.bootstrap],
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        web_enabled=web,
        web_port=config.web_port or 6066,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=2.0,
        topic_partitions=settings.broker.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        producer_acks=-1,
        # room for a dead letter of max_message_bytes plus its headers
        producer_max_request_size=settings.broker.max_message_bytes + 64 * 1024,
    )
    app.transport = transport_class(config.fetch_max_wait_ms)(app.conf.broker_consumer, app)
    if runtime is None:
        publisher = FaustPublisher(app)
        runtime = StreamRuntime(settings, publisher=publisher, config=config, group_id=app_id)
    app.pgenrm_runtime = runtime  # type: ignore[attr-defined]

    def raw_topic(name: str) -> Any:
        return app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    crashing: set[asyncio.Future[None]] = set()

    def crash_on_failure(task: asyncio.Future[None]) -> None:
        # a stage failed outside the per-event retry (the broker refused the outputs, the
        # store could not open): its batch stays unacked, so crash the worker now and let
        # its restart re-consume from the committed offsets
        exc = None if task.cancelled() else task.exception()
        if exc is None:
            return
        log.error("feedback pipeline failed: %r; crashing the worker", exc)
        runtime.counters["pipeline_failures"] += 1
        crashing.add(asyncio.ensure_future(app.crash(exc)))

    @app.agent(raw_topic(FEEDBACK), name="feedback")
    async def feedback(stream: Any) -> Any:
        manual = stream.noack()  # acked by the pipeline once the batch is durable
        pipeline = FeedbackPipeline(
            runtime, max_batch=config.feedback_batch, prepare_ahead=config.prepare_ahead
        )
        running = asyncio.ensure_future(pipeline.run())
        running.add_done_callback(crash_on_failure)
        try:
            async for event in manual.events():
                await pipeline.put(_record(event), functools.partial(manual.ack, event))
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running

    @app.agent(raw_topic(REWARD_REQUESTS), name="rewards")
    async def rewards(stream: Any) -> Any:
        async for event in stream.events():
            result = await runtime.handle_request(_record(event))
            yield result

    @app.agent(raw_topic(PROFILES), name="profiles")
    async def profiles(stream: Any) -> Any:
        async for event in stream.events():
            yield await handle_profile(runtime, _record(event))

    @app.task
    async def start_runtime() -> None:
        await runtime.start()
        log.info("pgenrm runtime ready")

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked_users(app: Any, revoked: Any, **kwargs: Any) -> None:
        # cached user states are only valid while this worker owns their partitions
        await runtime.forget_users()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def forget_before_assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
        # a batch applied during the revocation may have cached a user that moved
        await runtime.forget_users()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_runtime(app: Any, **kwargs: Any) -> None:
        await runtime.publisher.flush()
        await runtime.stop()

    return app
