"""History-aware attentive refinement of prototypes ([PG] §4.2, Eqs. 4–7), in torch on CPU.

For a user in prototype ``j`` with history items ``tau`` and a new query ``q_t``::

    o_tau   = tanh(W [q_tau ; y+_tau - y-_tau])
    alpha   = softmax_tau( o_tau.q_t / sqrt(d) + rho * o_tau.a_j / sqrt(d) )
    v_H     = sum_tau alpha_tau o_tau
    z_t     = a_j + lambda_q W_q q_t + lambda_s W_s v_H          (the preference prior)
    L       = -log sigmoid(z_t.y+ - z_t.y-) + lambda_cent |a_j - mu_j|^2 + lambda_tr |a_j - p_j|^2

``rho`` weighs the *prototype* term as in the paper (the released code put it on the
query term), both regularisers are in the loss (the code defined but never added
them), ``p_j`` is an EMA (0.98) of ``a_j``, and prototypes are re-normalised to unit
norm after every step. Training targets are leave-one-out: each history item is
predicted from the user's *other* items, so the model cannot copy the answer.
``W`` starts at ``[0 | I]`` and ``W_s`` at ``I`` (``W_q`` at 0), i.e. at "prototype +
the user's own mean preference direction", and learns from there.

Examples
--------
>>> import numpy as np
>>> r = Refiner.new(np.eye(4)[:2], RefineConfig(seed=0))
>>> z = r.z(np.array([0]), np.eye(4)[:1], np.zeros((1, 1, 4)), np.zeros((1, 1, 4)),
...         np.zeros((1, 1), dtype=bool))
>>> z.round(3).tolist()
[[1.0, 0.0, 0.0, 0.0]]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prototypes.exceptions import RefinementError


@dataclass
class RefineConfig:
    """Hyperparameters; the released code's defaults except ``lr`` (bench/prior_prefeval.py)."""

    rho: float = 0.5
    lam_q: float = 1.0
    lam_s: float = 1.0
    lam_cent: float = 1e-3
    lam_tr: float = 1e-3
    ema: float = 0.98
    lr: float = 1e-4
    """1e-3 in the released code; on PrefEval dev it overfits the leave-one-out task."""
    weight_decay: float = 1e-2
    batch_size: int = 16
    history: int = 3
    """Context items per sample (the paper's h = 3)."""
    seed: int = 0


def _net(k: int, d: int, cfg: RefineConfig) -> Any:
    import torch
    from torch import nn

    class RefinerNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.A = nn.Parameter(torch.zeros(k, d))
            self.W = nn.Linear(2 * d, d)
            self.Wq = nn.Linear(d, d, bias=False)
            self.Ws = nn.Linear(d, d, bias=False)
            with torch.no_grad():
                self.W.weight.zero_()
                self.W.weight[:, d:] = torch.eye(d)
                self.W.bias.zero_()
                self.Wq.weight.zero_()
                self.Ws.weight.copy_(torch.eye(d))

        def forward(self, proto: Any, q: Any, hq: Any, hd: Any, mask: Any) -> Any:
            a = self.A[proto]  # (B, d)
            o = torch.tanh(self.W(torch.cat([hq, hd], dim=-1)))  # (B, H, d)
            s = (o @ q.unsqueeze(-1)).squeeze(-1) + cfg.rho * (o @ a.unsqueeze(-1)).squeeze(-1)
            s = (s / math.sqrt(d)).masked_fill(~mask, -1e9)
            alpha = torch.softmax(s, dim=-1) * mask  # all-masked rows -> 0
            v = (alpha.unsqueeze(-1) * o).sum(dim=1)
            return a + cfg.lam_q * self.Wq(q) + cfg.lam_s * self.Ws(v)

    return RefinerNet()


@dataclass
class Samples:
    """Leave-one-out training samples as dense arrays (``N`` samples, ``H`` context slots)."""

    proto: np.ndarray  # (N,) int
    q: np.ndarray  # (N, d) target query
    diff: np.ndarray  # (N, d) e(y+) - e(y-) of the target
    hq: np.ndarray  # (N, H, d) context queries
    hd: np.ndarray  # (N, H, d) context diffs
    mask: np.ndarray  # (N, H) bool

    def __len__(self) -> int:
        return int(self.proto.shape[0])


