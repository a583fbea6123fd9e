"""GRPO for the generative reward model, with composite rewards and the online MetaRM.

TRL's ``GRPOTrainer`` could not be installed next to this project's pins (its
``datasets`` dependency conflicts with the locked ``fsspec``/``huggingface_hub``),
so this module is a minimal, complete GRPO loop (the TRL-compatible reward
functions are in :mod:`reward.training.trl_rewards` for use where TRL exists):

for each step
    1. take ``prompts_per_step`` rows, render chain prompts (random candidate order);
    2. sample ``group_size`` completions per prompt from the current policy;
    3. score them with :class:`~reward.training.rollout_rewards.RewardComputer`
       (which updates the MetaRM on this batch's critique rows *before* scoring
       rows without a critique);
    4. group-relative advantages A = (r - mean_group) / std_group;
    5. ``iterations`` optimisation passes of the clipped surrogate
       -min(rho A, clip(rho, 1 - eps, 1 + eps) A) + beta KL(pi || pi_ref)
       (k3 estimator, token level, mean over a completion's tokens, then over completions);
    6. log a JSONL line, and every ``save_every`` steps write a resumable checkpoint.

Run on GPUs: ``pgenrm train grpo --device cuda --dtype bfloat16 --model <folder>``
with larger ``--prompts-per-step``/``--group-size``/``--max-new-tokens`` (RM-NLHF:
8 rollouts at T = 0.7, lr 1e-6, KL 0.001). For multi-GPU or vLLM rollouts use TRL's
``GRPOTrainer`` with :func:`reward.training.trl_rewards.make_reward_funcs`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reward.nlhf.matchers import ArgumentMatcher
from reward.nlhf.rows import NlhfRow
from reward.prompts import PromptTemplate
from reward.training.checkpoint import (
    latest_checkpoint,
    load_optimizer,
    read_state,
    save_checkpoint,
)
from reward.training.data import make_example
from reward.training.exceptions import TrainingError
from reward.training.policy import load_policy, render, token_logprobs
from reward.training.rewards_types import RewardKindName
from reward.training.rollout_rewards import OnlineMetaRM, RewardComputer


@dataclass
class GRPOConfig:
    """Settings of a GRPO run (all plain values, stored in every checkpoint)."""

    model: str
    output_dir: str
    steps: int = 10
    prompts_per_step: int = 2
    group_size: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 256
    lr: float = 1e-6
    beta: float = 0.001
    clip_eps: float = 0.2
    iterations: int = 1
    reward: RewardKindName = "nlhf"
    prefill: bool = False
    template: str | None = None
    stop: list[str] = field(default_factory=lambda: ["<JSON_END>"])
    save_every: int = 50
    keep: int = 2
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    max_grad_norm: float = 1.0
    resume: bool = True


@dataclass
class GRPOSummary:
    steps_done: int
    resumed_from: int
    checkpoint: str | None
    history: list[dict[str, Any]] = field(default_factory=list)


def _completion_mask(ids: Any, eos_ids: set[int]) -> Any:
    """1 up to and including the first EOS (or pad) of each row, 0 after."""
    import torch

    is_eos = torch.zeros_like(ids, dtype=torch.bool)
    for e in eos_ids:
        is_eos |= ids == e
    after = torch.cumsum(is_eos.int(), dim=1) - is_eos.int()
    return (after == 0).long()


def run_grpo(
    config: GRPOConfig,
    rows: Sequence[NlhfRow],
    matcher: ArgumentMatcher,
    metarm: OnlineMetaRM | None = None,
    *,
    progress: bool = True,
) -> GRPOSummary:
    """Train ``config.model`` with GRPO on ``rows``; resumes from ``output_dir`` when allowed."""
    import torch

    if not rows:
        raise TrainingError("no training rows")
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = 0
    source = config.model
    ckpt = latest_checkpoint(run_dir) if config.resume else None
    if ckpt is not None:
        state = read_state(ckpt)
        start = int(state["step"])
        source = str(ckpt)
        loader: Any = getattr(type(metarm), "load", None)
        if metarm is not None and (ckpt / "metarm").is_dir() and loader is not None:
            # The run's MetaRM continues from the checkpoint (weights, optimiser, version).
            embedder = getattr(metarm, "embedder", None)
            args = (embedder,) if embedder is not None else ()
            metarm = loader(ckpt / "metarm", *args)
    policy, tok = load_policy(source, device=config.device, dtype=config.dtype)
    ref = None
    if config.beta > 0:
        ref, _ = load_policy(config.model, device=config.device, dtype=config.dtype)
        ref.eval()
        for p in ref.parameters():
            p.requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=0.0)
    if ckpt is not None:
        load_optimizer(ckpt, opt)
    template = (
        PromptTemplate.load(Path(config.template)) if config.template else PromptTemplate.load()
    )
    computer = RewardComputer(config.reward, matcher, metarm)
    eos = policy.generation_config.eos_token_id
    eos_ids = {int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None}
    if tok.eos_token_id is not None:
        eos_ids.add(int(tok.eos_token_id))
    log_path = run_dir / "log.jsonl"
    summary = GRPOSummary(
        steps_done=start, resumed_from=start, checkpoint=str(ckpt) if ckpt else None
    )
    G = config.group_size

    from rich.progress import Progress

    with Progress(disable=not progress, transient=True) as prog:
        task = prog.add_task("grpo", total=config.steps, completed=start)
        for step in range(start, config.steps):
            t0 = time.perf_counter()
            rng = random.Random(config.seed * 1_000_003 + step)
            torch.manual_seed(config.seed * 1_000_003 + step)
            idx = [
                (step * config.prompts_per_step + k) % len(rows)
                for k in range(config.prompts_per_step)
            ]
            examples = [
                make_example(rows[i], template=template, prefill=config.prefill, rng=rng)
                for i in idx
            ]
            texts = [render(tok, ex.messages) for ex in examples]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
                config.device
            )
            P = enc["input_ids"].shape[1]
            policy.eval()
            with torch.no_grad():
                seqs = policy.generate(
                    **enc,
                    do_sample=True,
                    temperature=config.temperature,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=config.max_new_tokens,
                    num_return_sequences=G,
                    pad_token_id=tok.pad_token_id,
                    **(
                        {"stop_strings": list(config.stop), "tokenizer": tok} if config.stop else {}
                    ),
                )
            comp = seqs[:, P:]
            cmask = _completion_mask(comp, eos_ids | {int(tok.pad_token_id)})
            pmask = enc["attention_mask"].repeat_interleave(G, dim=0)
            attn = torch.cat([pmask, cmask], dim=1)
            decoded = tok.batch_decode(
                comp * cmask + tok.pad_token_id * (1 - cmask), skip_special_tokens=True
            )
            g_rows = [examples[i // G].row for i in range(len(decoded))]
            g_text = [examples[i // G].prefix + decoded[i] for i in range(len(decoded))]
            g_order = [examples[i // G].order for i in range(len(decoded))]
            rewards = computer(g_rows, g_text, g_order)
            r = torch.tensor([x.reward for x in rewards], dtype=torch.float32).view(-1, G)
            adv = (
                (r - r.mean(1, keepdim=True)) / (r.std(1, unbiased=False, keepdim=True) + 1e-4)
            ).view(-1)
            adv = adv.to(config.device)
            with torch.no_grad():
                old_lp = token_logprobs(policy, seqs, attn, P)
                ref_lp = token_logprobs(ref, seqs, attn, P) if ref is not None else None
            policy.train()
            n_tok = cmask.sum(1).clamp(min=1)
            loss_v = kl_v = 0.0
            for _ in range(max(1, config.iterations)):
                lp = token_logprobs(policy, seqs, attn, P)
                ratio = torch.exp(lp - old_lp)
                a = adv.unsqueeze(1)
                surr = -torch.min(
                    ratio * a, torch.clamp(ratio, 1 - config.clip_eps, 1 + config.clip_eps) * a
                )
                per_tok = surr
                if ref_lp is not None:
                    d = ref_lp - lp
                    kl = torch.exp(d) - d - 1
                    per_tok = per_tok + config.beta * kl
                    kl_v = float(((kl * cmask).sum(1) / n_tok).mean().detach())
                loss = ((per_tok * cmask).sum(1) / n_tok).mean()
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
                opt.step()
                loss_v = float(loss.detach())
            rec = {
                "step": step + 1,
                "reward_mean": float(r.mean()),
                "reward_std": float(r.std(unbiased=False)),
                "format_rate": sum(x.format_ok for x in rewards) / len(rewards),
                "accuracy": sum(x.correct for x in rewards) / len(rewards),
                "q_rate": sum(x.q for x in rewards) / len(rewards),
                "loss": loss_v,
                "kl": kl_v,
                "completion_tokens": float(n_tok.float().mean()),
                "metarm_version": getattr(metarm, "version", None),
                "metarm_loss": getattr(metarm, "last_loss", None),
                "seconds": time.perf_counter() - t0,
                "sample": g_text[0][-300:],
                "failures": sorted({x.failure for x in rewards if x.failure}),
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
                    policy,
                    tok,
                    opt,
                    {
                        "config": asdict(config),
                        "kind": "grpo",
                        "last": rec,
                        "counts": dict(computer.counts),
                    },
                    metarm=metarm,
                    keep=config.keep,
                )
                summary.checkpoint = str(path)
    return summary
