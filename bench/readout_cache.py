"""Score readout with and without the KV cache kept across candidate slots (not a test).

Each PrefEval pair is scored the way the service scores a request with readout:
the user's own history plus ``--neighbours`` other users of the same topic (their
histories stand in), m = 1 debiased (both orders), all in one ``score_many``
call, scores read after the PART 2 opening (prefill). ``fresh`` reads every slot
from a full prefill of the prompt (a backend seen through ``number_logprobs``
only); ``session`` keeps each prompt's KV cache from one slot to the next
(:func:`reward.readout.readout_session`). The two run back to back, pair by pair,
on the same model, and the largest score difference between them is reported.
PrefEval is read in place (``<shared>/data/prefeval``), never copied.

Usage::

    .venv/bin/python bench/readout_cache.py --pairs 4 --out out/readout_cache
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class _Fresh:
    """A backend seen without ``readout_session``: every slot prefills again."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.model_id = backend.model_id

    def generate(self, prompts: Sequence[Any], **kw: Any) -> Any:
        return self.backend.generate(prompts, **kw)

    def number_logprobs(self, prompts: Sequence[Any], numbers: Sequence[int]) -> Any:
        return self.backend.number_logprobs(prompts, numbers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    shared = Path(os.environ.get("PGENRM_SHARED_DIR", REPO.parent / "shared"))
    ap.add_argument("--root", type=Path, default=shared / "data" / "prefeval")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--models-dir", type=Path, default=REPO / "models")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--neighbours", type=int, default=2)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--modes", default="fresh,session", help="comma-separated: fresh, session")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "readout_cache")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from reward.backends.transformers_backend import TransformersBackend
    from reward.models import resolve_model
    from reward.protocol import HistoryItem, ScoreRequest
    from reward.scoring import ChainScorer
    from stream.evaluation.prefeval import load_prefeval

    console = Console()
    data = load_prefeval(args.root)
    by_topic: dict[str, list[str]] = {}
    for uid, user in data.users.items():
        by_topic.setdefault(user.topic, []).append(uid)

    def history(uid: str) -> list[HistoryItem]:
        return [
            HistoryItem(
                context=ev.context, chosen=ev.chosen, rejected=ev.rejected, critique=ev.critique
            )
            for ev in data.users[uid].history
        ]

    # Spread the pairs over topics (one per topic, in file order).
    pairs, seen = [], set()
    for p in data.pairs:
        if p.topic not in seen and len(by_topic[p.topic]) > args.neighbours:
            seen.add(p.topic)
            pairs.append(p)
        if len(pairs) == args.pairs:
            break
    jobs = []
    for p in pairs:
        others = [u for u in by_topic[p.topic] if u != p.user_id][: args.neighbours]
        jobs.append(
            [
                ScoreRequest(
                    user_id=u,
                    history=history(u),
                    context=p.messages(),
                    candidates=[p.aligned, p.other],
                    samples=1,
                    debias=True,
                )
                for u in [p.user_id, *others]
            ]
        )

    backend = TransformersBackend(resolve_model(args.model, args.models_dir), dtype=args.dtype)
    made = {
        "fresh": ChainScorer(_Fresh(backend), readout=True, prefill=True),
        "session": ChainScorer(backend, readout=True, prefill=True),
    }
    scorers = {name: made[name] for name in args.modes.split(",")}
    assert all(s.readout_active for s in scorers.values())
    next(iter(scorers.values())).score_many(jobs[0][:1])  # warm-up (digit ids, allocations)
    seconds: dict[str, list[float]] = {name: [] for name in scorers}
    scores: dict[str, list[Any]] = {name: [] for name in scorers}
    load = [os.getloadavg()[0]]
    with console.status(f"scoring {len(jobs)} pairs twice"):
        for reqs in jobs:
            for name, scorer in scorers.items():
                t0 = time.perf_counter()
                res = scorer.score_many(reqs)
                seconds[name].append(time.perf_counter() - t0)
                scores[name].append([c.scores for r in res for c in r.chains])
            load.append(os.getloadavg()[0])
    diff = None
    if len(scores) == 2:
        diff = max(
            abs(a - b)
            for fa, sa in zip(scores["fresh"], scores["session"], strict=True)
            for ca, cb in zip(fa, sa, strict=True)
            for a, b in zip(ca or [], cb or [], strict=True)
        )
    table = Table(title=f"readout, {args.model}, {len(jobs)} PrefEval pairs, n = {args.neighbours}")
    for col in ("readout", "s/pair", "min", "max"):
        table.add_column(col)
    for name, xs in seconds.items():
        table.add_row(name, f"{sum(xs) / len(xs):.2f}", f"{min(xs):.2f}", f"{max(xs):.2f}")
    console.print(table)
    mean = {k: sum(v) / len(v) for k, v in seconds.items()}
    speedup = mean["fresh"] / mean["session"] if len(mean) == 2 else None
    if speedup is not None and diff is not None:
        console.print(f"speed-up {speedup:.2f}x, max |score diff| {diff:.3f}")
    console.print(f"load (1 min) {min(load):.2f}-{max(load):.2f} on {os.cpu_count()} cores")
    report = {
        "model": args.model,
        "dtype": backend.dtype,
        "source": str(REPO),
        "pairs": len(jobs),
        "neighbours": args.neighbours,
        "chains_per_pair": sum(2 for _ in jobs[0]),
        "seconds": seconds,
        "s_per_pair": mean,
        "speedup": speedup,
        "max_score_diff": diff,
        "chain_scores": scores,
        "loadavg_1min": load,
        "cpus": os.cpu_count(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "readout_cache.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
