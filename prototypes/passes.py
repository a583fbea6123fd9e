"""Cutting one embedding call into forward passes that shard threads finish together.

Why: a pass pads its texts to the longest, so its cost is about ``rows x longest``.
Cutting a call's texts, sorted longest first, into passes of ``batch_size`` rows
leaves the shards unevenly loaded whenever the number of passes is not a multiple
of the shards or the passes differ in length: one shard runs the last pass while
the others wait. On a steady stream every call pays that idle tail, and the
batch cycle stretches by it over ``1 - load``. Measured with ``bench/embed_passes.py``
on the 2-core EPYC, 2 shards, calls of 40 / 70 / 87 / 109 / 137 / 200 feedback events
(3 texts each), median ms: 667 / 573 / 688 / 763 / 1109 / 1428 plain, 566 / 475 /
645 / 731 / 1000 / 1346 balanced (-4 to -17 %); at 256 events the two cuts are the
same passes (``bench/results/embed_passes_epyc8.json``).

Examples
--------
Five long texts and five short ones, two shards, passes of up to 8: plain slices
would give one shard a pass of 8 rows padded to the long length and the other a
pass of 2 short rows; balanced, each shard gets one of the two kinds.

>>> lengths = [40, 40, 40, 40, 40, 10, 10, 10, 10, 10]
>>> balanced_passes(lengths, batch_size=8, shards=1)
[[0, 1, 2, 3, 4, 5, 6, 7], [8, 9]]
>>> balanced_passes(lengths, batch_size=8, shards=2)
[[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

PAD_COST = 8
"""Cost added to each text's length: special tokens, and a pass's per-row work."""

GRID = 48
"""Pass budgets tried between one longest text and ``batch_size`` of them (log-spaced)."""


def balanced_passes(lengths: Sequence[int], batch_size: int, shards: int) -> list[list[int]]:
    """Indices of the texts in forward passes, longest texts first.

    Parameters
    ----------
    lengths
        Length of each text (characters are a good enough proxy for tokens).
    batch_size
        At most this many texts per pass.
    shards
        Threads that pull the passes. With one, the passes are plain slices of
        ``batch_size`` of the sorted texts. With more, the sorted texts are cut
        into contiguous passes of at most a budget of cost each (a pass costs
        its rows x its longest row, plus :data:`PAD_COST` per row), for
        :data:`GRID` budgets; of the cuts into no more passes than the plain
        count rounded up to a multiple of ``shards``, the one whose pulled
        passes finish first is kept (fewer passes on a tie): the shards get
        about equal work.

    Returns
    -------
    list of list of int
        Every index exactly once; passes in order of decreasing longest text.
    """
    if batch_size < 1 or shards < 1:
        raise ValueError("batch_size and shards must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    n = len(order)
    if n == 0:
        return []
    if shards == 1:
        return [order[k : k + batch_size] for k in range(0, n, batch_size)]
    cost = [lengths[i] + PAD_COST for i in order]

    def cuts(budget: int) -> list[int]:
        # the largest passes within ``budget``, front to back: the texts are sorted, so a
        # pass costs its rows times its first text's cost
        starts, k = [], 0
        while k < n:
            starts.append(k)
            k += max(1, min(batch_size, budget // cost[k], n - k))
        return starts

    def finish(starts: list[int]) -> int:
        # shards pull the passes in order, each as soon as it is free
        bounds = [*starts, n]
        free = [0] * shards
        for a, b in itertools.pairwise(bounds):
            k = free.index(min(free))
            free[k] += (b - a) * cost[a]
        return max(free)

    # budget = batch_size x the longest cost gives the plain slices, so the best
    # candidate is never worse than them under this cost model
    hi = batch_size * cost[0]
    budgets = {hi, *(int(cost[0] * (hi / cost[0]) ** (j / GRID)) for j in range(GRID))}
    # more passes than that would be smaller passes, each slower per row than a full one
    most = math.ceil(math.ceil(n / batch_size) / shards) * shards
    options = [st for st in map(cuts, budgets) if len(st) <= most]
    best = min(options, key=lambda st: (finish(st), len(st)))
    bounds = [*best, n]
    return [order[a:b] for a, b in itertools.pairwise(bounds)]
