"""Render the README's results section (markdown) from ``pgenrm eval`` results.json files.

Usage::

    .venv/bin/python bench/readme_results.py eval-out/prefeval-prior/results.json \\
        [eval-out/prefeval-all/results.json ...] [--bench bench-out/*.json] > results-section.md

Every number comes from the files given; the section names the date, the
machine and the exact command of each run so a reader can reproduce it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

MODE_LABEL = {
    "personalized": "personalized (full history)",
    "non_personalized": "non-personalized (no history)",
    "sparse": "sparse history (1 triple)",
    "prototype_only": "prototype only (cold start)",
    "grid": "scaling grid",
}


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def eval_section(res: dict[str, Any]) -> str:
    m, ds = res["machine"], res["dataset"]
    lines = [
        f"### {ds['name']}: {res['selected_pairs']} test pairs",
        "",
        f"- date: {res['created_at'][:19]}Z; machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['ram_gib']} GiB RAM, Python {m['python']}, torch {m['torch']}",
        f"- command: `{res['command']}`",
        f"- data: {ds['users']} users, {ds['events']} history events, {ds['pairs']} pairs loaded; "
        f"skipped: {ds['skipped'] or 'none'}",
        f"- model settings: {res['config'].get('model')}",
        "",
        "| scorer | setting | m | n | pairs | accuracy % | strict % | macro/user % "
        "| macro/prototype % | ties | failures | swap-consistent % | ms/pair |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["results"]:
        lines.append(
            f"| {r['scorer']} | {MODE_LABEL.get(r['mode'], r['mode'])} "
            f"| {'' if r['m'] is None else r['m']} | {'' if r['n'] is None else r['n']} "
            f"| {r['pairs']} | {pct(r['accuracy'])} | {pct(r['accuracy_strict'])} "
            f"| {pct(r['macro_user'])} | {pct(r['macro_prototype'])} | {r['ties']} "
            f"| {r['failures']} | {pct(r['swap']['consistency'])} "
            f"| {r['latency_ms']['mean']:.0f} |"
        )
    sessions = res.get("sessions", [])
    if sessions:
        feed = sum(float(s.get("feed_s") or 0) for s in sessions)
        rebuild = sum(float(s.get("rebuild_s") or 0) for s in sessions)
        score = sum(float(s.get("scoring_s") or 0) for s in sessions)
        lines += [
            "",
            f"Wall time: feeding histories {feed:.0f} s, prototype rebuild {rebuild:.0f} s, "
            f"scoring {score:.0f} s "
            f"over {len(sessions)} session(s); parse failures "
            f"{sum(r['parse_failures'] for r in res['results'])}, errors {res['errors_total']}.",
        ]
    lines += [
        "",
        "Accuracy counts a tie as half right and a failure (no valid score) as wrong; *strict* "
        "counts both as wrong. Each pair is asked with the aligned answer in a seeded random "
        "position and, for the prior, again swapped (chain scorers debias inside each request). "
        "*Non-personalized*: the population's global prior for the prior scorer, the judge "
        "with an empty history for chain scorers. *Sparse*: a new user fed only the first "
        "triple. *Prototype only*: a never-seen user, routed by the query to a prototype.",
        "",
    ]
    return "\n".join(lines)


def bench_section(path: Path) -> str:
    data = json.loads(path.read_text())
    m = data.get("machine", {})
    body = {k: v for k, v in data.items() if k != "machine"}
    return "\n".join(
        [
            f"### benchmark {path.stem}",
            "",
            f"- machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('ram_gib')} GiB; "
            f"date {m.get('date')}",
            "",
            "```json",
            json.dumps(body, indent=2)[:4000],
            "```",
            "",
        ]
    )


def render(results: list[Path], benches: list[Path]) -> str:
    parts = ["## Results", ""]
    for p in results:
        parts.append(eval_section(json.loads(p.read_text())))
    for p in benches:
        parts.append(bench_section(p))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--bench", nargs="*", type=Path, default=[])
    args = ap.parse_args(argv)
    sys.stdout.write(render(args.results, args.bench))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
