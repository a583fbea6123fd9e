"""results.json, results.md and the PNG plots of one evaluation.

results.json schema (``"schema": "pgenrm.eval.results/1"``)
----------------------------------------------------------
``created_at``
    ISO time the report was written.
``command``
    The command line that produced it.
``machine``
    ``cpu``, ``cores``, ``ram_gib``, ``python``, ``torch``, ``platform``, ``host``.
``dataset``
    Loader summary: ``name``, ``source``, ``users``, ``events``, ``pairs`` (all
    loaded), ``topics``, ``skipped`` (reason -> count).
``config``
    Dataset, path, scorers, modes, grid (``samples``, ``neighbours``),
    ``limit``, ``chain_limit``, ``swap``, ``stated``, ``seed``, the model
    settings used.
``selected_pairs``
    Number of test pairs after ``--limit``.
``sessions``
    One entry per (resumed) run: ``started``, ``finished``, ``tasks``,
    ``events_fed``, ``feed_s``, ``rebuild_s``, ``rebuild``, ``scoring_s``, ``errors``.
``results``
    One row per (scorer, mode, m, n): ``scorer``, ``mode``, ``m``, ``n``,
    ``signals``, ``combination``, ``pairs``, ``correct``, ``wrong``, ``ties``,
    ``failures``, ``accuracy`` (ties = 0.5, failures wrong), ``accuracy_strict``
    (ties and failures wrong), ``macro_user``, ``macro_prototype``,
    ``macro_topic``, ``per_topic``, ``per_prototype``, ``swap``
    (``swapped_pairs``, ``consistent``, ``consistency``, ``accuracy_both_orders``),
    ``components`` (signal -> accuracy/ties/failures of that signal alone),
    ``parse_failures`` (failed chains, summed over both orders),
    ``result_ties`` (ties the service reported), ``errors`` (failed service
    calls, counted per candidate order),
    ``served_modes`` (mode -> count), ``latency_ms`` (``mean``, ``p50``, ``p95``
    per pair, both orders together).
``failures_total``, ``ties_total``, ``errors_total``
    Sums over ``results``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stream.evaluation.metrics import PairOutcome, accuracy, summarize

SCHEMA = "pgenrm.eval.results/1"
SCORER_ORDER = ("prior", "chain", "blend")
MODE_ORDER = ("personalized", "non_personalized", "sparse", "prototype_only", "grid")


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, Python and torch versions, date (no heavy imports beyond torch's
    version, read from package metadata).

    >>> sorted(machine_info())[:3]
    ['cores', 'cpu', 'date']
    """
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions: dict[str, str | None] = {}
    from importlib import metadata

    for pkg in ("torch", "transformers", "sentence-transformers", "qdrant-edge-py"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(ram, 1) if ram else None,
        "python": sys.version.split()[0],
        "torch": versions["torch"],
        "packages": versions,
        "platform": platform.platform(),
        "host": platform.node(),
        "date": datetime.now(UTC).date().isoformat(),
    }


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))], 3)


def group_key(rec: dict[str, Any]) -> tuple[str, str, int | None, int | None]:
    return (rec["scorer"], rec["mode"], rec.get("m"), rec.get("n"))


