"""What the faust agents do with records, without faust: decode, apply, publish.

:class:`StreamRuntime` is the glue between raw records and
:class:`~stream.service.PgenrmService`. It validates every record through
:func:`infra.codec.decode` and dead-letters what fails (original bytes, reason
headers), runs the service in thread executors (so the event loop keeps
heartbeating while models run), publishes PersonaState / PrototypeState /
RewardResult through a :class:`Publisher`, and feeds the persona refresher.
A feedback batch has two halves with a thread each, so that
:mod:`stream.pipeline` can overlap them: :meth:`StreamRuntime.prepare_feedback`
(decode, embed; no state) and :meth:`StreamRuntime.apply_prepared` (apply,
publish, flush). The faust app (:mod:`stream.app`) only adapts faust events to
:class:`Record`.

Dead-letter reasons here: the codec's (``invalid_json``, ``schema_violation``,
``unknown_schema_version``, ``oversize``, ``candidate_count``), plus
``duplicate_id`` for a feedback ``event_id`` already applied or a
``request_id`` already answered, and ``processing_error`` for one event that
fails on its own (a failing batch is retried event by event to isolate it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from infra.codec import dead_letter_message, decode
from infra.contracts import Contract, FeedbackEvent, RewardRequest, RewardResult
from infra.exceptions import InvalidEventError
from infra.hardware import name_os_thread
from infra.heap import GcPause, GcPauseRecorder, freeze_loaded_objects
from infra.kafka import encode_value
from infra.metrics import count_dead_lettered, count_processed, observe_gc_pause
from infra.settings import Settings
from infra.topics import FEEDBACK, PERSONAS, PROTOTYPES, REWARD_REQUESTS, REWARDS
from prototypes.embedder import TextVectors
from prototypes.protocol import UserState
from prototypes.stores.cache import CachedUserStore
from stream.api.live import LIVE
from stream.config import StreamConfig
from stream.refresher import PersonaRefresher
from stream.service import ApplyOutcome, PgenrmService, StageClock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One consumed record (faust's ``event.message`` reduced to what we need)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None
    """The record's Kafka timestamp in epoch seconds (producer create time), if known."""


@dataclass(frozen=True)
class PreparedFeedback:
    """A decoded and embedded feedback batch, waiting to be applied."""

    size: int
    """Records in the batch, dead-lettered ones included."""
    good: list[tuple[Record, FeedbackEvent]]
    """The records that decoded, with their events, in offset order."""
    vectors: TextVectors | None
    """The events' texts embedded (None when the embedder failed: embed when applied)."""
    lag_ms: float | None
    stage_ms: dict[str, float]
    """Time spent preparing, per stage (``decode``, ``embed``)."""
    ready_at: float = field(default_factory=time.perf_counter)
    """``time.perf_counter()`` when preparing ended (the wait for the apply stage starts)."""


class Publisher(Protocol):
    """Sends bytes to a topic and waits until the broker has them."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        """Queue one record (may return before the broker acknowledged it)."""
        ...

    async def flush(self) -> None:
        """Wait until every queued record is acknowledged."""
        ...


class MemoryPublisher:
    """A :class:`Publisher` that keeps what it was given (unit tests, ``--dry-run``)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        self.sent.append((topic, key, value, list(headers or [])))

    async def flush(self) -> None:
        return None

    def on(self, topic: str) -> list[bytes | None]:
        return [v for t, _, v, _ in self.sent if t == topic]


