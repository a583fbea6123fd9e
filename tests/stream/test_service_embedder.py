"""The service's own embedder (none passed in): shards in child processes by default."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from infra.settings import Settings
from prototypes.embedder import SentenceTransformerEmbedder, default_workers
from stream.config import StreamConfig
from stream.service import PgenrmService, feedback_texts
from tests.stream.helpers import fb


def test_the_default_service_embeds_feedback_in_its_child_processes(
    svc_settings: Settings, embedder: Any, stream_config: StreamConfig
) -> None:
    svc = PgenrmService.open(svc_settings, config=stream_config)
    try:
        emb = svc.embedder
        assert isinstance(emb, SentenceTransformerEmbedder) and emb is not embedder
        sharded = default_workers(None) > 1
        assert emb.processes is sharded
        if sharded:
            pids = emb.child_processes().pids()
            assert len(pids) == emb.workers and os.getpid() not in pids
        events = [
            fb(f"e{i}", f"u{i % 5}", query=f"Plan trip number {i}, please?", chosen=f"Short {i}.")
            for i in range(40)
        ]
        texts = feedback_texts(events)
        assert len(texts) > emb.batch_size  # one call cut into passes
        got = svc.embed_feedback(events)
        want = embedder.embed(texts)
        cos = np.array([float(got[t] @ want[i]) for i, t in enumerate(texts)])
        assert cos.min() > 0.9999, cos
        outs = svc.apply_feedback(events, vectors=got)
        assert [o.status for o in outs] == ["applied"] * 40
        state = svc.user("u3")
        assert state is not None and state.history_size == 8
    finally:
        svc.close()
