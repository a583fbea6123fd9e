"""``pgenrm prototypes rebuild``: K-means bootstrap + attentive refinement + reassignment.

Stages, each checkpointed under ``<data_dir>/prototypes/`` so an interrupted run
resumes where it stopped (``rebuild_state.json`` names the last finished stage and the
run; a resume whose users differ from the saved stages' starts again from ``embed``):

1. ``embed``: read every stored user; embed the newest ``history + 1`` triples of up
   to ``max_train_users`` of them (the leave-one-out training set).
2. ``kmeans``: scikit-learn K-means (k, n_init = 10, seeded) over all users' search
   vectors; the centroids initialise the prototypes ``a_j``.
3. ``refine``: train the refinement model (:mod:`prototypes.refine`) epoch by epoch,
   checkpointing model + optimizer after each epoch.
4. ``assign``: reassign every user to its nearest refined prototype, write users and
   prototypes (exact sizes, centroids, query centroids, ``z = a_j``), seed the online
   clusterer with the new prototypes and checkpoint it.
5. ``report``: ``loss.png`` (loss curve + cluster sizes), ``report.md``, ``report.json``.

The stream worker should be stopped during a rebuild (or call
``PrototypeAssigner.restore()`` afterwards).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infra.settings import Settings
from prototypes.exceptions import RefinementError
from prototypes.protocol import Embedder, Prototype, UserState
from prototypes.refine import RefineConfig, Refiner, leave_one_out
from prototypes.stores import Stores, open_stores

STAGES = ("embed", "kmeans", "refine", "assign", "report")


@dataclass
class RebuildReport:
    """What a rebuild did (also written as ``report.json``)."""

    users: int = 0
    users_with_vector: int = 0
    train_users: int = 0
    samples: int = 0
    k: int = 0
    epochs: int = 0
    initial_loss: float | None = None
    losses: list[float] = field(default_factory=list)
    sizes: dict[int, int] = field(default_factory=dict)
    moved_by_refinement: float = 0.0
    """Share of users whose prototype changed between K-means and the refined reassignment."""
    seconds: dict[str, float] = field(default_factory=dict)
    resumed_from: str | None = None
    out_dir: str = ""


def out_dir(settings: Settings) -> Path:
    return settings.data_dir / "prototypes"


def refiner_path(settings: Settings) -> Path:
    return out_dir(settings) / "refiner.pt"


def clusterer_path(settings: Settings) -> Path:
    return out_dir(settings) / "clusterer.pkl"


def _progress() -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), transient=False,
    )  # fmt: skip


def _embed_users(
    states: list[UserState], embedder: Embedder, h: int, progress: Any
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from prototypes.embedder import context_text

    texts: dict[str, int] = {}
    layout = []
    for s in states:
        items = s.history[-(h + 1) :]
        rows = []
        for it in items:
            trip = (context_text(it.context), it.chosen, it.rejected)
            rows.append(tuple(texts.setdefault(t, len(texts)) for t in trip))
        layout.append(rows)
    order = list(texts)
    task = progress.add_task("embed history", total=len(order))
    chunks = []
    for i in range(0, len(order), 512):
        chunks.append(embedder.embed(order[i : i + 512]))
        progress.advance(task, len(order[i : i + 512]))
    E = np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)
    qs, ds = [], []
    for rows in layout:
        idx = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
        qs.append(E[idx[:, 0]])
        ds.append(E[idx[:, 1]] - E[idx[:, 2]])
    return qs, ds


def _plot(path: Path, report: RebuildReport) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    curve = ([report.initial_loss] if report.initial_loss is not None else []) + report.losses
    ax1.plot(range(len(curve)), curve, marker="o")
    ax1.set_xlabel("epoch (0 = before training)")
    ax1.set_ylabel("loss (pairwise + regularisers)")
    ax1.set_title("attentive refinement")
    sizes = sorted(report.sizes.values(), reverse=True)
    ax2.bar(range(len(sizes)), sizes)
    ax2.set_xlabel("prototype (by size)")
    ax2.set_ylabel("users")
    ax2.set_title(f"cluster sizes (k = {report.k}, {report.users_with_vector} users)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_report(out: Path, report: RebuildReport) -> None:
    (out / "report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    sizes = sorted(report.sizes.values())
    lines = [
        "# Prototype rebuild",
        "",
        f"- users: {report.users} ({report.users_with_vector} with a search vector)",
        f"- k = {report.k}; train users {report.train_users}, samples {report.samples}",
        f"- loss: {report.initial_loss} -> {report.losses[-1] if report.losses else None} "
        f"over {report.epochs} epochs",
        f"- cluster sizes: min {sizes[0] if sizes else 0}, median "
        f"{sizes[len(sizes) // 2] if sizes else 0}, max {sizes[-1] if sizes else 0}",
        f"- users moved by refinement: {report.moved_by_refinement:.1%}",
        f"- seconds: {json.dumps(report.seconds)}",
        "",
        "![loss and sizes](loss.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))


def rebuild(
    settings: Settings,
    k: int = 50,
    epochs: int = 1,
    *,
    seed: int = 0,
    config: RefineConfig | None = None,
    embedder: Embedder | None = None,
    stores: Stores | None = None,
    resume: bool = True,
    max_train_users: int = 5000,
    show_progress: bool = True,
) -> RebuildReport:
    """Run (or resume) the offline rebuild; see the module docstring."""
    from rich.console import Console
    from sklearn.cluster import KMeans

    cfg = config or RefineConfig(seed=seed)
    out = out_dir(settings)
    out.mkdir(parents=True, exist_ok=True)
    state_file = out / "rebuild_state.json"
    ckpt = out / "refine_checkpoint.pt"
    emb_file, km_file = out / "train_embeddings.npz", out / "kmeans.npz"

    def afresh() -> dict[str, Any]:
        # a new run id: a refine checkpoint is only ever resumed by the run that wrote it
        ckpt.unlink(missing_ok=True)
        fresh = {"k": k, "stages": [], "run": uuid.uuid4().hex}
        state_file.write_text(json.dumps(fresh))
        return fresh

    done: dict[str, Any] = (
        json.loads(state_file.read_text()) if resume and state_file.exists() else {}
    )
    if not resume or done.get("k") != k or not done.get("stages") or "run" not in done:
        done = afresh()
    report = RebuildReport(k=k, epochs=epochs, out_dir=str(out))
    own = stores is None
    stores = stores or open_stores(settings)
    console = Console(stderr=True, quiet=not show_progress)

    def finish(stage: str) -> None:
        done["stages"].append(stage)
        state_file.write_text(json.dumps(done))

    try:
        with _progress() if show_progress else _NullProgress() as progress:
            t0 = time.perf_counter()
            states: list[UserState] = []
            vectors: list[np.ndarray] = []
            unassign: list[UserState] = []
            total = 0
            for s, v in stores.users.scan(batch=512):
                total += 1
                if v is not None:
                    states.append(s)
                    vectors.append(v / max(float(np.linalg.norm(v)), 1e-12))
                elif s.prototype_id is not None or s.assigned_version is not None:
                    unassign.append(s)
            report.users, report.users_with_vector = total, len(states)
            if len(states) < 2:
                raise RefinementError(f"need at least 2 users with feedback, have {len(states)}")
            V = np.stack(vectors).astype(np.float32)
            k_eff = min(k, len(states))
            ids = np.array([s.user_id for s in states])
            # saved labels and picks are row indices of the scan that made them
            for stage, f in (("embed", emb_file), ("kmeans", km_file)):
                if stage in done["stages"] and not _same_ids(f, ids):
                    console.log(f"rebuild: the users changed since {stage}; restarting from embed")
                    done = afresh()
                    break
            report.resumed_from = done["stages"][-1] if done["stages"] else None
            if "embed" not in done["stages"]:
                rng = np.random.default_rng(seed)
                with_hist = [i for i, s in enumerate(states) if s.history]
                pick = sorted(
                    rng.choice(with_hist, size=min(max_train_users, len(with_hist)), replace=False)
                )
                if embedder is None:
                    from prototypes.embedder import load_embedder

                    embedder = load_embedder(
                        settings.models.embedder,
                        dtype=settings.models.embedder_dtype,
                        graph=settings.models.embedder_graph,
                    )
                qs, ds = _embed_users([states[i] for i in pick], embedder, cfg.history, progress)
                lens = np.array([len(q) for q in qs])
                np.savez(
                    emb_file, pick=np.array(pick), lens=lens,
                    q=np.concatenate(qs), d=np.concatenate(ds), ids=ids,
                )  # fmt: skip
                finish("embed")
            report.seconds["embed"] = time.perf_counter() - t0
            blob = np.load(emb_file)
            pick, lens = blob["pick"], blob["lens"]
            splits = np.cumsum(lens)[:-1]
            qs, ds = np.split(blob["q"], splits), np.split(blob["d"], splits)
            report.train_users = len(pick)

            t0 = time.perf_counter()
            resumed_refine = "kmeans" in done["stages"]
            if "kmeans" not in done["stages"]:
                km = KMeans(n_clusters=k_eff, n_init=10, random_state=seed).fit(V)
                np.savez(km_file, labels=km.labels_, centers=km.cluster_centers_, ids=ids)
                finish("kmeans")
            km_blob = np.load(km_file)
            labels, centers = km_blob["labels"], km_blob["centers"]
            report.seconds["kmeans"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            samples = leave_one_out(list(qs), list(ds), labels[pick], cfg.history)
            report.samples = len(samples)
            refiner = Refiner.new(centers, cfg)
            refiner.mu = np.stack(
                [
                    V[labels == j].mean(0) if (labels == j).any() else centers[j]
                    for j in range(k_eff)
                ]
            ).astype(np.float32)
            start, opt_state, losses = 0, None, []
            initial = refiner.evaluate(samples)
            c: dict[str, Any] | None = None
            if resumed_refine and ckpt.exists() and "refine" not in done["stages"]:
                import torch

                c = torch.load(ckpt, weights_only=False)
                if c.get("run") != done["run"] or c.get("k") != k_eff:
                    console.log("rebuild: ignoring a refine checkpoint of another run")
                    c = None
            if c is not None:
                refiner.net.load_state_dict(c["state_dict"])
                refiner.prev = c["prev"]
                start, opt_state, losses, initial = c["epoch"], c["opt"], c["losses"], c["initial"]
            if "refine" not in done["stages"]:
                task = progress.add_task("refine", total=epochs, completed=start)
                for epoch in range(start, epochs):
                    ep_losses, opt_state = refiner.fit(
                        samples, epochs=1, optimizer_state=opt_state, start_epoch=epoch
                    )
                    losses += ep_losses
                    import torch

                    torch.save(
                        {"state_dict": refiner.net.state_dict(), "prev": refiner.prev,
                         "epoch": epoch + 1, "opt": opt_state, "losses": losses,
                         "initial": initial, "run": done["run"], "k": k_eff},
                        ckpt,
                    )  # fmt: skip
                    progress.advance(task)
                    console.log(f"epoch {epoch + 1}/{epochs}: loss {ep_losses[-1]:.4f}")
                refiner.save(refiner_path(settings), {"losses": losses, "initial": initial})
                finish("refine")
                ckpt.unlink(missing_ok=True)  # refiner.pt holds the result
            else:
                refiner = Refiner.load(refiner_path(settings))
                meta = __import__("torch").load(refiner_path(settings), weights_only=False)
                losses, initial = meta["extra"]["losses"], meta["extra"]["initial"]
            report.initial_loss, report.losses = float(initial), [float(x) for x in losses]
            report.seconds["refine"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            A = refiner.prototypes()
            new_labels = np.argmax(V @ A.T, axis=1)
            report.moved_by_refinement = float(np.mean(new_labels != labels))
            if "assign" not in done["stages"]:
                _assign_all(stores, states, V, new_labels, A, seed, settings, progress, unassign)
                finish("assign")
            report.sizes = {int(j): int((new_labels == j).sum()) for j in range(k_eff)}
            report.seconds["assign"] = time.perf_counter() - t0

            _plot(out / "loss.png", report)
            _write_report(out, report)
            if "report" not in done["stages"]:
                finish("report")
            done["stages"] = []  # a later call starts afresh
            state_file.write_text(json.dumps(done))
        return report
    finally:
        if own:
            stores.close()


def _same_ids(path: Path, ids: np.ndarray) -> bool:
    """Whether the stage file ``path`` was made from the users ``ids``, in this order."""
    if not path.exists():
        return False
    with np.load(path) as blob:
        return "ids" in blob.files and np.array_equal(blob["ids"], ids)


def _assign_all(
    stores: Stores,
    states: list[UserState],
    V: np.ndarray,
    labels: np.ndarray,
    A: np.ndarray,
    seed: int,
    settings: Settings,
    progress: Any,
    unassign: Sequence[UserState] = (),
) -> None:
    from prototypes.assign import PrototypeAssigner
    from prototypes.clustering import OnlineClusterer

    old = {p.prototype_id: p for p in stores.prototypes.all()}
    k, d = A.shape
    task = progress.add_task("reassign users", total=len(states) + len(unassign))
    batch: list[tuple[UserState, np.ndarray | None]] = []
    # users without a search vector belong to no new prototype: stale ids would be recounted
    items = [(s, None, None) for s in unassign] + list(zip(states, V, labels, strict=True))
    for s, v, j in items:
        if v is None:
            s.prototype_id, s.assigned_version = None, None
            s.assigned_vector, s.assigned_query = [], []
        else:
            s.prototype_id = int(j)
            s.assigned_vector = v.astype(np.float64).tolist()
            s.assigned_query = list(s.query_embedding)
            s.assigned_version = s.version
        batch.append((s, v))
        if len(batch) >= 512:
            stores.users.put_many(batch)
            progress.advance(task, len(batch))
            batch = []
    if batch:
        stores.users.put_many(batch)
        progress.advance(task, len(batch))
    protos = []
    for j in range(k):
        m = labels == j
        qs = [
            np.asarray(s.query_embedding)
            for s, mm in zip(states, m, strict=True)
            if mm and s.query_embedding
        ]
        prev = old.get(j)
        protos.append(
            Prototype(
                prototype_id=j,
                centroid=V[m].mean(0).astype(np.float64).tolist() if m.any() else [],
                query_centroid=np.mean(qs, axis=0).tolist() if qs else [],
                z=A[j].astype(np.float64).tolist(),
                size=int(m.sum()),
                query_size=len(qs),
                refined=True,
                # a new clustering: prototype j is not the group it was, so its online
                # accuracy starts again (the version keeps counting, for compacted readers)
                outcomes=0,
                correct=0,
                version=(prev.version + 1) if prev else 1,
            )
        )
    stores.prototypes.delete_all()
    stores.prototypes.put(protos)
    clusterer = OnlineClusterer(n_clusters=k, dim=d, seed=seed)
    clusterer.seed_centers({j: A[j] for j in range(k)})
    PrototypeAssigner(stores.prototypes, clusterer, clusterer_path(settings)).checkpoint()
    stores.flush()


class _NullProgress:
    def __enter__(self) -> _NullProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *a: Any, **k: Any) -> int:
        return 0

    def advance(self, *a: Any, **k: Any) -> None:
        return None
