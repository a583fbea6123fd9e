"""Consumer lag per partition, measured from outside the worker.

``lag = log end - committed offset`` per partition of the worker's input
topics, for one consumer group. Committed offsets come from OffsetFetch
(``KafkaAdminClient.list_group_offsets``); Kafka's convention is that
the committed offset is the *next* offset to read, so a caught-up group has
``committed == log end`` (faust-streaming follows it since PR #33).

The log end is the catch. tansu answers ListOffsets(LATEST) with *base offset of
the last stored batch + 1* (stack.md, bug B), which is at or below the true
end, so ``end_offsets()`` would under-report lag and can report 0 while records
wait. The probe therefore takes the end from the **Fetch highwater**: it keeps
one group-less consumer assigned to every partition, seeks it to the
ListOffsets answer (at or just before the end, so the fetch returns at most the
last batch) and polls once; each partition's fetch answer carries the true
highwater. Partitions whose fetch did not answer in time fall back to the
ListOffsets value and are marked ``source="list_offsets"`` (a lower bound);
lag is clamped at 0 either way. Results go to ``pgenrm_consumer_lag{topic,
partition}`` (infra.metrics) and to the dashboard.

Examples
--------
>>> lag_of(committed=7, log_end=10), lag_of(committed=None, log_end=4), lag_of(12, 10)
(3, 4, 0)
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from infra import metrics as im
from infra.topics import INPUT_TOPICS
from stream.api import metrics as am
from stream.api.protocol import PartitionLag

if TYPE_CHECKING:
    from infra.settings import Settings

log = logging.getLogger(__name__)


def lag_of(committed: int | None, log_end: int) -> int:
    """Records not yet consumed; a group that never committed lags by the whole log."""
    return max(0, log_end - (committed if committed is not None else 0))


class LagProbe:
    """Measures one consumer group's lag on ``topics``.

    Parameters
    ----------
    settings
        Where the broker is.
    group_id
        The worker's consumer group.
    topics
        Topics to watch (default: the worker's input topics).
    fetch_timeout_s
        How long one measurement polls for Fetch highwaters.
    rediscover_s
        How often to look for partitions added since (topics created after the
        API started, more partitions); while none is found, every measurement looks.
    """

    def __init__(
        self,
        settings: Settings,
        group_id: str,
        *,
        topics: Sequence[str] = INPUT_TOPICS,
        fetch_timeout_s: float = 2.0,
        rediscover_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.topics = list(topics)
        self.fetch_timeout_s = fetch_timeout_s
        self.rediscover_s = rediscover_s
        self._discovered_at = float("-inf")
        self._consumer: Any = None
        self._admin: Any = None
        self._lock = threading.Lock()

    def _clients(self) -> tuple[Any, Any]:
        from infra.kafka import admin_client, make_consumer

        if self._admin is None:
            self._admin = admin_client(self.settings, client_id="pgenrm-lag")
        if self._consumer is None:
            self._consumer = make_consumer(
                self.settings,
                group_id=None,
                client_id="pgenrm-lag",
                enable_auto_commit=False,
                max_partition_fetch_bytes=65536,
            )
            self._discovered_at = float("-inf")
        stale = time.monotonic() - self._discovered_at >= self.rediscover_s
        if stale or not self._consumer.assignment():
            self._discover(self._consumer)
        return self._admin, self._consumer

    def _discover(self, consumer: Any) -> None:
        """Assign every partition of ``self.topics`` that the broker's metadata lists."""
        from kafka import TopicPartition

        tps = {
            TopicPartition(topic, p)
            for topic in self.topics
            for p in consumer.partitions_for_topic(topic) or ()
        }
        if tps != set(consumer.assignment()):
            consumer.assign(sorted(tps))
        self._discovered_at = time.monotonic()

    def measure(self) -> list[PartitionLag]:
        """One measurement of every partition (also sets ``pgenrm_consumer_lag``)."""
        with self._lock:
            try:
                return self._measure()
            except Exception:
                am.LAG_PROBE_FAILURES.inc()
                self._close_clients()
                raise

    def _measure(self) -> list[PartitionLag]:
        admin, consumer = self._clients()
        tps = list(consumer.assignment())
        if not tps:
            return []
        committed_meta = admin.list_group_offsets({self.group_id: tps}).get(self.group_id, {})
        committed = {
            tp: int(meta.offset)
            for tp, meta in committed_meta.items()
            if meta is not None and meta.offset is not None and meta.offset >= 0
        }
        listed = {tp: int(off) for tp, off in consumer.end_offsets(tps).items()}
        for tp in tps:
            consumer.seek(tp, max(0, listed.get(tp, 0) - 1))
        highwater: dict[Any, int] = {}
        deadline = time.monotonic() + self.fetch_timeout_s
        while len(highwater) < len(tps) and time.monotonic() < deadline:
            consumer.poll(timeout_ms=100, max_records=500)
            for tp in tps:
                hw = consumer.highwater(tp)
                if hw is not None:
                    highwater[tp] = int(hw)
        out: list[PartitionLag] = []
        for tp in sorted(tps, key=lambda t: (t.topic, t.partition)):
            source: Literal["fetch", "list_offsets"]
            if tp in highwater:
                end, source = max(highwater[tp], listed.get(tp, 0)), "fetch"
            else:
                end, source = listed.get(tp, 0), "list_offsets"
            c = committed.get(tp)
            lag = lag_of(c, end)
            im.set_lag(tp.topic, tp.partition, lag)
            out.append(
                PartitionLag(
                    topic=tp.topic,
                    partition=tp.partition,
                    committed=c,
                    log_end=end,
                    lag=lag,
                    source=source,
                )
            )
        return out

    def _close_clients(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self._consumer = self._admin = None

    def close(self) -> None:
        with self._lock:
            self._close_clients()


class LagPoller:
    """Runs ``probe.measure`` every ``interval_s`` in a daemon thread, feeding ``sink``."""

    def __init__(
        self,
        probe: Callable[[], list[PartitionLag]],
        sink: Callable[[list[PartitionLag]], None],
        *,
        interval_s: float = 5.0,
    ) -> None:
        self._probe = probe
        self._sink = sink
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pgenrm-lag", daemon=True)

    def start(self) -> LagPoller:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sink(self._probe())
            except Exception as exc:  # counted in pgenrm_lag_probe_failures_total
                log.debug("lag probe failed: %s", exc)
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
