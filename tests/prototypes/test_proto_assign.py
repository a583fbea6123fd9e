"""Online assignment keeps prototype sizes and centroids exact, idempotently."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infra.contracts import PrototypeState
from prototypes.assign import PrototypeAssigner, to_state
from prototypes.clustering import OnlineClusterer
from prototypes.protocol import Prototype, UserState
from prototypes.stores import Stores
from tests.prototypes.conftest import DIM, unit


def make(stores: Stores, path: Path | None = None) -> PrototypeAssigner:
    c = OnlineClusterer(n_clusters=3, dim=DIM, project_dim=None)
    return PrototypeAssigner(stores.prototypes, c, path)


def test_sizes_and_centroids_stay_exact(stores: Stores) -> None:
    a = make(stores)
    rng = np.random.default_rng(0)
    axes = np.eye(DIM)[:3]
    users = [UserState(user_id=f"u{i}") for i in range(30)]
    for step in range(4):  # users keep moving between three directions
        for i, s in enumerate(users):
            s.version += 1
            v = unit(axes[(i + step) % 3] + 0.05 * rng.standard_normal(DIM))
            q = unit(rng.standard_normal(DIM))
            s.query_embedding = q.tolist()
            a.assign(s, v, q)
    stored = {p.prototype_id: p for p in stores.prototypes.all()}
    assert sum(p.size for p in stored.values()) == 30
    for pid, p in stored.items():
        members = [s for s in users if s.prototype_id == pid]
        assert p.size == len(members)
        if members:
            np.testing.assert_allclose(
                p.centroid, np.mean([s.assigned_vector for s in members], axis=0), atol=1e-9
            )
            np.testing.assert_allclose(
                p.query_centroid, np.mean([s.assigned_query for s in members], axis=0), atol=1e-9
            )
            assert p.z == p.centroid  # unrefined prototypes use their mean direction
    assert len(stored) == 3


def test_assign_is_idempotent_per_version(stores: Stores) -> None:
    a = make(stores)
    s = UserState(user_id="u", version=4)
    v = unit(np.arange(1, DIM + 1, dtype=float))
    first = a.assign(s, v, v)
    again = a.assign(s, v, v)
    assert first is not None and again is not None
    assert again.size == first.size == 1
    assert stores.prototypes.get(first.prototype_id).size == 1  # type: ignore[union-attr]
    assert a.assign(UserState(user_id="w", version=1), None, None) is None


def test_recount_matches_incremental(stores: Stores) -> None:
    a = make(stores)
    rng = np.random.default_rng(1)
    for i in range(12):
        s = UserState(user_id=f"u{i}", version=1)
        v = unit(rng.standard_normal(DIM))
        a.assign(s, v, v)
        stores.users.put(s, v)
    before = {p.prototype_id: (p.size, p.centroid) for p in stores.prototypes.all()}
    after = {p.prototype_id: (p.size, p.centroid) for p in a.recount(stores.users)}
    assert before.keys() == after.keys()
    for pid in before:
        assert before[pid][0] == after[pid][0]
        np.testing.assert_allclose(before[pid][1], after[pid][1], atol=1e-6)  # float32 payload


def test_outcomes_checkpoint_restore_and_state(stores: Stores, tmp_path: Path) -> None:
    path = tmp_path / "ck" / "clusterer.pkl"
    a = make(stores, path)
    s = UserState(user_id="u", version=1)
    v = unit(np.ones(DIM))
    p = a.assign(s, v, v)
    assert p is not None
    a.record_outcome(p.prototype_id, True)
    a.record_outcome(p.prototype_id, False)
    a.checkpoint()
    b = make(stores, path)
    b.clusterer = OnlineClusterer(n_clusters=3, dim=DIM, project_dim=None)
    assert b.restore()
    assert b.clusterer.predict(v) == a.clusterer.predict(v) == p.prototype_id
    stored = stores.prototypes.get(p.prototype_id)
    assert stored is not None and (stored.outcomes, stored.correct) == (2, 1)
    msg = to_state(stored)
    assert isinstance(msg, PrototypeState)
    assert msg.online_accuracy == 0.5 and msg.size == 1
    assert abs(float(np.linalg.norm(msg.centroid)) - 1) < 1e-9
    assert not list(path.parent.glob("*.tmp"))


def test_restore_without_a_checkpoint_forgets_what_was_learned(
    stores: Stores, tmp_path: Path
) -> None:
    a = make(stores, tmp_path / "never-written.pkl")
    for i in range(5):
        v = unit(np.eye(DIM)[i % 3] + 0.01 * i)
        a.assign(UserState(user_id=f"u{i}", version=1), v, v)
    assert a.clusterer.n_learned == 5
    assert a.restore() is False
    assert a.clusterer.n_learned == 0 and a.clusterer.n_seeded == 0


def test_recount_keeps_the_query_count_of_members_without_a_query(stores: Stores) -> None:
    a = make(stores)
    v = unit(np.ones(DIM))
    q = unit(np.arange(1, DIM + 1, dtype=float))
    with_q = UserState(user_id="q", version=1)
    a.assign(with_q, v, q)
    without = UserState(user_id="n", version=1)
    a.assign(without, v, None)  # same prototype, no query
    for s in (with_q, without):
        stores.users.put(s, v)
    a.recount(stores.users)
    late = UserState(user_id="l", version=1)
    p = a.assign(late, v, -q)
    assert p is not None and p.size == 3
    # the two members with a query: q and -q, whose mean is 0 (not (2q - q) / 3)
    np.testing.assert_allclose(p.query_centroid, np.zeros(DIM), atol=1e-6)


def test_losing_the_search_vector_unassigns_the_user(stores: Stores) -> None:
    a = make(stores)
    v = unit(np.ones(DIM))
    q = unit(np.arange(1, DIM + 1, dtype=float))
    stay, gone = UserState(user_id="stay", version=1), UserState(user_id="gone", version=1)
    a.assign(stay, v, q)
    a.assign(gone, v, -q)
    assert stay.prototype_id == gone.prototype_id
    gone.version = 2
    assert a.assign(gone, None, None) is None
    assert gone.prototype_id is None and gone.assigned_version is None
    assert gone.assigned_vector == [] and gone.assigned_query == []
    p = stores.prototypes.get(stay.prototype_id)  # type: ignore[arg-type]
    assert p is not None and (p.size, p.query_size) == (1, 1)
    np.testing.assert_allclose(p.query_centroid, q, atol=1e-6)
    stores.users.put(stay, v)
    stores.users.put(gone, None)
    assert [p.size for p in a.recount(stores.users)] == [1]


def test_leaving_a_prototype_that_never_counted_the_user_keeps_the_sums(stores: Stores) -> None:
    stores.prototypes.put([Prototype(prototype_id=0, centroid=[], size=0)])
    c = OnlineClusterer(n_clusters=1, dim=DIM, project_dim=None)
    a = PrototypeAssigner(stores.prototypes, c, None)
    v = unit(np.ones(DIM))
    stale = UserState(
        user_id="s", version=2, prototype_id=0, assigned_version=1,
        assigned_vector=v.tolist(), assigned_query=v.tolist(),
    )  # fmt: skip
    p = a.assign(stale, v, v)
    assert p is not None and (p.prototype_id, p.size, p.query_size) == (0, 1, 1)
    np.testing.assert_allclose(p.centroid, v, atol=1e-9)
    np.testing.assert_allclose(p.query_centroid, v, atol=1e-9)


def test_query_centroid_stays_exact_across_a_restart(stores: Stores, tmp_path: Path) -> None:
    a = make(stores, tmp_path / "clusterer.pkl")
    v = unit(np.ones(DIM))
    q = unit(np.arange(1, DIM + 1, dtype=float))
    a.assign(UserState(user_id="q", version=1), v, q)
    p = a.assign(UserState(user_id="n", version=1), v, None)  # same prototype, no query
    assert p is not None and (p.size, p.query_size) == (2, 1)
    a.checkpoint()
    b = make(stores, tmp_path / "clusterer.pkl")
    assert b.restore()
    p = b.assign(UserState(user_id="l", version=1), v, -q)
    assert p is not None and (p.size, p.query_size) == (3, 2)
    # the two members with a query: q and -q, whose mean is 0 (not (2q - q) / 3)
    np.testing.assert_allclose(p.query_centroid, np.zeros(DIM), atol=1e-6)
