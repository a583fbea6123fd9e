# ruff: noqa: E501
"""Prototype-layer benchmarks (issue 4): update path, neighbour queries, embedding step.

Usage::

    .venv/bin/python bench/bench_store.py [--users 5000] [--neighbour-users 100000]
        [--queries 300] [--texts 2048] [--clusterers] [--hnsw] [--out bench/results/bench_store.json]

1. **update path** (target >= 1,000 users/s, embeddings precomputed): for each event
   ``apply_feedback`` + ``search_vector`` + ``PrototypeAssigner.assign`` (river learn+predict,
   exact prototype statistics) + batched upsert of users and prototypes into Qdrant Edge.
   The raw limit beside it is Edge's own upsert rate for the same points.
2. **neighbour query** (target p95 <= 10 ms at 100k users on Qdrant Edge): ``find_neighbours``
   (top-8, filtered by ``prototype_id`` among 50 prototypes, self excluded), exact search
   unless ``--hnsw`` (then also after ``optimize()``).
3. **embedding step** (target >= 0.9x raw): ``embed_items`` on feedback triples vs the raw
   batched ``embedder.embed`` of the same texts, in the same run.
``--clusterers`` compares river algorithms (learn+predict per point, NMI vs 50 blobs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infra.contracts import ChatMessage  # noqa: E402
from reward.protocol import HistoryItem  # noqa: E402

D = 384
K = 50


def blobs(n: int, k: int = K, seed: int = 0, noise: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, D)) / np.sqrt(D)
    labels = rng.integers(0, k, n)
    x = centres[labels] + noise * rng.standard_normal((n, D)) / np.sqrt(D)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def item(i: int) -> HistoryItem:
    return HistoryItem(
        context=[ChatMessage(role="user", content=f"Can you suggest a place to stay, case {i}?")],
        chosen=f"A calm guesthouse near the park, option {i}.",
        rejected=f"A loud hostel above a nightclub, option {i}.",
        critique="too loud" if i % 3 == 0 else None,
    )


def bench_clusterers(n: int) -> list[dict[str, Any]]:
    from sklearn.metrics import normalized_mutual_info_score

    from prototypes.clustering import OnlineClusterer

    x, labels = blobs(n, seed=1)
    rows = []
    runs: list[tuple[str, dict[str, Any], int]] = [
        ("kmeans (32-d projection, default)", dict(algorithm="kmeans", project_dim=32), n),
        ("kmeans (64-d projection)", dict(algorithm="kmeans", project_dim=64), n),
        ("kmeans (raw 384-d)", dict(algorithm="kmeans", project_dim=None), min(n, 500)),
        ("dbstream (32-d projection)", dict(algorithm="dbstream", project_dim=32,
                                            clustering_threshold=1.0), n),
        ("dbstream (raw 384-d)", dict(algorithm="dbstream", project_dim=None), min(n, 1000)),
        ("streamkmeans (32-d projection)", dict(algorithm="streamkmeans", project_dim=32), n),
        ("river KMeans, pure Python (raw 384-d)", dict(algorithm="kmeans", project_dim=None, pure=True), min(n, 300)),
    ]  # fmt: skip
    for name, kw, m in runs:
        pure = kw.pop("pure", False)
        c = OnlineClusterer(n_clusters=K, dim=D, **kw)
        if pure:  # river's own distance loop, for comparison
            from river import cluster

            plain = cluster.KMeans(n_clusters=K, halflife=0.05, sigma=0.0, seed=0)
            plain.centers = c.model.centers
            c.model = plain
            c.n_seeded = K
        t0 = time.perf_counter()
        pred = [c.learn_predict(v) for v in x[:m]]
        ms = (time.perf_counter() - t0) / m * 1e3
        final = [c.predict(v) for v in x[:m]]
        rows.append({
            "algorithm": name, "points": m, "ms_per_point": ms,
            "nmi_online": float(normalized_mutual_info_score(labels[:m], pred)),
            "nmi_final": float(normalized_mutual_info_score(labels[:m], [p if p is not None else -1 for p in final])),
            "clusters": len(set(final)),
        })  # fmt: skip
    return rows


def bench_update(n: int, workdir: Path) -> dict[str, Any]:
    from infra.settings import Settings
    from prototypes.assign import PrototypeAssigner
    from prototypes.clustering import OnlineClusterer
    from prototypes.protocol import UserState
    from prototypes.stores import open_stores
    from prototypes.user_update import apply_feedback, search_vector

    direction, _ = blobs(n, seed=2)
    rng = np.random.default_rng(3)
    e_rej = rng.standard_normal((n, D)).astype(np.float32) * 0.05
    e_ch = e_rej + direction
    e_q, _ = blobs(n, seed=4)
    items = [item(i) for i in range(n)]
    stores = open_stores(Settings(data_dir=workdir / "update"), dim=D)
    assigner = PrototypeAssigner(
        stores.prototypes, OnlineClusterer(n_clusters=K, dim=D), None, write_through=False
    )
    states = [UserState(user_id=f"user-{i}") for i in range(n)]
    batch = 256
    # warm-up on other users (imports, first segment)
    warm = [UserState(user_id=f"warm-{i}") for i in range(50)]
    for i, s in enumerate(warm):
        s2 = apply_feedback(s, items[i], e_chosen=e_ch[i], e_rejected=e_rej[i], e_query=e_q[i])
        assigner.assign(s2, search_vector(s2), e_q[i])
        stores.users.put(s2, search_vector(s2))
    t0 = time.perf_counter()
    phase = {"apply": 0.0, "assign": 0.0, "upsert": 0.0}
    for start in range(0, n, batch):
        out = []
        for i in range(start, min(start + batch, n)):
            a = time.perf_counter()
            s = apply_feedback(
                states[i], items[i], e_chosen=e_ch[i], e_rejected=e_rej[i], e_query=e_q[i]
            )
            v = search_vector(s)
            b = time.perf_counter()
            assigner.assign(s, v, e_q[i])
            phase["apply"] += b - a
            phase["assign"] += time.perf_counter() - b
            out.append((s, v))
            states[i] = s
        a = time.perf_counter()
        stores.users.put_many(out)
        assigner.persist()
        phase["upsert"] += time.perf_counter() - a
    a = time.perf_counter()
    stores.flush()
    phase["flush"] = time.perf_counter() - a
    total = time.perf_counter() - t0
    # raw limit: Edge upsert of the same points, nothing else
    raw_store = open_stores(Settings(data_dir=workdir / "raw"), dim=D)
    pairs = [(s, search_vector(s)) for s in states]
    a = time.perf_counter()
    for start in range(0, n, batch):
        raw_store.users.put_many(pairs[start : start + batch])
    raw_store.flush()
    raw = time.perf_counter() - a
    sizes = sum(p.size for p in stores.prototypes.all())
    stores.close()
    raw_store.close()
    return {
        "users": n, "users_per_s": n / total, "seconds": total,
        "phase_seconds": phase, "raw_edge_upsert_users_per_s": n / raw,
        "prototype_sizes_sum": sizes, "expected_sizes_sum": n + len(warm),
    }  # fmt: skip


def build_neighbour_store(n: int, workdir: Path) -> tuple[Any, np.ndarray, np.ndarray, float]:
    from infra.settings import Settings
    from prototypes.protocol import UserState
    from prototypes.stores import open_stores

    x, labels = blobs(n, seed=5)
    hist = [item(i) for i in range(3)]
    stores = open_stores(Settings(data_dir=workdir / "neigh"), dim=D)
    t0 = time.perf_counter()
    chunk = 1000
    from rich.progress import Progress

    with Progress(transient=True) as prog:
        task = prog.add_task(f"upsert {n} users", total=n)
        for start in range(0, n, chunk):
            stores.users.put_many([
                (UserState(user_id=f"user-{i}", history=hist, prototype_id=int(labels[i]),
                           direction=x[i].tolist(), version=3, events_applied=3), x[i])
                for i in range(start, min(start + chunk, n))
            ])  # fmt: skip
            prog.advance(task, min(chunk, n - start))
    stores.flush()
    return stores, x, labels, time.perf_counter() - t0


def query_latency(stores: Any, x: np.ndarray, labels: np.ndarray, q: int) -> dict[str, float]:
    from prototypes.neighbours import find_neighbours
    from prototypes.protocol import UserState

    rng = np.random.default_rng(6)
    lat = []
    found = 0
    for i in rng.choice(len(x), size=q, replace=False):
        state = UserState(user_id=f"user-{i}")
        t0 = time.perf_counter()
        res = find_neighbours(stores.users, state, x[i], int(labels[i]), 8)
        lat.append((time.perf_counter() - t0) * 1e3)
        found += len(res)
        assert all(r.user_id != state.user_id and r.prototype_id == labels[i] for r in res)
    a = np.asarray(lat[5:])
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_neighbours": found / q}  # fmt: skip


def bench_embedding(n: int, rounds: int = 3) -> dict[str, Any]:
    """Raw batched ``embed`` vs the feedback embedding step, interleaved, median of rounds."""
    from prototypes.embedder import context_text, embed_items, load_embedder

    emb = load_embedder("minilm")
    items = [item(i) for i in range(n // 3)]
    texts = [t for it in items for t in (it.chosen, it.rejected, context_text(it.context))]
    emb.embed(texts[:64])  # warm-up
    raw, step = [], []
    for _ in range(rounds):
        a = time.perf_counter()
        for start in range(0, len(texts), 768):
            emb.embed(texts[start : start + 768])
        raw.append(len(texts) / (time.perf_counter() - a))
        a = time.perf_counter()
        for start in range(0, len(items), 256):
            embed_items(emb, items[start : start + 256])
        step.append(len(texts) / (time.perf_counter() - a))
    r, s_ = float(np.median(raw)), float(np.median(step))
    return {"texts": len(texts), "rounds": rounds, "raw_texts_per_s": r, "step_texts_per_s": s_,
            "ratio": s_ / r, "raw_all": raw, "step_all": step, "batch_size": emb.batch_size}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--neighbour-users", type=int, default=20000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--texts", type=int, default=1536)
    ap.add_argument("--clusterers", action="store_true")
    ap.add_argument("--hnsw", action="store_true")
    ap.add_argument("--skip", nargs="*", default=[], choices=["update", "neighbours", "embedding"])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bench_store.json")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console()
    res: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        if args.clusterers:
            with console.status("clusterers ..."):
                res["clusterers"] = bench_clusterers(2000)
            t = Table(title="river online clustering, 384-d, 50 blobs (learn+predict per point)")
            for c in ("algorithm", "points", "ms/point", "NMI online", "NMI final", "clusters"):
                t.add_column(c)
            for r in res["clusterers"]:
                t.add_row(r["algorithm"], str(r["points"]), f"{r['ms_per_point']:.3f}",
                          f"{r['nmi_online']:.3f}", f"{r['nmi_final']:.3f}", str(r["clusters"]))  # fmt: skip
            console.print(t)
        if "update" not in args.skip:
            with console.status("update path ..."):
                res["update"] = bench_update(args.users, work)
        if "neighbours" not in args.skip:
            stores, x, labels, build = build_neighbour_store(args.neighbour_users, work)
            res["neighbours"] = {"users": args.neighbour_users, "build_seconds": build,
                                 "exact": query_latency(stores, x, labels, args.queries)}  # fmt: skip
            if args.hnsw:
                a = time.perf_counter()
                stores.users.optimize()
                res["neighbours"]["optimize_seconds"] = time.perf_counter() - a
                stores.users.exact = False
                res["neighbours"]["hnsw"] = query_latency(stores, x, labels, args.queries)
            stores.close()
        if "embedding" not in args.skip:
            with console.status("embedding ..."):
                res["embedding"] = bench_embedding(args.texts)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    t = Table(title="prototype layer (issue 4 targets)")
    for c in ("measure", "value", "raw limit / note", "target", "verdict"):
        t.add_column(c)
    if "update" in res:
        u = res["update"]
        t.add_row("update+cluster+upsert users/s", f"{u['users_per_s']:.0f}",
                  f"Edge upsert alone {u['raw_edge_upsert_users_per_s']:.0f}/s", ">= 1000",
                  "PASS" if u["users_per_s"] >= 1000 else "FAIL")  # fmt: skip
    if "neighbours" in res:
        nb = res["neighbours"]
        for mode in ("exact", "hnsw"):
            if mode in nb:
                t.add_row(f"neighbour p95 ms ({mode}, {nb['users']} users)", f"{nb[mode]['p95_ms']:.2f}",
                          f"p50 {nb[mode]['p50_ms']:.2f} ms", "<= 10 ms",
                          "PASS" if nb[mode]["p95_ms"] <= 10 else "FAIL")  # fmt: skip
    if "embedding" in res:
        e = res["embedding"]
        t.add_row("embedding step texts/s", f"{e['step_texts_per_s']:.0f}",
                  f"raw batched {e['raw_texts_per_s']:.0f}/s (ratio {e['ratio']:.2f})", ">= 0.9x",
                  "PASS" if e["ratio"] >= 0.9 else "FAIL")  # fmt: skip
    console.print(t)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    prev = json.loads(args.out.read_text()) if args.out.exists() else {}
    prev.update(res)
    args.out.write_text(json.dumps(prev, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
