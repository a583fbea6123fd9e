"""How much other Python work slows the sharded MiniLM embedding, in-process vs out.

The feedback path embeds on one-core shard threads while the state work runs in
another thread of the same process. This measures raw sharded embedding of the
stream benchmark's texts three ways: alone; next to a pure-Python thread busy a
quarter of the time (GIL contention plus CPU); next to the same work in another
process (CPU only).

Run: ``.venv/bin/python bench/embed_contention.py [--events 768] [--workers 2]``.
Writes ``out/embed_contention.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def busy(stop: Any, duty: float = 0.25, period_s: float = 0.1) -> None:
    """Pure-Python work for ``duty`` of every ``period_s`` until the event ``stop`` is set."""
    while not stop.is_set():
        t = time.perf_counter()
        while time.perf_counter() - t < duty * period_s:
            sum(i * i for i in range(200))
        time.sleep((1 - duty) * period_s)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=768)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "out")
    args = ap.parse_args()

    from bench_stream import cpu_description, make_events

    from prototypes.embedder import context_text, load_embedder

    texts: list[str] = []
    for ev in make_events(args.events, 200):
        texts += [context_text(ev.context), ev.chosen, ev.rejected]
    emb = load_embedder("minilm", batch_size=64, dtype="auto", workers=args.workers)
    emb.embed(texts[:200])

    def rates() -> list[float]:
        out = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            emb.embed(texts)
            out.append(args.events / (time.perf_counter() - t0))
        return out

    results: dict[str, object] = {"cpu": cpu_description(), "workers": args.workers}
    results["alone"] = rates()
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    th = threading.Thread(target=busy, args=(stop,), daemon=True)
    th.start()
    results["busy_thread"] = rates()
    stop.set()
    th.join()
    stop = ctx.Event()
    proc = ctx.Process(target=busy, args=(stop,), daemon=True)
    proc.start()
    time.sleep(1.0)  # the child has started and is busy
    results["busy_process"] = rates()
    stop.set()
    proc.join(10)

    t = Table(title=f"sharded MiniLM ({args.workers} one-core threads), events/s")
    t.add_column("beside")
    t.add_column("runs", justify="right")
    for k in ("alone", "busy_thread", "busy_process"):
        runs = results[k]
        assert isinstance(runs, list)
        t.add_row(k.replace("_", " "), ", ".join(f"{v:.0f}" for v in runs))
    Console().print(t)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "embed_contention.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
