"""The generation queue: no job submitted around a shutdown is left pending."""

from __future__ import annotations

import threading
import time
from typing import Any

from stream.gen_queue import REWARD, GenerationQueue


def test_a_job_submitted_while_the_queue_shuts_down_ends_run_or_cancelled() -> None:
    q = GenerationQueue()
    in_put, go_on = threading.Event(), threading.Event()
    real_put = q._q.put
    submitter: list[threading.Thread] = []

    def slow_put(item: Any, *a: Any, **kw: Any) -> None:
        if threading.current_thread() in submitter:  # hold the submit between check and put
            in_put.set()
            go_on.wait(5)
        real_put(item, *a, **kw)

    q._q.put = slow_put  # type: ignore[method-assign]
    futures: list[Any] = []
    t = threading.Thread(target=lambda: futures.append(q.submit(REWARD, lambda: "ran")))
    submitter.append(t)
    t.start()
    assert in_put.wait(5)
    closer = threading.Thread(target=q.shutdown, kwargs={"wait_s": 5})
    closer.start()
    time.sleep(0.2)  # the shutdown runs now, or waits for the submit it raced with
    go_on.set()
    t.join(5)
    closer.join(10)
    (fut,) = futures
    assert fut.cancelled() or fut.result(timeout=2) == "ran"  # never left pending
    assert not q._thread.is_alive()
