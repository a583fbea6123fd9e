"""Qdrant server adapters through qdrant-client (``QdrantClient(":memory:")`` in tests).

The same collections and payloads as :mod:`prototypes.stores.edge`, one Qdrant
collection per store named ``<prefix>_users``, ``<prefix>_prototypes`` and
``<prefix>_ledger``. Writes use ``wait=True``, so a returned call is durable
on the server; :meth:`flush` is therefore a no-op.

Examples
--------
>>> import numpy as np
>>> from qdrant_client import QdrantClient
>>> from prototypes.protocol import UserState
>>> users = ServerUserStore(QdrantClient(":memory:"), "doc_users", dim=3)
>>> users.put(UserState(user_id="a", prototype_id=0), np.array([1.0, 0, 0]))
>>> users.get("a").prototype_id, users.count()
(0, 1)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
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
)
from prototypes.stores.codec import (
    vector_list as _vec,
)


class _ServerCollection:
    def __init__(
        self, client: Any, name: str, vectors: dict[str, int], indexes: dict[str, str]
    ) -> None:
        from qdrant_client import models

        self.client = client
        self.name = name
        try:
            if not client.collection_exists(name):
                client.create_collection(
                    name,
                    vectors_config={
                        n: models.VectorParams(size=s, distance=models.Distance.COSINE)
                        for n, s in vectors.items()
                    },
                )
                with warnings.catch_warnings():  # local mode ignores payload indexes
                    warnings.simplefilter("ignore", UserWarning)
                    for field, kind in indexes.items():
                        schema = getattr(models.PayloadSchemaType, kind.upper())
                        client.create_payload_index(name, field, field_schema=schema)
        except Exception as exc:
            raise StoreError(f"cannot open Qdrant collection {name}: {exc}") from exc

    def _upsert(self, points: list[Any]) -> None:
        if points:
            self.client.upsert(self.name, points=points, wait=True)

    def _retrieve(self, ids: Sequence[Any], with_vectors: bool | list[str] = False) -> list[Any]:
        if not ids:
            return []
        return list(
            self.client.retrieve(
                self.name, ids=list(ids), with_payload=True, with_vectors=with_vectors
            )
        )

    def _scroll(self, batch: int, with_vectors: bool | list[str]) -> Iterator[Any]:
        offset = None
        while True:
            recs, offset = self.client.scroll(
                self.name, limit=batch, offset=offset, with_payload=True, with_vectors=with_vectors
            )
            yield from recs
            if offset is None or not recs:
                return

    def count(self) -> int:
        return int(self.client.count(self.name, exact=True).count)

    def delete_all(self) -> None:
        from qdrant_client import models

        self.client.delete(
            self.name, points_selector=models.FilterSelector(filter=models.Filter()), wait=True
        )

    def flush(self) -> None:
        """Writes are acknowledged after ``wait=True``; nothing is buffered here."""

    def close(self) -> None:
        """The client is shared by the three stores; :class:`Stores` closes it."""


class ServerUserStore(_ServerCollection, UserReads):
    def __init__(self, client: Any, name: str, *, dim: int) -> None:
        super().__init__(
            client,
            name,
            {"v": dim},
            {"prototype_id": "integer", "has_history": "integer", "user_id": "keyword"},
        )
        self.dim = dim

    def put(self, state: UserState, vector: np.ndarray | None) -> None:
        self.put_many([(state, vector)])

    def put_many(self, items: Sequence[tuple[UserState, np.ndarray | None]]) -> None:
        from qdrant_client import models

        points = []
        for state, vector in items:
            v = _vec(vector)
            if v is not None and len(v) != self.dim:
                raise StoreError(f"vector of size {len(v)} for a store of dim {self.dim}")
            points.append(
                models.PointStruct(
                    id=point_id(state.user_id),
                    vector={"v": v} if v else {},
                    payload=user_payload(state),
                )
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
        from qdrant_client import models

        v = _vec(vector)
        if v is None or limit <= 0:
            return []
        must: list[Any] = [
            models.FieldCondition(key="has_history", match=models.MatchValue(value=1))
        ]
        if prototype_id is not None:
            must.append(
                models.FieldCondition(
                    key="prototype_id", match=models.MatchValue(value=int(prototype_id))
                )
            )
        must_not: list[Any] = [models.HasIdCondition(has_id=[point_id(exclude)])] if exclude else []
        res = self.client.query_points(
            self.name,
            query=v,
            using="v",
            limit=limit,
            query_filter=models.Filter(must=must, must_not=must_not or None),
            with_payload=True,
        )
        return [(user_from_payload(h.payload), float(h.score)) for h in res.points]


class ServerPrototypeStore(_ServerCollection, PrototypeReads):
    def __init__(self, client: Any, name: str, *, dim: int) -> None:
        super().__init__(client, name, {"centroid": dim, "query": dim}, {"prototype_id": "integer"})
        self.dim = dim

    def put(self, prototypes: Sequence[Prototype]) -> None:
        from qdrant_client import models

        points = []
        for p in prototypes:
            vectors: dict[str, Any] = prototype_vectors(p)
            points.append(
                models.PointStruct(
                    id=int(p.prototype_id), vector=vectors, payload=prototype_payload(p)
                )
            )
        self._upsert(points)

    def nearest(
        self, vector: np.ndarray, *, by: str = "centroid", limit: int = 1
    ) -> list[tuple[Prototype, float]]:
        using = prototype_vector_name(by)
        v = _vec(vector)
        if v is None:
            return []
        res = self.client.query_points(
            self.name, query=v, using=using, limit=limit, with_payload=True
        )
        return [(prototype_from_payload(h.payload), float(h.score)) for h in res.points]


class ServerLedger(_ServerCollection):
    def __init__(self, client: Any, name: str) -> None:
        super().__init__(client, name, {"dummy": 1}, {})

    def seen(self, keys: Sequence[str]) -> set[str]:
        return {r.payload["key"] for r in self._retrieve([point_id(k) for k in keys])}

    def mark(self, keys: Sequence[str]) -> None:
        from qdrant_client import models

        self._upsert(
            [
                models.PointStruct(id=point_id(k), vector={}, payload={"key": k})
                for k in dict.fromkeys(keys)
            ]
        )
