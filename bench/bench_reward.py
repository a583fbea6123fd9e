"""Benchmark of the generative reward core on CPU (not a test).

For each model (one subprocess per model, so that peak RSS is per model):

1. ``raw``: ``model.generate`` on exactly the batch the scorer builds for one
   request with m = 8 debiased chains (2 prompts x n = 4), same sampling settings.
2. ``batched``: ``ChainScorer.score`` on that request (render + generate + parse).
3. ``sequential``: the same 8 chains as 8 separate ``score`` calls of m = 1.
4. valid-parse rate of the m = 8 chains without and with the PART 2 prefill.

Targets: batched tokens/s >= 0.9x raw; m = 8 batched >= 3x faster than 8 sequential.

Usage::

    python bench/bench_reward.py --models smollm2 qwen0.5b --max-new-tokens 48 --out out/bench
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _request(samples: int, debias: bool) -> Any:
    from infra.contracts import ChatMessage
    from reward.protocol import HistoryItem, ScoreRequest

    def ctx(t: str) -> list[ChatMessage]:
        return [ChatMessage(role="user", content=t)]

    history = [
        HistoryItem(
            context=ctx("Recommend a laptop."),
            chosen="ThinkPad X1 Carbon: light, 14in.",
            rejected="There are many laptops; it depends on many factors...",
        ),
        HistoryItem(
            context=ctx("How do I boil an egg?"),
            chosen="Boil 9 minutes, cool in ice water.",
            rejected="Eggs have been eaten for millennia. First, some history...",
        ),
        HistoryItem(
            context=ctx("Best way to learn Rust?"),
            chosen="Read the Rust Book, build a CLI.",
            rejected="Learning is a journey with many paths.",
        ),
    ]
    return ScoreRequest(
        history=history,
        context=ctx("How do I make coffee with a French press?"),
        candidates=[
            "Coarse grind, 4 minutes steep, press slowly, pour.",
            "Coffee culture varies widely across the world; first, some history...",
        ],
        samples=samples,
        debias=debias,
        seed=0,
    )


def worker(model: str, models_dir: Path, max_new_tokens: int, samples: int) -> dict[str, Any]:
    import torch

    from reward.backends.transformers_backend import TransformersBackend
    from reward.models import resolve_model
    from reward.scoring import ChainScorer, chain_orders

    backend = TransformersBackend(resolve_model(model, models_dir))
    scorer = ChainScorer(backend, max_new_tokens=max_new_tokens)
    req = _request(samples, debias=True)
    orders = chain_orders(2, samples, True)
    distinct = [orders[0], orders[1]]
    n = samples // 2
    prompts = [scorer.template.render(req, o, history_size=3) for o in distinct]
    enc = backend.encode(prompts)
    kw = backend.generation_kwargs(n=n, temperature=1.0, max_tokens=max_new_tokens, stop=None)
    # Warm-up (first-call allocations), not timed.
    backend.generate(prompts[:1], n=1, max_tokens=4)

    # 1. raw model.generate on the same batch.
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.inference_mode():
        seqs = backend.model.generate(**enc, **kw)
    raw_s = time.perf_counter() - t0
    gen = seqs[:, enc["input_ids"].shape[1] :]
    raw_tokens = 0
    for row in gen.tolist():
        length = len(row)
        for k, t in enumerate(row):
            if t in backend.eos_ids:
                length = k + 1
                break
        raw_tokens += length

    # 2. our batched scorer, m chains in one call (no stop string, like raw).
    nostop = ChainScorer(backend, max_new_tokens=max_new_tokens, stop=None)
    t0 = time.perf_counter()
    res = nostop.score(req)
    ours_s = time.perf_counter() - t0

    # 3. the same number of chains as sequential m=1 calls (no debias: one chain per call).
    one = req.model_copy(update={"samples": 1, "debias": False})
    t0 = time.perf_counter()
    seq_tokens = 0
    for _ in range(samples):
        seq_tokens += scorer.score(one).generated_tokens
    seq_s = time.perf_counter() - t0
    batched_same = req.model_copy(update={"debias": False})
    t0 = time.perf_counter()
    bres = scorer.score(batched_same)
    bat_s = time.perf_counter() - t0

    # 4. valid-parse rate with the PART 2 prefill.
    pre = ChainScorer(backend, max_new_tokens=max_new_tokens, prefill=True).score(req)

    return {
        "model": model,
        "dtype": backend.dtype,
        "samples": samples,
        "max_new_tokens": max_new_tokens,
        "prompt_tokens": int(enc["input_ids"].shape[1]),
        "raw_tokens": raw_tokens,
        "raw_s": raw_s,
        "raw_tok_s": raw_tokens / raw_s,
        "ours_tokens": res.generated_tokens,
        "ours_s": ours_s,
        "ours_tok_s": res.generated_tokens / ours_s,
        "ratio_vs_raw": (res.generated_tokens / ours_s) / (raw_tokens / raw_s),
        "batched_m_s": bat_s,
        "batched_m_tokens": bres.generated_tokens,
        "sequential_s": seq_s,
        "sequential_tokens": seq_tokens,
        "speedup_batched_vs_sequential": seq_s / bat_s,
        "latency_ms_per_request_batched": bat_s * 1000,
        "latency_ms_per_call_sequential": seq_s * 1000 / samples,
        "valid_rate_no_prefill": sum(c.ok for c in res.chains) / len(res.chains),
        "failures_no_prefill": dict(res.failure_reasons),
        "valid_rate_prefill": sum(c.ok for c in pre.chains) / len(pre.chains),
        "failures_prefill": dict(pre.failure_reasons),
        "ties_prefill": pre.ties,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["smollm2", "qwen0.5b"])
    ap.add_argument("--models-dir", type=Path, default=REPO / "models")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--out", type=Path, default=REPO / "out" / "bench_reward")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.models_dir, args.max_new_tokens, args.samples)))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    rows = []
    for model in args.models:
        console.print(f"[bold]{model}[/bold]: running (one subprocess)...")
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            model,
            "--models-dir",
            str(args.models_dir),
            "--max-new-tokens",
            str(args.max_new_tokens),
            "--samples",
            str(args.samples),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            console.print(f"[red]{model} failed[/red]\n{proc.stderr[-2000:]}")
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    table = Table(title=f"reward core, m={args.samples}, {args.max_new_tokens} new tokens, CPU")
    for col in (
        "model",
        "raw tok/s",
        "ours tok/s",
        "ours/raw",
        "batched m s",
        "8x seq s",
        "speedup",
        "valid (no prefill)",
        "valid (prefill)",
        "peak RSS MiB",
    ):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["model"],
            f"{r['raw_tok_s']:.1f}",
            f"{r['ours_tok_s']:.1f}",
            f"{r['ratio_vs_raw']:.2f}",
            f"{r['batched_m_s']:.1f}",
            f"{r['sequential_s']:.1f}",
            f"{r['speedup_batched_vs_sequential']:.2f}x",
            f"{r['valid_rate_no_prefill']:.0%}",
            f"{r['valid_rate_prefill']:.0%}",
            f"{r['peak_rss_mib']:.0f}",
        )
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "bench_reward.json"
    path.write_text(json.dumps({"rows": rows, "created": time.time()}, indent=2) + "\n")
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
