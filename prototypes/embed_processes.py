"""Embedding shards in child processes, so that no shard waits for the worker's GIL.

Why: shard *threads* run torch without the GIL, but each pass still needs it
to tokenize, to start the TorchScript call and to hand its vectors back. In
the stream worker the feedback thread, the event loop and Qdrant Edge (whose
``flush`` holds the GIL) run Python beside them, and a pinned shard that waits
for the GIL leaves its core idle. A child process has its own interpreter; it
competes with the worker only for the cores, which the OS shares out.

A child runs the parent's traced graph (:class:`~prototypes.traced_encoder.TracedEncoder`,
saved once to a temporary folder) with torch and ``tokenizers`` alone, about
300 MB each; it checks its vectors on the probe texts against the parent's
before it takes work. It sets torch to one thread and, when asked, pins itself
to one core. Passes go to whichever child is free
(``concurrent.futures.ProcessPoolExecutor``, spawn start method: the program's
main module must be import-safe, as for any spawned process). A child exits
when its parent is gone (a SIGKILLed worker leaves no orphans). A child that
dies breaks the pool: the call raises :class:`~prototypes.exceptions.EmbedderError`
and the next call starts new children.

Examples
--------
>>> from prototypes.embed_processes import ProcessShards
>>> from prototypes.embedder import load_embedder
>>> enc = load_embedder("minilm", dtype="float32").traced
>>> shards = ProcessShards(enc, workers=2, cores=[])
>>> [v.shape for v in shards.map([["a quiet hotel"], ["a party hotel", "a spa"]])]
[(1, 384), (2, 384)]
>>> shards.close()
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from infra.hardware import pin_this_thread
from prototypes.exceptions import EmbedderError
from prototypes.traced_encoder import GRAPH_FILE, META_FILE, TOKENIZER_FILE, probe_vectors

PARENT_POLL_S = 0.5
"""How often a child checks that its parent is still alive."""

START_TIMEOUT_S = 300.0
"""How long a new pool waits for every child to load."""

MIN_CHILD_COSINE = 0.99999
"""A child's probe vectors against the parent's: the same graph and tokens, so equal
up to the order of float sums."""

_CHILD: Any = None
"""The encoder of this child process (set by :func:`_start_child`)."""


class SavableEncoder(Protocol):
    """What the children run: a :class:`~prototypes.traced_encoder.TracedEncoder`."""

    def save(self, folder: Path) -> None: ...

    def __call__(self, texts: Sequence[str]) -> np.ndarray: ...


class ProcessShards:
    """A pool of ``workers`` child processes that each embed one pass at a time.

    Parameters
    ----------
    encoder
        The parent's traced encoder; the children run a saved copy of it.
    workers
        Child processes.
    cores
        Cores to pin the children to, one each in turn; empty: not pinned.
    """

    def __init__(self, encoder: SavableEncoder, *, workers: int, cores: Sequence[int]) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self._encoder = encoder
        self._cores = list(cores)
        self._lock = threading.Lock()
        self._pool: cf.ProcessPoolExecutor | None = None
        self._pids: list[int] = []

    def start(self) -> list[int]:
        """Start the children unless running, wait until each has loaded; their pids.

        Raises
        ------
        EmbedderError
            A child could not load the graph, or its vectors differ from the parent's.
        """
        self._running()
        return self.pids()

    def _running(self) -> cf.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool, self._pids = self._spawn()
            return self._pool

    def _spawn(self) -> tuple[cf.ProcessPoolExecutor, list[int]]:
        folder = Path(tempfile.mkdtemp(prefix="pgenrm-shards-"))
        try:
            self._encoder.save(folder)
            expected = probe_vectors(self._encoder)
            # spawn, not fork: the parent runs torch, the broker clients and the
            # store on threads, which a forked child would inherit mid-state
            ctx = mp.get_context("spawn")
            cores: Any = ctx.Queue()
            for i in range(self.workers):
                cores.put(self._cores[i % len(self._cores)] if self._cores else None)
            pool = cf.ProcessPoolExecutor(
                self.workers,
                mp_context=ctx,
                initializer=_start_child,
                initargs=(str(folder), expected, cores, os.getpid()),
            )
            try:
                return pool, _wait_loaded(pool, self.workers)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        finally:  # every child has loaded the files (or failed): they are not needed
            shutil.rmtree(folder, ignore_errors=True)

    def map(self, passes: Sequence[list[str]]) -> Iterator[np.ndarray]:
        """The vectors of each pass, in order; passes run on whichever child is free.

        Raises
        ------
        EmbedderError
            A child died (the pool is dropped; the next call starts new children).
        """
        pool = self._running()
        try:
            futures = [pool.submit(_embed_in_child, texts) for texts in passes]
        except BrokenProcessPool as exc:
            self._drop(pool)
            raise EmbedderError(f"an embedding child process died: {exc}") from exc
        return self._results(pool, futures)

    def _results(
        self, pool: cf.ProcessPoolExecutor, futures: list[cf.Future[np.ndarray]]
    ) -> Iterator[np.ndarray]:
        try:
            for f in futures:
                yield f.result()
        except BrokenProcessPool as exc:
            self._drop(pool)
            raise EmbedderError(f"an embedding child process died: {exc}") from exc
        finally:
            for f in futures:
                f.cancel()

    def pids(self) -> list[int]:
        """Pids of the running children (empty before the first call)."""
        with self._lock:
            return list(self._pids) if self._pool is not None else []

    def _drop(self, pool: cf.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool, self._pids = None, []
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the children (waits for passes already running)."""
        with self._lock:
            pool, self._pool, self._pids = self._pool, None, []
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _wait_loaded(pool: cf.ProcessPoolExecutor, workers: int) -> list[int]:
    seen: set[int] = set()
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while len(seen) < workers:
            if time.monotonic() > deadline:
                raise EmbedderError(
                    f"{workers - len(seen)} embedding child processes did not load "
                    f"within {START_TIMEOUT_S:.0f} s"
                )
            # submitted together, they make the pool spawn one child per task; each
            # holds its child a moment, so a child that loaded first cannot take all
            futures = [pool.submit(_child_pid, 0.2) for _ in range(workers)]
            seen.update(f.result() for f in futures)
    except BrokenProcessPool as exc:
        raise EmbedderError(
            f"an embedding child process failed to start (its error is in stderr): {exc}"
        ) from exc
    return sorted(seen)


