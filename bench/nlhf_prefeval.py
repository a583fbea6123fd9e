"""RM-NLHF acceptance numbers on the PrefEval development topics.

The user's selection sentence (``user_selection``) is the human critique of a
pair (aligned option vs one other option, sides by a seeded coin); the user's
earlier preference statement is given to the model as stated preferences. For
every row the default model (``PGENRM_MODELS__MODEL``, SmolLM2 by default)
samples m_max evaluation chains with the product's template: PART 1 (the model's
critique) is generated, PART 2's scores are read out (``reward.readout``; the
CPU default, ``--no-readout`` samples the JSON instead).

Reported:

1. Outcome-process **inconsistency rate** (correct verdict, core-argument F1 < 0.5)
   and the **F1 distribution** over chains with a correct verdict and valid format
   (deterministic embedding matcher).
2. **MetaRM agreement on held-out users**: 2-fold cross-fitting by user; the
   MetaRM (embedding + MLP) is cold-started on one fold's chains and predicts the
   other fold's composite labels (MSE, Pearson, Spearman; baseline = predicting
   the training mean).
3. **Plain-mean vs MetaRM-weighted accuracy** at m = 4 and m = 8 (chains 1..m of
   each row; the weighted mean uses the MetaRM of the other fold). Ties and rows
   with no valid chain count as wrong and are reported.

Run: ``.venv/bin/python bench/nlhf_prefeval.py [--per-topic 1] [--m 8] [--max-new-tokens 160]``.
Needs ``../shared/data/prefeval`` (``--data`` or ``PGENRM_SHARED_DIR``); skips when absent.
Writes ``out/nlhf_prefeval.json``; generated chains are cached in
``out/nlhf_prefeval_chains.jsonl`` (gitignored) so a rerun with the same
settings only re-does the cheap parts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infra.contracts import ChatMessage  # noqa: E402
from infra.settings import Settings  # noqa: E402
from reward.nlhf.metrics import f1_summary, inconsistency_rate, metarm_agreement  # noqa: E402
from reward.nlhf.rewards import composite_label  # noqa: E402
from reward.nlhf.rows import NlhfRow  # noqa: E402
from reward.protocol import ChainParse, ScoreRequest, ScoreResult  # noqa: E402

console = Console()


def shared_prefeval(arg: str | None) -> Path | None:
    if arg:
        p = Path(arg)
    else:
        base = Path(os.environ.get("PGENRM_SHARED_DIR", REPO.parent / "shared"))
        p = base / "data" / "prefeval"
    return p if (p / "implicit_preference" / "choice-based").is_dir() else None


def fold_of(user_id: str) -> int:
    return int(hashlib.sha1(user_id.encode()).hexdigest(), 16) % 2


def generate(rows: list[NlhfRow], args: argparse.Namespace, cache: Path) -> dict[str, ScoreResult]:
    """ScoreResults per row id, from the cache where present."""
    from reward.backends import load_backend
    from reward.scoring import ChainScorer

    key = f"{args.m}|{args.max_new_tokens}|{args.temperature}|{args.seed}|readout={args.readout}"
    done: dict[str, ScoreResult] = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            d = json.loads(line)
            if d["key"] == key:
                done[d["row_id"]] = ScoreResult.model_validate(d["result"])
    todo = [r for r in rows if r.row_id not in done]
    if not todo:
        return done
    settings = Settings()
    backend = load_backend(settings.models, settings.models_dir)
    # PART 1 is always generated here: it is the model's critique. With readout the
    # scores after it are read from the model's 1..10 distribution (reward.readout).
    scorer = ChainScorer(
        backend,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        prefill=False,
        readout=args.readout,
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    with Progress(console=console) as prog, cache.open("a") as f:
        task = prog.add_task(f"chains (m={args.m})", total=len(todo))
        for i in range(0, len(todo), args.batch):
            chunk = todo[i : i + args.batch]
            reqs = [
                ScoreRequest(
                    user_id=r.user_id,
                    context=[ChatMessage(role="user", content=r.context)],
                    candidates=[r.response_a, r.response_b],
                    stated_preferences=r.meta.get("preference") or None,
                    samples=args.m,
                    debias=True,
                    seed=args.seed + i,
                )
                for r in chunk
            ]
            for r, res in zip(chunk, scorer.score_many(reqs), strict=True):
                done[r.row_id] = res
                f.write(
                    json.dumps(
                        {
                            "key": key,
                            "row_id": r.row_id,
                            "result": json.loads(res.model_dump_json()),
                        }
                    )
                    + "\n"
                )
                f.flush()
            prog.advance(task, len(chunk))
    return done


def accuracy(scores: list[float | None], winner: str) -> tuple[bool, str]:
    if len(scores) != 2 or scores[0] is None or scores[1] is None:
        return False, "no_valid_chain"
    if abs(scores[0] - scores[1]) < 1e-9:
        return False, "tie"
    return ("A" if scores[0] > scores[1] else "B") == winner, "ok"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--per-topic", type=int, default=1, help="entries per topic (1 row each)")
    ap.add_argument("--topics", type=int, default=14)
    ap.add_argument("--m", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=1, help="requests per generate call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--readout",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read PART 2 scores from the model's distribution (default) or sample the JSON",
    )
    ap.add_argument("--out", default=str(REPO / "out" / "nlhf_prefeval.json"))
    args = ap.parse_args()

    root = shared_prefeval(args.data)
    if root is None:
        console.print("[yellow]PrefEval not found (../shared/data/prefeval); skipping[/yellow]")
        return 0
    from prototypes.embedder import load_embedder
    from reward.nlhf.matchers import EmbeddingMatcher
    from reward.nlhf.metarm import MetaRM
    from reward.nlhf.prefeval import load_rows, topics
    from reward.nlhf.process import process_reward
    from reward.nlhf.verdict import verdict_from_chain
    from reward.nlhf.weighting import metarm_weighted_scores

    rows = list(
        load_rows(
            root, topic_names=topics(root)[: args.topics], per_topic=args.per_topic, seed=args.seed
        )
    )
    out = Path(args.out)
    t0 = time.perf_counter()
    results = generate(rows, args, out.with_name("nlhf_prefeval_chains.jsonl"))
    gen_s = time.perf_counter() - t0

    emb = load_embedder("minilm")
    matcher = EmbeddingMatcher(emb)
    # Per chain: verdict, q/F1, label and MetaRM input.
    chains: list[dict[str, Any]] = []
    for r in rows:
        res = results[r.row_id]
        ctx = (r.meta.get("preference", "") + "\n" + r.context).strip()
        for k, ch in enumerate(res.chains):
            v = verdict_from_chain(ch)
            pr = process_reward(r, v, matcher)
            chains.append(
                {
                    "row": r.row_id,
                    "user": r.user_id,
                    "k": k,
                    "format_ok": v.format_ok,
                    "correct": v.correct(r.winner),
                    "f1": pr.f1.f1 if pr.f1 else None,
                    "q": pr.q,
                    "reason": pr.reason,
                    "label": composite_label(v.correct(r.winner), pr.q),
                    "input": (ctx, r.response_a, r.response_b, v.critique),
                }
            )
    valid = [c for c in chains if c["format_ok"]]
    scored = [c for c in chains if c["f1"] is not None]
    incons = inconsistency_rate([True] * len(scored), [c["f1"] for c in scored])
    f1s = f1_summary([c["f1"] for c in scored])

    # MetaRM: 2-fold cross-fitting by user, on valid-format chains.
    metarms: dict[int, MetaRM] = {}
    preds: list[float] = []
    labels: list[float] = []
    f1_targets: list[tuple[float, float]] = []
    for fold in (0, 1):
        train = [c for c in valid if fold_of(c["user"]) != fold]
        test = [c for c in valid if fold_of(c["user"]) == fold]
        m = MetaRM(emb, seed=args.seed)
        if train:
            f = m.features(*[list(x) for x in zip(*[c["input"] for c in train], strict=True)])
            import numpy as np

            m.fit_features(f, np.array([c["label"] for c in train], dtype=np.float32), epochs=60)
        metarms[fold] = m
        if test:
            p = m.predict_many([c["input"] for c in test])
            preds.extend(float(x) for x in p)
            labels.extend(c["label"] for c in test)
            f1_targets.extend(
                (float(x), c["f1"]) for x, c in zip(p, test, strict=True) if c["f1"] is not None
            )
    agree = metarm_agreement(labels, preds)

    # Plain vs weighted accuracy at m = 4, 8.
    acc: dict[str, dict[str, Any]] = {}
    for m_val in sorted({min(4, args.m), args.m}):
        plain_ok = weighted_ok = 0
        plain_fail: dict[str, int] = {}
        weighted_fail: dict[str, int] = {}
        for r in rows:
            res = results[r.row_id]
            sub_chains: list[ChainParse] = res.chains[:m_val]
            from reward.scoring import aggregate

            sub = aggregate(sub_chains, 2, samples=m_val)
            ctx = (r.meta.get("preference", "") + "\n" + r.context).strip()
            ok, why = accuracy(sub.scores, r.winner)
            plain_ok += ok
            plain_fail[why] = plain_fail.get(why, 0) + (why != "ok")
            w = metarm_weighted_scores(
                sub,
                metarms[fold_of(r.user_id)],
                context=ctx,
                candidates=[r.response_a, r.response_b],
            )
            ok, why = accuracy(w, r.winner)
            weighted_ok += ok
            weighted_fail[why] = weighted_fail.get(why, 0) + (why != "ok")
        acc[f"m={m_val}"] = {
            "plain": plain_ok / len(rows),
            "metarm_weighted": weighted_ok / len(rows),
            "plain_failures": plain_fail,
            "weighted_failures": weighted_fail,
        }

    report = {
        "rows": len(rows),
        "users": len({r.user_id for r in rows}),
        "chains": len(chains),
        "valid_format_rate": len(valid) / max(1, len(chains)),
        "chain_accuracy": sum(c["correct"] for c in chains) / max(1, len(chains)),
        "inconsistency_rate": incons,
        "f1": f1s,
        "process_reasons": {
            k: sum(1 for c in chains if c["reason"] == k)
            for k in sorted({c["reason"] for c in chains})
        },
        "metarm_heldout": agree,
        "metarm_vs_f1_pearson": metarm_agreement(
            [t for _, t in f1_targets], [p for p, _ in f1_targets]
        ).get("pearson"),
        "accuracy": acc,
        "settings": {
            "m": args.m,
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
            "per_topic": args.per_topic,
            "topics": args.topics,
            "model": Settings().models.model,
            "matcher": f"embedding(minilm, tau={matcher.tau})",
        },
        "generation_seconds": gen_s,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))

    t = Table(title=f"RM-NLHF on PrefEval ({len(rows)} rows, {len(chains)} chains)")
    t.add_column("metric")
    t.add_column("value", justify="right")
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    t.add_row("valid-format rate", fmt(report["valid_format_rate"]))
    t.add_row("chain accuracy", fmt(report["chain_accuracy"]))
    t.add_row("inconsistency rate (correct, F1<0.5)", fmt(incons))
    t.add_row(
        "F1 mean / median (correct chains)",
        f"{fmt(f1s.get('mean'))} / {fmt(f1s.get('median'))}" if f1s.get("n") else "n/a",
    )
    t.add_row("F1 histogram [0,1] 5 bins", str(f1s.get("histogram", [])))
    t.add_row(
        "MetaRM held-out MSE (baseline)",
        f"{fmt(agree.get('mse'))} ({fmt(agree.get('baseline_mse'))})",
    )
    t.add_row(
        "MetaRM held-out Pearson / Spearman",
        f"{fmt(agree.get('pearson'))} / {fmt(agree.get('spearman'))}",
    )
    for m_key, row in acc.items():
        t.add_row(
            f"accuracy {m_key}: plain / MetaRM-weighted",
            f"{fmt(row['plain'])} / {fmt(row['metarm_weighted'])}",
        )
    t.add_row("generation seconds", f"{gen_s:.0f}")
    console.print(t)
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
