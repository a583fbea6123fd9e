"""Compact payload encoding of user and prototype state.

Vectors travel as base64 float32 (about 4x smaller than JSON floats); the rest
of the model is its JSON. Point ids come from :func:`prototypes.protocol.point_id`.

>>> from prototypes.protocol import UserState
>>> s = UserState(user_id="u1", direction=[0.5, -0.25], prototype_id=3)
>>> p = user_payload(s)
>>> p["prototype_id"], p["has_history"]
(3, 0)
>>> user_from_payload(p).direction
[0.5, -0.25]
"""

from __future__ import annotations

import array
import base64
import json
import sys
from typing import Any

import numpy as np

from prototypes.protocol import Prototype, UserState

USER_VECTOR_FIELDS = (
    "direction",
    "persona_embedding",
    "query_embedding",
    "assigned_vector",
    "assigned_query",
)
PROTOTYPE_VECTOR_FIELDS = ("centroid", "query_centroid", "z")


def encode_vector(v: list[float] | np.ndarray) -> str:
    """Base64 of the float32 bytes.

    >>> decode_vector(encode_vector([1.0, 2.5]))
    [1.0, 2.5]
    """
    if isinstance(v, np.ndarray):
        raw = v.astype("<f4", copy=False).tobytes()
    else:  # array.array converts a list of floats ~5x faster than numpy
        a = array.array("f", v)
        if sys.byteorder != "little":  # pragma: no cover
            a.byteswap()
        raw = a.tobytes()
    return base64.b64encode(raw).decode("ascii")


def decode_vector(s: str) -> list[float]:
    if not s:
        return []
    return np.frombuffer(base64.b64decode(s), dtype="<f4").astype(np.float64).tolist()


def _encode(model: Any, fields: tuple[str, ...]) -> str:
    """The model's JSON with ``fields`` as base64 strings.

    Vectors never go through JSON floats (dumping 4 x 384 floats dominated the
    upsert), and the rest is pydantic's own JSON serializer, not ``model_dump``
    plus :func:`json.dumps` (2.4x faster on a user with 64 history items).

    >>> from prototypes.protocol import UserState
    >>> s = UserState(user_id="u1", direction=[1.0])
    >>> _decode(_encode(s, USER_VECTOR_FIELDS), USER_VECTOR_FIELDS) == s.model_dump(mode="json")
    True
    """
    body = model.model_dump_json(exclude=set(fields))
    # base64 needs no JSON escaping: the vectors are spliced in before the closing brace
    vectors = ",".join(
        f'"{f}":"{encode_vector(v) if (v := getattr(model, f)) else ""}"' for f in fields
    )
    if not vectors:
        return body
    return body[:-1] + ("," if body != "{}" else "") + vectors + "}"


def _decode(raw: str, fields: tuple[str, ...]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(raw)
    for f in fields:
        data[f] = decode_vector(data.get(f) or "")
    return data


def user_payload(state: UserState) -> dict[str, Any]:
    """The Qdrant payload of one user point (indexed fields + the state blob)."""
    return {
        "user_id": state.user_id,
        "prototype_id": state.prototype_id if state.prototype_id is not None else -1,
        "has_history": int(bool(state.history)),  # Edge cannot match bools (0.9.0)
        "version": state.version,
        "state": _encode(state, USER_VECTOR_FIELDS),
    }


def user_from_payload(payload: dict[str, Any]) -> UserState:
    return UserState.model_validate(_decode(payload["state"], USER_VECTOR_FIELDS))


def user_as_stored(state: UserState) -> UserState:
    """A shallow copy of ``state`` equal to what ``user_from_payload(user_payload(state))``
    returns (vectors rounded to float32), without the JSON round trip.

    >>> s = UserState(user_id="u1", direction=[0.1])
    >>> user_as_stored(s).direction == user_from_payload(user_payload(s)).direction
    True
    """
    update = {}
    for f in USER_VECTOR_FIELDS:
        v = getattr(state, f)
        if v:
            update[f] = array.array("f", v).tolist()
    return state.model_copy(update=update)


def prototype_payload(p: Prototype) -> dict[str, Any]:
    return {
        "prototype_id": p.prototype_id,
        "size": p.size,
        "state": _encode(p, PROTOTYPE_VECTOR_FIELDS),
    }


def prototype_from_payload(payload: dict[str, Any]) -> Prototype:
    return Prototype.model_validate(_decode(payload["state"], PROTOTYPE_VECTOR_FIELDS))


def unit(v: np.ndarray | list[float]) -> list[float] | None:
    """A unit-norm copy as a list, or None for an empty/zero vector.

    >>> unit([3.0, 4.0])
    [0.6, 0.8]
    >>> unit([]) is None
    True
    """
    a = np.asarray(v, dtype=np.float64)
    n = float(np.linalg.norm(a)) if a.size else 0.0
    if n < 1e-12 or not np.isfinite(n):
        return None
    return (a / n).tolist()


def vector_list(v: np.ndarray | list[float] | None) -> list[float] | None:
    """A float32 list for the store, or None for a missing, empty, zero or non-finite vector.

    >>> vector_list([0.5, 0.0]), vector_list([0.0, 0.0]), vector_list(None)
    ([0.5, 0.0], None, None)
    """
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float32).ravel()
    if a.size == 0 or not np.all(np.isfinite(a)) or float(np.abs(a).sum()) == 0.0:
        return None
    return a.tolist()


PROTOTYPE_VECTOR_NAMES = {"centroid": "centroid", "query_centroid": "query", "query": "query"}
"""``PrototypeStore.nearest(by=...)`` -> the named vector it searches."""


def prototype_vectors(p: Prototype) -> dict[str, list[float]]:
    """The named vectors a prototype is stored with (absent ones left out)."""
    vectors: dict[str, list[float]] = {}
    if (c := vector_list(p.centroid)) is not None:
        vectors["centroid"] = c
    if (q := vector_list(p.query_centroid)) is not None:
        vectors["query"] = q
    return vectors


def prototype_vector_name(by: str) -> str:
    """The named vector ``nearest(by=...)`` searches; StoreError for an unknown ``by``."""
    from prototypes.exceptions import StoreError

    using = PROTOTYPE_VECTOR_NAMES.get(by)
    if using is None:
        raise StoreError(f"nearest(by={by!r}): use 'centroid' or 'query_centroid'")
    return using
