"""The overlapped feedback pipeline: order, acks after durability, overlap, failures.

The first tests drive :class:`FeedbackPipeline` with scripted stages, to control
when each stage finishes; the last one runs it over the real runtime (MiniLM,
Qdrant Edge) and checks that the embedding happens in the prepare stage only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from infra.kafka import encode_value
from infra.settings import Settings
from infra.topics import FEEDBACK
from stream.config import StreamConfig
from stream.pipeline import FeedbackPipeline
from stream.runtime import MemoryPublisher, Record, StreamRuntime
from stream.service import PgenrmService
from tests.stream.helpers import CountingEmbedder, fb, until


class Scripted:
    """Stages that log what happens and apply only when a test lets them."""

    def __init__(self, *, fail_on: int | None = None) -> None:
        self.log: list[tuple[str, Any]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_on = fail_on

    async def prepare_feedback(self, records: list[int]) -> list[int]:
        self.log.append(("prepare", list(records)))
        await asyncio.sleep(0)
        return list(records)

    async def apply_prepared(self, batch: list[int]) -> None:
        self.log.append(("apply-start", batch))
        await self.release.wait()
        if self.fail_on is not None and self.fail_on in batch:
            raise RuntimeError(f"apply failed on {self.fail_on}")
        self.log.append(("apply-done", batch))


def acker(log: list[tuple[str, Any]], i: int) -> Any:
    async def ack() -> None:
        log.append(("ack", i))

    return ack


def test_applies_in_order_and_acks_only_after_the_batch_is_applied() -> None:
    async def main() -> list[tuple[str, Any]]:
        st = Scripted()
        pipe = FeedbackPipeline(st, max_batch=3)
        run = asyncio.ensure_future(pipe.run())
        for i in range(10):
            await pipe.put(i, acker(st.log, i))
        await asyncio.wait_for(pipe.join(), 5)
        run.cancel()
        return st.log

    log = asyncio.run(main())
    applied = [x for kind, b in log if kind == "apply-done" for x in b]
    assert applied == list(range(10))
    assert [i for kind, i in log if kind == "ack"] == list(range(10))
    assert all(len(b) <= 3 for kind, b in log if kind == "prepare")
    for kind, i in log:
        if kind == "ack":  # every ack comes after the apply of its own batch
            done_at = next(j for j, (k, b) in enumerate(log) if k == "apply-done" and i in b)
            assert log.index((kind, i)) > done_at


def test_next_batch_is_prepared_while_one_is_applied_and_nothing_acked_early() -> None:
    async def main() -> None:
        st = Scripted()
        st.release.clear()  # hold the first apply
        pipe = FeedbackPipeline(st, max_batch=2)
        run = asyncio.ensure_future(pipe.run())
        for i in range(2):
            await pipe.put(i, acker(st.log, i))
        await until(lambda: ("apply-start", [0, 1]) in st.log)
        for i in range(2, 4):
            await pipe.put(i, acker(st.log, i))
        # batch [2, 3] is prepared (embedded) while [0, 1] is still being applied
        await until(lambda: ("prepare", [2, 3]) in st.log)
        assert not [e for e in st.log if e[0] in ("ack", "apply-done")]
        assert ("apply-start", [2, 3]) not in st.log  # applies never overlap
        st.release.set()
        await asyncio.wait_for(pipe.join(), 5)
        assert [i for k, i in st.log if k == "ack"] == [0, 1, 2, 3]
        run.cancel()

    asyncio.run(main())


def test_greedy_batches_take_what_arrived_meanwhile() -> None:
    async def main() -> list[list[int]]:
        st = Scripted()
        st.release.clear()
        pipe = FeedbackPipeline(st, max_batch=100)
        run = asyncio.ensure_future(pipe.run())
        await pipe.put(0, acker(st.log, 0))
        await until(lambda: ("apply-start", [0]) in st.log)
        for i in range(1, 8):  # arrive while batch [0] is applied
            await pipe.put(i, acker(st.log, i))
        await until(lambda: ("prepare", list(range(1, 8))) in st.log)
        st.release.set()
        await asyncio.wait_for(pipe.join(), 5)
        run.cancel()
        return [b for k, b in st.log if k == "prepare"]

    # one event alone when quiet, then everything that queued up, in one batch
    assert asyncio.run(main()) == [[0], list(range(1, 8))]


def test_put_waits_when_the_buffer_is_full() -> None:
    async def main() -> None:
        st = Scripted()
        st.release.clear()
        pipe = FeedbackPipeline(st, max_batch=2, max_pending=2)
        run = asyncio.ensure_future(pipe.run())
        # one at a time (greedy batches of one): [0] applying, [1] prepared and queued,
        # [2] prepared and waiting for the queue, then 3 and 4 fill the buffer
        for i in range(5):
            await asyncio.wait_for(pipe.put(i, acker(st.log, i)), 1)
            await asyncio.sleep(0.01)
        assert [b for k, b in st.log if k == "prepare"] == [[0], [1], [2]]
        blocked = asyncio.ensure_future(pipe.put(5, acker(st.log, 5)))
        await asyncio.sleep(0.05)
        assert not blocked.done()  # back-pressure onto the consumer
        st.release.set()
        await asyncio.wait_for(blocked, 5)
        await asyncio.wait_for(pipe.join(), 5)
        assert [i for k, i in st.log if k == "ack"] == list(range(6))
        run.cancel()

    asyncio.run(main())


def test_a_failing_apply_stops_the_pipeline_and_leaves_its_batch_unacked() -> None:
    async def main() -> Scripted:
        st = Scripted(fail_on=3)
        pipe = FeedbackPipeline(st, max_batch=2)
        run = asyncio.ensure_future(pipe.run())
        for i in range(6):
            await pipe.put(i, acker(st.log, i))
        with pytest.raises(RuntimeError, match="apply failed on 3"):
            await asyncio.wait_for(run, 5)
        return st

    st = asyncio.run(main())
    # [0, 1] was applied and acked; [2, 3] failed: its records stay unacked and are
    # re-delivered after the restart; nothing after it was applied
    assert [i for k, i in st.log if k == "ack"] == [0, 1]
    assert [b for k, b in st.log if k == "apply-done"] == [[0, 1]]


class SlowFirst(Scripted):
    """Preparing the first batch waits until a test lets it; later batches do not."""

    def __init__(self) -> None:
        super().__init__()
        self.first_done = asyncio.Event()

    async def prepare_feedback(self, records: list[int]) -> list[int]:
        self.log.append(("prepare", list(records)))
        if 0 in records:
            await self.first_done.wait()
        self.log.append(("prepared", list(records)))
        return list(records)


def test_prepare_ahead_starts_the_next_batch_early_and_keeps_the_order() -> None:
    async def main() -> list[tuple[str, Any]]:
        st = SlowFirst()
        pipe = FeedbackPipeline(st, max_batch=2, prepare_ahead=2)
        run = asyncio.ensure_future(pipe.run())
        for i in range(2):
            await pipe.put(i, acker(st.log, i))
        await until(lambda: ("prepare", [0, 1]) in st.log)
        for i in range(2, 6):
            await pipe.put(i, acker(st.log, i))
        # the second slot takes [2, 3] while [0, 1] is still embedding, and it finishes
        # first; [4, 5] waits for a slot
        await until(lambda: ("prepared", [2, 3]) in st.log)
        assert ("prepare", [4, 5]) not in st.log
        assert not [e for e in st.log if e[0].startswith("apply")]
        st.first_done.set()
        await asyncio.wait_for(pipe.join(), 5)
        run.cancel()
        return st.log

    log = asyncio.run(main())
    assert [b for k, b in log if k == "apply-done"] == [[0, 1], [2, 3], [4, 5]]
    assert [i for k, i in log if k == "ack"] == list(range(6))


def test_prepare_ahead_starts_no_partial_batch_while_one_is_being_prepared() -> None:
    async def main() -> list[list[int]]:
        st = SlowFirst()
        pipe = FeedbackPipeline(st, max_batch=3, prepare_ahead=2)
        run = asyncio.ensure_future(pipe.run())
        await pipe.put(0, acker(st.log, 0))
        await until(lambda: ("prepare", [0]) in st.log)
        for i in range(1, 3):  # two records: less than a full batch, so they wait
            await pipe.put(i, acker(st.log, i))
        await asyncio.sleep(0.05)
        assert [b for k, b in st.log if k == "prepare"] == [[0]]
        st.first_done.set()
        await asyncio.wait_for(pipe.join(), 5)
        run.cancel()
        return [b for k, b in st.log if k == "prepare"]

    # the waiting records go as one batch once [0] is prepared, not split early
    assert asyncio.run(main()) == [[0], [1, 2]]


def test_cancelling_the_pipeline_cancels_batches_being_prepared() -> None:
    async def main() -> bool:
        st = SlowFirst()
        pipe = FeedbackPipeline(st, max_batch=1, prepare_ahead=2)
        run = asyncio.ensure_future(pipe.run())
        await pipe.put(0, acker(st.log, 0))
        await until(lambda: ("prepare", [0]) in st.log)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        st.first_done.set()
        await asyncio.sleep(0.01)
        return ("prepared", [0]) in st.log

    assert asyncio.run(main()) is False  # the held prepare was cancelled, not left running


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        FeedbackPipeline(Scripted(), max_batch=0)
    with pytest.raises(ValueError, match="prepare_ahead"):
        FeedbackPipeline(Scripted(), max_batch=1, prepare_ahead=0)


@pytest.fixture
def runtime(
    svc_settings: Settings, embedder: Any, stream_config: StreamConfig
) -> Iterator[tuple[StreamRuntime, CountingEmbedder]]:
    counting = CountingEmbedder(embedder)
    svc = PgenrmService.open(svc_settings, embedder=counting, config=stream_config)
    rt = StreamRuntime(svc_settings, publisher=MemoryPublisher(), config=stream_config, service=svc)
    try:
        yield rt, counting
    finally:
        svc.close()


def test_real_runtime_embeds_in_the_prepare_stage_only(
    runtime: tuple[StreamRuntime, CountingEmbedder],
) -> None:
    rt, counting = runtime
    events = [fb(f"e{i}", f"u{i % 3}", query=f"question {i}") for i in range(9)]
    events.append(events[4])  # a duplicate, offered again at a new offset
    records = [
        Record(FEEDBACK, 0, off, ev.user_id.encode(), encode_value(ev))
        for off, ev in enumerate(events)
    ]
    records.insert(5, Record(FEEDBACK, 0, 99, b"u0", b"{not json"))

    async def main() -> list[int]:
        acked: list[int] = []
        pipe = FeedbackPipeline(rt, max_batch=4)
        run = asyncio.ensure_future(pipe.run())
        for rec in records:

            async def ack(off: int = rec.offset) -> None:
                acked.append(off)

            await pipe.put(rec, ack)
        await asyncio.wait_for(pipe.join(), 120)
        run.cancel()
        return acked

    acked = asyncio.run(main())
    assert sorted(acked) == sorted(r.offset for r in records)  # bad records acked too
    svc = rt._service
    assert svc is not None
    assert {u: svc.user(u).events_applied for u in ("u0", "u1", "u2")} == {  # type: ignore[union-attr]
        "u0": 3,
        "u1": 3,
        "u2": 3,
    }
    assert rt.counters["feedback_applied"] == 9 and rt.counters["feedback_duplicate"] == 1
    assert rt.counters["dlq_invalid_json"] == 1 and rt.counters["dlq_duplicate_id"] == 1
    # every embedder call ran in the prepare stage's thread, none while applying:
    # the apply stage found every text of the batch already embedded
    assert counting.threads and set(counting.threads) == {"pgenrm-embed"}
    assert rt.stage_ms["feedback.embed"] > 0
