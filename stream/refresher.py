"""The persona refresher: a bounded, debounced queue of users whose persona is stale.

The feedback path calls :meth:`PersonaRefresher.offer` (never blocks, never
waits for a model). A background task takes users whose last offer is at least
``debounce_s`` old (or whose first waiting offer is ``max_wait_s`` old, so a
user giving feedback without pause is still refreshed), and runs
``refresh(user_id)`` (generation, embedding,
store write) in a thread executor. A user offered again while waiting is
coalesced (one refresh covers several events); when the queue is full the
oldest waiting user is dropped (their next feedback offers them again).
Counters: ``offered``, ``coalesced``, ``dropped``, ``refreshed``,
``not_due``, ``failed``.

Examples
--------
>>> import asyncio
>>> done = []
>>> async def main():
...     r = PersonaRefresher(lambda u: done.append(u) or u, maxsize=2, debounce_s=0.0)
...     task = asyncio.ensure_future(r.run())
...     for u in ["a", "b", "a", "c"]:
...         r.offer(u)
...     await r.drain(timeout_s=5)
...     task.cancel()
...     return dict(r.counters)
>>> c = asyncio.run(main())
>>> sorted(done), c["dropped"], c["coalesced"]
(['b', 'c'], 1, 1)
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


class PersonaRefresher:
    """Debounced, bounded refresh queue (see module doc).

    Parameters
    ----------
    refresh
        ``refresh(user_id) -> result`` run in ``executor``; a result that is not
        None is passed to ``on_refreshed``.
    maxsize
        Most users waiting at once.
    debounce_s
        Quiet time after a user's last offer before refreshing.
    max_wait_s
        Longest a waiting user is held back by further offers.
    executor
        Thread pool for ``refresh`` (default: a private one-thread pool).
    on_refreshed
        Optional coroutine function called with each non-None result.
    """

    def __init__(
        self,
        refresh: Callable[[str], Any],
        *,
        maxsize: int = 1024,
        debounce_s: float = 2.0,
        max_wait_s: float = 30.0,
        executor: cf.Executor | None = None,
        on_refreshed: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        self.refresh = refresh
        self.maxsize = maxsize
        self.debounce_s = debounce_s
        self.max_wait_s = max_wait_s
        self._own_executor = executor is None
        self.executor = executor or cf.ThreadPoolExecutor(1, thread_name_prefix="pgenrm-persona")
        self.on_refreshed = on_refreshed
        self.pending: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """user -> (first, last) offer time while waiting."""
        self.counters: Counter[str] = Counter()
        self._wake: asyncio.Event | None = None
        self._busy = False

    def offer(self, user_id: str) -> None:
        """Queue ``user_id`` for a refresh (coalescing, dropping the oldest when full)."""
        now = time.monotonic()
        self.counters["offered"] += 1
        if user_id in self.pending:
            self.pending[user_id] = (self.pending[user_id][0], now)
            self.counters["coalesced"] += 1
        else:
            while len(self.pending) >= self.maxsize:
                self.pending.popitem(last=False)
                self.counters["dropped"] += 1
            self.pending[user_id] = (now, now)
        if self._wake is not None:
            self._wake.set()

    def _due(self, now: float) -> tuple[str | None, float]:
        wait = float("inf")
        for user, (first, last) in self.pending.items():
            left = min(last + self.debounce_s, first + self.max_wait_s) - now
            if left <= 0:
                return user, 0.0
            wait = min(wait, left)
        return None, wait

    async def run(self) -> None:
        """Refresh due users forever (cancel the task to stop)."""
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            while True:
                user, wait = self._due(time.monotonic())
                if user is None:
                    self._wake.clear()
                    timeout = None if wait == float("inf") else wait
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout)
                    continue
                del self.pending[user]
                self._busy = True
                try:
                    result = await loop.run_in_executor(self.executor, self.refresh, user)
                except Exception as exc:
                    self.counters["failed"] += 1
                    log.warning("persona refresh of %s failed: %s", user, exc)
                    continue
                finally:
                    self._busy = False
                if result is None:
                    self.counters["not_due"] += 1
                    continue
                self.counters["refreshed"] += 1
                if self.on_refreshed is not None:
                    try:
                        await self.on_refreshed(result)
                    except Exception as exc:
                        log.warning("publishing refreshed persona failed: %s", exc)
        finally:
            if self._own_executor:
                self.executor.shutdown(wait=False, cancel_futures=True)

    async def drain(self, timeout_s: float = 60.0) -> bool:
        """Wait until nothing is pending or running (tests); False on timeout."""
        end = time.monotonic() + timeout_s
        while self.pending or self._busy:
            if time.monotonic() > end:
                return False
            await asyncio.sleep(0.02)
        return True