class StreamRuntime:
    """Feedback batches and reward requests in, published states and rewards out.

    Parameters
    ----------
    settings, config
        pgenrm settings and stream tuning.
    open_service
        Builds the :class:`PgenrmService` (called once, in a worker thread, on
        first use, so the worker joins its group before models load).
    publisher
        Where results, states and dead letters go.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        publisher: Publisher,
        config: StreamConfig | None = None,
        open_service: Callable[[], PgenrmService] | None = None,
        service: PgenrmService | None = None,
        group_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self._api: Any = None
        self.config = config or StreamConfig()
        self.publisher = publisher
        self._open_service = open_service or (
            lambda: PgenrmService.open(settings, config=self.config)
        )
        self._service = service
        self._open_lock = asyncio.Lock()
        self.feedback_pool = cf.ThreadPoolExecutor(
            1, thread_name_prefix="pgenrm-feedback", initializer=name_os_thread
        )
        # one thread per batch the pipeline prepares at once (each waits on the shard pool)
        self.embed_pool = cf.ThreadPoolExecutor(
            self.config.prepare_ahead, thread_name_prefix="pgenrm-embed", initializer=name_os_thread
        )
        self.reward_pool = cf.ThreadPoolExecutor(
            1, thread_name_prefix="pgenrm-reward", initializer=name_os_thread
        )
        self.ledger_pool = cf.ThreadPoolExecutor(
            1, thread_name_prefix="pgenrm-ledger", initializer=name_os_thread
        )
        self._marks: set[asyncio.Future[None]] = set()
        self.refresher: PersonaRefresher | None = None
        self._refresher_task: asyncio.Task[None] | None = None
        self.counters: Counter[str] = Counter()
        self._last_log = time.monotonic()
        self._last_applied = 0
        self.stage_ms: defaultdict[str, float] = defaultdict(float)
        """Cumulative ms per ``<path>.<stage>`` (feedback batches, reward requests, and
        ``gc<generation>.pause``: garbage collections while the runtime was started)."""
        self.gc_pauses = GcPauseRecorder()
        self._gc_report_task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------
    async def service(self) -> PgenrmService:
        """The service, opened on first use (in a thread; models load slowly)."""
        if self._service is None:
            async with self._open_lock:
                if self._service is None:
                    loop = asyncio.get_running_loop()
                    if self.config.torch_threads:
                        import torch

                        torch.set_num_threads(self.config.torch_threads)
                    self._service = await loop.run_in_executor(
                        self.feedback_pool, self._open_service
                    )
                    if self.config.load_backend:
                        await loop.run_in_executor(self.reward_pool, self._warm_backend)
                    if self.config.gc_freeze:
                        freeze_loaded_objects()
        return self._service

    def _warm_backend(self) -> None:
        assert self._service is not None
        try:
            _ = self._service.scorer
        except Exception as exc:  # rewards still work prior-only; say why
            self._service.backend_failed(exc)
            self.counters["backend_unavailable"] += 1

    async def start(self) -> None:
        """Open the service, time garbage collections, start the persona refresher (if enabled)."""
        svc = await self.service()
        self.gc_pauses.start()
        if self._gc_report_task is None:  # an idle worker reports its collections too
            self._gc_report_task = asyncio.ensure_future(self._report_gc_pauses_every())
        if self.config.persona_refresh and self.refresher is None:
            self.refresher = PersonaRefresher(
                svc.refresh_persona,
                maxsize=self.config.persona_queue,
                debounce_s=self.config.persona_debounce_s,
                max_wait_s=self.config.persona_max_wait_s,
                on_refreshed=self._publish_persona,
            )
            self._refresher_task = asyncio.ensure_future(self.refresher.run())
        if self.config.api and self._api is None:
            from stream.api.app import start_api

            ref = self.refresher
            self._api = start_api(
                self.settings,
                svc,
                group_id=self.group_id,
                require_model=self.config.load_backend,
                persona_queue_depth=(lambda: len(ref.pending)) if ref else None,
            )
            log.warning("pgenrm API on %s", self._api.url)

    async def stop(self) -> None:
        if self._gc_report_task is not None:
            self._gc_report_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gc_report_task
            self._gc_report_task = None
        self.gc_pauses.stop()
        self._report_gc_pauses()
        log.info("pgenrm counters %s", json.dumps(self.snapshot(), sort_keys=True))
        if self.stage_ms:
            ms = {k: round(v) for k, v in sorted(self.stage_ms.items())}
            log.info("pgenrm stage ms (cumulative) %s", json.dumps(ms))
        if self._api is not None:
            self._api.stop()
            self._api = None
        if self._refresher_task is not None:
            self._refresher_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresher_task
            self._refresher_task = None
        if self._marks:  # answered requests are marked before the store closes
            await asyncio.gather(*list(self._marks), return_exceptions=True)
        if self._service is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.feedback_pool, self._service.close)
            self._service = None
        self.feedback_pool.shutdown(wait=False, cancel_futures=True)
        self.embed_pool.shutdown(wait=False, cancel_futures=True)
        self.reward_pool.shutdown(wait=False, cancel_futures=True)
        self.ledger_pool.shutdown(wait=False, cancel_futures=True)

    async def forget_users(self) -> None:
        """Drop the service's cached user states (on a partition rebalance).

        Runs on the feedback thread, after the batch being applied there.
        """
        if self._service is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.feedback_pool, self._service.forget_users)
            self.counters["user_cache_forgotten"] += 1

    # -- dead letters ---------------------------------------------------------------
    async def dead_letter(self, exc: InvalidEventError) -> None:
        """Send the record's original bytes to ``<topic>.dlq`` with the reason headers.

        A value larger than :meth:`dlq_limit` (an oversize record may be
        anything the broker accepted) is cut to that size and flagged with the
        header ``pgenrm-value-truncated: <original length>``.
        """
        msg = dead_letter_message(exc)
        value, headers = msg.value, list(msg.headers)
        limit = self.dlq_limit()
        if value is not None and len(value) > limit:
            headers.append(("pgenrm-value-truncated", str(len(value)).encode()))
            value = value[:limit]
            self.counters["dlq_truncated"] += 1
        await self.publisher.send(msg.topic, msg.key, value, headers)
        count_dead_lettered(exc.topic, exc.reason)
        self.counters[f"dlq_{exc.reason}"] += 1
        log.info("dead-lettered %s", exc)

    def dlq_limit(self) -> int:
        """Largest dead-letter value kept whole: the broker's message limit."""
        return self.settings.broker.max_message_bytes

    def _decode(self, rec: Record) -> Contract:
        return decode(
            rec.topic,
            rec.value,
            max_bytes=self.settings.broker.max_message_bytes,
            partition=rec.partition,
            offset=rec.offset,
            key=rec.key,
        )

    # -- feedback -----------------------------------------------------------------------
    async def handle_feedback(self, records: Sequence[Record]) -> list[ApplyOutcome]:
        """Validate, apply (exactly once in effect), publish states; DLQ the rest.

        Returns when everything is durable in the store and every output is
        sent, so the caller may then let the offsets be committed. The stream
        runs the two halves, :meth:`prepare_feedback` and
        :meth:`apply_prepared`, overlapped (:mod:`stream.pipeline`).
        """
        return await self.apply_prepared(await self.prepare_feedback(records))

    async def prepare_feedback(self, records: Sequence[Record]) -> PreparedFeedback:
        """Decode (dead-lettering what fails) and embed a batch; touches no state.

        Runs the embedding in its own thread, so it may overlap
        :meth:`apply_prepared` of the previous batch. An embedder failure is
        logged and counted; the batch then embeds again when applied (and an
        event that fails there on its own is dead-lettered).
        """
        svc = await self.service()
        clock = StageClock()
        lag_ms = _lag_ms(records)
        good: list[tuple[Record, FeedbackEvent]] = []
        for rec in records:
            try:
                ev = self._decode(rec)
            except InvalidEventError as exc:
                await self.dead_letter(exc)
                continue
            assert isinstance(ev, FeedbackEvent)
            good.append((rec, ev))
        clock.lap("decode")
        vectors: TextVectors | None = None
        if good:
            loop = asyncio.get_running_loop()
            try:
                vectors = await loop.run_in_executor(
                    self.embed_pool, svc.embed_feedback, [ev for _, ev in good]
                )
            except Exception as exc:
                log.warning("embedding a feedback batch failed (%s); it embeds when applied", exc)
                self.counters["embed_retries"] += 1
        clock.lap("embed")
        return PreparedFeedback(len(records), good, vectors, lag_ms, clock.ms)

    async def apply_prepared(self, batch: PreparedFeedback) -> list[ApplyOutcome]:
        """Apply a prepared batch, publish the states, flush; see :meth:`handle_feedback`."""
        svc = await self.service()
        stages = {**batch.stage_ms, "wait": (time.perf_counter() - batch.ready_at) * 1000.0}
        clock = StageClock()
        good = batch.good
        if not good:
            await self.publisher.flush()
            self._trace("feedback", batch.size, batch.lag_ms, {**stages, **clock.ms}, {})
            return []
        loop = asyncio.get_running_loop()
        events = [ev for _, ev in good]
        positions = [(r.partition, r.offset) for r, _ in good]
        apply_ms: dict[str, float] = {}
        early: list[cf.Future[None]] = []

        def publish_early(outs: list[ApplyOutcome]) -> None:
            # feedback thread, right after the store write: build the messages here,
            # send them on the loop while this thread flushes and checkpoints
            msgs = self._state_messages(svc, outs)
            early.append(asyncio.run_coroutine_threadsafe(self._send_all(msgs), loop))

        on_applied = publish_early if self.config.publish_states else None
        try:
            outcomes, apply_ms = await loop.run_in_executor(
                self.feedback_pool, self._apply, svc, events, positions, on_applied, batch.vectors
            )
        except Exception as exc:
            log.warning("feedback batch failed (%s); retrying event by event", exc)
            self.counters["batch_retries"] += 1
            outcomes = []
            for rec, ev in good:
                try:
                    outcomes += await loop.run_in_executor(
                        self.feedback_pool,
                        svc.apply_feedback,
                        [ev],
                        [(rec.partition, rec.offset)],
                    )
                except Exception as one:
                    await self.dead_letter(
                        _invalid(rec, "processing_error", f"{type(one).__name__}: {one}")
                    )
        by_pos = {(r.partition, r.offset): r for r, _ in good}
        last_state: dict[str, UserState] = {}
        for out in outcomes:
            self.counters[f"feedback_{out.status}"] += 1
            if out.status == "duplicate":
                rec = by_pos[(out.partition or 0, out.offset or 0)]
                await self.dead_letter(
                    _invalid(rec, "duplicate_id", f"event_id {out.event_id!r} was already applied")
                )
            elif out.state is not None:  # applied, or a replay whose states may be unsent
                last_state[out.user_id] = out.state
        count_processed(FEEDBACK, sum(1 for o in outcomes if o.status != "duplicate"))
        clock.lap("apply")
        for fut in early:
            await asyncio.wrap_future(fut)
        if self.config.publish_states and not early and last_state:
            # the batch was retried event by event: publish what was applied now
            msgs = await loop.run_in_executor(
                self.feedback_pool, self._state_messages, svc, outcomes
            )
            await self._send_all(msgs)
        clock.lap("publish")
        await self.publisher.flush()
        clock.lap("ack")
        if self.refresher is not None:
            for user in last_state:
                self.refresher.offer(user)
        self._trace("feedback", batch.size, batch.lag_ms, {**stages, **clock.ms}, apply_ms)
        self._maybe_log_progress()
        return outcomes

    @staticmethod
    def _apply(
        svc: PgenrmService,
        events: list[FeedbackEvent],
        positions: list[tuple[int, int]],
        on_applied: Callable[[list[ApplyOutcome]], None] | None,
        vectors: TextVectors | None,
    ) -> tuple[list[ApplyOutcome], dict[str, float]]:
        """``svc.apply_feedback`` and its stage timings (runs in the feedback thread)."""
        outcomes = svc.apply_feedback(events, positions, on_applied=on_applied, vectors=vectors)
        return outcomes, dict(svc.last_apply_ms)

    @staticmethod
    def _state_messages(
        svc: PgenrmService, outcomes: Sequence[ApplyOutcome]
    ) -> list[tuple[str, bytes, bytes]]:
        """PersonaState of each user's latest state, PrototypeState of each touched one.

        A replay (an event written before a crash, its offset not committed)
        publishes its user's stored state again: the crash may have come before
        the states were sent, and they are compacted, so once more is harmless.
        """
        last_state: dict[str, UserState] = {}
        protos: set[int] = set()
        for out in outcomes:
            if out.status not in ("applied", "replay") or out.state is None:
                continue
            last_state[out.user_id] = out.state
            protos.update(out.touched)
        msgs = [
            (PERSONAS, uid.encode(), encode_value(svc.persona_state(st)))
            for uid, st in last_state.items()
        ]
        for pid in sorted(protos):
            ps = svc.prototype_state(pid)
            if ps is not None:
                msgs.append((PROTOTYPES, str(pid).encode(), encode_value(ps)))
        return msgs

    async def _send_all(self, msgs: Sequence[tuple[str, bytes, bytes]]) -> None:
        for topic, key, value in msgs:
            await self.publisher.send(topic, key, value)

    def _trace(
        self,
        path: str,
        n: int,
        lag_ms: float | None,
        stages: dict[str, float],
        inner: dict[str, float],
    ) -> None:
        """Add stage timings to :attr:`stage_ms`; log them when ``config.trace`` is on.

        ``lag_ms`` is from the oldest record's Kafka timestamp to the start of
        handling (broker, fetch wait, batching window and queueing behind the
        previous batch); ``stages`` are the runtime's, ``inner`` the service's.
        """
        self._report_gc_pauses()
        for k, v in stages.items():
            self.stage_ms[f"{path}.{k}"] += v
        for k, v in inner.items():
            self.stage_ms[f"{path}.{k}"] += v
        if not self.config.trace:
            return
        self._log_trace(
            path,
            time.time(),
            n,
            lag_ms=None if lag_ms is None else round(lag_ms, 1),
            total_ms=round(sum(stages.values()), 1),
            **{k: round(v, 1) for k, v in stages.items()},
            **{f"svc_{k}": round(v, 1) for k, v in inner.items()},
        )

    @staticmethod
    def _log_trace(path: str, t: float, n: int, **fields: float | None) -> None:
        """One ``pgenrm trace {json}`` line (the format ``bench/bench_stream.py`` parses)."""
        rec = {"path": path, "t": round(t, 3), "n": n, **fields}
        log.info("pgenrm trace %s", json.dumps(rec, sort_keys=True))

    gc_report_every_s = 5.0
    """Longest a garbage collection waits to reach the metrics when no batch or request comes."""

    async def _report_gc_pauses_every(self) -> None:
        while True:
            await asyncio.sleep(self.gc_report_every_s)
            self._report_gc_pauses()

    def _report_gc_pauses(self) -> None:
        """Garbage collections since the last report: to the metrics, ``stage_ms`` and the trace.

        One trace line per generation that collected (``path`` ``gc0``/``gc1``/``gc2``,
        ``n`` collections, ``total_ms`` and ``max_ms`` of their pauses, ``t`` when the
        last of them ended, so a report that comes late still lands in the right phase).
        """
        by_generation: defaultdict[int, list[GcPause]] = defaultdict(list)
        for pause in self.gc_pauses.drain():
            observe_gc_pause(pause.generation, pause.seconds)
            by_generation[pause.generation].append(pause)
        if self.gc_pauses.dropped:
            self.counters["gc_pauses_dropped"] = self.gc_pauses.dropped
        for generation, pauses in sorted(by_generation.items()):
            ms = [p.seconds * 1000 for p in pauses]
            self.stage_ms[f"gc{generation}.pause"] += sum(ms)
            if self.config.trace:
                self._log_trace(
                    f"gc{generation}",
                    pauses[-1].ended_at,
                    len(ms),
                    total_ms=round(sum(ms), 1),
                    max_ms=round(max(ms), 1),
                )

    def _maybe_log_progress(self, every_s: float = 10.0) -> None:
        now = time.monotonic()
        if now - self._last_log < every_s:
            return
        done = self.counters["feedback_applied"]
        rate = (done - self._last_applied) / (now - self._last_log)
        self._last_log, self._last_applied = now, done
        log.info("pgenrm progress %s (%.0f applied/s)", self.snapshot(), rate)

    def snapshot(self) -> dict[str, int]:
        """All counters of the runtime, its service and its refresher (for logs)."""
        out = dict(self.counters)
        if self._service is not None:
            out.update({f"service_{k}": v for k, v in self._service.counters.items()})
        if self.refresher is not None:
            out.update({f"persona_{k}": v for k, v in self.refresher.counters.items()})
        users = self._service.stores.users if self._service is not None else None
        if isinstance(users, CachedUserStore):
            out.update(user_cache_hits=users.hits, user_cache_misses=users.misses)
        return out

    async def _publish_persona(self, state: UserState) -> None:
        svc = await self.service()
        msg = svc.persona_state(state)
        await self.publisher.send(PERSONAS, state.user_id.encode(), encode_value(msg))

    # -- rewards ----------------------------------------------------------------------------
    async def handle_request(self, rec: Record) -> Any:
        """Answer one reward request once; publish its result keyed by user."""
        svc = await self.service()
        t0 = time.perf_counter()
        clock = StageClock()
        lag_ms = _lag_ms([rec])
        try:
            req = self._decode(rec)
        except InvalidEventError as exc:
            await self.dead_letter(exc)
            await self.publisher.flush()
            return None
        assert isinstance(req, RewardRequest)
        loop = asyncio.get_running_loop()
        clock.lap("decode")
        score_ms: dict[str, float] = {}
        try:
            result, score_ms = await loop.run_in_executor(self.reward_pool, self._serve, svc, req)
        except Exception as exc:
            log.exception("reward request %s failed", req.request_id)
            await self.dead_letter(
                _invalid(rec, "processing_error", f"{type(exc).__name__}: {exc}")
            )
            await self.publisher.flush()  # in the DLQ before the offset commits
            return None
        if result is None:
            self.counters["requests_repeated"] += 1
            await self.dead_letter(
                _invalid(rec, "duplicate_id", f"request_id {req.request_id!r} was already answered")
            )
            await self.publisher.flush()
            return None
        clock.lap("serve")
        try:
            await self.publisher.send(REWARDS, req.user_id.encode(), encode_value(result))
            await self.publisher.flush()
        except BaseException:
            svc.release(req.request_id)  # not delivered: the redelivered request is answered
            raise
        clock.lap("publish")
        # answered (serve reserved the id, so it is refused from now on); the ledger
        # write (a flush) runs in its own thread so the next request does not wait for
        # it (a crash in between can at worst answer a re-sent request twice)
        mark = loop.run_in_executor(self.ledger_pool, svc.mark_answered, req.request_id)
        self._marks.add(mark)
        mark.add_done_callback(self._mark_done)
        count_processed(REWARD_REQUESTS)
        if not LIVE.try_record_reward(result, source="stream", latency_s=time.perf_counter() - t0):
            self.counters["live_record_errors"] += 1  # the reward is published all the same
        self.counters[f"rewards_{result.mode}"] += 1
        self._trace("reward", 1, lag_ms, clock.ms, score_ms)
        return result

    def _mark_done(self, fut: asyncio.Future[None]) -> None:
        self._marks.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            self.counters["mark_errors"] += 1
            log.error("marking a request answered failed: %s", fut.exception())

    @staticmethod
    def _serve(
        svc: PgenrmService, req: RewardRequest
    ) -> tuple[RewardResult | None, dict[str, float]]:
        """``svc.serve`` (not marked yet) and its stage timings (runs in the reward thread)."""
        result = svc.serve(req, mark=False)
        return result, svc.last_score_ms() if result is not None else {}


def _lag_ms(records: Sequence[Record]) -> float | None:
    """Ms from the oldest record's Kafka timestamp to now (None without timestamps)."""
    stamps = [r.timestamp for r in records if r.timestamp]
    return (time.time() - min(stamps)) * 1000.0 if stamps else None


def _invalid(rec: Record, reason: Any, detail: str) -> InvalidEventError:
    """An :class:`InvalidEventError` located at ``rec`` (original bytes kept)."""
    return InvalidEventError(
        reason, detail, rec.topic, rec.partition, rec.offset, rec.value, key=rec.key
    )
