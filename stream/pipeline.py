"""The feedback path as a two-stage pipeline: embed batch k+1 while batch k is applied.

The embedding (MiniLM, in its own thread) is most of a feedback batch's time;
the rest (read users, update and cluster, upsert, flush, publish) is state work
in the feedback thread. Run one after the other, the state work adds to every
batch; here the next batch is decoded and embedded while the current one is
applied, so on a machine with a core to spare the path runs at the speed of
the embedding.

Batching is greedy: the prepare stage takes everything that arrived (up to
``max_batch``) as soon as it is free, so a quiet stream is handled one event
at a time and a backlog in full batches, with no fixed wait. With
``prepare_ahead`` > 1, a backlog's next full batch starts embedding before the
current one has finished: its forward passes queue behind the current one's, so
the embedding threads go from the last pass of one batch to the first of the
next without waiting for the event loop to decode and hand it over. A partial
batch still waits until nothing is being prepared.

Exactly once in effect is unchanged: batches are applied strictly in arrival
order, one at a time, and each record (dead-lettered ones included) is acked
only after the batch it belongs to is durable in the store and its outputs
are flushed. Faust commits per partition only up to the first offset not
acked yet, so a crash at any point re-delivers from there and the store's
offsets and ledger skip what was already applied. A stage that fails outside
the runtime's per-event retry (the broker refusing the outputs) stops the
pipeline with its batch unacked, and the faust app then crashes the worker
(:func:`stream.app.create_app`), whose restart re-consumes that batch.

Examples
--------
>>> import asyncio
>>> from stream.pipeline import FeedbackPipeline
>>> class Echo:  # stands in for StreamRuntime: prepare_feedback / apply_prepared
...     def __init__(self): self.applied = []
...     async def prepare_feedback(self, records): return list(records)
...     async def apply_prepared(self, batch): self.applied.append(batch)
>>> async def main():
...     rt, acked = Echo(), []
...     pipe = FeedbackPipeline(rt, max_batch=2)
...     task = asyncio.ensure_future(pipe.run())
...     for i in range(5):
...         await pipe.put(i, lambda i=i: _ack(acked, i))
...     await pipe.join()
...     task.cancel()
...     return [x for b in rt.applied for x in b], acked
>>> async def _ack(acked, i): acked.append(i)
>>> asyncio.run(main())
([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

Ack = Callable[[], Awaitable[object]]
"""Acknowledges one consumed record (faust: ``stream.ack(event)``)."""


class FeedbackStages(Protocol):
    """The two halves of the feedback path (:class:`~stream.runtime.StreamRuntime`)."""

    async def prepare_feedback(self, records: Any) -> Any:
        """Decode and embed a batch of records (no state touched)."""
        ...

    async def apply_prepared(self, batch: Any) -> Any:
        """Apply a prepared batch; returns once it is durable and its outputs are sent."""
        ...


class FeedbackPipeline:
    """Greedy batches through prepare (embed) and apply (state), overlapped.

    Parameters
    ----------
    stages
        What to do with a batch (the stream runtime).
    max_batch
        Most records per batch.
    max_pending
        Records buffered before :meth:`put` waits (back-pressure onto the
        consumer); default ``2 * max_batch``.
    prepare_ahead
        Batches being prepared at once (1: one after the other); all but the
        first only full ones. Results are handed to the apply stage in arrival
        order whichever finishes first.
    """

    def __init__(
        self,
        stages: FeedbackStages,
        *,
        max_batch: int,
        max_pending: int = 0,
        prepare_ahead: int = 1,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if prepare_ahead < 1:
            raise ValueError("prepare_ahead must be >= 1")
        self.stages = stages
        self.max_batch = max_batch
        self.max_pending = max(max_pending or 2 * max_batch, max_batch)
        self.prepare_ahead = prepare_ahead
        self._slots = asyncio.Semaphore(prepare_ahead)
        # batches being prepared, oldest first (delivered to the apply stage in this order)
        self._preparing: asyncio.Queue[tuple[asyncio.Future[Any], list[Ack]]] = asyncio.Queue()
        self._tasks: set[asyncio.Future[Any]] = set()  # cancelled with the pipeline
        self._buffer: list[tuple[Any, Ack]] = []
        self._changed = asyncio.Event()  # a record arrived or a prepare finished
        self._room = asyncio.Event()
        self._room.set()
        # one prepared batch may wait while the next is being prepared
        self._prepared: asyncio.Queue[tuple[Any, list[Ack]]] = asyncio.Queue(maxsize=1)
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def put(self, record: Any, ack: Ack) -> None:
        """Queue one record; ``ack()`` is awaited once its batch is applied."""
        while len(self._buffer) >= self.max_pending:
            self._room.clear()
            await self._room.wait()
        self._buffer.append((record, ack))
        self._in_flight += 1
        self._idle.clear()
        self._changed.set()

    async def join(self) -> None:
        """Wait until every record put so far is applied and acked."""
        await self._idle.wait()

    async def run(self) -> None:
        """Run both stages until cancelled; a failing stage cancels the other and raises."""
        loops: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self._take_loop()),
            asyncio.ensure_future(self._deliver_loop()),
            asyncio.ensure_future(self._apply_loop()),
        ]
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            loops += self._tasks
            for task in loops:
                task.cancel()
            for task in loops:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _take_loop(self) -> None:
        """Start preparing the next batch whenever records wait and a slot is free."""
        while True:
            await self._slots.acquire()
            while not self._ready():
                self._changed.clear()
                await self._changed.wait()
            taken = self._buffer[: self.max_batch]
            del self._buffer[: self.max_batch]
            self._room.set()
            task = self._start_prepare([rec for rec, _ in taken])
            self._preparing.put_nowait((task, [ack for _, ack in taken]))

    def _ready(self) -> bool:
        # while a batch is being prepared, another starts only as a full one (a backlog):
        # on a quiet stream that would split arrivals into more, smaller batches, each
        # paying its own store flush, and add the wait behind the batch ahead
        if not self._buffer:
            return False
        return not self._tasks or len(self._buffer) >= self.max_batch

    def _start_prepare(self, records: list[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(self.stages.prepare_feedback(records))
        self._tasks.add(task)
        task.add_done_callback(self._prepare_done)
        return task

    def _prepare_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        self._changed.set()

    async def _deliver_loop(self) -> None:
        """Hand prepared batches to the apply stage in the order they were taken."""
        while True:
            task, acks = await self._preparing.get()
            prepared = await task
            await self._prepared.put((prepared, acks))
            self._slots.release()

    async def _apply_loop(self) -> None:
        while True:
            prepared, acks = await self._prepared.get()
            await self.stages.apply_prepared(prepared)
            for ack in acks:
                await ack()
            self._in_flight -= len(acks)
            if self._in_flight == 0:
                self._idle.set()
