"""``pgenrm eval``: accuracy of the service's scorers on a preference dataset.

Imports stay light; the evaluation package loads when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def eval_command(
    dataset: Annotated[str, typer.Argument(help="prefeval | personalrewardbench | jsonl")],
    path: Annotated[str, typer.Argument(help="Dataset folder, file, or hub id (PRB)")],
    scorer: Annotated[
        list[str], typer.Option(help="prior | chain | blend | all (repeat or comma-separate)")
    ] = ["prior"],  # noqa: B006
    samples: Annotated[
        list[str] | None, typer.Option(help="Grid values of m (default 1), e.g. 0,1,2")
    ] = None,
    neighbours: Annotated[
        list[str] | None, typer.Option(help="Grid values of n (default 0,1), e.g. 0,1,2")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Test pairs (topic-interleaved)")] = None,
    chain_limit: Annotated[
        int, typer.Option(help="Pairs for generative scorers (a prefix of the selected pairs)")
    ] = 1,
    mode: Annotated[
        list[str] | None,
        typer.Option(
            help="personalized | non_personalized | sparse | prototype_only (default all)"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default eval-out/DATASET)")
    ] = None,
    swap: Annotated[bool, typer.Option(help="Also score every pair in swapped order")] = True,
    swap_chains: Annotated[
        bool, typer.Option(help="Swap for chain scorers too (they already debias internally)")
    ] = False,
    stated: Annotated[bool, typer.Option(help="Pass stated preferences (PrefEval)")] = False,
    history: Annotated[int, typer.Option(help="Few-shot train rows per user (PRB)")] = 3,
    feed_all: Annotated[
        bool,
        typer.Option(
            "--feed-all/--feed-selected",
            help="Feed every user (prototypes need them) or only the selected pairs' users",
        ),
    ] = True,
    rebuild: Annotated[
        bool, typer.Option(help="Bootstrap prototypes (K-means + refinement) after feeding")
    ] = True,
    prototypes: Annotated[int, typer.Option(help="k of the K-means bootstrap")] = 50,
    torch_threads: Annotated[
        int, typer.Option(help="torch intra-op threads (0 = torch's default)")
    ] = 1,
    seed: Annotated[int, typer.Option()] = 0,
    restart: Annotated[
        bool, typer.Option(help="Discard OUT/progress.jsonl and start over")
    ] = False,
) -> None:
    """Evaluate scorers on a dataset; resumable; writes results.json, results.md and PNGs."""
    from rich.console import Console

    from stream.evaluation.evaluate import parse_ints, parse_scorers, run_evaluation
    from stream.evaluation.modes import MODES
    from stream.evaluation.report import markdown_table

    console = Console(stderr=True)
    results = run_evaluation(
        dataset,
        path,
        out=out or Path("eval-out") / dataset,
        scorers=parse_scorers(scorer),
        modes=mode or list(MODES),
        samples=parse_ints(samples) or [1],
        neighbours=parse_ints(neighbours) or [0, 1],
        limit=limit,
        chain_limit=chain_limit,
        swap=swap,
        swap_chains=swap_chains,
        stated=stated,
        history=history,
        seed=seed,
        feed_all=feed_all,
        rebuild=rebuild,
        prototypes=prototypes,
        restart=restart,
        torch_threads=torch_threads,
        console=console,
    )
    typer.echo(markdown_table(results))
