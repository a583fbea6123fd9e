"""The scalable MetaRM: a scalar regression head on a causal LM (RM-NLHF's own design).

``AutoModelForSequenceClassification`` with ``num_labels=1`` over the text
``<conv_his>context, Response A, Response B</conv_his><critics>critique</critics>``
(no human critique), trained with MSE. Same API as
:class:`reward.nlhf.metarm.MetaRM`: ``predict``, ``fit``, ``update`` (one online
pass, update-then-use), ``save``/``load`` with a version counter. On GPUs pass
``device="cuda"`` and a bf16 ``dtype``; the paper used a 7B model, lr 1e-5 for
cold start and 5e-6 online.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reward.nlhf.exceptions import MetaRMError
from reward.nlhf.metarm import MetaRMExample

FORMAT_VERSION = 1


def metarm_text(context: str, response_a: str, response_b: str, critique: str) -> str:
    """The MetaRM's input text.

    >>> metarm_text("Hi", "a", "b", "A is kind.").splitlines()[:3]
    ['<conv_his>', 'Hi', '[Response A]']
    """
    return (
        f"<conv_his>\n{context}\n[Response A]\n{response_a}\n[Response B]\n{response_b}\n"
        f"</conv_his>\n<critics>\n{critique}\n</critics>"
    )


class LMMetaRM:
    """Sequence-classification MetaRM on any causal LM folder (e.g. models/smollm2).

    Parameters
    ----------
    model:
        A model folder or id (``reward.models.resolve_model``) or a folder written by :meth:`save`.
    lr, online_lr:
        AdamW learning rates of :meth:`fit` and :meth:`update`.
    max_length:
        Truncation length in tokens (left side kept: the critique is at the end).
    device, dtype:
        Torch device and dtype name.
    """

    kind = "lm-seqcls"

    def __init__(
        self,
        model: str,
        *,
        lr: float = 1e-5,
        online_lr: float = 5e-6,
        max_length: int = 1024,
        device: str = "cpu",
        dtype: str = "float32",
        seed: int = 0,
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.manual_seed(seed)
        self.source = model
        self.lr, self.online_lr, self.max_length = lr, online_lr, max_length
        self.device, self.dtype, self.seed = device, dtype, seed
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, truncation_side="left")
            if self.tokenizer.pad_token is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token
            self.model = AutoModelForSequenceClassification.from_pretrained(
                model, num_labels=1, dtype=getattr(torch, dtype)
            ).to(device)
        except (OSError, ValueError) as exc:
            raise MetaRMError(f"cannot load MetaRM backbone {model!r}: {exc}") from exc
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.01)
        self.version = 0
        self.updates = 0
        self.last_loss: float | None = None

    def _encode(self, texts: Sequence[str]) -> Any:
        return self.tokenizer(
            list(texts),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_length,
        ).to(self.device)

    def predict_many(
        self, items: Sequence[tuple[str, str, str, str]], batch_size: int = 8
    ) -> list[float]:
        """Predictions for ``(context, response_a, response_b, critique)`` tuples."""
        import torch

        self.model.eval()
        out: list[float] = []
        texts = [metarm_text(*it) for it in items]
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                logits = self.model(**self._encode(texts[i : i + batch_size])).logits
                out.extend(float(v) for v in logits.float().squeeze(-1).tolist())
        return out

    def predict(self, context: str, response_a: str, response_b: str, critique: str) -> float:
        return self.predict_many([(context, response_a, response_b, critique)])[0]

    def _pass(self, batch: Sequence[MetaRMExample], lr: float, batch_size: int) -> float:
        import torch

        for g in self.opt.param_groups:
            g["lr"] = lr
        self.model.train()
        losses = []
        for i in range(0, len(batch), batch_size):
            chunk = batch[i : i + batch_size]
            enc = self._encode(
                [metarm_text(e.context, e.response_a, e.response_b, e.critique) for e in chunk]
            )
            y = torch.tensor([e.label for e in chunk], dtype=torch.float32, device=self.device)
            pred = self.model(**enc).logits.float().squeeze(-1)
            loss = torch.nn.functional.mse_loss(pred, y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            losses.append(float(loss.detach()))
        return sum(losses) / len(losses)

    def fit(
        self, examples: Sequence[MetaRMExample], *, epochs: int = 3, batch_size: int = 8
    ) -> list[float]:
        """Cold-start training; mean loss per epoch."""
        if not examples:
            raise MetaRMError("no training examples")
        losses = [self._pass(examples, self.lr, batch_size) for _ in range(epochs)]
        self.version += 1
        self.last_loss = losses[-1]
        return losses

    def update(self, batch: Sequence[MetaRMExample], batch_size: int = 8) -> None:
        """One online pass over ``batch`` (no-op when empty)."""
        if not batch:
            return
        self.last_loss = self._pass(batch, self.online_lr, batch_size)
        self.version += 1
        self.updates += 1

    def save(self, path: str | Path) -> Path:
        """Write the model, tokenizer and ``metarm.json`` (version, counters) to ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        meta = {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "version": self.version,
            "updates": self.updates,
            "source": self.source,
            "lr": self.lr,
            "online_lr": self.online_lr,
            "max_length": self.max_length,
            "last_loss": self.last_loss,
        }
        (path / "metarm.json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu", dtype: str = "float32") -> LMMetaRM:
        path = Path(path)
        try:
            meta: dict[str, Any] = json.loads((path / "metarm.json").read_text())
        except (OSError, ValueError) as exc:
            raise MetaRMError(f"cannot load MetaRM from {path}: {exc}") from exc
        if meta.get("kind") != cls.kind:
            raise MetaRMError(f"{path} holds a {meta.get('kind')} MetaRM")
        m = cls(
            str(path),
            lr=meta["lr"],
            online_lr=meta["online_lr"],
            max_length=meta["max_length"],
            device=device,
            dtype=dtype,
        )
        m.version, m.updates, m.last_loss = (
            int(meta["version"]),
            int(meta["updates"]),
            meta["last_loss"],
        )
        return m
