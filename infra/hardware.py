"""What this machine's CPU can do fast (used to pick model dtypes on ``auto``), and its threads."""

from __future__ import annotations

import os


def bf16_supported() -> bool:
    """True when this CPU has native bf16 arithmetic (AVX512-BF16 or AMX).

    Without it, bf16 on CPU is emulated and slower than float32, so ``auto``
    dtypes fall back to float32.

    >>> isinstance(bf16_supported(), bool)
    True
    """
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``).

    >>> usable_cores() >= 1
    True
    """
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def pin_this_thread(core: int) -> None:
    """Run the calling thread on ``core`` only (Linux; elsewhere, or when refused, a warning).

    >>> import threading
    >>> t = threading.Thread(target=pin_this_thread, args=(min(os.sched_getaffinity(0)),))
    >>> t.start(); t.join()
    """
    import logging

    try:
        os.sched_setaffinity(0, {core})  # pid 0: this thread only
    except (AttributeError, OSError) as exc:  # pragma: no cover - not Linux, or a mask changed
        logging.getLogger(__name__).warning("cannot pin a thread to core %d: %s", core, exc)


OS_THREAD_PREFIX = "pgenrm-"
"""Dropped from a thread's Python name in its OS name, which holds only 15 bytes."""


def name_os_thread() -> None:
    """Give the calling thread its Python name in the OS (``top -H``, ``/proc/<pid>/task``).

    Python 3.11 leaves every thread named after the program, so per-thread CPU
    cannot tell an embedding shard from the event loop. Use as a thread pool's
    initializer. Linux only; elsewhere, and where ``/proc`` is read-only, nothing.

    >>> import threading
    >>> t = threading.Thread(target=name_os_thread, name="pgenrm-example")
    >>> t.start(); t.join()
    """
    import threading

    name = threading.current_thread().name.removeprefix(OS_THREAD_PREFIX)[:15]
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as f:
            f.write(name)
    except OSError:
        pass
