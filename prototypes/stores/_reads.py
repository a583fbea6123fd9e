"""Reads that are the same on every store adapter, written once over two primitives.

Each adapter's collection base provides ``_retrieve(ids, with_vector)`` (records
by point id) and ``_scroll(batch, with_vector)`` (all records); records have a
``payload`` and, when asked for, a ``vector`` dict. The mixins below turn those
into the :class:`~prototypes.protocol.UserStore` / ``PrototypeStore`` reads. List
them *after* the collection base so its primitives come first in the MRO.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from prototypes.protocol import Prototype, UserState, point_id
from prototypes.stores.codec import prototype_from_payload, user_from_payload


class _Records:
    def _retrieve(self, ids: Sequence[Any], with_vector: bool | list[str] = False, /) -> list[Any]:
        raise NotImplementedError

    def _scroll(self, batch: int, with_vector: bool | list[str], /) -> Iterator[Any]:
        raise NotImplementedError


class UserReads(_Records):
    """``get``, ``get_many`` and ``scan`` of a user store."""

    def get(self, user_id: str) -> UserState | None:
        recs = self._retrieve([point_id(user_id)])
        return user_from_payload(recs[0].payload) if recs else None

    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        states = (
            user_from_payload(r.payload) for r in self._retrieve([point_id(u) for u in user_ids])
        )
        return {s.user_id: s for s in states}

    def scan(self, batch: int = 256) -> Iterator[tuple[UserState, np.ndarray | None]]:
        for r in self._scroll(batch, ["v"]):
            vec = (r.vector or {}).get("v") if isinstance(r.vector, dict) else None
            yield (
                user_from_payload(r.payload),
                np.asarray(vec, dtype=np.float32) if vec else None,
            )


class PrototypeReads(_Records):
    """``get`` and ``all`` of a prototype store."""

    def get(self, prototype_id: int) -> Prototype | None:
        recs = self._retrieve([int(prototype_id)])
        return prototype_from_payload(recs[0].payload) if recs else None

    def all(self) -> list[Prototype]:
        out = [prototype_from_payload(r.payload) for r in self._scroll(256, False)]
        return sorted(out, key=lambda p: p.prototype_id)
