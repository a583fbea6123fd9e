"""The persona refresher: bounded, debounced, never blocking the caller."""

from __future__ import annotations

import asyncio
import threading
import time

from stream.refresher import PersonaRefresher


def test_debounce_coalesces_a_burst_into_one_refresh() -> None:
    calls: list[str] = []

    async def main() -> None:
        def refresh(u: str) -> str:
            calls.append(u)
            return u

        r = PersonaRefresher(refresh, debounce_s=0.2)
        task = asyncio.ensure_future(r.run())
        for _ in range(5):
            r.offer("u1")
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        assert calls == []  # still inside the quiet time
        assert await r.drain(5)
        task.cancel()
        assert r.counters["coalesced"] == 4

    asyncio.run(main())
    assert calls == ["u1"]


def test_steady_offers_postpone_a_refresh_no_longer_than_max_wait() -> None:
    calls: list[float] = []

    async def main() -> None:
        r = PersonaRefresher(
            lambda u: calls.append(time.monotonic()), debounce_s=0.2, max_wait_s=0.5
        )
        task = asyncio.ensure_future(r.run())
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.2:  # an offer every 50 ms: never quiet for 200 ms
            r.offer("busy")
            await asyncio.sleep(0.05)
        task.cancel()
        calls[:] = [t - t0 for t in calls]

    asyncio.run(main())
    assert calls  # without max_wait_s: none at all
    assert calls[0] >= 0.45  # and not before max_wait_s


def test_full_queue_drops_oldest_and_offer_never_blocks() -> None:
    gate = threading.Event()
    calls: list[str] = []

    def slow(u: str) -> str:
        gate.wait(5)
        calls.append(u)
        return u

    async def main() -> dict[str, int]:
        r = PersonaRefresher(slow, maxsize=3, debounce_s=0.0)
        task = asyncio.ensure_future(r.run())
        r.offer("busy")
        await asyncio.sleep(0.05)  # "busy" is now being refreshed (blocked in its thread)
        t0 = time.perf_counter()
        for i in range(10):
            r.offer(f"u{i}")
        assert time.perf_counter() - t0 < 0.5  # offering is O(1), no waiting on the model
        assert list(r.pending) == ["u7", "u8", "u9"]
        gate.set()
        assert await r.drain(5)
        task.cancel()
        return dict(r.counters)

    counters = asyncio.run(main())
    assert counters["dropped"] == 7
    assert calls == ["busy", "u7", "u8", "u9"]


def test_failures_are_counted_and_the_loop_survives() -> None:
    published: list[str] = []

    def refresh(u: str) -> str | None:
        if u == "bad":
            raise RuntimeError("model exploded")
        if u == "fresh":
            return None  # nothing due
        return u

    async def publish(u: str) -> None:
        published.append(u)

    async def main() -> dict[str, int]:
        r = PersonaRefresher(refresh, debounce_s=0.0, on_refreshed=publish)
        task = asyncio.ensure_future(r.run())
        for u in ["bad", "fresh", "ok"]:
            r.offer(u)
        assert await r.drain(5)
        task.cancel()
        return dict(r.counters)

    c = asyncio.run(main())
    assert c["failed"] == 1 and c["not_due"] == 1 and c["refreshed"] == 1
    assert published == ["ok"]
