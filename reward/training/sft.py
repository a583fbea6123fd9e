"""Evaluation-chain SFT (P-GenRM stage 1): teach the model to write chains.

Each example is a chain prompt (:func:`reward.training.data.make_example`) and a
target chain (:func:`reward.training.data.synthetic_chain`, or rejection-sampled
model chains). The loss is token cross-entropy on the target only (prompt
tokens masked), AdamW, gradient clipping, a JSONL log line per step, and
resumable checkpoints every ``save_every`` steps (see
:mod:`reward.training.checkpoint`).

Run on GPUs: ``pgenrm train sft --device cuda --dtype bfloat16 --model <folder>``
with a larger ``--batch-size`` and ``--max-length`` (P-GenRM: Llama-3.1-8B, full
fine-tuning on 8 GPUs; use ``accelerate launch`` around a script calling
:func:`run_sft` for more than one GPU).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reward.training.checkpoint import (
    latest_checkpoint,
    load_optimizer,
    read_state,
    save_checkpoint,
)
from reward.training.data import TrainExample
from reward.training.exceptions import TrainingError
from reward.training.policy import load_policy, render


@dataclass
class SFTConfig:
    """Settings of an SFT run (stored in every checkpoint)."""

    model: str
    output_dir: str
    steps: int = 100
    batch_size: int = 4
    lr: float = 1e-5
    max_length: int = 2048
    save_every: int = 50
    keep: int = 2
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    max_grad_norm: float = 1.0
    resume: bool = True


@dataclass
class SFTSummary:
    steps_done: int
    resumed_from: int
    checkpoint: str | None
    history: list[dict[str, Any]] = field(default_factory=list)


def encode_pair(
    tok: Any, example: TrainExample, target: str, max_length: int
) -> tuple[list[int], list[int]]:
    """(input ids, labels) with the prompt masked (-100); truncated from the left of the prompt."""
    prompt_ids = tok(render(tok, example.messages), add_special_tokens=False)["input_ids"]
    target_ids = tok(target, add_special_tokens=False)["input_ids"]
    if tok.eos_token_id is not None:
        target_ids = [*target_ids, tok.eos_token_id]
    target_ids = target_ids[:max_length]
    prompt_ids = (
        prompt_ids[-max(0, max_length - len(target_ids)) :] if max_length > len(target_ids) else []
    )
    return prompt_ids + target_ids, [-100] * len(prompt_ids) + target_ids


def run_sft(
    config: SFTConfig,
    data: Sequence[tuple[TrainExample, str]],
    *,
    progress: bool = True,
) -> SFTSummary:
    """Fine-tune ``config.model`` on (prompt, target chain) pairs; resumes when allowed."""
    import torch

    if not data:
        raise TrainingError("no SFT examples")
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = latest_checkpoint(run_dir) if config.resume else None
    start = int(read_state(ckpt)["step"]) if ckpt is not None else 0
    model, tok = load_policy(
        str(ckpt) if ckpt else config.model, device=config.device, dtype=config.dtype
    )
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    if ckpt is not None:
        load_optimizer(ckpt, opt)
    encoded = [encode_pair(tok, ex, tgt, config.max_length) for ex, tgt in data]
    log_path = run_dir / "log.jsonl"
    summary = SFTSummary(
        steps_done=start, resumed_from=start, checkpoint=str(ckpt) if ckpt else None
    )

    from rich.progress import Progress

    model.train()
    with Progress(disable=not progress, transient=True) as prog:
        task = prog.add_task("sft", total=config.steps, completed=start)
        for step in range(start, config.steps):
            t0 = time.perf_counter()
            rng = random.Random(config.seed * 1_000_003 + step)
            batch = [encoded[rng.randrange(len(encoded))] for _ in range(config.batch_size)]
            width = max(len(ids) for ids, _ in batch)
            pad = tok.pad_token_id
            ids = torch.tensor(
                [i + [pad] * (width - len(i)) for i, _ in batch], device=config.device
            )
            labels = torch.tensor(
                [lab + [-100] * (width - len(lab)) for _, lab in batch], device=config.device
            )
            mask = torch.tensor(
                [[1] * len(i) + [0] * (width - len(i)) for i, _ in batch], device=config.device
            )
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            opt.zero_grad()
            out.loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            opt.step()
            rec = {
                "step": step + 1,
                "loss": float(out.loss.detach()),
                "grad_norm": float(gn),
                "target_tokens": int((labels != -100).sum()),
                "seconds": time.perf_counter() - t0,
            }
            with log_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            summary.history.append(rec)
            summary.steps_done = step + 1
            prog.advance(task)
            if (step + 1) % config.save_every == 0 or step + 1 == config.steps:
                path = save_checkpoint(
                    run_dir,
                    step + 1,
                    model,
                    tok,
                    opt,
                    {"config": asdict(config), "kind": "sft", "last": rec},
                    keep=config.keep,
                )
                summary.checkpoint = str(path)
    return summary


def rejection_sampled_targets(
    scorer: Any, examples: Sequence[TrainExample], *, samples: int = 4
) -> list[tuple[TrainExample, str]]:
    """The model's own chains that parse and rank the chosen response first.

    ``scorer`` is a :class:`reward.scoring.ChainScorer`; each example's chains are
    sampled with its row's request and kept when correct. Rows with no correct
    chain contribute nothing (count them by comparing lengths).
    """
    from reward.nlhf.verdict import verdict_from_chain
    from reward.training.data import score_request

    reqs = [score_request(ex.row).model_copy(update={"samples": samples}) for ex in examples]
    out = []
    for ex, res in zip(examples, scorer.score_many(reqs), strict=True):
        for ch in res.chains:
            if verdict_from_chain(ch).correct(ex.row.winner):
                msgs = scorer.template.render(score_request(ex.row), ch.order, history_size=3)
                out.append((TrainExample(ex.row, list(msgs), list(ch.order)), ch.text))
    return out