class _ChildEncoder:
    """A saved :class:`~prototypes.traced_encoder.TracedEncoder`, loaded without
    sentence-transformers or transformers."""

    def __init__(self, folder: Path) -> None:
        import torch
        from tokenizers import Tokenizer

        meta = json.loads((folder / META_FILE).read_text())
        self._graph = torch.jit.load(str(folder / GRAPH_FILE))
        tok = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        tok.enable_truncation(int(meta["max_length"]))
        tok.enable_padding(
            pad_id=int(meta["pad_id"]),
            pad_token=str(meta["pad_token"]),
            pad_type_id=int(meta["pad_type_id"]),
        )
        self._tokenizer = tok

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        enc = self._tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
        with torch.inference_mode():
            out = self._graph(ids, mask)
        return np.asarray(out.numpy(), dtype=np.float32)


def _start_child(folder: str, expected: np.ndarray, cores: Any, parent: int) -> None:
    global _CHILD
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    # a Ctrl-C reaches the whole process group; the parent decides when children stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(1)
    core = cores.get()
    if core is not None:
        pin_this_thread(core)
    encoder = _ChildEncoder(Path(folder))
    cos = (probe_vectors(encoder) * expected).sum(axis=1)
    if not float(cos.min()) >= MIN_CHILD_COSINE:
        raise EmbedderError(f"an embedding child's vectors differ (cosine {cos.min():.6f})")
    _CHILD = encoder


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(0)


def _child_pid(hold_s: float) -> int:
    time.sleep(hold_s)
    return os.getpid()


def _embed_in_child(texts: list[str]) -> np.ndarray:
    return _CHILD(texts)
