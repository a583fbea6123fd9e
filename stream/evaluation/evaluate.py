"""One call that loads, runs (or resumes) and reports an evaluation.

>>> parse_ints(["1,2", "4"])
[1, 2, 4]
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from infra.settings import Settings
from stream.evaluation.exceptions import EvaluationError
from stream.evaluation.loaders import load_dataset
from stream.evaluation.modes import MODES, SCORERS
from stream.evaluation.report import build_results, write_outputs
from stream.evaluation.runner import EvalRunner, RunPlan
from stream.evaluation.service import ServiceFactory, pgenrm_service_factory


def parse_ints(values: Sequence[str] | None) -> list[int]:
    """Integers from repeated and/or comma-separated option values."""
    out: list[int] = []
    for v in values or []:
        for part in str(v).split(","):
            if part.strip():
                out.append(int(part))
    return out


def set_torch_threads(n: int) -> None:
    """Limit torch's intra-op threads.

    On a CPU shared with other work, torch's default (one thread per core) spins
    against the other processes: a MiniLM call on 3 short texts measured 1.6 s with
    2 threads and 0.05 s with 1 under load average 10 on 2 cores.
    """
    import torch

    torch.set_num_threads(n)


def parse_scorers(values: Sequence[str]) -> list[str]:
    """``all`` expands to every scorer; unknown names raise.

    >>> parse_scorers(["all"])
    ['prior', 'chain', 'blend']
    """
    names: list[str] = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if part == "all":
                names.extend(s for s in SCORERS if s not in names)
            elif part in SCORERS:
                if part not in names:
                    names.append(part)
            elif part:
                raise EvaluationError(f"unknown scorer {part!r}; choose from {[*SCORERS, 'all']}")
    return names


def run_evaluation(
    dataset: str,
    path: str | Path,
    *,
    out: Path,
    scorers: Sequence[str] = ("prior",),
    modes: Sequence[str] = MODES,
    samples: Sequence[int] = (1,),
    neighbours: Sequence[int] = (0, 1),
    limit: int | None = None,
    chain_limit: int | None = 1,
    swap: bool = True,
    swap_chains: bool = False,
    stated: bool = False,
    history: int = 3,
    seed: int = 0,
    restart: bool = False,
    rebuild: bool = True,
    prototypes: int = 50,
    feed_all: bool = True,
    torch_threads: int | None = 1,
    settings: Settings | None = None,
    factory: ServiceFactory | None = None,
    console: Console | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Load ``dataset`` from ``path``, score, write OUT/results.{json,md} and plots."""
    console = console or Console(stderr=True)
    unknown = set(modes) - set(MODES)
    if unknown:
        raise EvaluationError(f"unknown modes {sorted(unknown)}; choose from {list(MODES)}")
    if torch_threads:
        set_torch_threads(torch_threads)
    ds = load_dataset(dataset, path, stated=stated, history=history, seed=seed)
    pairs = ds.select(limit)
    if not pairs:
        raise EvaluationError(f"{path}: no test pairs")
    settings = settings or Settings()
    m = settings.models
    config: dict[str, Any] = {
        "dataset": ds.name,
        "path": str(path),
        "scorers": list(scorers),
        "modes": list(modes),
        "samples": list(samples),
        "neighbours": list(neighbours),
        "limit": limit,
        "chain_limit": chain_limit,
        "swap": swap,
        "swap_chains": swap_chains,
        "stated": stated,
        "history": history,
        "seed": seed,
        "feed_all": feed_all,
        "rebuild": rebuild,
        "prototypes": prototypes,
        "model": {
            "backend": m.backend,
            "model": m.model,
            "embedder": m.embedder,
            "history_size": m.history_size,
            "samples": m.samples,
            "neighbours": m.neighbours,
            "temperature": m.temperature,
            "max_new_tokens": m.max_new_tokens,
        },
    }
    plan = RunPlan(
        scorers=list(scorers),
        modes=list(modes),
        samples=list(samples),
        neighbours=list(neighbours),
        chain_limit=chain_limit,
        swap=swap,
        swap_chains=swap_chains,
        rebuild=rebuild,
        prototypes=prototypes,
        feed_all=feed_all,
        seed=seed,
    )
    console.print(
        f"[bold]{ds.name}[/bold]: {len(ds.users)} users, {len(pairs)} of {len(ds.pairs)} pairs; "
        f"skipped {dict(ds.skipped) or 'none'}"
    )
    runner = EvalRunner(
        ds,
        pairs,
        out=out,
        factory=factory or pgenrm_service_factory(settings),
        plan=plan,
        config=config,
        console=console,
        store_parent=out,
    )
    records = runner.run(restart=restart)
    results = build_results(
        records,
        dataset=ds.summary(),
        config=config,
        sessions=runner.log.run_info().get("sessions", []),
        selected_pairs=len(pairs),
        command=command or shlex.join(["pgenrm", *sys.argv[1:]]),
    )
    paths = write_outputs(results, out)
    console.print("wrote " + ", ".join(str(p) for p in paths))
    return results
