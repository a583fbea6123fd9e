"""Evaluate the embedding preference prior on PrefEval (development topics).

Users come from ``implicit_preference/choice-based``: the conversation query is the
context, the aligned option is chosen over each of the other three (so a full
history is 3 triples) and ``user_selection`` is the critique. Test pairs come from
``mcq_options`` (same index; its ``preference`` is checked): the question is the
context and option 0 (aligned) is compared with each of options 1..3. Ties count as
errors and are reported. The data are read in place and never copied.

Everything goes through the product path: :func:`~prototypes.user_update.apply_feedback`
builds the states, they are stored in Qdrant Edge, ``rebuild`` makes the prototypes,
and :mod:`prototypes.prior` scores.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infra.contracts import ChatMessage
from infra.settings import Settings
from prototypes.protocol import Embedder, UserState
from prototypes.refine import RefineConfig
from reward.protocol import HistoryItem


@dataclass
class PrefEvalUser:
    user_id: str
    topic: str
    history: list[HistoryItem]
    question: str
    options: list[str]
    """Test options; index 0 is aligned."""


@dataclass
class LoadReport:
    users: list[PrefEvalUser] = field(default_factory=list)
    mismatched: int = 0
    """Entries whose ``preference`` differs between the two folders (skipped)."""
    aligned_missing: int = 0


def load(root: Path, topics: int | None = None) -> LoadReport:
    """Read the choice-based histories and the mcq test pairs of every (or the first n) topic."""
    rep = LoadReport()
    files = sorted((root / "implicit_preference" / "choice-based").glob("*.json"))
    for f in files[:topics]:
        topic = f.stem
        imp = json.loads(f.read_text())
        mcq = json.loads((root / "mcq_options" / f.name).read_text())
        for i, (a, b) in enumerate(zip(imp, mcq, strict=False)):
            if a["preference"] != b["preference"]:
                rep.mismatched += 1
                continue
            aligned = a["aligned_op"]
            others = [o for o in a["options"] if o != aligned]
            if len(others) != len(a["options"]) - 1:
                rep.aligned_missing += 1
                continue
            conv = a["conversation"]
            ctx = [ChatMessage(role="user", content=conv["query"])]
            hist = [
                HistoryItem(
                    context=ctx, chosen=aligned, rejected=o, critique=conv.get("user_selection")
                )
                for o in others
            ]
            rep.users.append(
                PrefEvalUser(
                    user_id=f"{topic}/{i}",
                    topic=topic,
                    history=hist,
                    question=b["question"],
                    options=list(b["classification_task_options"]),
                )
            )
    return rep


class CachedEmbedder:
    """Memoises another embedder (the evaluation embeds the same texts repeatedly)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for t, v in zip(missing, self.inner.embed(missing), strict=True):
                self._cache[t] = v
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._cache[t] for t in texts])


def build_state(u: PrefEvalUser, embedder: Embedder, n_items: int | None = None) -> UserState:
    """Fold ``u``'s history (optionally only the first ``n_items``) through apply_feedback."""
    from prototypes.embedder import context_text
    from prototypes.user_update import apply_feedback

    state = UserState(user_id=u.user_id)
    for it in u.history[:n_items]:
        e = embedder.embed([it.chosen, it.rejected, context_text(it.context)])
        state = apply_feedback(state, it, e_chosen=e[0], e_rejected=e[1], e_query=e[2])
    return state


@dataclass
class Tally:
    correct: int = 0
    ties: int = 0
    pairs: int = 0
    missing: int = 0
    """Users with no prior at all (counted as wrong)."""

    def add(self, z: np.ndarray | None, e_opts: np.ndarray) -> None:
        if z is None:
            self.missing += 1
            self.pairs += len(e_opts) - 1
            return
        s = e_opts @ np.asarray(z, dtype=np.float64)
        for j in range(1, len(s)):
            self.pairs += 1
            if s[0] > s[j]:
                self.correct += 1
            elif s[0] == s[j]:
                self.ties += 1

    @property
    def accuracy(self) -> float:
        return self.correct / self.pairs if self.pairs else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "pairs": self.pairs, "ties": self.ties,
                "missing": self.missing}  # fmt: skip


