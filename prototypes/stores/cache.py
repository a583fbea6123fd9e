"""A write-through cache of user states in front of any :class:`UserStore`.

The feedback path reads every user of a batch before applying it; decoding the
stored payloads back into :class:`~prototypes.protocol.UserState` was about a
sixth of the apply stage (``bench/bench_stream.py``, py-spy), and every CPU
millisecond outside the embedder is taken from it on a small box. The worker
that owns a user's feedback partition is that user's only writer, so the
states it wrote itself are what the store holds: :class:`CachedUserStore`
keeps those (bounded, least recently used first out) and answers ``get`` /
``get_many`` from them.

What it does not cache: states it only read (another worker may own and
change them), anything behind ``neighbours`` and ``scan`` (they go to the
store). Call :meth:`CachedUserStore.forget` when ownership can change (a
partition rebalance) or another process wrote users (a prototype rebuild).
States go in as the store would give them back (vectors rounded to float32,
:func:`~prototypes.stores.codec.user_as_stored`) and come out as shallow
copies, so reads are the same with or without the cache and a caller that
sets an attribute on a state it holds does not change the cached one.

Examples
--------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> from prototypes.protocol import UserState
>>> from prototypes.stores.edge import EdgeUserStore
>>> users = CachedUserStore(EdgeUserStore(Path(tempfile.mkdtemp()), dim=2), size=2)
>>> users.put(UserState(user_id="a", version=1), np.array([1.0, 0.0]))
>>> users.get("a").version, users.hits
(1, 1)
>>> users.get_many(["a", "ghost"]).keys(), users.misses
(dict_keys(['a']), 1)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np

from prototypes.protocol import UserState, UserStore
from prototypes.stores.codec import user_as_stored


class CachedUserStore:
    """``store`` with the last ``size`` users written through it kept decoded.

    Parameters
    ----------
    store
        The adapter that holds the users durably (every write goes to it).
    size
        How many written states to keep; 0 turns the cache off.
    """

    def __init__(self, store: UserStore, *, size: int = 100_000) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self.store = store
        self.size = size
        self._states: OrderedDict[str, UserState] = OrderedDict()
        self._lock = threading.Lock()  # the feedback and reward threads share it
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._states)

    def forget(self) -> None:
        """Drop every cached state (the next reads go to the store)."""
        with self._lock:
            self._states.clear()

    def _keep(self, state: UserState) -> None:
        if self.size == 0:
            return
        copy = user_as_stored(state)
        with self._lock:
            self._states[state.user_id] = copy
            self._states.move_to_end(state.user_id)
            while len(self._states) > self.size:
                self._states.popitem(last=False)

    def _cached(self, user_id: str) -> UserState | None:
        with self._lock:
            st = self._states.get(user_id)
            if st is None:
                self.misses += 1
                return None
            self.hits += 1
            self._states.move_to_end(user_id)
        return st.model_copy()

    # -- UserStore ------------------------------------------------------------
    def get(self, user_id: str) -> UserState | None:
        st = self._cached(user_id)
        return st if st is not None else self.store.get(user_id)

    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        out: dict[str, UserState] = {}
        missing: list[str] = []
        for u in user_ids:
            st = self._cached(u)
            if st is None:
                missing.append(u)
            else:
                out[u] = st
        if missing:
            out.update(self.store.get_many(missing))
        return out

    def put(self, state: UserState, vector: np.ndarray | None) -> None:
        self.store.put(state, vector)
        self._keep(state)

    def put_many(self, items: Sequence[tuple[UserState, np.ndarray | None]]) -> None:
        self.store.put_many(items)
        for state, _ in items:
            self._keep(state)

    def delete_all(self) -> None:
        self.forget()
        self.store.delete_all()

    def neighbours(
        self,
        vector: np.ndarray,
        *,
        limit: int,
        prototype_id: int | None = None,
        exclude: str | None = None,
    ) -> list[tuple[UserState, float]]:
        return self.store.neighbours(
            vector, limit=limit, prototype_id=prototype_id, exclude=exclude
        )

    def count(self) -> int:
        return self.store.count()

    def scan(self, batch: int = 256) -> Iterator[tuple[UserState, np.ndarray | None]]:
        return self.store.scan(batch)

    def flush(self) -> None:
        self.store.flush()

    def close(self) -> None:
        self.forget()
        self.store.close()
