"""Generic checks every supported online clusterer must pass (river ``check_estimator`` style)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prototypes.clustering import ALGORITHMS, OnlineClusterer
from prototypes.exceptions import ClusteringError

REPO = Path(__file__).resolve().parents[2]


def blobs(n: int = 400, k: int = 5, d: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    labels = rng.integers(0, k, n)
    x = centres[labels] + 0.15 * rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def purity(pred: list[int], labels: np.ndarray) -> float:
    total = 0
    for c in set(pred):
        members = labels[np.array(pred) == c]
        total += np.bincount(members).max()
    return total / len(pred)


def check_clusterer(c: OnlineClusterer, x: np.ndarray, labels: np.ndarray) -> None:
    """The contract: ints out, consistent predict, readable centres, pickle round-trip."""
    assert c.predict(x[0]) is None or isinstance(c.predict(x[0]), int)
    ids = [c.learn_predict(v) for v in x]
    assert all(isinstance(i, int) for i in ids)
    pred = [c.predict(v) for v in x]
    assert all(isinstance(p, int) for p in pred)
    assert purity(pred, labels) >= 0.9, purity(pred, labels)  # type: ignore[arg-type]
    centres = c.centers()
    assert centres and all(v.shape == (c.dim,) for v in centres.values())
    assert set(pred) <= set(centres)
    clone = OnlineClusterer.loads(c.dumps())
    assert [clone.predict(v) for v in x] == pred
    assert clone.learn_predict(x[0]) == c.learn_predict(x[0])
    with pytest.raises(ClusteringError):
        c.learn_predict(np.ones(c.dim + 1))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_check_clusterer(algorithm: str) -> None:
    x, labels = blobs()
    params = {"clustering_threshold": 1.0} if algorithm == "dbstream" else {}
    c = OnlineClusterer(algorithm, n_clusters=5, dim=64, project_dim=16, **params)  # type: ignore[arg-type]
    check_clusterer(c, x, labels)


def test_kmeans_without_projection() -> None:
    x, labels = blobs(d=16)
    check_clusterer(OnlineClusterer(n_clusters=5, dim=16, project_dim=None), x, labels)


def test_unknown_algorithm() -> None:
    with pytest.raises(ClusteringError):
        OnlineClusterer("clustream")  # type: ignore[arg-type]


def test_seeded_centres_keep_ids() -> None:
    x, labels = blobs(k=4, d=32)
    centres = {j: x[labels == j].mean(0) for j in range(4)}
    c = OnlineClusterer(n_clusters=4, dim=32, project_dim=16)
    c.seed_centers(centres)
    assert [c.predict(v) for v in x] == labels.tolist()


def test_pickle_round_trip_in_a_fresh_process(tmp_path: Path) -> None:
    x, _ = blobs(d=32)
    c = OnlineClusterer(n_clusters=5, dim=32, project_dim=16)
    for v in x:
        c.learn_predict(v)
    (tmp_path / "c.pkl").write_bytes(c.dumps())
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np; from pathlib import Path;"
        "from prototypes.clustering import OnlineClusterer as C;"
        "c = C.loads(Path(sys.argv[1]).read_bytes()); x = np.load(sys.argv[2]);"
        "print(','.join(str(c.predict(v)) for v in x))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "c.pkl"), str(tmp_path / "x.npy")],
        capture_output=True, text=True, cwd=REPO, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == ",".join(str(c.predict(v)) for v in x)


def test_seeding_keeps_the_numpy_mirror_equal_to_rivers_centres() -> None:
    # the seeding phase edits centres in place; the vectorised argmin reads the mirror
    rng = np.random.default_rng(3)
    c = OnlineClusterer(n_clusters=6, project_dim=8, dim=16, seed_radius=0.3)
    blobs = rng.standard_normal((4, 16))
    ids = [c.learn_predict(blobs[i % 4] + 0.05 * rng.standard_normal(16)) for i in range(40)]
    assert c.n_seeded == 4  # four blobs: four seeds, the rest joined them
    assert len(set(ids[:4])) == 4 and ids[4:8] == ids[:4]
    mirror = c.model._matrix(c._keys)
    for i in range(c.n_seeded):
        assert np.allclose(mirror[i], [c.model.centers[i][k] for k in c._keys])
