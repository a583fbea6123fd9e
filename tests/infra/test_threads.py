"""OS thread names (infra.hardware.name_os_thread)."""

from __future__ import annotations

import concurrent.futures as cf
import sys
import threading
from pathlib import Path

import pytest

from infra.hardware import name_os_thread


def os_name() -> str:
    return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names via /proc")
def test_pool_threads_carry_their_python_name_without_the_prefix_in_15_bytes() -> None:
    before = os_name()
    with cf.ThreadPoolExecutor(
        2, thread_name_prefix="pgenrm-embed-shard-with-a-long-name", initializer=name_os_thread
    ) as pool:
        names = {f.result() for f in [pool.submit(os_name) for _ in range(8)]}
    assert names and all(n == "embed-shard-wit" for n in names), names
    with cf.ThreadPoolExecutor(1, thread_name_prefix="other") as pool:
        plain = pool.submit(os_name).result()
    assert plain != "embed-shard-wit" and not plain.startswith("other")
    assert os_name() == before  # the calling thread kept its name
