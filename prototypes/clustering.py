"""Online clustering of users' search vectors with river.

The default algorithm is river's ``KMeans`` run on a fixed, seeded random
orthonormal projection of the 384-d search vector to ``project_dim`` dimensions
(32 by default, rows re-normalised). Why, by measurement (``bench/bench_store.py
--clusterers``, 384-d unit vectors from 50 blobs, learn+predict per point on this
2-core box):

* ``KMeans`` keeps **stable ids 0..k-1** with k fixed (the paper's k = 50), and its
  centres can be **seeded from the offline K-means** of ``pgenrm prototypes rebuild``,
  so online ids and stored prototype ids are the same thing.
* ``DBSTREAM`` is the fastest, but its macro-cluster ids are re-enumerated at every
  re-clustering, and k is not controllable: prototype ids would not be durable.
* ``STREAMKMeans`` re-runs k-means on chunks and can permute ids between chunks; on
  5 well-separated blobs its purity was 0.43-0.81 (sigma 0-0.3), so it is experimental.
* ``CluStream`` collapsed to one cluster in the stack measurements.
* river's pure-Python distance loop costs ~4.5 ms per learn+predict at 384 dims with
  k = 50 on an idle box (~220 users/s). :class:`NumpyKMeans` (river's KMeans with the
  argmin vectorised) takes ~0.1 ms on the 32-d projection and ~0.4 ms raw, which lets
  the update path reach >= 1,000 users/s. On 50 blobs the 32-d projection gave a
  higher NMI than raw 384-d (bench). The projection only decides the cluster *id*;
  the stored prototype centroids are exact 384-d means.

Examples
--------
>>> import numpy as np
>>> c = OnlineClusterer(n_clusters=2, project_dim=4, dim=8)
>>> a, b = np.eye(8)[0], np.eye(8)[1]
>>> c.learn_predict(a) != c.learn_predict(b)
True
>>> OnlineClusterer.loads(c.dumps()).predict(a) == c.predict(a)
True
"""

from __future__ import annotations

import collections
import pickle
from typing import Any, Literal

import numpy as np
from river import cluster

from prototypes.exceptions import ClusteringError

Algorithm = Literal["kmeans", "streamkmeans", "dbstream"]
ALGORITHMS: tuple[Algorithm, ...] = ("kmeans", "dbstream")
"""Supported: they pass ``check_clusterer`` (tests/prototypes/test_proto_clustering.py)."""
EXPERIMENTAL: tuple[Algorithm, ...] = ("streamkmeans",)
"""Constructible for benchmarks only: purity 0.43-0.81 on 5 well-separated blobs here."""


class NumpyKMeans(cluster.KMeans):
    """river's ``KMeans`` with its distance loop vectorised (same rule, same ``centers``).

    River computes ``sum(|c_k - x_k| ** p)`` over the union of keys in Python for every
    centre; this subclass keeps a numpy mirror of ``centers`` and takes the argmin in
    one matrix operation (ties: the lowest id, as river's ``min`` over an ordered dict).
    The learning rule ``c += halflife * (x - c)`` and the ``centers`` dicts are river's.

    >>> m = NumpyKMeans(n_clusters=2, halflife=0.5, sigma=0.0, seed=0)
    >>> m.learn_predict_one({"a": 1.0, "b": 0.0}), dict(m.centers[0])
    (0, {'a': 0.5, 'b': 0.0})
    """

    _mirror: np.ndarray | None = None

    def invalidate(self) -> None:
        """Forget the numpy mirror after ``centers`` was edited from outside."""
        self._mirror = None

    def _matrix(self, keys: list[str]) -> np.ndarray:
        if self._mirror is None:
            self._mirror = np.array(
                [[self.centers[i][k] for k in keys] for i in sorted(self.centers)]
            )
        return self._mirror

    def _closest(self, x: dict[Any, Any]) -> tuple[int, np.ndarray, list[str]]:
        keys = list(x)
        xv = np.fromiter(x.values(), dtype=np.float64, count=len(keys))
        c = self._matrix(keys)
        d = ((c - xv) ** 2).sum(axis=1) if self.p == 2 else (np.abs(c - xv) ** self.p).sum(axis=1)
        return int(np.argmin(d)), xv, keys

    def learn_predict_one(self, x: dict[Any, Any]) -> int:
        i, xv, keys = self._closest(x)
        c = self._matrix(keys)
        c[i] += self.halflife * (xv - c[i])
        self.centers[i].update(zip(keys, c[i].tolist(), strict=True))
        return i

    def predict_one(self, x: dict[Any, Any], **kwargs: Any) -> int:
        return self._closest(x)[0]


