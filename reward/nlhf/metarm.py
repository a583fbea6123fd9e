"""The MetaRM: predicts the composite label where no human critique exists.

Input: the conversation ``context``, the two responses and the model's *own*
critique; never the human critique. Target: y = o + 0.5 q in {0, 1, 1.5}
(:func:`reward.nlhf.rewards.composite_label`), learnt with MSE.

This is the CPU default: unit-norm sentence embeddings (``load_embedder("minilm")``)
of context x, responses a, b and critique c, turned into features
``[c*(a-b), x*(a-b), cosines, critique length]`` and a small MLP. The scalable
variant with a sequence-classification head on a causal LM is
:class:`reward.nlhf.metarm_lm.LMMetaRM`; both share this API.

Online use (RM-NLHF's update-then-use): every batch of rows that have a human
critique and a valid-format generation becomes :class:`MetaRMExample` s
(:func:`label_example`), :meth:`MetaRM.update` takes one optimisation pass over
them, and only then are rows without a critique scored. Each ``fit``/``update``
increments :attr:`MetaRM.version`; :meth:`MetaRM.save`/:meth:`MetaRM.load` keep
weights, optimiser state and version.

What the stream passes to ``update`` for a feedback event with a critique:
``context`` = the served request's conversation rendered as text (plus the user's
stated preferences, if any), ``response_a``/``response_b`` = the two candidates in
the served request's order, ``critique`` =
``critique_from_chain(chain.text, chain.order)`` of a chain the service served
for that request, and ``label`` = ``composite_label(verdict correct, q)`` where q
comes from the matcher against the event's critique. :func:`label_example` does
this; it returns None for a chain whose format is invalid (not trained on).

Examples
--------
>>> from prototypes.embedder import load_embedder
>>> m = MetaRM(load_embedder("minilm"), seed=0)
>>> ex = MetaRMExample("Pick a quiet hotel", "Quiet spa.", "Party hub.",
...                    "Response A is quiet, as asked.", 1.5)
>>> before = m.predict(ex.context, ex.response_a, ex.response_b, ex.critique)
>>> for _ in range(5):
...     m.update([ex])
>>> m.predict(ex.context, ex.response_a, ex.response_b, ex.critique) > before, m.version
(True, 5)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prototypes.protocol import Embedder
from reward.nlhf.exceptions import MetaRMError
from reward.nlhf.matchers import ArgumentMatcher
from reward.nlhf.process import process_reward
from reward.nlhf.rewards import composite_label
from reward.nlhf.rows import NlhfRow
from reward.nlhf.verdict import Verdict

FORMAT_VERSION = 1


@dataclass(frozen=True)
class MetaRMExample:
    """One labelled MetaRM input (no human critique in it)."""

    context: str
    response_a: str
    response_b: str
    critique: str
    label: float


def label_example(row: NlhfRow, verdict: Verdict, matcher: ArgumentMatcher) -> MetaRMExample | None:
    """The MetaRM example of a generation on a row with a human critique.

    None when the row has no critique or the generation's format is invalid
    (RM-NLHF trains the MetaRM only on valid-format human-critique rows).
    """
    pr = process_reward(row, verdict, matcher)
    if pr.reason in ("no_human_critique", "format_error"):
        return None
    label = composite_label(verdict.correct(row.winner), pr.q)
    return MetaRMExample(row.context, row.response_a, row.response_b, verdict.critique, label)


def _feature_dim(d: int) -> int:
    return 2 * d + 7


class MetaRM:
    """Embedding features + a small MLP regressor, trained with MSE.

    Parameters
    ----------
    embedder:
        A unit-norm :class:`~prototypes.protocol.Embedder`.
    hidden:
        Hidden units of the MLP.
    lr:
        Adam learning rate for cold-start :meth:`fit`.
    online_lr:
        Learning rate of :meth:`update` (one pass over the batch).
    weight_decay:
        Adam weight decay.
    seed:
        Initialisation seed.
    """

    kind = "embedding-mlp"

    def __init__(
        self,
        embedder: Embedder,
        *,
        hidden: int = 64,
        lr: float = 3e-3,
        online_lr: float = 3e-3,
        weight_decay: float = 1e-4,
        seed: int = 0,
    ) -> None:
        import torch

        self.embedder = embedder
        self.hidden = hidden
        self.lr = lr
        self.online_lr = online_lr
        self.weight_decay = weight_decay
        self.seed = seed
        self.version = 0
        self.updates = 0
        self.examples_seen = 0
        self.last_loss: float | None = None
        d = int(embedder.dim)
        gen = torch.Generator().manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(_feature_dim(d), hidden),
            torch.nn.GELU(),
            torch.nn.Linear(hidden, 1),
        )
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * (0.02 if p.dim() > 1 else 0.0))
            # Start at the middle of the label range.
            head: Any = self.net[2]
            head.bias.fill_(0.75)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)

    # -- features ----------------------------------------------------------
    def features(
        self,
        contexts: Sequence[str],
        response_as: Sequence[str],
        response_bs: Sequence[str],
        critiques: Sequence[str],
    ) -> np.ndarray:
        """Feature rows for aligned lists of inputs, shape ``(n, 2d + 7)``."""
        n = len(contexts)
        if not n:
            return np.zeros((0, _feature_dim(int(self.embedder.dim))), dtype=np.float32)
        vecs = self.embedder.embed([*contexts, *response_as, *response_bs, *critiques])
        x, a, b, c = (vecs[i * n : (i + 1) * n] for i in range(4))
        diff = a - b
        dots = np.stack(
            [
                (c * a).sum(1),
                (c * b).sum(1),
                (c * x).sum(1),
                (a * x).sum(1),
                (b * x).sum(1),
                (a * b).sum(1),
            ],
            axis=1,
        )
        length = np.array([[np.log1p(len(t)) / 8.0] for t in critiques], dtype=np.float32)
        return np.concatenate([c * diff, x * diff, dots, length], axis=1).astype(np.float32)

    def _examples_features(self, batch: Sequence[MetaRMExample]) -> tuple[np.ndarray, np.ndarray]:
        f = self.features(
            [e.context for e in batch],
            [e.response_a for e in batch],
            [e.response_b for e in batch],
            [e.critique for e in batch],
        )
        return f, np.array([e.label for e in batch], dtype=np.float32)

    # -- prediction --------------------------------------------------------
    def predict_features(self, feats: np.ndarray) -> np.ndarray:
        import torch

        if len(feats) == 0:
            return np.zeros(0, dtype=np.float32)
        self.net.eval()
        with torch.no_grad():
            out = self.net(torch.from_numpy(np.asarray(feats, dtype=np.float32))).squeeze(-1)
        return out.numpy().astype(np.float32)

    def predict(self, context: str, response_a: str, response_b: str, critique: str) -> float:
        """Predicted composite label of one generated critique."""
        return float(
            self.predict_features(self.features([context], [response_a], [response_b], [critique]))[
                0
            ]
        )

    def predict_many(self, items: Sequence[tuple[str, str, str, str]]) -> np.ndarray:
        """Predictions for ``(context, response_a, response_b, critique)`` tuples."""
        if not items:
            return np.zeros(0, dtype=np.float32)
        cols = list(zip(*items, strict=True))
        return self.predict_features(self.features(*cols))

    # -- training ----------------------------------------------------------
    def _step(self, feats: np.ndarray, labels: np.ndarray, lr: float) -> float:
        import torch

        for g in self.opt.param_groups:
            g["lr"] = lr
        self.net.train()
        x = torch.from_numpy(feats)
        y = torch.from_numpy(labels)
        loss = torch.nn.functional.mse_loss(self.net(x).squeeze(-1), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def fit_features(
        self, feats: np.ndarray, labels: np.ndarray, *, epochs: int = 30, batch_size: int = 32
    ) -> list[float]:
        """Cold-start training on precomputed features; mean loss per epoch."""
        if len(feats) == 0:
            raise MetaRMError("no training examples")
        rng = np.random.default_rng(self.seed)
        losses = []
        for _ in range(epochs):
            order = rng.permutation(len(feats))
            ep = []
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                ep.append(self._step(feats[idx], labels[idx], self.lr))
            losses.append(float(np.mean(ep)))
        self.version += 1
        self.examples_seen += len(feats)
        self.last_loss = losses[-1]
        return losses

    def fit(
        self, examples: Sequence[MetaRMExample], *, epochs: int = 30, batch_size: int = 32
    ) -> list[float]:
        """Cold-start training (e.g. on base-model rollouts labelled by the matcher)."""
        f, y = self._examples_features(examples)
        return self.fit_features(f, y, epochs=epochs, batch_size=batch_size)

    def update(self, batch: Sequence[MetaRMExample]) -> None:
        """One online step: one pass over ``batch`` (update-then-use). Empty batches are a no-op."""
        if not batch:
            return
        f, y = self._examples_features(batch)
        self.update_features(f, y)

    def update_features(self, feats: np.ndarray, labels: np.ndarray) -> None:
        """:meth:`update` on precomputed features."""
        if len(feats) == 0:
            return
        self.last_loss = self._step(feats, labels, self.online_lr)
        self.version += 1
        self.updates += 1
        self.examples_seen += len(feats)

    # -- persistence -------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "version": self.version,
            "updates": self.updates,
            "examples_seen": self.examples_seen,
            "embedder": str(getattr(self.embedder, "model_id", "")),
            "dim": int(self.embedder.dim),
            "hidden": self.hidden,
            "lr": self.lr,
            "online_lr": self.online_lr,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
            "last_loss": self.last_loss,
        }

    def save(self, path: str | Path) -> Path:
        """Write ``metarm.json`` + ``metarm.pt`` into folder ``path`` (atomically replaced)."""
        import torch

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / "metarm.pt.tmp"
        torch.save({"net": self.net.state_dict(), "opt": self.opt.state_dict()}, tmp)
        tmp.replace(path / "metarm.pt")
        (path / "metarm.json.tmp").write_text(json.dumps(self.meta(), indent=2))
        (path / "metarm.json.tmp").replace(path / "metarm.json")
        return path

    @classmethod
    def load(cls, path: str | Path, embedder: Embedder) -> MetaRM:
        """Read a folder written by :meth:`save`; ``embedder`` must match its dim."""
        import torch

        path = Path(path)
        try:
            meta = json.loads((path / "metarm.json").read_text())
            state = torch.load(path / "metarm.pt", map_location="cpu", weights_only=True)
        except (OSError, ValueError) as exc:
            raise MetaRMError(f"cannot load MetaRM from {path}: {exc}") from exc
        if meta.get("kind") != cls.kind or int(meta["dim"]) != int(embedder.dim):
            raise MetaRMError(f"{path} holds a {meta.get('kind')} MetaRM of dim {meta.get('dim')}")
        m = cls(
            embedder,
            hidden=int(meta["hidden"]),
            lr=float(meta["lr"]),
            online_lr=float(meta["online_lr"]),
            weight_decay=float(meta["weight_decay"]),
            seed=int(meta["seed"]),
        )
        m.net.load_state_dict(state["net"])
        m.opt.load_state_dict(state["opt"])
        m.version = int(meta["version"])
        m.updates = int(meta["updates"])
        m.examples_seen = int(meta["examples_seen"])
        m.last_loss = meta.get("last_loss")
        return m


def examples_to_json(examples: Sequence[MetaRMExample]) -> list[dict[str, Any]]:
    """Plain dicts (for logs and rollout files)."""
    return [asdict(e) for e in examples]
