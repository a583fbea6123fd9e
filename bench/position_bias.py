"""Position bias of the default model before and after debiasing (not a test).

A pair (A, B) is shown both as [A, B] and as [B, A].

* before: one chain per presentation, no debiasing. The pair is *position-biased*
  when the model picks the same slot in both presentations (so its verdict
  followed the slot, not the content).
* after: each presentation is scored with debiasing (both orders at m = 1, means
  over chains). The pair is position-biased when the two debiased verdicts pick
  different content.

Rates are over *evaluable* pairs (both verdicts parsed, no ties); unparsable and
tied pairs are counted and reported. ``slot1_advantage`` is the mean score of the
candidate shown first minus the one shown second, over single-order chains.
Pairs come from a small set the project writes below and, when present, from
``<shared>/data/prefeval/mcq_options``
(read in place, never copied). By default scores are read out
(:mod:`reward.readout`) after the PART 2 opening, the service's CPU default, so
every chain yields scores; ``--no-readout`` samples the JSON instead (SmolLM2 then
rarely writes parsable scores) and ``--no-prefill`` generates PART 1 first.

Usage::

    python bench/position_bias.py --pairs 6 --out out/position_bias
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# (stated preference, query, preferred answer, other answer), written for this bench.
OWN_PAIRS: list[tuple[str, str, str, str]] = [
    (
        "I want short, direct answers.",
        "How do I make coffee with a French press?",
        "Coarse grind, 4 minutes, press, pour.",
        "Coffee has a long history across many cultures; before brewing, consider the origins of "
        "the bean, the roast, the water chemistry and the many philosophies of extraction.",
    ),
    (
        "I am vegetarian.",
        "Suggest a quick dinner.",
        "A chickpea and spinach curry with rice, ready in 20 minutes.",
        "Pan-seared steak with garlic butter, ready in 20 minutes.",
    ),
    (
        "I hate travelling by plane.",
        "How should I get from Paris to Berlin?",
        "Take the direct night train or a daytime ICE via Frankfurt, about 8-9 hours.",
        "Fly: a 1h45 direct flight from CDG to BER is the fastest.",
    ),
    (
        "I am a beginner programmer.",
        "What is recursion?",
        "A function that calls itself on a smaller piece of the problem, like Russian dolls.",
        "Recursion is a fixed-point construction, e.g. via the Y combinator in lambda calculus.",
    ),
    (
        "I prefer budget options.",
        "Recommend headphones for commuting.",
        "Soundcore Q30: good noise cancelling for about $60.",
        "Sony WH-1000XM5: top noise cancelling for about $400.",
    ),
    (
        "I love formal, polite language.",
        "Write a one-line reply declining a meeting.",
        "Thank you kindly for the invitation; regrettably, I am unable to attend.",
        "nah can't make it lol",
    ),
    (
        "I have a nut allergy.",
        "Suggest a snack for a hike.",
        "Dried apricots and sunflower-seed-free granola bars labelled nut-free.",
        "Trail mix with almonds, cashews and peanuts.",
    ),
    (
        "I like detailed, step-by-step explanations.",
        "How do I change a bike tyre?",
        "1. Shift to the smallest cog. 2. Open the brake. 3. Remove the wheel. 4. Lever the tyre "
        "off. 5. Swap the tube. 6. Reseat the tyre and inflate.",
        "Take the wheel off and swap the tube.",
    ),
]


def shared_pairs(limit: int) -> list[tuple[str, str, str, str]]:
    base = Path(os.environ.get("PGENRM_SHARED_DIR", REPO.parent / "shared")) / "data" / "prefeval"
    folder = base / "mcq_options"
    if not folder.is_dir():
        return []
    out: list[tuple[str, str, str, str]] = []
    files = sorted(folder.glob("*.json"))
    i = 0
    while len(out) < limit and files:
        f = files[i % len(files)]
        entries = json.loads(f.read_text())
        k = i // len(files)
        if k < len(entries):
            e = entries[k]
            opts = e["classification_task_options"]
            out.append((e["preference"], e["question"], opts[0], opts[1]))
        i += 1
        if i > limit * len(files):
            break
    return out


def _req(pref: str, query: str, cands: list[str], debias: bool, seed: int) -> Any:
    from infra.contracts import ChatMessage
    from reward.protocol import ScoreRequest

    return ScoreRequest(
        stated_preferences=pref,
        context=[ChatMessage(role="user", content=query)],
        candidates=cands,
        samples=1,
        debias=debias,
        seed=seed,
    )


def _winner(scores: list[float | None]) -> int | None:
    if any(s is None for s in scores):
        return None
    vals = [float(s) for s in scores if s is not None]
    top = max(vals)
    if sum(1 for v in vals if abs(v - top) < 1e-9) > 1:
        return -1  # tie
    return vals.index(top)


def measure(pairs: list[tuple[str, str, str, str]], scorer: Any) -> dict[str, Any]:
    reqs = []
    for i, (pref, q, a, b) in enumerate(pairs):
        reqs += [
            _req(pref, q, [a, b], False, i),
            _req(pref, q, [b, a], False, i),
            _req(pref, q, [a, b], True, i),
            _req(pref, q, [b, a], True, i),
        ]
    t0 = time.perf_counter()
    results = scorer.score_many(reqs)
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {"pairs": len(pairs), "seconds": seconds}
    adv = [
        c.scores[c.order.index(0)] - c.scores[c.order.index(1)]
        for p in range(len(pairs))
        for r in results[4 * p : 4 * p + 2]
        for c in r.chains
        if c.ok and c.scores is not None
    ]
    out["slot1_advantage"] = sum(adv) / len(adv) if adv else None
    for name, off in (("before", 0), ("after", 2)):
        biased = evaluable = ties = unparsed = slot1 = correct = 0
        for p in range(len(pairs)):
            ab, ba = results[4 * p + off], results[4 * p + off + 1]
            wa, wb = _winner(ab.scores), _winner(ba.scores)
            if wa is None or wb is None:
                unparsed += 1
                continue
            if wa == -1 or wb == -1:
                ties += 1
                continue
            evaluable += 1
            # Same slot/index in both presentations = the verdict followed position.
            biased += int(wa == wb)
            slot1 += int(wa == 0) + int(wb == 0)
            correct += int(wa == 0) + int(wb == 1)
        out[name] = {
            "evaluable": evaluable,
            "position_biased": biased,
            "bias_rate": biased / evaluable if evaluable else None,
            "first_slot_share": slot1 / (2 * evaluable) if evaluable else None,
            "accuracy": correct / (2 * evaluable) if evaluable else None,
            "ties": ties,
            "unparsed": unparsed,
        }
    chains = [c for r in results for c in r.chains]
    out["chains"] = len(chains)
    out["valid_chain_rate"] = sum(c.ok for c in chains) / len(chains) if chains else None
    fails: dict[str, int] = {}
    for r in results:
        for k, v in r.failure_reasons.items():
            fails[k] = fails.get(k, 0) + v
    out["failure_reasons"] = fails
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--models-dir", type=Path, default=REPO / "models")
    ap.add_argument("--pairs", type=int, default=6, help="pairs per source")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--no-prefill", action="store_true")
    ap.add_argument("--no-readout", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "position_bias")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from reward.backends.transformers_backend import TransformersBackend
    from reward.models import resolve_model
    from reward.scoring import ChainScorer

    console = Console()
    backend = TransformersBackend(resolve_model(args.model, args.models_dir))
    scorer = ChainScorer(
        backend,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        prefill=not args.no_prefill,
        history_size=0,
        max_batch_prompts=16,
        readout=not args.no_readout,
    )
    sources = {"own": OWN_PAIRS[: args.pairs]}
    pe = shared_pairs(args.pairs)
    if pe:
        sources["prefeval"] = pe
    else:
        console.print("prefeval not found: skipped")
    report: dict[str, Any] = {
        "model": args.model,
        "prefill": not args.no_prefill,
        "readout": scorer.readout_active,
        "temperature": args.temperature,
        "max_new_tokens": args.max_new_tokens,
        "sources": {},
    }
    table = Table(
        title=f"position bias, {args.model}, prefill={not args.no_prefill}, "
        f"readout={scorer.readout_active}"
    )
    for col in (
        "source",
        "phase",
        "pairs evaluable",
        "biased",
        "bias rate",
        "slot-1 share",
        "accuracy",
        "ties",
        "unparsed",
        "slot-1 advantage",
    ):
        table.add_column(col)
    for name, pairs in sources.items():
        with console.status(f"scoring {len(pairs)} {name} pairs ({len(pairs) * 6} chains)"):
            res = measure(pairs, scorer)
        report["sources"][name] = res
        for phase in ("before", "after"):
            r = res[phase]

            def pct(x: float | None) -> str:
                return "-" if x is None else f"{x:.0%}"

            table.add_row(
                name,
                phase,
                f"{r['evaluable']}/{res['pairs']}",
                str(r["position_biased"]),
                pct(r["bias_rate"]),
                pct(r["first_slot_share"]),
                pct(r["accuracy"]),
                str(r["ties"]),
                str(r["unparsed"]),
                "-" if res["slot1_advantage"] is None else f"{res['slot1_advantage']:+.2f}",
            )
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "position_bias.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
