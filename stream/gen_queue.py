"""One generation thread with priorities: reward chains before persona refreshes.

The model runs on one thread (two would only fight over the same cores). A
persona refresh must never make a reward request wait behind a queue of other
refreshes, so jobs carry a priority (lower runs first; FIFO within a priority).
A job already running is not interrupted.

Examples
--------
>>> import time
>>> q = GenerationQueue()
>>> order = []
>>> gate = q.submit(0, time.sleep, 0.1)          # keeps the thread busy
>>> late = q.submit(PERSONA, order.append, "persona")
>>> first = q.submit(REWARD, order.append, "reward")
>>> _ = late.result(5); order
['reward', 'persona']
>>> q.shutdown()
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any

REWARD = 0
"""Priority of reward chains."""
PERSONA = 10
"""Priority of persona refreshes."""


class GenerationQueue:
    """A single worker thread executing submitted callables by priority."""

    def __init__(self, name: str = "pgenrm-gen") -> None:
        self._q: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._closed = False
        self._closing = threading.Lock()  # a submit either lands before the drain or fails
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, priority: int, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        """Queue ``fn(*args)``; returns its future."""
        fut: cf.Future[Any] = cf.Future()
        with self._closing:
            if self._closed:
                raise RuntimeError("generation queue is shut down")
            self._q.put((priority, next(self._seq), (fut, fn, args)))
        return fut

    def pending(self) -> int:
        return self._q.qsize()

    def _run(self) -> None:
        while True:
            _, _, job = self._q.get()
            if job is None:
                return
            fut, fn, args = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)

    def shutdown(self, wait_s: float | None = 300.0) -> None:
        """Cancel queued jobs and stop the thread after the running one.

        Waits up to ``wait_s`` for a running generation (an HF ``generate`` call
        cannot be interrupted): a daemon thread still inside torch when the
        interpreter exits aborts the process ("terminate called without an
        active exception").
        """
        with self._closing:
            self._closed = True
            while True:
                try:
                    _, _, job = self._q.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job[0].cancel()
            self._q.put((-1, -1, None))
        if wait_s is not None and self._thread is not threading.current_thread():
            self._thread.join(wait_s)
