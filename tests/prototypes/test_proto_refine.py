"""Refinement loss decreases; rebuild is seed-stable, resumable and reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infra.contracts import ChatMessage
from infra.settings import Settings
from prototypes.prefeval import CachedEmbedder
from prototypes.protocol import UserState
from prototypes.rebuild import rebuild
from prototypes.refine import RefineConfig, Refiner, leave_one_out
from prototypes.stores import open_stores
from prototypes.user_update import apply_feedback, search_vector
from reward.protocol import HistoryItem

FAMILIES = {
    "quiet": ("a calm, quiet and peaceful {t} far from crowds", "a loud party {t} with nightclubs"),
    "cheap": ("a budget {t} that costs very little money", "an expensive luxury {t} with a spa"),
    "kids": (
        "a family-friendly {t} with activities for children",
        "an adults-only {t} for couples",
    ),
}
THINGS = ["hotel", "resort", "restaurant", "campsite", "cruise", "hostel"]
CITIES = ["Paris", "Rome", "Tokyo", "Lima", "Oslo"]


def synthetic_arrays(users: int = 60, d: int = 32, seed: int = 0) -> tuple[Any, np.ndarray]:
    rng = np.random.default_rng(seed)
    fam = rng.standard_normal((3, d))
    labels = rng.integers(0, 3, users)
    qs, ds = [], []
    for j in labels:
        q = rng.standard_normal((4, d))
        diffs = fam[j] + 0.5 * rng.standard_normal((4, d))
        qs.append((q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32))
        ds.append((0.3 * diffs / np.linalg.norm(diffs, axis=1, keepdims=True)).astype(np.float32))
    return (qs, ds), labels


def test_refinement_loss_decreases_and_prototypes_stay_unit() -> None:
    (qs, ds), labels = synthetic_arrays()
    means = [d.mean(0) for d in ds]
    centroids = np.stack([np.mean([m for m, j in zip(means, labels, strict=True) if j == k], 0)
                          for k in range(3)])  # fmt: skip
    r = Refiner.new(centroids, RefineConfig(lr=1e-3, seed=0))
    samples = leave_one_out(qs, ds, labels, 3)
    before = r.evaluate(samples)
    losses, _ = r.fit(samples, epochs=5)
    assert losses[-1] < losses[0] < before * 1.05
    assert r.evaluate(samples) < before
    np.testing.assert_allclose(np.linalg.norm(r.prototypes(), axis=1), 1.0, atol=1e-5)


def populate(settings: Settings, embedder: Any, users_per_family: int = 12) -> list[str]:
    stores = open_stores(settings, dim=embedder.dim)
    rng = np.random.default_rng(0)
    truth = []
    items = []
    for fam, (good, bad) in FAMILIES.items():
        for u in range(users_per_family):
            state = UserState(user_id=f"{fam}-{u}")
            for _ in range(3):
                t, c = rng.choice(THINGS), rng.choice(CITIES)
                ctx = [ChatMessage(role="user", content=f"Suggest a {t} in {c}")]
                it = HistoryItem(context=ctx, chosen=good.format(t=t), rejected=bad.format(t=t))
                e = embedder.embed([it.chosen, it.rejected, it.context[0].content])
                state = apply_feedback(state, it, e_chosen=e[0], e_rejected=e[1], e_query=e[2])
            items.append((state, search_vector(state)))
            truth.append(fam)
    stores.users.put_many(items)
    stores.close()
    return truth


@pytest.fixture(scope="module")
def cached(minilm: Any) -> CachedEmbedder:
    return CachedEmbedder(minilm)


def labels_of(settings: Settings) -> dict[str, int]:
    stores = open_stores(settings)
    try:
        return {s.user_id: s.prototype_id for s, _ in stores.users.scan()}  # type: ignore[misc]
    finally:
        stores.close()


def test_rebuild_reports_and_assignments_are_stable_across_seeds(
    tmp_path: Path, cached: CachedEmbedder
) -> None:
    from sklearn.metrics import adjusted_rand_score

    runs = []
    for seed in (0, 1, 2):
        settings = Settings(data_dir=tmp_path / f"s{seed}")
        truth = populate(settings, cached)
        rep = rebuild(settings, k=3, epochs=2, seed=seed, embedder=cached, show_progress=False)
        assert sum(rep.sizes.values()) == rep.users_with_vector == len(truth)
        assert rep.losses and rep.initial_loss is not None
        out = settings.data_dir / "prototypes"
        for name in ("loss.png", "report.md", "report.json", "refiner.pt", "clusterer.pkl"):
            assert (out / name).exists(), name
        assert json.loads((out / "report.json").read_text())["k"] == 3
        stores = open_stores(settings)
        protos = stores.prototypes.all()
        stores.close()
        assert [p.size for p in protos] == [rep.sizes[p.prototype_id] for p in protos]
        assert all(p.refined for p in protos)
        labels = labels_of(settings)
        runs.append([labels[f"{f}-{u}"] for f in FAMILIES for u in range(12)])
        assert adjusted_rand_score(truth, runs[-1]) >= 0.9
    assert adjusted_rand_score(runs[0], runs[1]) >= 0.9
    assert adjusted_rand_score(runs[0], runs[2]) >= 0.9


def test_rebuild_resumes_after_interruption(
    tmp_path: Path, cached: CachedEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path)
    populate(settings, cached, users_per_family=6)
    real_fit = Refiner.fit
    calls = {"n": 0}

    def flaky_fit(self: Refiner, *a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated crash in epoch 2")
        return real_fit(self, *a, **k)

    monkeypatch.setattr(Refiner, "fit", flaky_fit)
    with pytest.raises(KeyboardInterrupt):
        rebuild(settings, k=3, epochs=3, embedder=cached, show_progress=False)
    monkeypatch.setattr(Refiner, "fit", real_fit)
    rep = rebuild(settings, k=3, epochs=3, embedder=cached, show_progress=False)
    assert rep.resumed_from == "kmeans"
    assert len(rep.losses) == 3
    fresh = rebuild(settings, k=3, epochs=3, embedder=cached, show_progress=False, resume=False)
    assert fresh.resumed_from is None
    np.testing.assert_allclose(rep.losses, fresh.losses, rtol=1e-4)