def context_arrays(
    items_q: list[np.ndarray], items_d: list[np.ndarray], h: int, d: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad per-user ``(n_i, d)`` history arrays (newest last) to ``(U, h, d)`` + mask."""
    n = len(items_q)
    hq = np.zeros((n, max(h, 1), d), dtype=np.float32)
    hd = np.zeros_like(hq)
    mask = np.zeros((n, max(h, 1)), dtype=bool)
    for i, (qs, ds) in enumerate(zip(items_q, items_d, strict=True)):
        qs, ds = qs[-h:] if h else qs[:0], ds[-h:] if h else ds[:0]
        m = len(qs)
        if m:
            hq[i, :m], hd[i, :m], mask[i, :m] = qs, ds, True
    return hq, hd, mask


def leave_one_out(
    users_q: list[np.ndarray], users_d: list[np.ndarray], proto: np.ndarray, h: int
) -> Samples:
    """One sample per history item, its context the user's other (newest ``h``) items."""
    d = users_q[0].shape[1] if users_q else 0
    rows: list[tuple[int, int]] = [(u, i) for u, qs in enumerate(users_q) for i in range(len(qs))]
    if not rows:
        raise RefinementError("no history to learn from")
    cq, cd = [], []
    for u, i in rows:
        keep = [j for j in range(len(users_q[u])) if j != i]
        cq.append(users_q[u][keep])
        cd.append(users_d[u][keep])
    hq, hd, mask = context_arrays(cq, cd, h, d)
    return Samples(
        proto=np.array([proto[u] for u, _ in rows], dtype=np.int64),
        q=np.stack([users_q[u][i] for u, i in rows]).astype(np.float32),
        diff=np.stack([users_d[u][i] for u, i in rows]).astype(np.float32),
        hq=hq,
        hd=hd,
        mask=mask,
    )


class Refiner:
    """The trained refinement model; produces the prior ``z`` for a user and a query."""

    def __init__(self, net: Any, cfg: RefineConfig, mu: np.ndarray) -> None:
        import torch

        self.net = net
        self.cfg = cfg
        self.mu = mu.astype(np.float32)
        self.prev = torch.nn.functional.normalize(net.A.detach().clone(), dim=-1)

    @classmethod
    def new(cls, centroids: np.ndarray, cfg: RefineConfig | None = None) -> Refiner:
        import torch

        cfg = cfg or RefineConfig()
        torch.manual_seed(cfg.seed)
        k, d = centroids.shape
        net = _net(k, d, cfg)
        c = torch.as_tensor(centroids, dtype=torch.float32)
        with torch.no_grad():
            net.A.copy_(torch.nn.functional.normalize(c, dim=-1))
        return cls(net, cfg, np.asarray(centroids, dtype=np.float32))

    @property
    def k(self) -> int:
        return int(self.net.A.shape[0])

    @property
    def dim(self) -> int:
        return int(self.net.A.shape[1])

    def prototypes(self) -> np.ndarray:
        """The refined, unit-norm prototype vectors ``a_j``, shape ``(k, d)``."""
        return self.net.A.detach().numpy().copy()

    def _loss(self, batch: dict[str, Any]) -> tuple[Any, Any]:
        import torch

        z = self.net(batch["proto"], batch["q"], batch["hq"], batch["hd"], batch["mask"])
        delta = (z * batch["diff"]).sum(-1)
        pair = -torch.nn.functional.logsigmoid(delta).mean()
        a = self.net.A[batch["proto"]]
        mu = torch.as_tensor(self.mu)[batch["proto"]]
        prev = self.prev[batch["proto"]]
        reg = (
            self.cfg.lam_cent * ((a - mu) ** 2).sum(-1).mean()
            + self.cfg.lam_tr * ((a - prev) ** 2).sum(-1).mean()
        )
        return pair + reg, pair

    def evaluate(self, samples: Samples) -> float:
        """Mean total loss over ``samples`` (no gradient)."""
        import torch

        with torch.no_grad():
            loss, _ = self._loss(_tensors(samples, np.arange(len(samples))))
        return float(loss)

    def fit(
        self,
        samples: Samples,
        *,
        epochs: int = 1,
        optimizer_state: dict[str, Any] | None = None,
        on_epoch: Callable[[int, float], None] | None = None,
        start_epoch: int = 0,
    ) -> tuple[list[float], dict[str, Any]]:
        """Train; returns per-epoch mean losses and the optimizer state (for resuming)."""
        import torch

        opt = torch.optim.AdamW(
            self.net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
        )
        if optimizer_state:
            opt.load_state_dict(optimizer_state)
        rng = np.random.default_rng(self.cfg.seed + start_epoch)
        losses = []
        for epoch in range(start_epoch, start_epoch + epochs):
            order = rng.permutation(len(samples))
            total, n = 0.0, 0
            for s in range(0, len(order), self.cfg.batch_size):
                idx = order[s : s + self.cfg.batch_size]
                loss, _ = self._loss(_tensors(samples, idx))
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    self.net.A.copy_(torch.nn.functional.normalize(self.net.A, dim=-1))
                    self.prev.mul_(self.cfg.ema).add_((1 - self.cfg.ema) * self.net.A)
                total += float(loss.detach()) * len(idx)
                n += len(idx)
            losses.append(total / max(n, 1))
            if on_epoch:
                on_epoch(epoch, losses[-1])
        return losses, opt.state_dict()

    def z(
        self, proto: np.ndarray, q: np.ndarray, hq: np.ndarray, hd: np.ndarray, mask: np.ndarray
    ) -> np.ndarray:
        """Priors ``z`` for a batch: ``(B,)`` prototype ids, ``(B, d)`` queries, contexts."""
        import torch

        with torch.no_grad():
            out = self.net(
                torch.as_tensor(np.asarray(proto), dtype=torch.long),
                torch.as_tensor(np.asarray(q), dtype=torch.float32),
                torch.as_tensor(np.asarray(hq), dtype=torch.float32),
                torch.as_tensor(np.asarray(hd), dtype=torch.float32),
                torch.as_tensor(np.asarray(mask), dtype=torch.bool),
            )
        return out.numpy()

    def z_one(
        self, prototype_id: int, e_query: np.ndarray, hist_q: np.ndarray, hist_d: np.ndarray
    ) -> np.ndarray:
        """The prior for one user: ``hist_q``/``hist_d`` are ``(n, d)``, newest last."""
        hq, hd, mask = context_arrays([hist_q], [hist_d], self.cfg.history, self.dim)
        return self.z(np.array([prototype_id]), np.asarray(e_query)[None], hq, hd, mask)[0]

    def save(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        import torch

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "state_dict": self.net.state_dict(),
                "prev": self.prev,
                "mu": self.mu,
                "config": asdict(self.cfg),
                "extra": extra or {},
            },
            tmp,
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Refiner:
        import torch

        if not path.exists():
            raise RefinementError(f"no refiner at {path}")
        blob = torch.load(path, weights_only=False)
        cfg = RefineConfig(**blob["config"])
        k, d = blob["state_dict"]["A"].shape
        net = _net(k, d, cfg)
        net.load_state_dict(blob["state_dict"])
        r = cls(net, cfg, blob["mu"])
        r.prev = blob["prev"]
        return r


def _tensors(s: Samples, idx: np.ndarray) -> dict[str, Any]:
    import torch

    return {
        "proto": torch.as_tensor(s.proto[idx], dtype=torch.long),
        "q": torch.as_tensor(s.q[idx]),
        "diff": torch.as_tensor(s.diff[idx]),
        "hq": torch.as_tensor(s.hq[idx]),
        "hd": torch.as_tensor(s.hd[idx]),
        "mask": torch.as_tensor(s.mask[idx]),
    }
