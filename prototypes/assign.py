"""Assign users to prototypes online and keep prototype statistics exact.

Each call to :meth:`PrototypeAssigner.assign` runs the river clusterer's
learn+predict on the user's search vector, moves the user's *contribution*
(its previous search vector and query embedding, recorded on the state) out
of the old prototype and into the new one, so ``size``, ``centroid`` (mean of
members' search vectors) and ``query_centroid`` (mean of members' query
embeddings) stay exact, and persists the touched prototypes. It is idempotent
per ``state.version``: the state records the version it was last assigned at.

One assigner per process owns the prototype statistics (it caches them); with
several worker processes, :meth:`recount` rebuilds them exactly from the users.

Examples
--------
>>> import numpy as np, tempfile
>>> from prototypes.clustering import OnlineClusterer
>>> from prototypes.protocol import UserState
>>> from prototypes.stores.edge import EdgePrototypeStore
>>> store = EdgePrototypeStore(tempfile.mkdtemp(), dim=4)
>>> a = PrototypeAssigner(store, OnlineClusterer(n_clusters=2, dim=4, project_dim=None), None)
>>> s = UserState(user_id="u", version=1)
>>> p = a.assign(s, np.array([1.0, 0, 0, 0]), np.array([0, 1.0, 0, 0]))
>>> (p.size, s.prototype_id, s.assigned_version)
(1, 0, 1)
>>> a.assign(s, np.array([1.0, 0, 0, 0]), np.array([0, 1.0, 0, 0])).size  # same version
1
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from infra.contracts import PrototypeState, utcnow
from prototypes.clustering import OnlineClusterer
from prototypes.protocol import Prototype, PrototypeStore, UserState, UserStore


class _Sums:
    """Running sums behind a prototype's means (numpy, so each move is O(d) in C)."""

    __slots__ = ("n_query", "query", "vec")

    def __init__(self, vec: np.ndarray | None, query: np.ndarray | None, n_query: int) -> None:
        self.vec, self.query, self.n_query = vec, query, n_query

    @classmethod
    def of(cls, p: Prototype) -> _Sums:
        vec = np.asarray(p.centroid, dtype=np.float64) * p.size if p.centroid else None
        n_query = p.query_size if p.query_centroid else 0
        q = np.asarray(p.query_centroid, dtype=np.float64) * n_query if n_query else None
        return cls(vec, q, n_query)


def _shift(total: np.ndarray | None, x: np.ndarray, sign: int, n: int) -> np.ndarray | None:
    """``total + sign * x`` for a sum over ``n`` members; None (no float residue) at none."""
    if not n:
        return None
    return x * sign if total is None else total + sign * x


