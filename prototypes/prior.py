"""The embedding preference prior ``s(y | user) = z . e(y)``.

``z`` comes, in order of preference, from

1. the refinement model (``a_j + lambda_q W_q q + lambda_s W_s v_H``) for a user
   with a prototype and history, once ``pgenrm prototypes rebuild`` has run;
2. the user's own preference direction (normalised) before any refinement;
3. for a cold-start user, the prototype whose ``query_centroid`` is nearest to
   the request's query (its refined ``a_j`` plus the query term when refined, else
   the mean direction of its members); with no prototypes at all,
   :func:`global_prior` (size-weighted mean of prototype ``z``) or no prior.

Examples
--------
>>> import numpy as np
>>> prior_scores(np.array([1.0, -1.0]), np.array([[0.9, 0.1], [0.1, 0.9]])).round(2).tolist()
[0.8, -0.8]
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from prototypes.embedder import context_text
from prototypes.protocol import Embedder, Prototype, PrototypeStore, UserState
from prototypes.refine import Refiner
from prototypes.user_update import search_vector


def prior_scores(z: np.ndarray, candidate_embeddings: np.ndarray) -> np.ndarray:
    """Scores of candidates (rows of ``candidate_embeddings``) under prior ``z``."""
    return np.asarray(candidate_embeddings, dtype=np.float64) @ np.asarray(z, dtype=np.float64)


class RefinedPrior:
    """A trained :class:`Refiner` plus the embedder that embeds users' histories.

    History texts are embedded on demand (the newest ``refiner.cfg.history`` items)
    with a bounded, least-recently-used text->vector cache shared by the reward threads.
    """

    def __init__(self, refiner: Refiner, embedder: Embedder, *, cache_size: int = 50_000) -> None:
        self.refiner = refiner
        self.embedder = embedder
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        # the answer is built from this call's own lookups: evicting to make room for
        # the new texts must not take away a text this same call needs
        got: dict[str, np.ndarray] = {}
        with self._lock:
            for t in dict.fromkeys(texts):
                if t in self._cache:
                    self._cache.move_to_end(t)
                    got[t] = self._cache[t]
        missing = [t for t in dict.fromkeys(texts) if t not in got]
        if missing:
            vectors = self.embedder.embed(missing)  # outside the lock: it is the slow part
            with self._lock:
                for t, v in zip(missing, vectors, strict=True):
                    got[t] = v
                    self._cache[t] = v
                    self._cache.move_to_end(t)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return np.stack([got[t] for t in texts])

    def history_arrays(self, state: UserState) -> tuple[np.ndarray, np.ndarray]:
        """``(n, d)`` query embeddings and ``e(chosen) - e(rejected)`` of the newest items."""
        items = state.history[-self.refiner.cfg.history :] if self.refiner.cfg.history else []
        if not items:
            d = self.refiner.dim
            return np.zeros((0, d), np.float32), np.zeros((0, d), np.float32)
        texts = [t for it in items for t in (context_text(it.context), it.chosen, it.rejected)]
        e = self._embed(texts).reshape(len(items), 3, -1)
        return e[:, 0], e[:, 1] - e[:, 2]

    def knows(self, prototype_id: int | None) -> bool:
        return prototype_id is not None and 0 <= prototype_id < self.refiner.k

    def z_user(self, state: UserState, e_query: np.ndarray) -> np.ndarray | None:
        if not self.knows(state.prototype_id) or not state.history:
            return None
        hq, hd = self.history_arrays(state)
        return self.refiner.z_one(int(state.prototype_id), e_query, hq, hd)  # type: ignore[arg-type]

    def z_prototype(self, prototype_id: int, e_query: np.ndarray) -> np.ndarray:
        d = self.refiner.dim
        empty = np.zeros((0, d), np.float32)
        return self.refiner.z_one(prototype_id, e_query, empty, empty)


def user_prior(
    state: UserState, e_query: np.ndarray, refiner: RefinedPrior | None = None
) -> np.ndarray | None:
    """``z`` for a known user: refined when possible, else the preference direction."""
    if refiner is not None:
        z = refiner.z_user(state, e_query)
        if z is not None:
            return z
    return search_vector(state)


def cold_start_prior(
    store: PrototypeStore, e_query: np.ndarray, refiner: RefinedPrior | None = None
) -> tuple[Prototype | None, np.ndarray | None]:
    """The nearest prototype by query and its ``z``; ``(None, None)`` without prototypes."""
    hits = store.nearest(np.asarray(e_query), by="query_centroid", limit=1)
    if not hits:
        return None, None
    p = hits[0][0]
    if refiner is not None and p.refined and refiner.knows(p.prototype_id):
        return p, refiner.z_prototype(p.prototype_id, e_query)
    return p, (np.asarray(p.z, dtype=np.float64) if p.z else None)


def global_prior(store: PrototypeStore) -> np.ndarray | None:
    """Size-weighted mean of all prototypes' ``z`` (None when there is none)."""
    zs, ws = [], []
    for p in store.all():
        if p.z and p.size > 0:
            zs.append(np.asarray(p.z, dtype=np.float64))
            ws.append(float(p.size))
    if not zs:
        return None
    return np.average(np.stack(zs), axis=0, weights=np.asarray(ws))
