"""The MiniLM embedder's dtypes: bf16 autocast stays on float32's vectors."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import pytest

from infra.hardware import bf16_supported
from infra.settings import ModelSettings
from prototypes.embedder import SentenceTransformerEmbedder, load_embedder, resolve_model_path
from prototypes.exceptions import EmbedderError

TEXTS = [
    "Suggest a quiet hotel near the old town.",
    "Keep it short: a workout needs three steps, nothing more.",
    "There are many angles to a garden; first consider the context, then the constraints, "
    "then the options in detail, and finally weigh each trade-off carefully.",
    "Honestly? For a birthday just wing it a bit and see what feels fun, no stress!",
    "I am vegan and I hate loud places.",
    "ok",
]


def test_bf16_autocast_matches_float32() -> None:
    fp32 = load_embedder("minilm", batch_size=4, dtype="float32")
    bf16 = load_embedder("minilm", batch_size=4, dtype="bfloat16")
    assert fp32 is not bf16
    a, b = fp32.embed(TEXTS), bf16.embed(TEXTS)
    assert a.shape == b.shape == (len(TEXTS), 384)
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = (a * b).sum(axis=1)
    assert cos.min() > 0.999, cos
    # the vectors are not the same computation: bf16 matmuls round differently
    assert not np.array_equal(a, b)
    # neighbours agree: the most similar text to each text is the same in both
    np.fill_diagonal(sa := a @ a.T, -1)
    np.fill_diagonal(sb := b @ b.T, -1)
    assert (sa.argmax(1) == sb.argmax(1)).all()


def test_auto_follows_the_cpu() -> None:
    emb = load_embedder("minilm", batch_size=4)
    assert emb.dtype == ("bfloat16" if bf16_supported() else "float32")
    assert ModelSettings().embedder_dtype == "auto"


def test_empty_input_and_bad_path() -> None:
    emb = load_embedder("minilm", dtype="float32")
    assert emb.embed([]).shape == (0, 384)
    with pytest.raises(EmbedderError, match="cannot load embedder"):
        SentenceTransformerEmbedder("/nonexistent/embedder", dtype="float32")


def test_default_batch_size_follows_the_dtype() -> None:
    from prototypes.embedder import default_batch_size, resolve_dtype

    assert (default_batch_size("float32"), default_batch_size("bfloat16")) == (16, 64)
    assert resolve_dtype("auto", "cuda") == "bfloat16"
    assert default_batch_size("auto") == (64 if bf16_supported() else 16)


def test_sharded_embedding_matches_one_call_in_order() -> None:
    texts = [f"{t} (variant {i})" for i in range(12) for t in TEXTS]  # 72 texts
    one = load_embedder("minilm", batch_size=8, dtype="float32")
    sharded = load_embedder("minilm", batch_size=8, dtype="float32", workers=2)
    assert sharded is not one and sharded.workers == 2
    a, b = one.embed(texts), sharded.embed(texts)
    assert b.shape == (len(texts), 384) and b.dtype == np.float32
    # row i is text i: the shards' rows went back to their places
    cos = (a * b).sum(axis=1)
    assert cos.min() > 0.9999, cos
    assert sharded._pool is not None  # the call was sharded, not run in this thread
    # shard threads run torch on one core each; this thread keeps its own count
    import torch

    threads = sharded._pool.submit(torch.get_num_threads).result()
    assert threads == 1


def masks_of(pool: Any, threads: int) -> list[set[int]]:
    """The affinity mask of each of a pool's ``threads`` threads."""
    # one task per thread: each waits at the barrier, so no thread answers twice
    barrier = threading.Barrier(threads)

    def mask() -> set[int]:
        barrier.wait(timeout=30)
        return set(os.sched_getaffinity(0))

    return [f.result() for f in [pool.submit(mask) for _ in range(threads)]]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="thread affinity is Linux-only")
def test_shard_threads_are_pinned_to_distinct_cores_unless_told_not_to() -> None:
    from prototypes.embedder import shard_cores

    texts = [f"{t} (variant {i})" for i in range(4) for t in TEXTS]  # 24 texts, 3 passes
    cores = shard_cores()
    assert cores == sorted(os.sched_getaffinity(0))
    workers = 2
    pinned = SentenceTransformerEmbedder(
        resolve_model_path("minilm"), batch_size=8, dtype="float32", workers=workers, pin=True
    )
    free = SentenceTransformerEmbedder(
        resolve_model_path("minilm"), batch_size=8, dtype="float32", workers=workers, pin=False
    )
    a, b = pinned.embed(texts), free.embed(texts)
    assert float((a * b).sum(axis=1).min()) > 0.9999  # pinning changes where, not what
    assert pinned._pool is not None and free._pool is not None

    got = masks_of(pinned._pool, workers)
    expected = [{cores[i % len(cores)]} for i in range(workers)]
    assert sorted(got, key=min) == sorted(expected, key=min)
    assert masks_of(free._pool, workers) == [set(cores)] * workers
    assert os.sched_getaffinity(0) == set(cores)  # the calling thread is left alone
    # auto: pinned only when the shards are at least as many as the cores
    path = resolve_model_path("minilm")
    if len(cores) <= 8:
        auto = SentenceTransformerEmbedder(path, batch_size=8, workers=len(cores))
        auto.embed(texts)
        assert auto._pool is not None
        assert sorted(masks_of(auto._pool, len(cores)), key=min) == [{c} for c in cores]
    if len(cores) >= 3:
        fewer = SentenceTransformerEmbedder(path, batch_size=8, workers=2)
        fewer.embed(texts)
        assert fewer._pool is not None
        assert masks_of(fewer._pool, 2) == [set(cores)] * 2


def test_small_calls_are_not_sharded() -> None:
    emb = SentenceTransformerEmbedder(
        resolve_model_path("minilm"), batch_size=8, dtype="float32", workers=2
    )
    emb.embed(TEXTS)  # 6 texts <= batch_size
    assert emb._pool is None


def test_default_workers() -> None:
    from infra.hardware import usable_cores
    from prototypes.embedder import default_workers

    assert default_workers(None) == min(usable_cores(), 4)
    assert default_workers(1) == 1 and default_workers(None, "cuda:0") == 1
    assert ModelSettings().embedder_workers is None
    with pytest.raises(ValueError, match="workers"):
        SentenceTransformerEmbedder("/unused", workers=0)


def test_traced_graph_matches_eager_and_unsupported_layouts_stay_eager() -> None:
    from prototypes.traced_encoder import trace_encoder

    texts = [f"{t} (variant {i})" for i in range(12) for t in TEXTS]
    eager = load_embedder("minilm", batch_size=8, dtype="float32", graph="eager")
    traced = load_embedder("minilm", batch_size=8, dtype="float32", graph="traced")
    assert (eager.graph, traced.graph) == ("eager", "traced")
    cos = (eager.embed(texts) * traced.embed(texts)).sum(axis=1)
    assert cos.min() > 0.9999, cos
    # a layout other than Transformer + mean Pooling is refused, not traced wrongly
    st = traced._model
    with pytest.raises(EmbedderError, match="cannot trace"):
        trace_encoder([st[0]], "float32")
