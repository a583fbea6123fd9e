"""Embedding shards in child processes: same vectors as threads, no orphans, recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infra.settings import ModelSettings
from prototypes.embed_processes import ProcessShards
from prototypes.embedder import SentenceTransformerEmbedder, load_embedder, resolve_model_path
from prototypes.exceptions import EmbedderError

REPO = Path(__file__).resolve().parents[2]
TEXTS = [f"question {i}: " + "how should I plan a quiet trip " * (1 + i % 5) for i in range(40)]


@pytest.fixture(scope="module")
def in_children() -> Iterator[SentenceTransformerEmbedder]:
    emb = SentenceTransformerEmbedder(
        resolve_model_path("minilm"), batch_size=8, dtype="float32", workers=2, processes=True
    )
    emb.child_processes().start()
    yield emb
    emb.close()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_children_give_the_threads_vectors_in_text_order(
    in_children: SentenceTransformerEmbedder,
) -> None:
    pids = in_children.child_processes().pids()
    assert len(pids) == 2 and os.getpid() not in pids
    threads = load_embedder("minilm", batch_size=8, dtype="float32", workers=2)
    a, b = threads.embed(TEXTS), in_children.embed(TEXTS)
    assert b.shape == (len(TEXTS), 384) and b.dtype == np.float32
    cos = (a * b).sum(axis=1)
    assert cos.min() > 0.9999, cos
    # a call within one pass runs here, not in a child
    assert in_children.embed(TEXTS[:3]).shape == (3, 384)


def test_a_dead_child_fails_the_call_and_the_next_call_starts_new_children(
    in_children: SentenceTransformerEmbedder,
) -> None:
    shards = in_children.child_processes()
    before = shards.pids()
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(before[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(EmbedderError, match="child process"):
        # the pool may notice the death only on the second call's submit
        for _ in range(3):
            in_children.embed(TEXTS)
            time.sleep(0.5)
    v = in_children.embed(TEXTS)
    assert v.shape == (len(TEXTS), 384)
    after = in_children.child_processes().pids()
    assert after and not set(after) & set(before)


def test_children_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from prototypes.embedder import load_embedder\n"
        "if __name__ == '__main__':\n"
        "    emb = load_embedder('minilm', batch_size=8, dtype='float32', workers=2,"
        " processes=True)\n"
        "    print(*emb.child_processes().pids(), flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)


class Negated:
    """The real traced encoder, saved as it is, but answering with negated vectors."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def save(self, folder: Path) -> None:
        self.inner.save(folder)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(-self.inner(texts))


def test_a_child_whose_vectors_differ_never_takes_work(
    in_children: SentenceTransformerEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    shards = ProcessShards(Negated(in_children.traced), workers=1, cores=[])
    with pytest.raises(EmbedderError, match="failed to start"):
        shards.start()
    assert shards.pids() == []
    assert not list(tmp_path.glob("pgenrm-shards-*"))  # the saved graph is removed


def test_processes_by_default_and_one_worker_never_spawns() -> None:
    assert ModelSettings().embedder_shard_processes is True
    one = load_embedder("minilm", batch_size=8, dtype="float32", workers=1, processes=True)
    assert one.processes is False
    assert one.embed(TEXTS).shape == (len(TEXTS), 384)
