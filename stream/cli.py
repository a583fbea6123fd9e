"""``pgenrm up``, ``pgenrm demo``, ``pgenrm send-feedback``, ``pgenrm send-profiles``,
``pgenrm request-reward``.

Imports stay light at module level (``pgenrm --help`` must be fast): faust,
torch and the stores load inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)


def up(
    app_id: Annotated[
        str, typer.Option(help="Faust app id = consumer group id (fresh per test run).")
    ] = "pgenrm",
    web_port: Annotated[
        int | None, typer.Option(help="Serve faust's web views on this port (default: off).")
    ] = None,
    persona: Annotated[
        bool, typer.Option(help="Run the persona refresher (needs the generative model).")
    ] = True,
    backend: Annotated[
        bool, typer.Option(help="Load the generative model (off: prior-only rewards).")
    ] = True,
    loglevel: Annotated[str, typer.Option(help="faust/mode log level.")] = "warning",
) -> None:
    """Run the whole service: embedded broker (by default), topics, faust worker.

    Stops cleanly on Ctrl-C / SIGTERM: the worker commits, the store is
    flushed and closed, the embedded broker is stopped.
    """
    from infra.settings import Settings
    from stream.config import StreamConfig
    from stream.worker import run_worker

    settings = Settings()
    overrides: dict[str, object] = {"web_port": web_port}
    if not persona:
        overrides["persona_refresh"] = False
    if not backend:
        overrides["load_backend"] = False
        overrides["persona_refresh"] = False
    config = StreamConfig(**overrides)  # type: ignore[arg-type]
    code = run_worker(settings, config=config, app_id=app_id, loglevel=loglevel)
    raise typer.Exit(code)


def demo(
    max_new_tokens: Annotated[
        int, typer.Option(help="Tokens per evaluation chain / persona (small = fast on CPU).")
    ] = 160,
    samples: Annotated[int, typer.Option("--samples", "-m", help="m, own-history chains.")] = 1,
    neighbours: Annotated[int, typer.Option("--neighbours", "-n", help="n, neighbours.")] = 1,
    timeout_s: Annotated[float, typer.Option(help="Give up waiting after this long.")] = 600.0,
    keep: Annotated[bool, typer.Option(help="Keep the demo's data folder.")] = False,
) -> None:
    """Replay the built-in scenario: cold-start reward, feedback, personal reward.

    Starts its own embedded broker and worker on free ports with a fresh data
    folder; needs ``pgenrm models install smollm2 minilm``. Defaults (m=1, n=1,
    160 new tokens) finish in a few minutes on 2 CPU cores.
    """
    from infra.settings import Settings
    from stream.demo import run_demo

    settings = Settings()
    run_demo(
        settings,
        max_new_tokens=max_new_tokens,
        samples=samples,
        neighbours=neighbours,
        timeout_s=timeout_s,
        keep=keep,
        console=Console(),
    )


def send_feedback(
    path: Annotated[Path, typer.Argument(help="JSONL file, one FeedbackEvent per line.")],
    skip_invalid: Annotated[
        bool, typer.Option(help="Send the valid lines even when some are invalid.")
    ] = False,
) -> None:
    """Produce FeedbackEvents from a JSONL file (keyed by user_id)."""
    from infra.clients import send_feedback as _send
    from infra.settings import Settings

    n = _send(Settings(), path, skip_invalid=skip_invalid)
    console.print(f"sent {n} feedback event(s)")


def send_profiles(
    path: Annotated[Path, typer.Argument(help="JSONL file, one UserProfile per line.")],
    skip_invalid: Annotated[
        bool, typer.Option(help="Send the valid lines even when some are invalid.")
    ] = False,
) -> None:
    """Produce onboarding UserProfiles from a JSONL file (keyed by user_id)."""
    from infra.clients import send_profiles_file
    from infra.settings import Settings

    n = send_profiles_file(Settings(), path, skip_invalid=skip_invalid)
    console.print(f"sent {n} profile(s)")


def request_reward(
    path: Annotated[
        str, typer.Argument(help="A RewardRequest JSON file, or '-' for standard input.")
    ],
    timeout_s: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 120.0,
) -> None:
    """Produce one RewardRequest and print its RewardResult (JSON) when it arrives."""
    from infra.clients import request_reward as _request
    from infra.contracts import RewardRequest
    from infra.settings import Settings

    raw = sys.stdin.read() if path == "-" else Path(path).read_text()
    request = RewardRequest.model_validate(json.loads(raw))
    result = _request(Settings(), request, timeout_s=timeout_s)
    typer.echo(result.model_dump_json(indent=2))
