"""Forward passes that shard threads finish together (prototypes.passes)."""

from __future__ import annotations

import math
import random

import pytest

from prototypes.passes import PAD_COST, balanced_passes


def pass_cost(lengths: list[int], idx: list[int]) -> int:
    return len(idx) * (max(lengths[i] for i in idx) + PAD_COST)


def finish_time(lengths: list[int], passes: list[list[int]], shards: int) -> int:
    """When the last of ``shards`` threads pulling ``passes`` in order is done."""
    free = [0] * shards
    for p in passes:
        k = free.index(min(free))
        free[k] += pass_cost(lengths, p)
    return max(free)


def plain(lengths: list[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


def test_every_text_once_within_the_batch_size_in_a_multiple_of_the_shards() -> None:
    rng = random.Random(0)
    for _ in range(500):
        n, batch, shards = rng.randint(1, 400), rng.randint(1, 80), rng.randint(1, 4)
        lengths = [rng.randint(1, 300) for _ in range(n)]
        passes = balanced_passes(lengths, batch, shards)
        assert sorted(i for p in passes for i in p) == list(range(n))
        assert all(1 <= len(p) <= batch for p in passes)
        least = math.ceil(n / batch)
        assert least <= len(passes) <= (math.ceil(least / shards) * shards if shards > 1 else least)
        firsts = [max(lengths[i] for i in p) for p in passes]
        assert firsts == sorted(firsts, reverse=True)  # longest passes first, as pulled


def test_one_shard_gets_plain_slices() -> None:
    lengths = [5, 50, 20, 20, 1]
    assert balanced_passes(lengths, 2, 1) == [[1, 2], [3, 0], [4]]


def test_shards_never_finish_later_than_with_plain_slices_and_often_sooner() -> None:
    # feedback-like calls: 3 texts per event, short queries and answers of two kinds
    rng = random.Random(1)
    sooner = 0
    for _ in range(300):
        events = rng.randint(22, 140)
        lengths = [
            rng.choice((rng.randint(20, 40), rng.randint(40, 80), rng.randint(180, 240)))
            for _ in range(3 * events)
        ]
        ours = finish_time(lengths, balanced_passes(lengths, 64, 2), 2)
        theirs = finish_time(lengths, plain(lengths, 64), 2)
        assert ours <= theirs
        sooner += ours < 0.9 * theirs
    assert sooner > 100, sooner


def test_bad_sizes_raise_and_nothing_gives_no_passes() -> None:
    assert balanced_passes([], 64, 2) == []
    with pytest.raises(ValueError):
        balanced_passes([1], 0, 2)
    with pytest.raises(ValueError):
        balanced_passes([1], 8, 0)
