"""The policy being trained: loading, chat templating, token log-probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.contracts import ChatMessage
from reward.training.exceptions import TrainingError


def load_policy(path: str, *, device: str = "cpu", dtype: str = "float32") -> tuple[Any, Any]:
    """(model, tokenizer) of a causal LM folder, tokenizer left-padded with a pad token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, padding_side="left")
        loaded = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
        model: Any = loaded.to(device)  # type: ignore[arg-type]
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load policy {path!r}: {exc}") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def render(tokenizer: Any, messages: Sequence[ChatMessage]) -> str:
    """Chat-templated prompt text; a final assistant message is continued (prefill)."""
    msgs = [{"role": m.role, "content": m.content} for m in messages]
    prefill = bool(msgs) and msgs[-1]["role"] == "assistant"
    if tokenizer.chat_template is None:
        text = "\n\n".join(f"{m['role']}: {m['content']}" for m in msgs)
        return text if prefill else text + "\n\nassistant:"
    return str(
        tokenizer.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=not prefill, continue_final_message=prefill
        )
    )


def token_logprobs(model: Any, input_ids: Any, attention_mask: Any, start: int) -> Any:
    """Log-probability of each token from position ``start`` on, shape ``(B, T - start)``.

    Position ids follow the attention mask, so left-padded prompts get the same
    positions as in ``generate``.
    """
    import torch

    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
    ).logits
    logits = logits[:, start - 1 : -1, :].float()
    targets = input_ids[:, start:]
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def param_fingerprint(model: Any) -> float:
    """A cheap scalar that changes when any weight changes (sum of |w| in float64)."""
    import torch

    with torch.no_grad():
        return float(sum(p.detach().double().abs().sum() for p in model.parameters()))
