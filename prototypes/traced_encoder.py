"""A sentence-transformers encoder traced into one TorchScript graph per forward pass.

Why: an eager MiniLM pass is about a hundred torch calls from Python, and each
takes the GIL back when it returns. In the worker the feedback state work runs
Python in another thread of the same process, so the embedding threads wait
for the GIL between ops. A TorchScript call runs the whole graph without
holding the GIL. Measured with ``bench/embed_contention.py``'s texts on the
2-core AMX box (events/s of 2 one-core threads, before the bf16 change below):
alone, eager 312-326 vs traced 315-337; beside a Python thread busy a quarter
of the time, 235-263 vs 291-318.

In bf16 every ``Linear`` runs on bf16 copies of its weights (cast once, where
autocast re-casts every weight on every pass) and returns bf16, so attention,
GELU and the residual adds run in bf16 as under autocast; LayerNorm keeps its
float32 weights and accumulates in float32, and the pooling is float32. On the
stream benchmark's texts: within cosine 0.99995 of float32 (autocast: 0.99995),
and 230 vs 183 events/s on one AMX core, 417 vs 334 on two one-core threads.

Only the plain layout is traced: a transformer, mean pooling, and optionally a
normalisation (all-MiniLM-L6-v2 and most sentence-transformers models). Any
other layout, or a trace that does not reproduce the eager vectors on probe
texts, raises :class:`~prototypes.exceptions.EmbedderError`, and the embedder
keeps its eager path.

Examples
--------
>>> from prototypes.embedder import load_embedder
>>> enc = trace_encoder(load_embedder("minilm", dtype="float32")._model, "float32")
>>> v = enc(["a quiet hotel", "a party hotel near the beach"])
>>> v.shape, round(float((v[0] ** 2).sum()), 3)
((2, 384), 1.0)
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prototypes.exceptions import EmbedderError

PROBE = [
    "ok",
    "Suggest a quiet hotel near the old town.",
    "Keep it short: a workout needs three steps, nothing more.",
    "There are many angles to a garden; first consider the context, then the constraints, "
    "then the options in detail, and finally weigh each trade-off carefully.",
    "Honestly? For a birthday just wing it a bit and see what feels fun, no stress!",
    " ".join(["A long text past the model's sequence limit, to trace truncation."] * 60),
]
"""Texts of very different lengths (one past any max_seq_length) to check a trace on."""

MIN_PROBE_COSINE = 0.9999


def probe_vectors(encoder: Any) -> np.ndarray:
    """``encoder``'s vectors of :data:`PROBE`, in two passes of other shapes than the traced one."""
    return np.concatenate([encoder(PROBE[:2]), encoder(PROBE[2:])])


GRAPH_FILE, TOKENIZER_FILE, META_FILE = "graph.pt", "tokenizer.json", "tokenizer_meta.json"
"""What :meth:`TracedEncoder.save` writes."""


def _layout(st_model: Any) -> Any:
    """The transformer of a ``Transformer, Pooling(mean)[, Normalize]`` model, else raise."""
    names = [type(m).__name__ for m in st_model]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise EmbedderError(f"cannot trace a {' + '.join(names)} sentence model")
    mode = getattr(st_model[1], "pooling_mode", None)
    if mode != "mean":
        raise EmbedderError(f"cannot trace {mode!r} pooling (mean only)")
    return st_model[0]


def _bf16_linears(module: Any) -> None:
    """Replace every ``nn.Linear`` under ``module`` by one computing in bf16 (in place)."""
    import torch

    class BF16Linear(torch.nn.Module):
        def __init__(self, linear: torch.nn.Linear) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(
                linear.weight.detach().to(torch.bfloat16), requires_grad=False
            )
            bias = linear.bias
            self.bias = (
                None
                if bias is None
                else torch.nn.Parameter(bias.detach().to(torch.bfloat16), requires_grad=False)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.linear(x.to(torch.bfloat16), self.weight, self.bias)

    for name, child in module.named_children():
        if isinstance(child, torch.nn.Linear):
            setattr(module, name, BF16Linear(child))
        else:
            _bf16_linears(child)


class TracedEncoder:
    """One traced forward pass: tokenize, encode, mean-pool, normalise.

    Calls are thread-safe (the graph holds no state); each runs on the calling
    thread's torch thread count. Use :func:`trace_encoder` to build one.
    """

    def __init__(self, transformer: Any, graph: Any, max_length: int) -> None:
        self._tokenizer = transformer.tokenizer
        self._graph = graph
        self.max_length = max_length

    def save(self, folder: Path) -> None:
        """Write the graph, the fast tokenizer and its padding to ``folder``.

        :class:`~prototypes.embed_processes.ProcessShards` children load them with
        torch and ``tokenizers`` alone: importing sentence-transformers (and with it
        transformers) costs a process about 290 MB, tracing another 230 MB.
        """
        import torch

        folder.mkdir(parents=True, exist_ok=True)
        torch.jit.save(self._graph, str(folder / GRAPH_FILE))
        self._tokenizer.backend_tokenizer.save(str(folder / TOKENIZER_FILE))
        meta = {
            "max_length": self.max_length,
            "pad_id": self._tokenizer.pad_token_id,
            "pad_token": self._tokenizer.pad_token,
            "pad_type_id": self._tokenizer.pad_token_type_id,
        }
        (folder / META_FILE).write_text(json.dumps(meta))

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 rows for ``texts``, in one forward pass (pad to the longest)."""
        import torch

        tok = self._tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        with torch.inference_mode():
            out = self._graph(tok["input_ids"], tok["attention_mask"])
        return np.asarray(out.numpy(), dtype=np.float32)


def trace_encoder(st_model: Any, dtype: str) -> TracedEncoder:
    """Trace ``st_model`` (a loaded ``SentenceTransformer`` on CPU) for ``dtype``.

    The trace is checked against the eager float32 model on :data:`PROBE`
    (every row within cosine :data:`MIN_PROBE_COSINE`), split into passes of
    other shapes than the traced one.

    Raises
    ------
    EmbedderError
        The layout is not traceable, tracing failed, or the probe check failed.
    """
    import torch

    transformer = _layout(st_model)
    model = copy.deepcopy(transformer.auto_model).eval()
    if dtype == "bfloat16":
        _bf16_linears(model)

    class Pooled(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask)[0].float()
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=-1)

    max_length = int(st_model.max_seq_length)
    pooled = Pooled(model).eval()
    example = transformer.tokenizer(
        PROBE[1:5], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            # the trace freezes two shape checks in transformers' mask code (no padding
            # past the mask, not causal): both hold for every encoder input
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            graph = torch.jit.trace(
                pooled,
                (example["input_ids"], example["attention_mask"]),
                strict=False,
                check_trace=False,
            )
            graph = torch.jit.freeze(graph)
    except Exception as exc:  # tracing is best-effort: the eager path stays
        raise EmbedderError(f"cannot trace the sentence model: {exc}") from exc
    encoder = TracedEncoder(transformer, graph, max_length)
    traced = probe_vectors(encoder)
    with torch.inference_mode():
        eager = st_model.encode(PROBE, convert_to_numpy=True, normalize_embeddings=True)
    cos = (traced * np.asarray(eager, dtype=np.float32)).sum(axis=1)
    if not float(cos.min()) >= MIN_PROBE_COSINE:
        raise EmbedderError(f"traced sentence model drifts from eager (cosine {cos.min():.5f})")
    return encoder