class PrototypeAssigner:
    """Online prototype assignment backed by a :class:`PrototypeStore`."""

    def __init__(
        self,
        store: PrototypeStore,
        clusterer: OnlineClusterer,
        checkpoint_path: Path | None,
        *,
        write_through: bool = True,
    ) -> None:
        self.store = store
        self.clusterer = clusterer
        self._pristine = clusterer.dumps()
        """The clusterer as given: what :meth:`restore` returns to without a checkpoint."""
        self.checkpoint_path = checkpoint_path
        self.write_through = write_through
        self._protos: dict[int, Prototype] = {p.prototype_id: p for p in store.all()}
        self._sums: dict[int, _Sums] = {}
        self._dirty: set[int] = set()

    def prototype(self, prototype_id: int) -> Prototype | None:
        p = self._protos.get(prototype_id)
        return None if p is None else self._materialise(p)

    def _get(self, pid: int) -> Prototype:
        p = self._protos.get(pid)
        if p is None:
            p = Prototype(prototype_id=pid, centroid=[])
            self._protos[pid] = p
        return p

    def _sums_of(self, p: Prototype) -> _Sums:
        sums = self._sums.get(p.prototype_id)
        if sums is None:
            sums = _Sums.of(p)
            self._sums[p.prototype_id] = sums
        return sums

    def _move(
        self, p: Prototype, vec: np.ndarray | None, query: np.ndarray | None, sign: int
    ) -> None:
        sums = self._sums_of(p)
        # taking from an empty prototype means stale statistics: skip the sum with the count
        if vec is not None and vec.size and p.size + sign >= 0:
            p.size += sign
            sums.vec = _shift(sums.vec, vec, sign, p.size)
        if query is not None and query.size and sums.n_query + sign >= 0:
            sums.n_query += sign
            sums.query = _shift(sums.query, query, sign, sums.n_query)
        p.version += 1
        p.updated_at = utcnow()
        self._dirty.add(p.prototype_id)

    def _materialise(self, p: Prototype) -> Prototype:
        sums = self._sums.get(p.prototype_id)
        if sums is None:
            return p
        p.centroid = (sums.vec / p.size).tolist() if p.size and sums.vec is not None else []
        p.query_centroid = (
            (sums.query / sums.n_query).tolist() if sums.n_query and sums.query is not None else []
        )
        p.query_size = sums.n_query
        if not p.refined:
            p.z = list(p.centroid)
        return p

    def assign(
        self, state: UserState, vector: np.ndarray | None, e_query: np.ndarray | None
    ) -> Prototype | None:
        """Learn+predict ``vector``, move the user, persist; records the result on ``state``.

        Returns None when the user has no search vector: a user assigned before is taken
        out of its prototype and left unassigned.
        """
        if state.assigned_version == state.version and state.prototype_id is not None:
            return self.prototype(state.prototype_id) or self.store.get(state.prototype_id)
        old_id = state.prototype_id if state.assigned_version is not None else None
        if old_id is not None and old_id in self._protos:
            self._move(
                self._protos[old_id],
                np.asarray(state.assigned_vector, dtype=np.float64),
                np.asarray(state.assigned_query, dtype=np.float64),
                -1,
            )
        if vector is None:
            if old_id is not None or state.prototype_id is not None:
                state.prototype_id = None
                state.assigned_vector, state.assigned_query = [], []
                state.assigned_version = None
                if self.write_through:
                    self.persist()
            return None
        vec = np.asarray(vector, dtype=np.float64)
        query = None if e_query is None else np.asarray(e_query, dtype=np.float64)
        new_id = self.clusterer.learn_predict(vec)
        target = self._get(new_id)
        self._move(target, vec, query, +1)
        state.prototype_id = new_id
        state.assigned_vector = vec.tolist()
        state.assigned_query = [] if query is None else query.tolist()
        state.assigned_version = state.version
        if self.write_through:
            self.persist()
        return self._materialise(target)

    def persist(self) -> None:
        """Write every prototype changed since the last persist."""
        if self._dirty:
            self.store.put([self._materialise(self._protos[i]) for i in sorted(self._dirty)])
            self._dirty.clear()

    def record_outcome(self, prototype_id: int, correct: bool) -> Prototype | None:
        """Count a served reward whose outcome later feedback revealed."""
        p = self._protos.get(prototype_id) or self.store.get(prototype_id)
        if p is None:
            return None
        p.outcomes += 1
        p.correct += int(bool(correct))
        p.version += 1
        p.updated_at = utcnow()
        self._protos[prototype_id] = p
        self._dirty.add(prototype_id)
        if self.write_through:
            self.persist()
        return p

    def recount(self, users: UserStore) -> list[Prototype]:
        """Recompute sizes and centroids exactly from the users' recorded contributions."""
        sums: dict[int, list[np.ndarray]] = {}
        qsums: dict[int, list[np.ndarray]] = {}
        for s, _ in users.scan():
            if s.prototype_id is None or not s.assigned_vector:
                continue
            sums.setdefault(s.prototype_id, []).append(np.asarray(s.assigned_vector))
            if s.assigned_query:
                qsums.setdefault(s.prototype_id, []).append(np.asarray(s.assigned_query))
        for pid in set(self._protos) | set(sums):
            p = self._get(pid)
            vs = sums.get(pid, [])
            qs = qsums.get(pid, [])
            p.size, p.query_size = len(vs), len(qs)
            p.centroid = np.mean(vs, axis=0).tolist() if vs else []
            p.query_centroid = np.mean(qs, axis=0).tolist() if qs else []
            if not p.refined:
                p.z = list(p.centroid)
            p.version += 1
            # exact sums, not the rounded means times the counts
            self._sums[pid] = _Sums(
                np.sum(vs, axis=0) if vs else None, np.sum(qs, axis=0) if qs else None, len(qs)
            )
            self._dirty.add(pid)
        self.persist()
        return sorted(self._protos.values(), key=lambda p: p.prototype_id)

    def checkpoint(self) -> None:
        """Atomically write the pickled clusterer (and persist dirty prototypes)."""
        self.persist()
        if self.checkpoint_path is None:
            return
        path = Path(self.checkpoint_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.clusterer.dumps())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def restore(self) -> bool:
        """Reload the clusterer checkpoint (if any) and the prototypes from the store."""
        self._protos = {p.prototype_id: p for p in self.store.all()}
        self._sums.clear()
        self._dirty.clear()
        if self.checkpoint_path is None or not Path(self.checkpoint_path).exists():
            # nothing saved yet: undo whatever was learned since construction
            self.clusterer = OnlineClusterer.loads(self._pristine)
            return False
        self.clusterer = OnlineClusterer.loads(Path(self.checkpoint_path).read_bytes())
        return True


def to_state(p: Prototype) -> PrototypeState:
    """The compacted message published on the prototypes topic.

    >>> to_state(Prototype(prototype_id=1, centroid=[3.0, 4.0], size=2)).centroid
    [0.6, 0.8]
    """
    c = np.asarray(p.centroid, dtype=np.float64)
    n = float(np.linalg.norm(c)) if c.size else 0.0
    return PrototypeState(
        prototype_id=p.prototype_id,
        size=p.size,
        centroid=(c / n).tolist() if n > 0 else [],
        online_accuracy=p.online_accuracy,
        outcomes=p.outcomes,
        version=p.version,
        updated_at=p.updated_at,
    )
