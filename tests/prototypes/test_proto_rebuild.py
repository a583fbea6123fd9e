"""A rebuild resumes only its own run and leaves no stale assignment behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infra.settings import Settings
from prototypes.assign import PrototypeAssigner
from prototypes.clustering import OnlineClusterer
from prototypes.prefeval import CachedEmbedder
from prototypes.protocol import UserState
from prototypes.rebuild import RebuildReport, out_dir, rebuild
from prototypes.refine import Refiner
from prototypes.stores import Stores, open_stores
from prototypes.user_update import apply_feedback, search_vector
from tests.prototypes.conftest import item, make_settings, unit


@pytest.fixture(scope="module")
def emb(minilm: Any) -> CachedEmbedder:
    return CachedEmbedder(minilm)  # the real MiniLM, each text embedded once per module


def make_user(emb: Any, uid: str, seed: int, n: int = 4) -> UserState:
    s = UserState(user_id=uid)
    for i in range(n):
        it = item(i).model_copy(update={"chosen": f"{uid} answer {i} / {seed}"})
        e = emb.embed([it.chosen, it.rejected, str(it.context[0].content)])
        s = apply_feedback(s, it, e_chosen=e[0], e_rejected=e[1], e_query=e[2])
    return s


def put_users(emb: Any, stores: Stores, seed: int, n: int = 30) -> None:
    users = [make_user(emb, f"u{i}", seed) for i in range(n)]
    stores.users.put_many([(s, search_vector(s)) for s in users])


def run(emb: Any, settings: Settings, stores: Stores, k: int, **kw: Any) -> RebuildReport:
    return rebuild(settings, k=k, embedder=emb, stores=stores, show_progress=False, **kw)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, "edge")


@pytest.fixture
def stores(settings: Settings, emb: Any) -> Any:
    s = open_stores(settings, dim=int(emb.dim))
    yield s
    s.close()


def interrupt_refine(monkeypatch: pytest.MonkeyPatch, on_call: int) -> None:
    real_fit, calls = Refiner.fit, {"n": 0}

    def flaky_fit(self: Refiner, *a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == on_call:
            raise KeyboardInterrupt("simulated crash")
        return real_fit(self, *a, **k)

    monkeypatch.setattr(Refiner, "fit", flaky_fit)


def test_a_finished_rebuild_leaves_no_checkpoint_for_the_next(
    emb: Any, settings: Settings, stores: Stores
) -> None:
    put_users(emb, stores, seed=1)
    run(emb, settings, stores, k=4)
    assert not (out_dir(settings) / "refine_checkpoint.pt").exists()
    stores.users.delete_all()
    put_users(emb, stores, seed=2)  # other feedback: the next rebuild must train afresh
    again = run(emb, settings, stores, k=4)
    fresh = run(emb, settings, stores, k=4, resume=False)
    assert again.initial_loss == pytest.approx(fresh.initial_loss)
    assert again.losses == pytest.approx(fresh.losses, rel=1e-4)
    run(emb, settings, stores, k=5)  # another k


def test_an_interrupted_runs_checkpoint_is_not_resumed_with_another_k(
    emb: Any, settings: Settings, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_users(emb, stores, seed=1)
    interrupt_refine(monkeypatch, on_call=2)
    with pytest.raises(KeyboardInterrupt):
        run(emb, settings, stores, k=4, epochs=2)
    assert (out_dir(settings) / "refine_checkpoint.pt").exists()
    monkeypatch.undo()
    rep = run(emb, settings, stores, k=5, epochs=2)
    assert rep.resumed_from is None and len(rep.losses) == 2
    assert sum(rep.sizes.values()) == 30


def test_resume_restarts_from_embed_when_the_users_changed(
    emb: Any, settings: Settings, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_users(emb, stores, seed=1)
    interrupt_refine(monkeypatch, on_call=1)
    with pytest.raises(KeyboardInterrupt):
        run(emb, settings, stores, k=3)
    monkeypatch.undo()
    late = make_user(emb, "late", seed=7)  # the worker wrote a user meanwhile
    stores.users.put(late, search_vector(late))
    rep = run(emb, settings, stores, k=3)
    assert rep.resumed_from is None
    assert sum(rep.sizes.values()) == rep.users_with_vector == 31
    fresh = run(emb, settings, stores, k=3, resume=False)
    assert rep.sizes == fresh.sizes
    assert rep.losses == pytest.approx(fresh.losses, rel=1e-4)


def test_rebuild_unassigns_users_without_a_search_vector(
    emb: Any, settings: Settings, stores: Stores
) -> None:
    put_users(emb, stores, seed=1)
    no_query = make_user(emb, "no-query", seed=3).model_copy(update={"query_embedding": []})
    stores.users.put(no_query, search_vector(no_query))
    v = unit(np.ones(int(emb.dim)))
    stale = UserState(
        user_id="stale", version=2, prototype_id=7, assigned_version=1,
        assigned_vector=v.tolist(), assigned_query=v.tolist(),
    )  # fmt: skip
    stores.users.put(stale, None)  # assigned once, then lost its search vector
    rep = run(emb, settings, stores, k=3)
    got = stores.users.get("stale")
    assert got is not None and got.prototype_id is None and got.assigned_version is None
    assert got.assigned_vector == [] and got.assigned_query == []
    stored = {p.prototype_id: p for p in stores.prototypes.all()}
    assert {j: p.size for j, p in stored.items()} == rep.sizes
    home = stores.users.get("no-query")
    assert home is not None and home.prototype_id is not None
    for j, p in stored.items():
        assert p.query_size == p.size - (j == home.prototype_id)
    a = PrototypeAssigner(
        stores.prototypes, OnlineClusterer(n_clusters=3, dim=int(emb.dim), project_dim=None), None
    )
    assert {p.prototype_id: p.size for p in a.recount(stores.users)} == rep.sizes
