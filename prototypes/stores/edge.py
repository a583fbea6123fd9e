"""Qdrant Edge adapters: embedded Qdrant on disk, one ``EdgeShard`` folder per collection.

Durability: Edge writes every update to its write-ahead log; :meth:`flush` makes
the segments durable too. After ``flush()`` returns a SIGKILL loses nothing
(tested by reopening in a fresh process). Search is exact (``SearchParams(exact=True)``)
unless the shard was optimised into HNSW: a user neighbour query is filtered by the
indexed ``prototype_id`` payload, so with ~50 prototypes it scores ~2% of the points.

Examples
--------
>>> import tempfile, numpy as np
>>> from prototypes.protocol import UserState
>>> d = tempfile.mkdtemp()
>>> users = EdgeUserStore(d + "/users", dim=3)
>>> users.put(UserState(user_id="a", prototype_id=0), np.array([1.0, 0, 0]))
>>> users.get("a").prototype_id, users.count()
(0, 1)
>>> users.close()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prototypes.exceptions import StoreError
from prototypes.protocol import Prototype, UserState, point_id
from prototypes.stores._reads import PrototypeReads, UserReads
from prototypes.stores.codec import (
    prototype_from_payload,
    prototype_payload,
    prototype_vector_name,
    prototype_vectors,
    user_from_payload,
    user_payload,
    vector_list,
)


def _open(path: Path, vectors: dict[str, int]) -> Any:
    from qdrant_edge import Distance, EdgeConfig, EdgeShard, EdgeVectorParams

    config = EdgeConfig(
        vectors={n: EdgeVectorParams(size=s, distance=Distance.Cosine) for n, s in vectors.items()}
    )
    try:
        if path.exists() and any(path.iterdir()):
            return EdgeShard.load(str(path), config)
        path.mkdir(parents=True, exist_ok=True)
        return EdgeShard.create(str(path), config)
    except Exception as exc:
        raise StoreError(f"cannot open Qdrant Edge shard {path}: {exc}") from exc


_vec = vector_list


class _EdgeCollection:
    def __init__(self, path: Path, vectors: dict[str, int], indexes: dict[str, str]) -> None:
        from qdrant_edge import PayloadSchemaType, UpdateOperation

        self.path = Path(path)
        self._shard = _open(self.path, vectors)
        existing = self._shard.info().payload_schema or {}
        for field, kind in indexes.items():
            if field not in existing:
                op = UpdateOperation.create_field_index(field, getattr(PayloadSchemaType, kind))
                self._shard.update(op)

    def _upsert(self, points: list[Any]) -> None:
        from qdrant_edge import UpdateOperation

        if points:
            self._shard.update(UpdateOperation.upsert_points(points))

    def _retrieve(self, ids: Sequence[Any], with_vector: bool | list[str] = False) -> list[Any]:
        if not ids:
            return []
        return list(self._shard.retrieve(list(ids), True, with_vector))

    def _scroll(self, batch: int, with_vector: bool | list[str]) -> Iterator[Any]:
        from qdrant_edge import ScrollRequest

        offset = None
        while True:
            recs, offset = self._shard.scroll(
                ScrollRequest(
                    offset=offset, limit=batch, with_payload=True, with_vector=with_vector
                )
            )
            yield from recs
            if offset is None or not recs:
                return

    def count(self) -> int:
        from qdrant_edge import CountRequest

        return int(self._shard.count(CountRequest(exact=True)))

    def delete_all(self) -> None:
        from qdrant_edge import UpdateOperation

        ids = [r.id for r in self._scroll(1024, False)]
        for i in range(0, len(ids), 1024):
            self._shard.update(UpdateOperation.delete_points(ids[i : i + 1024]))

    def optimize(self) -> bool:
        """Build the HNSW index (slow; run it off the hot path)."""
        return bool(self._shard.optimize())

    def flush(self) -> None:
        self._shard.flush()

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None


class EdgeUserStore(_EdgeCollection, UserReads):
    """Users as points: vector ``v`` = search vector, payload = the state blob."""

    def __init__(self, path: Path | str, *, dim: int, exact: bool = True) -> None:
        super().__init__(
            Path(path),
            {"v": dim},
            {"prototype_id": "Integer", "has_history": "Integer", "user_id": "Keyword"},
        )
        self.dim = dim
        self.exact = exact

    def put(self, state: UserState, vector: np.ndarray | None) -> None:
        self.put_many([(state, vector)])

    def put_many(self, items: Sequence[tuple[UserState, np.ndarray | None]]) -> None:
        from qdrant_edge import Point

        points = []
        for state, vector in items:
            v = _vec(vector)
            if v is not None and len(v) != self.dim:
                raise StoreError(f"vector of size {len(v)} for a store of dim {self.dim}")
            points.append(
                Point(point_id(state.user_id), {"v": v} if v else {}, user_payload(state))
            )
        self._upsert(points)

    def neighbours(
        self,
        vector: np.ndarray,
        *,
        limit: int,
        prototype_id: int | None = None,
        exclude: str | None = None,
    ) -> list[tuple[UserState, float]]:
        from qdrant_edge import (
            FieldCondition,
            Filter,
            HasIdCondition,
            MatchValue,
            Query,
            QueryRequest,
            SearchParams,
        )

        v = _vec(vector)
        if v is None or limit <= 0:
            return []
        must: list[Any] = [FieldCondition(key="has_history", match=MatchValue(1))]
        if prototype_id is not None:
            must.append(FieldCondition(key="prototype_id", match=MatchValue(int(prototype_id))))
        must_not: list[Any] = [HasIdCondition({point_id(exclude)})] if exclude else []
        hits = self._shard.query(
            QueryRequest(
                limit=limit,
                query=Query.Nearest(v, using="v"),
                filter=Filter(must=must, must_not=must_not or None),
                with_payload=True,
                params=SearchParams(exact=self.exact),
            )
        )
        return [(user_from_payload(h.payload), float(h.score)) for h in hits]


class EdgePrototypeStore(_EdgeCollection, PrototypeReads):
    """Prototypes as points keyed by their integer id, vectors ``centroid`` and ``query``."""

    def __init__(self, path: Path | str, *, dim: int) -> None:
        super().__init__(Path(path), {"centroid": dim, "query": dim}, {"prototype_id": "Integer"})
        self.dim = dim

    def put(self, prototypes: Sequence[Prototype]) -> None:
        from qdrant_edge import Point

        points = []
        for p in prototypes:
            vectors: dict[str, Any] = prototype_vectors(p)
            points.append(Point(int(p.prototype_id), vectors, prototype_payload(p)))
        self._upsert(points)

    def nearest(
        self, vector: np.ndarray, *, by: str = "centroid", limit: int = 1
    ) -> list[tuple[Prototype, float]]:
        from qdrant_edge import Query, QueryRequest, SearchParams

        using = prototype_vector_name(by)
        v = _vec(vector)
        if v is None:
            return []
        hits = self._shard.query(
            QueryRequest(
                limit=limit,
                query=Query.Nearest(v, using=using),
                with_payload=True,
                params=SearchParams(exact=True),
            )
        )
        return [(prototype_from_payload(h.payload), float(h.score)) for h in hits]


class EdgeLedger(_EdgeCollection):
    """Exact set of applied keys; points carry no vector (the 1-d config is a dummy)."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(Path(path), {"dummy": 1}, {})

    def seen(self, keys: Sequence[str]) -> set[str]:
        recs = self._retrieve([point_id(k) for k in keys])
        return {r.payload["key"] for r in recs}

    def mark(self, keys: Sequence[str]) -> None:
        from qdrant_edge import Point

        self._upsert([Point(point_id(k), {}, {"key": k}) for k in dict.fromkeys(keys)])