def summarize_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result row per (scorer, mode, m, n) (see the module docstring)."""
    groups: dict[tuple[str, str, int | None, int | None], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[group_key(r)].append(r)

    def order(k: tuple[str, str, int | None, int | None]) -> tuple[int, int, int, int]:
        mode = MODE_ORDER.index(k[1]) if k[1] in MODE_ORDER else 99
        scorer = SCORER_ORDER.index(k[0]) if k[0] in SCORER_ORDER else 99
        return (scorer, mode, k[2] or 0, k[3] or 0)

    rows = []
    for key in sorted(groups, key=order):
        recs = groups[key]
        outs = [
            PairOutcome(
                r["user_id"], r["topic"], r.get("prototype_id"), r["outcome"], r.get("swap_outcome")
            )
            for r in recs
        ]
        comp_outcomes: dict[str, list[str]] = defaultdict(list)
        for r in recs:
            for sig in r.get("signals", []):
                comp_outcomes[sig].append(r.get("component_outcomes", {}).get(sig, "failure"))
        components = {
            sig: {
                "accuracy": accuracy(v),  # type: ignore[arg-type]
                "ties": v.count("tie"),
                "failures": v.count("failure"),
            }
            for sig, v in sorted(comp_outcomes.items())
        }
        lat = [float(r.get("latency_ms") or 0.0) for r in recs]
        served = Counter(str(r.get("served_mode")) for r in recs)
        errors = sum(1 for r in recs for o in r.get("orders", []) if o.get("error"))
        rows.append(
            {
                "scorer": key[0],
                "mode": key[1],
                "m": key[2],
                "n": key[3],
                "signals": recs[0].get("signals"),
                "combination": recs[0].get("combination"),
                **summarize(outs),
                "components": components,
                "parse_failures": sum(int(r.get("parse_failures") or 0) for r in recs),
                "result_ties": sum(int(r.get("result_ties") or 0) for r in recs),
                "errors": errors,
                "served_modes": dict(served),
                "latency_ms": {
                    "mean": round(sum(lat) / len(lat), 3) if lat else None,
                    "p50": _pct(lat, 0.5),
                    "p95": _pct(lat, 0.95),
                },
            }
        )
    return rows


def build_results(
    records: Sequence[dict[str, Any]],
    *,
    dataset: dict[str, Any],
    config: dict[str, Any],
    sessions: Sequence[dict[str, Any]],
    selected_pairs: int,
    command: str,
) -> dict[str, Any]:
    rows = summarize_records(records)
    return {
        "schema": SCHEMA,
        "created_at": datetime.now(UTC).isoformat(),
        "command": command,
        "machine": machine_info(),
        "dataset": dataset,
        "config": config,
        "selected_pairs": selected_pairs,
        "sessions": list(sessions),
        "results": rows,
        "failures_total": sum(r["failures"] for r in rows),
        "ties_total": sum(r["ties"] for r in rows),
        "errors_total": sum(r["errors"] for r in rows),
    }


def _f(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def markdown_table(results: dict[str, Any]) -> str:
    """The results table (accuracies in %)."""
    lines = [
        "| scorer | mode | m | n | pairs | acc | acc strict | macro user | macro proto "
        "| ties | failures | parse fail | swap consist. | served | ms/pair |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["results"]:
        served = ", ".join(f"{k} {v}" for k, v in sorted(r["served_modes"].items()))
        lines.append(
            f"| {r['scorer']} | {r['mode']} | {'' if r['m'] is None else r['m']} "
            f"| {'' if r['n'] is None else r['n']} | {r['pairs']} | {_f(r['accuracy'])} "
            f"| {_f(r['accuracy_strict'])} | {_f(r['macro_user'])} | {_f(r['macro_prototype'])} "
            f"| {r['ties']} | {r['failures']} | {r['parse_failures']} "
            f"| {_f(r['swap']['consistency'])} | {served} | {r['latency_ms']['mean']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def markdown_report(results: dict[str, Any]) -> str:
    m = results["machine"]
    ds = results["dataset"]
    head = [
        f"# pgenrm eval: {ds['name']}",
        "",
        f"- date: {results['created_at']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB, "
        f"python {m['python']}, torch {m['torch']}",
        f"- command: `{results['command']}`",
        f"- dataset: {ds['users']} users, {ds['events']} history events, {ds['pairs']} pairs "
        f"loaded, {results['selected_pairs']} selected; skipped: {ds['skipped'] or 'none'}",
        "- accuracy: ties count 0.5, failures count wrong; *strict*: ties and failures wrong. "
        "Macro = mean of per-user / per-prototype accuracies.",
        "",
    ]
    return "\n".join(head) + "\n" + markdown_table(results)


def write_outputs(results: dict[str, Any], out: Path) -> list[Path]:
    """Write results.json, results.md and the plots; return the paths written."""
    from stream.evaluation.plots import write_plots

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "results.md"]
    paths[0].write_text(json.dumps(results, indent=2, default=str) + "\n")
    paths[1].write_text(markdown_report(results))
    paths.extend(write_plots(results, out))
    return paths
