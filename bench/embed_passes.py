"""Sharded MiniLM calls of feedback-batch sizes: plain passes vs balanced passes.

The feedback path embeds one call per batch (3 texts per event) on one-core
shard threads. With plain passes (the sorted texts in slices of the batch size)
a call whose passes do not split evenly over the shards ends with one shard
working alone; :func:`prototypes.passes.balanced_passes` cuts the same texts so
the shards finish together. Calls alternate between the two cuts, on new events
every time, and the table gives the median time per call of each.

Run: ``.venv/bin/python bench/embed_passes.py [--calls 16] [--workers 2]``.
Writes ``out/embed_passes.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import track
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SIZES = (40, 70, 87, 109, 137, 200, 256)
"""Events per call: the latency phase's batches are 40-140 events, a backlog's 256."""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=16, help="calls per size, half of each cut")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "out")
    args = ap.parse_args()

    from bench_stream import cpu_description, make_events

    import prototypes.embedder as embedder_module
    from prototypes.embedder import load_embedder
    from prototypes.passes import balanced_passes
    from stream.service import feedback_texts

    def plain(lengths: Any, batch_size: int, shards: int) -> list[list[int]]:
        return balanced_passes(lengths, batch_size, 1)

    emb = load_embedder("minilm", batch_size=64, dtype="auto", workers=args.workers)
    events = make_events(sum(SIZES) * args.calls + 300, 10_000, seed=3, prefix="passes")
    emb.embed(feedback_texts(events[-300:]))  # warm the shards
    results: dict[str, Any] = {
        "cpu": cpu_description(),
        "workers": args.workers,
        "batch_size": emb.batch_size,
        "dtype": emb.dtype,
        "sizes": {},
    }
    pos = 0
    for n in track(SIZES, description="calls"):
        ms: dict[str, list[float]] = {"plain": [], "balanced": []}
        for k in range(args.calls):
            cut = "plain" if k % 2 == 0 else "balanced"
            embedder_module.balanced_passes = plain if cut == "plain" else balanced_passes
            texts = feedback_texts(events[pos : pos + n])
            pos += n
            t0 = time.perf_counter()
            emb.embed(texts)
            ms[cut].append((time.perf_counter() - t0) * 1000)
        embedder_module.balanced_passes = balanced_passes
        lengths = [len(t) for t in feedback_texts(events[:n])]
        results["sizes"][str(n)] = {
            "plain_ms": statistics.median(ms["plain"]),
            "balanced_ms": statistics.median(ms["balanced"]),
            "plain_passes": len(plain(lengths, emb.batch_size, args.workers)),
            "balanced_passes": len(balanced_passes(lengths, emb.batch_size, args.workers)),
            "runs_ms": ms,
        }

    t = Table(title=f"MiniLM on {args.workers} one-core shards, median ms per call")
    for col in ("events", "texts", "plain", "balanced", "change", "passes"):
        t.add_column(col, justify="right")
    for n, r in results["sizes"].items():
        change = r["balanced_ms"] / r["plain_ms"] - 1
        t.add_row(
            n,
            str(3 * int(n)),
            f"{r['plain_ms']:.0f}",
            f"{r['balanced_ms']:.0f}",
            f"{change:+.1%}",
            f"{r['plain_passes']} -> {r['balanced_passes']}",
        )
    Console().print(t)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "embed_passes.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
