"""User state and the interfaces of embedders and stores.

The durable truth about a user lives in the store, never only in memory or in
a faust changelog (tansu's ListOffsets defect makes changelog recovery lose
state). Point ids are ``uuid5`` of the user id, so replays are idempotent.

Examples
--------
>>> from prototypes.protocol import UserState
>>> s = UserState(user_id="u1")
>>> s.history_size, s.prototype_id
(0, None)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, Field, model_validator

from infra.contracts import Criterion, utcnow
from reward.protocol import HistoryItem

NAMESPACE = uuid.UUID("6f1c2a8e-3d4b-5c6d-8e9f-0a1b2c3d4e5f")


def point_id(key: str) -> str:
    """Deterministic Qdrant point id of a user (or event) key.

    >>> point_id("u1") == point_id("u1")
    True
    """
    return str(uuid.uuid5(NAMESPACE, key))


class UserState(BaseModel):
    """Everything pgenrm knows about one user."""

    user_id: str
    history: list[HistoryItem] = Field(default_factory=list)
    """The most recent preference triples, oldest first, bounded by settings."""
    stated_preferences: str | None = None
    direction: list[float] = Field(default_factory=list)
    """Recency-weighted mean of e(chosen) - e(rejected): the preference direction."""
    direction_weight: float = 0.0
    """Sum of recency weights folded into ``direction``."""
    persona: str | None = None
    criteria: list[Criterion] = Field(default_factory=list)
    persona_embedding: list[float] = Field(default_factory=list)
    persona_version: int = 0
    """``version`` at which the persona was generated (stale when < version)."""
    prototype_id: int | None = None
    events_applied: int = 0
    critiques: int = 0
    query_embedding: list[float] = Field(default_factory=list)
    """Recency-weighted mean embedding of the user's queries (same weights as ``direction``)."""
    assigned_vector: list[float] = Field(default_factory=list)
    """The search vector this user contributes to its prototype's centroid."""
    assigned_query: list[float] = Field(default_factory=list)
    """The query embedding this user contributes to its prototype's ``query_centroid``."""
    assigned_version: int | None = None
    """``version`` at which the prototype assignment was last applied (idempotence guard)."""
    offsets: dict[int, int] = Field(default_factory=dict)
    """Last applied source offset per feedback-topic partition (replay guard)."""
    version: int = 0
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def history_size(self) -> int:
        return len(self.history)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of size ``dim``."""

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an array of shape ``(len(texts), dim)``, rows of unit norm."""
        ...


class Prototype(BaseModel):
    """A cluster of users with similar preferences.

    ``centroid`` lives in the space of users' search vectors (normalised
    preference directions); ``query_centroid`` is the mean embedding of its
    members' queries, used to route a cold-start request by its query; ``z`` is
    the prototype's preference prior (refined ``a_j``, or the mean direction
    before any refinement).
    """

    prototype_id: int
    centroid: list[float]
    query_centroid: list[float] = Field(default_factory=list)
    z: list[float] = Field(default_factory=list)
    size: int = 0
    query_size: int = 0
    """Members with a query embedding (the count behind ``query_centroid``); defaults to
    ``size`` for prototypes stored before it was recorded."""
    refined: bool = False
    """True when ``z`` is the refined prototype ``a_j`` from the last rebuild."""
    outcomes: int = 0
    """Served rewards whose outcome later feedback revealed."""
    correct: int = 0
    version: int = 0
    updated_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="before")
    @classmethod
    def _default_query_size(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("query_size") is None:
            data = {**data, "query_size": data.get("size", 0)}
        return data

    @property
    def online_accuracy(self) -> float | None:
        return self.correct / self.outcomes if self.outcomes else None


@runtime_checkable
class UserStore(Protocol):
    """Durable per-user state with a search vector, one point per user."""

    def get(self, user_id: str) -> UserState | None: ...

    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserState]: ...

    def put(self, state: UserState, vector: np.ndarray | None) -> None:
        """Upsert ``state`` (idempotent: the point id is ``point_id(user_id)``)."""
        ...

    def neighbours(
        self,
        vector: np.ndarray,
        *,
        limit: int,
        prototype_id: int | None = None,
        exclude: str | None = None,
    ) -> list[tuple[UserState, float]]:
        """Most similar users (cosine), inside ``prototype_id`` when given, never ``exclude``."""
        ...

    def count(self) -> int: ...

    def scan(self, batch: int = 256) -> Iterator[tuple[UserState, np.ndarray | None]]: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def put_many(self, items: Sequence[tuple[UserState, np.ndarray | None]]) -> None:
        """Upsert several users in one store operation."""
        ...

    def delete_all(self) -> None: ...


@runtime_checkable
class PrototypeStore(Protocol):
    def put(self, prototypes: Sequence[Prototype]) -> None: ...

    def get(self, prototype_id: int) -> Prototype | None: ...

    def all(self) -> list[Prototype]: ...

    def nearest(
        self, vector: np.ndarray, *, by: str = "centroid", limit: int = 1
    ) -> list[tuple[Prototype, float]]:
        """Nearest prototypes by ``centroid`` or by ``query_centroid``."""
        ...

    def delete_all(self) -> None: ...

    def flush(self) -> None: ...


@runtime_checkable
class Ledger(Protocol):
    """Ids already applied or answered (feedback event ids, request ids)."""

    def seen(self, keys: Sequence[str]) -> set[str]: ...

    def mark(self, keys: Sequence[str]) -> None: ...

    def flush(self) -> None: ...
