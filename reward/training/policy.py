"""The policy being trained: loading (SFT) and chat templating (SFT and GRPO prompts)."""

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
