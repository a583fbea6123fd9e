"""One contract suite for every store adapter (Qdrant Edge, qdrant-client ``:memory:``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prototypes.protocol import Ledger, Prototype, PrototypeStore, UserState, UserStore, point_id
from prototypes.stores import Stores
from prototypes.stores.codec import prototype_from_payload, prototype_payload
from tests.prototypes.conftest import DIM, item, unit


def vec(*hot: float) -> np.ndarray:
    v = np.zeros(DIM)
    v[: len(hot)] = hot
    return unit(v)


def user(uid: str, proto: int | None, n_hist: int = 1, version: int = 1) -> UserState:
    return UserState(
        user_id=uid,
        history=[item(i) for i in range(n_hist)],
        prototype_id=proto,
        version=version,
        direction=[0.5] * DIM,
    )


def test_adapters_satisfy_protocols(stores: Stores) -> None:
    assert isinstance(stores.users, UserStore)
    assert isinstance(stores.prototypes, PrototypeStore)
    assert isinstance(stores.ledger, Ledger)


def test_user_roundtrip_is_exact(stores: Stores) -> None:
    s = user("alice", 3, n_hist=2)
    s.assigned_vector = [0.25, -1.5] + [0.0] * (DIM - 2)
    stores.users.put(s, vec(1))
    got = stores.users.get("alice")
    assert got is not None
    assert got.model_dump() == s.model_dump()
    assert stores.users.get("nobody") is None


def test_replayed_put_is_idempotent(stores: Stores) -> None:
    for version in (1, 2, 2):
        stores.users.put(user("bob", 0, version=version), vec(1))
    assert stores.users.count() == 1
    got = stores.users.get("bob")
    assert got is not None and got.version == 2


def test_get_many_and_scan(stores: Stores) -> None:
    stores.users.put_many([(user(f"u{i}", i % 2), vec(1, i)) for i in range(5)])
    stores.users.put(user("novec", None, n_hist=0), None)
    many = stores.users.get_many(["u1", "u3", "ghost"])
    assert sorted(many) == ["u1", "u3"]
    scanned = dict((s.user_id, v) for s, v in stores.users.scan(batch=2))
    assert sorted(scanned) == ["novec", "u0", "u1", "u2", "u3", "u4"]
    assert scanned["novec"] is None
    u3 = scanned["u3"]
    assert u3 is not None
    np.testing.assert_allclose(u3, vec(1, 3), atol=1e-6)


def test_neighbours_filter_exclude_and_order(stores: Stores) -> None:
    stores.users.put_many(
        [
            (user("me", 0), vec(1, 0)),
            (user("close", 0), vec(1, 0.1)),
            (user("mid", 0), vec(1, 1)),
            (user("other_proto", 1), vec(1, 0)),
            (user("no_history", 0, n_hist=0), vec(1, 0)),
            (user("no_vector", 0), None),
        ]
    )
    hits = stores.users.neighbours(vec(1, 0), limit=10, prototype_id=0, exclude="me")
    ids = [s.user_id for s, _ in hits]
    assert ids == ["close", "mid"]
    assert hits[0][1] > hits[1][1]
    everyone = stores.users.neighbours(vec(1, 0), limit=10, exclude="me")
    assert {s.user_id for s, _ in everyone} == {"close", "mid", "other_proto"}
    assert stores.users.neighbours(vec(1, 0), limit=1, prototype_id=0)[0][0].user_id == "me"


def test_prototype_store(stores: Stores) -> None:
    assert stores.prototypes.all() == []
    assert stores.prototypes.nearest(vec(1), by="query_centroid") == []
    protos = [
        Prototype(prototype_id=0, centroid=vec(1).tolist(), query_centroid=vec(0, 1).tolist(),
                  z=[1.0] * DIM, size=3),
        Prototype(prototype_id=7, centroid=vec(0, 1).tolist(), query_centroid=vec(1).tolist(),
                  size=1),
        Prototype(prototype_id=2, centroid=[], size=0),
    ]  # fmt: skip
    stores.prototypes.put(protos)
    assert [p.prototype_id for p in stores.prototypes.all()] == [0, 2, 7]
    got = stores.prototypes.get(0)
    assert got is not None and got.model_dump() == protos[0].model_dump()
    assert stores.prototypes.nearest(vec(1), by="centroid")[0][0].prototype_id == 0
    assert stores.prototypes.nearest(vec(1), by="query_centroid")[0][0].prototype_id == 7
    two = stores.prototypes.nearest(vec(1, 1), limit=5)
    assert {p.prototype_id for p, _ in two} == {0, 7}  # the empty prototype has no vector
    stores.prototypes.delete_all()
    assert stores.prototypes.all() == []


def test_prototype_query_size_roundtrips(stores: Stores) -> None:
    p = Prototype(prototype_id=4, centroid=vec(1).tolist(), query_centroid=vec(0, 1).tolist(),
                  size=3, query_size=1)  # fmt: skip
    stores.prototypes.put([p])
    got = stores.prototypes.get(4)
    assert got is not None and (got.size, got.query_size) == (3, 1)
    assert [(q.size, q.query_size) for q in stores.prototypes.all()] == [(3, 1)]
    hit = stores.prototypes.nearest(vec(0, 1), by="query_centroid")[0][0]
    assert hit.query_size == 1


def test_prototype_stored_without_query_size_loads_with_its_size() -> None:
    payload = prototype_payload(Prototype(prototype_id=1, centroid=[1.0], size=5, query_size=2))
    state = json.loads(payload["state"])
    del state["query_size"]  # written before query_size existed
    old = prototype_from_payload({**payload, "state": json.dumps(state)})
    assert (old.size, old.query_size) == (5, 5)


def test_ledger_is_exact(stores: Stores) -> None:
    keys = [f"event-{i}" for i in range(300)]
    assert stores.ledger.seen(keys) == set()
    stores.ledger.mark(keys[:150] + keys[:10])
    assert stores.ledger.seen(keys) == set(keys[:150])
    assert stores.ledger.seen([]) == set()


def test_point_ids_are_deterministic() -> None:
    assert point_id("u1") == point_id("u1") != point_id("u2")


def test_user_store_delete_all(stores: Stores) -> None:
    stores.users.put_many([(user(f"u{i}", 0), vec(1, i)) for i in range(3)])
    stores.users.delete_all()
    assert stores.users.count() == 0
    assert stores.users.get("u0") is None and stores.users.get_many(["u1"]) == {}


@pytest.mark.parametrize("store_kind", ["edge"])
def test_edge_wrong_dimension_is_an_error(stores: Stores) -> None:
    from prototypes.exceptions import StoreError

    with pytest.raises(StoreError):
        stores.users.put(user("x", 0), np.ones(DIM + 1))
