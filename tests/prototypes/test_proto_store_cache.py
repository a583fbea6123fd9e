"""The write-through user cache: what it answers from memory, and when it must not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from prototypes.protocol import UserState
from prototypes.stores.cache import CachedUserStore
from prototypes.stores.edge import EdgeUserStore
from tests.prototypes.conftest import DIM, item, unit


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[EdgeUserStore]:
    s = EdgeUserStore(tmp_path / "users", dim=DIM)
    yield s
    s.close()


def state(uid: str, version: int = 1) -> UserState:
    return UserState(user_id=uid, version=version, history=[item(0)], direction=[0.5] * DIM)


def test_written_states_are_answered_without_the_store(edge: EdgeUserStore) -> None:
    users = CachedUserStore(edge, size=10)
    users.put_many([(state(f"u{i}"), unit(np.ones(DIM))) for i in range(3)])
    edge.put(state("u1", version=9), unit(np.ones(DIM)))  # behind the cache's back
    got = users.get_many(["u0", "u1", "u2"])
    assert users.hits == 3 and users.misses == 0
    assert got["u1"].version == 1  # the cache's own write: the owner's view
    users.forget()
    assert users.get("u1").version == 9  # type: ignore[union-attr]


def test_states_only_read_are_not_cached(edge: EdgeUserStore) -> None:
    edge.put(state("other"), unit(np.ones(DIM)))  # another worker's user
    users = CachedUserStore(edge, size=10)
    assert users.get("other") is not None
    edge.put(state("other", version=2), unit(np.ones(DIM)))
    got = users.get("other")
    assert got is not None and got.version == 2
    assert users.hits == 0 and users.misses == 2 and len(users) == 0


def test_callers_cannot_change_the_cached_state(edge: EdgeUserStore) -> None:
    users = CachedUserStore(edge, size=10)
    s = state("a")
    users.put(s, None)
    s.prototype_id = 7  # set after the write: not what was stored
    got = users.get("a")
    assert got is not None and got.prototype_id is None
    got.prototype_id = 8  # set on what a read returned
    again = users.get("a")
    assert again is not None and again.prototype_id is None


def test_least_recently_used_goes_first(edge: EdgeUserStore) -> None:
    users = CachedUserStore(edge, size=2)
    users.put(state("a"), None)
    users.put(state("b"), None)
    users.get("a")  # a is now the most recent
    users.put(state("c"), None)
    assert len(users) == 2
    users.get_many(["a", "b", "c"])
    assert users.hits == 1 + 2 and users.misses == 1  # b fell out, the store answered it


def test_size_zero_caches_nothing(edge: EdgeUserStore) -> None:
    users = CachedUserStore(edge, size=0)
    users.put(state("a"), None)
    assert users.get("a") is not None and len(users) == 0 and users.hits == 0
    with pytest.raises(ValueError):
        CachedUserStore(edge, size=-1)
