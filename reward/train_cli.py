"""``pgenrm train sft|grpo``: train the generative reward model.

Light at import time (typer only); torch and transformers load inside the command.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console(stderr=True)


class Stage(StrEnum):
    sft = "sft"
    grpo = "grpo"


class RewardName(StrEnum):
    nlhf = "nlhf"
    cre = "cre"


def train(
    stage: Annotated[Stage, typer.Argument(help="sft (evaluation-chain SFT) or grpo.")],
    data: Annotated[
        Path | None,
        typer.Option(help="JSONL rows (context, response_a, response_b, winner, human_critique)."),
    ] = None,
    prefeval: Annotated[
        Path | None,
        typer.Option(help="Train on PrefEval choice-based rows from this folder instead."),
    ] = None,
    model: Annotated[str, typer.Option(help="Model alias or folder to start from.")] = "smollm2",
    output: Annotated[Path, typer.Option(help="Run folder (checkpoints, log.jsonl).")] = Path(
        "out/train"
    ),
    steps: Annotated[int, typer.Option(min=1)] = 100,
    lr: Annotated[float | None, typer.Option(help="Learning rate (sft 1e-5, grpo 1e-6).")] = None,
    batch_size: Annotated[int, typer.Option(help="SFT examples per step.")] = 4,
    prompts_per_step: Annotated[int, typer.Option(help="GRPO prompts per step.")] = 2,
    group_size: Annotated[int, typer.Option(help="GRPO completions per prompt.")] = 4,
    max_new_tokens: Annotated[int, typer.Option(help="GRPO completion length.")] = 256,
    temperature: Annotated[float, typer.Option()] = 1.0,
    beta: Annotated[
        float, typer.Option(help="GRPO KL coefficient (0: no reference model).")
    ] = 0.001,
    reward: Annotated[
        RewardName, typer.Option(help="GRPO reward: nlhf (RM-NLHF) or cre (P-GenRM).")
    ] = RewardName.nlhf,
    metarm: Annotated[
        Path | None, typer.Option(help="MetaRM folder to start from (a fresh one when absent).")
    ] = None,
    prefill: Annotated[bool, typer.Option(help="Prefill the assistant turn with PART 2.")] = False,
    template: Annotated[Path | None, typer.Option(help="Chain template file.")] = None,
    save_every: Annotated[int, typer.Option(min=1)] = 50,
    limit: Annotated[int | None, typer.Option(help="Use only the first N rows.")] = None,
    device: Annotated[str, typer.Option()] = "cpu",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 ...")] = "float32",
    seed: Annotated[int, typer.Option()] = 0,
    resume: Annotated[
        bool, typer.Option(help="Resume from the newest checkpoint in --output.")
    ] = True,
    gradient_checkpointing: Annotated[
        bool, typer.Option(help="GRPO: trade compute for memory (useful on GPUs).")
    ] = False,
    report_to: Annotated[
        str, typer.Option(help="GRPO: where TRL reports metrics (none, tensorboard, wandb ...).")
    ] = "none",
    trl: Annotated[
        list[str] | None,
        typer.Option(
            help="GRPO: extra trl.GRPOConfig field as name=value (JSON value or string), "
            "repeatable, e.g. --trl use_vllm=true --trl vllm_mode=colocate."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress panel.")] = True,
) -> None:
    """Train the reward model: SFT on evaluation chains, or GRPO with composite rewards.

    GRPO runs on TRL's GRPOTrainer and updates the MetaRM online on every step's
    rows with a human critique (update, then score rows without one); checkpoints
    keep the MetaRM. On GPUs pass --device cuda --dtype bfloat16; for several GPUs
    run ``accelerate launch -m infra.cli train grpo ...``.
    """
    from infra.settings import Settings
    from reward.models import resolve_model
    from reward.nlhf.prefeval import load_rows
    from reward.training.data import make_example, read_rows, synthetic_chain

    if (data is None) == (prefeval is None):
        console.print("[red]give exactly one of --data or --prefeval[/red]")
        raise typer.Exit(2)
    rows = read_rows(data) if data is not None else list(load_rows(prefeval, seed=seed))  # type: ignore[arg-type]
    rows = rows[:limit] if limit else rows
    settings = Settings()
    path = resolve_model(model, settings.models_dir)
    if stage is Stage.sft:
        import random

        from reward.prompts import PromptTemplate
        from reward.training.sft import SFTConfig, run_sft

        rng = random.Random(seed)
        tmpl = PromptTemplate.load(template) if template else PromptTemplate.load()
        pairs = []
        for r in rows:
            ex = make_example(r, template=tmpl, rng=rng)
            pairs.append((ex, synthetic_chain(r, ex.order)))
        cfg = SFTConfig(
            model=path,
            output_dir=str(output),
            steps=steps,
            batch_size=batch_size,
            lr=lr or 1e-5,
            save_every=save_every,
            seed=seed,
            device=device,
            dtype=dtype,
            resume=resume,
        )
        s = run_sft(cfg, pairs, progress=progress)
        console.print(
            f"sft: {s.steps_done} steps (resumed at {s.resumed_from}); "
            f"loss {s.history[-1]['loss'] if s.history else float('nan'):.4f}; "
            f"checkpoint {s.checkpoint}"
        )
        return
    from prototypes.embedder import load_embedder
    from reward.nlhf.matchers import EmbeddingMatcher
    from reward.nlhf.metarm import MetaRM
    from reward.training.exceptions import TrainingError
    from reward.training.grpo import GRPOConfig, run_grpo, trl_args

    try:
        overrides = parse_overrides(trl or [])
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    gcfg = GRPOConfig(
        model=path,
        output_dir=str(output),
        steps=steps,
        prompts_per_step=prompts_per_step,
        group_size=group_size,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        lr=lr or 1e-6,
        beta=beta,
        reward=reward.value,
        prefill=prefill,
        template=str(template) if template else None,
        save_every=save_every,
        seed=seed,
        device=device,
        dtype=dtype,
        resume=resume,
        gradient_checkpointing=gradient_checkpointing,
        report_to=report_to,
        trl=overrides,
    )
    try:
        trl_args(gcfg)  # fail on bad settings before loading any model
    except TrainingError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    emb = load_embedder(
        settings.models.embedder,
        dtype=settings.models.embedder_dtype,
        graph=settings.models.embedder_graph,
    )
    meta = MetaRM.load(metarm, emb) if metarm is not None else MetaRM(emb, seed=seed)
    g = run_grpo(gcfg, rows, EmbeddingMatcher(emb), meta, progress=progress)
    last = g.history[-1] if g.history else {}
    console.print(
        f"grpo: {g.steps_done} steps (resumed at {g.resumed_from}); "
        f"reward {last.get('reward', float('nan')):.3f}; MetaRM v{g.metarm_version}; "
        f"checkpoint {g.checkpoint}"
    )


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``name=value`` pairs; a value is JSON when it parses, else the string.

    Examples
    --------
    >>> parse_overrides(["use_vllm=true", "vllm_mode=colocate", "top_p=0.9"])
    {'use_vllm': True, 'vllm_mode': 'colocate', 'top_p': 0.9}
    """
    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--trl expects name=value, got {item!r}")
        try:
            out[name.strip()] = json.loads(raw)
        except ValueError:
            out[name.strip()] = raw
    return out