def _rebuild_on(
    users: list[PrefEvalUser], embedder: Embedder, workdir: Path, k: int, epochs: int,
    cfg: RefineConfig,
) -> tuple[Settings, Any, Any]:  # fmt: skip
    from prototypes.assign import PrototypeAssigner
    from prototypes.clustering import OnlineClusterer
    from prototypes.prior import RefinedPrior
    from prototypes.rebuild import clusterer_path, rebuild, refiner_path
    from prototypes.refine import Refiner
    from prototypes.stores import open_stores
    from prototypes.user_update import search_vector

    settings = Settings(data_dir=workdir)
    stores = open_stores(settings, dim=embedder.dim)
    stores.users.put_many(
        [(s, search_vector(s)) for s in (build_state(u, embedder) for u in users)]
    )
    rebuild(settings, k=k, epochs=epochs, seed=cfg.seed, config=cfg, embedder=embedder,
            stores=stores, resume=False, show_progress=False)  # fmt: skip
    prior = RefinedPrior(Refiner.load(refiner_path(settings)), embedder)
    assigner = PrototypeAssigner(
        stores.prototypes, OnlineClusterer(dim=embedder.dim), clusterer_path(settings)
    )
    assigner.restore()
    return settings, stores, (prior, assigner)


def evaluate(
    root: Path,
    embedder: Embedder,
    *,
    k: int = 50,
    epochs: int = 1,
    config: RefineConfig | None = None,
    folds: int = 5,
    workdir: Path | None = None,
    topics: int | None = None,
) -> dict[str, Any]:
    """Pairwise accuracy of the prior (full / single-triple / cold start) and NMI."""
    from sklearn.metrics import normalized_mutual_info_score

    from prototypes.prior import cold_start_prior, global_prior, user_prior
    from prototypes.user_update import search_vector

    cfg = config or RefineConfig()
    emb = embedder if isinstance(embedder, CachedEmbedder) else CachedEmbedder(embedder)
    loaded = load(root, topics)
    users = loaded.users
    texts = [t for u in users for it in u.history for t in (it.chosen, it.rejected)]
    texts += [m.content for u in users for it in u.history for m in it.context]
    texts += [t for u in users for t in (u.question, *u.options)]
    emb.embed(texts)  # one batched pass; everything below hits the cache
    work = Path(workdir or tempfile.mkdtemp(prefix="prefeval-"))
    _, stores, (prior, assigner) = _rebuild_on(users, emb, work / "all", k, epochs, cfg)
    t = {
        n: Tally() for n in ("direction_full", "direction_single", "refined_full", "refined_single")
    }
    protos: list[int | None] = []
    topic_labels: list[str] = []
    for u in users:
        e_q = emb.embed([u.question])[0]
        e_opts = emb.embed(u.options).astype(np.float64)
        full = stores.users.get(u.user_id)
        single = build_state(u, emb, 1)
        single.prototype_id = assigner.clusterer.predict(search_vector(single))
        t["direction_full"].add(user_prior(full, e_q), e_opts)
        t["direction_single"].add(user_prior(single, e_q), e_opts)
        t["refined_full"].add(user_prior(full, e_q, prior), e_opts)
        t["refined_single"].add(user_prior(single, e_q, prior), e_opts)
        protos.append(full.prototype_id)
        topic_labels.append(u.topic)
    stores.close()
    cold = {n: Tally() for n in ("cold_prototype_z", "cold_prototype_z_query", "cold_global")}
    routed_same_topic = 0
    rng = np.random.default_rng(cfg.seed)
    fold_of = rng.permutation(len(users)) % folds
    topic_of = {u.user_id: u.topic for u in users}
    for f in range(folds):
        train = [u for u, g in zip(users, fold_of, strict=True) if g != f]
        test = [u for u, g in zip(users, fold_of, strict=True) if g == f]
        _, st, (pr, _) = _rebuild_on(train, emb, work / f"fold{f}", k, epochs, cfg)
        members: dict[int, list[str]] = {}
        for s, _v in st.users.scan():
            if s.prototype_id is not None:
                members.setdefault(s.prototype_id, []).append(topic_of[s.user_id])
        g = global_prior(st.prototypes)
        for u in test:
            e_q = emb.embed([u.question])[0]
            e_opts = emb.embed(u.options).astype(np.float64)
            p, z = cold_start_prior(st.prototypes, e_q)
            cold["cold_prototype_z"].add(z, e_opts)
            cold["cold_prototype_z_query"].add(cold_start_prior(st.prototypes, e_q, pr)[1], e_opts)
            cold["cold_global"].add(g, e_opts)
            if p is not None:
                tops = members.get(p.prototype_id, [])
                routed_same_topic += int(bool(tops) and max(set(tops), key=tops.count) == u.topic)
        st.close()
    labels = [p if p is not None else -1 for p in protos]
    return {
        "users": len(users),
        "topics": len(set(topic_labels)),
        "mismatched_entries": loaded.mismatched,
        "aligned_missing": loaded.aligned_missing,
        "k": k,
        "epochs": epochs,
        "config": cfg.__dict__,
        **{n: x.as_dict() for n, x in {**t, **cold}.items()},
        "cold_routed_to_majority_topic": routed_same_topic / len(users),
        "nmi_prototypes_topics": float(normalized_mutual_info_score(topic_labels, labels)),
        "prototypes_used": len(set(labels)),
    }