def projection(dim: int, out: int, seed: int) -> np.ndarray:
    """A seeded ``(out, dim)`` matrix with orthonormal rows.

    >>> P = projection(8, 3, 0); bool(np.allclose(P @ P.T, np.eye(3)))
    True
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, out)))
    return np.ascontiguousarray(q.T)


class OnlineClusterer:
    """A river clusterer behind a numpy interface, with pickle checkpoints.

    Parameters
    ----------
    algorithm
        ``kmeans`` (default), ``streamkmeans`` or ``dbstream``.
    n_clusters
        k for the k-means variants (the paper's 50).
    dim
        Size of the input vectors.
    project_dim
        Cluster on a seeded orthonormal projection to this many dimensions (None:
        the raw vector).
    halflife
        KMeans centre step size toward each new point (small = stable prototypes).
    seed
        Seed of the projection and of river's initialisation.
    seed_radius
        Before k centres exist, a point within this squared distance of a centre
        joins it; a farther one becomes the next centre (a leader-style start).
    """

    def __init__(
        self,
        algorithm: Algorithm = "kmeans",
        *,
        n_clusters: int = 50,
        dim: int = 384,
        project_dim: int | None = 32,
        halflife: float = 0.05,
        seed: int = 0,
        seed_radius: float = 0.5,
        **params: Any,
    ) -> None:
        if algorithm not in ALGORITHMS + EXPERIMENTAL:
            raise ClusteringError(f"unknown clustering algorithm {algorithm!r}")
        self.algorithm = algorithm
        self.n_clusters = n_clusters
        self.dim = dim
        self.project_dim = project_dim if project_dim and project_dim < dim else None
        self.seed = seed
        self.seed_radius = seed_radius
        self._proj = projection(dim, self.project_dim, seed) if self.project_dim else None
        self._keys = [f"f{j}" for j in range(self.project_dim or dim)]
        self.n_learned = 0
        self.n_seeded = 0 if algorithm == "kmeans" else n_clusters
        if algorithm == "kmeans":
            self.model: Any = NumpyKMeans(
                n_clusters=n_clusters, halflife=halflife, sigma=0.0, seed=seed, **params
            )
        elif algorithm == "streamkmeans":
            self.model = cluster.STREAMKMeans(
                chunk_size=params.pop("chunk_size", 200),
                n_clusters=n_clusters,
                halflife=halflife,
                sigma=0.0,
                seed=seed,
                **params,
            )
        else:
            defaults = dict(
                clustering_threshold=0.8,
                fading_factor=0.01,
                cleanup_interval=2,
                intersection_factor=0.3,
                minimum_weight=1.0,
            )
            defaults.update(params)
            self.model = cluster.DBSTREAM(**defaults)

    # -- vectors <-> river dicts ------------------------------------------------
    def _x(self, vector: np.ndarray) -> dict[str, float]:
        v = np.asarray(vector, dtype=np.float64).ravel()
        if v.shape[0] != self.dim:
            raise ClusteringError(f"vector of size {v.shape[0]}, clusterer dim {self.dim}")
        if self._proj is not None:
            v = self._proj @ v
            n = float(np.linalg.norm(v))
            if n > 0:
                v = v / n
        return dict(zip(self._keys, v.tolist(), strict=True))

    def _lift(self, center: dict[Any, float]) -> np.ndarray:
        c = np.array([center.get(k, 0.0) for k in self._keys], dtype=np.float64)
        return self._proj.T @ c if self._proj is not None else c

    # -- public API -------------------------------------------------------------
    def learn_predict(self, vector: np.ndarray) -> int:
        """Learn from ``vector`` and return its cluster id."""
        x = self._x(vector)
        self.n_learned += 1
        if self.algorithm == "kmeans":
            if self.n_seeded < self.n_clusters:
                return self._seed_one(x)
            return int(self.model.learn_predict_one(x))
        self.model.learn_one(x)
        return int(self.model.predict_one(x))

    def _seed_one(self, x: dict[str, float]) -> int:
        """Until k centres exist, each point far from all centres becomes the next one.

        River's KMeans starts every centre at ``mu`` (sigma = 0 for determinism); with a
        small halflife the first centre would then capture every correlated point.
        """
        xv = np.fromiter(x.values(), dtype=np.float64, count=len(x))
        mirror = self.model._matrix(self._keys)
        near = self._nearest_seeded(x)
        if near is not None and near[1] < self.seed_radius:
            j = near[0]
            mirror[j] += self.model.halflife * (xv - mirror[j])
            self.model.centers[j].update(zip(self._keys, mirror[j].tolist(), strict=True))
            return j
        cid = self.n_seeded
        default = self.model.centers[cid].default_factory
        self.model.centers[cid] = collections.defaultdict(default, x)
        mirror[cid] = xv
        self.n_seeded += 1
        return cid

    def _nearest_seeded(self, x: dict[str, float]) -> tuple[int, float] | None:
        if self.n_seeded == 0:
            return None
        xv = np.fromiter(x.values(), dtype=np.float64, count=len(x))
        # rows are centre ids 0..k-1 (the mirror follows sorted(centers)); x is in _keys order
        d = ((self.model._matrix(self._keys)[: self.n_seeded] - xv) ** 2).sum(axis=1)
        j = int(np.argmin(d))
        return j, float(d[j])

    def predict(self, vector: np.ndarray) -> int | None:
        """The cluster id of ``vector`` without learning (None before any learning)."""
        if self.n_learned == 0 and self.n_seeded == 0:
            return None
        if self.algorithm == "kmeans" and self.n_seeded < self.n_clusters:
            near = self._nearest_seeded(self._x(vector))
            return None if near is None else near[0]
        try:
            return int(self.model.predict_one(self._x(vector)))
        except (ValueError, KeyError, IndexError):  # DBSTREAM before its first cluster
            return None

    def centers(self) -> dict[int, np.ndarray]:
        """Cluster centres mapped back to the input space (exact when not projected)."""
        return {int(i): self._lift(c) for i, c in self.model.centers.items()}

    def seed_centers(self, centers: dict[int, np.ndarray]) -> None:
        """Start the k-means centres from offline centroids (ids kept)."""
        if self.algorithm != "kmeans":
            raise ClusteringError("only the kmeans clusterer can be seeded")
        default = next(iter(self.model.centers.values())).default_factory
        new = {}
        for i in range(self.n_clusters):
            vec = centers.get(i)
            values = self._x(vec) if vec is not None else {}
            new[i] = collections.defaultdict(default, values)
        self.model.centers = new
        self.model.invalidate()
        self.n_seeded = self.n_clusters

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(blob: bytes) -> OnlineClusterer:
        obj = pickle.loads(blob)
        if not isinstance(obj, OnlineClusterer):
            raise ClusteringError("checkpoint does not hold an OnlineClusterer")
        return obj
