"""In-process vLLM generation (GPU; needs ``pip install pgenrm[gpu]``).

All prompts go into one ``LLM.chat`` call with ``SamplingParams(n=m)``; prefix
caching is on, so the m samples and the prompts that share a history share KV
blocks. vllm is imported only when this backend is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.contracts import ChatMessage
from reward.exceptions import BackendError
from reward.protocol import Completion


class VllmBackend:
    """A model served by an in-process ``vllm.LLM``."""

    def __init__(
        self, model: str, *, gpu_memory_utilization: float = 0.85, **llm_kwargs: Any
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise BackendError(
                "backend 'vllm' needs the gpu extra: pip install 'pgenrm[gpu]'"
            ) from exc
        self.model_id = model
        self.llm = LLM(
            model=model,
            enable_prefix_caching=True,
            gpu_memory_utilization=gpu_memory_utilization,
            **llm_kwargs,
        )

    def generate(
        self,
        prompts: Sequence[list[ChatMessage]],
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_tokens: int = 384,
        stop: Sequence[str] | None = None,
        logprobs: bool = False,
        seed: int | None = None,
    ) -> list[list[Completion]]:
        """``n`` completions per prompt in one ``LLM.chat`` call."""
        from vllm import SamplingParams

        if not prompts:
            return []
        # one seed per prompt (seed + its index): vLLM samples a seeded request
        # deterministically, so identical prompts sharing a seed would share their text
        params = [
            SamplingParams(
                n=n,
                temperature=temperature,
                max_tokens=max_tokens,
                stop=list(stop) if stop else None,
                logprobs=0 if logprobs else None,
                seed=None if seed is None else seed + i,
            )
            for i in range(len(prompts))
        ]
        convs = [[{"role": m.role, "content": m.content} for m in p] for p in prompts]
        prefill = [bool(p) and p[-1].role == "assistant" for p in prompts]
        outs: list[Any] = [None] * len(prompts)
        # vLLM takes continue_final_message per call: group prompts by mode.
        for mode in (False, True):
            idx = [i for i, f in enumerate(prefill) if f is mode]
            if not idx:
                continue
            try:
                res = self.llm.chat(
                    [convs[i] for i in idx],
                    [params[i] for i in idx],
                    add_generation_prompt=not mode,
                    continue_final_message=mode,
                    use_tqdm=False,
                )
            except (RuntimeError, ValueError) as exc:
                raise BackendError(f"vllm generate failed: {exc}") from exc
            for i, r in zip(idx, res, strict=True):
                outs[i] = r
        return [
            [
                Completion(
                    text=o.text,
                    tokens=len(o.token_ids),
                    logprob=o.cumulative_logprob if logprobs else None,
                )
                for o in r.outputs
            ]
            for r in outs
        ]
