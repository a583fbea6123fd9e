"""What this machine's CPU can do fast (used to pick model dtypes on ``auto``)."""

from __future__ import annotations


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
    import os

    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1
