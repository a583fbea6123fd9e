"""Generation with Hugging Face transformers (the CPU default).

All ``n`` samples of every prompt go into one ``model.generate`` call over a
left-padded batch of prompts (each prompt's prefill computed once and its KV
cache shared by its n samples), optionally split into chunks of at most
``max_batch`` sequences.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from infra.contracts import ChatMessage
from infra.hardware import bf16_supported
from reward.exceptions import BackendError
from reward.protocol import Completion

if TYPE_CHECKING:
    from reward.backends._readout import PromptCache

READOUT_MAX_ROWS = 640
"""Rows (prompts x numbers) per readout forward pass when ``max_batch`` is unset."""
READOUT_CACHE_BYTES = 1 << 30
"""Default bound on the prompt KV caches a readout session keeps between calls."""


class TransformersBackend:
    """A causal LM loaded from a local folder (or hub id) with transformers.

    Parameters
    ----------
    model:
        Folder (as returned by :func:`reward.models.resolve_model`) or hub id.
    dtype:
        ``auto`` (bf16 where the CPU supports it, else float32), ``bfloat16`` or ``float32``.
    device:
        ``cpu`` (default) or e.g. ``cuda``.
    max_batch:
        Most sequences (prompts x n) per ``generate`` call; None for all at once.
    share_prefix:
        Prefill each prompt once and share its KV cache among its n samples.
    readout_cache_bytes:
        Most bytes of prompt KV cache a :meth:`readout_session` keeps between its
        calls (chunks beyond it are prefilled again on the next call).
    """

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        device: str = "cpu",
        max_batch: int | None = None,
        share_prefix: bool = True,
        readout_cache_bytes: int = READOUT_CACHE_BYTES,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype == "auto":
            dtype = "bfloat16" if (device != "cpu" or bf16_supported()) else "float32"
        self.dtype = dtype
        self.device = device
        self.max_batch = max_batch
        self.share_prefix = share_prefix
        self.readout_cache_bytes = readout_cache_bytes
        self.model_id = model
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
            loaded = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype))
            self.model: Any = loaded.to(device)  # type: ignore[arg-type]
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load model {model!r}: {exc}") from exc
        self.model.eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        if self.tokenizer.eos_token_id is not None:
            eos_ids.append(self.tokenizer.eos_token_id)
        self.eos_ids = {int(e) for e in eos_ids if e is not None}
        self._lock = threading.Lock()
        self.last_stats: dict[str, float] = {}
        self._digit_ids: list[int] | None = None

    # -- prompt handling -------------------------------------------------
    def render(self, messages: Sequence[ChatMessage]) -> str:
        """The chat-templated prompt text; a trailing assistant message is continued."""
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        prefill = bool(msgs) and msgs[-1]["role"] == "assistant"
        tmpl = self.tokenizer.chat_template
        if tmpl is None:
            text = "\n\n".join(f"{m['role']}: {m['content']}" for m in msgs)
            return text if prefill else text + "\n\nassistant:"
        out = self.tokenizer.apply_chat_template(
            msgs,
            tokenize=False,
            add_generation_prompt=not prefill,
            continue_final_message=prefill,
        )
        return str(out)

    def encode(self, prompts: Sequence[Sequence[ChatMessage]]) -> Any:
        """Left-padded input tensors for a batch of prompts."""
        texts = [self.render(p) for p in prompts]
        return self.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)

    def generation_kwargs(
        self, *, n: int, temperature: float, max_tokens: int, stop: Sequence[str] | None
    ) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            "num_return_sequences": n,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": sorted(self.eos_ids),
        }
        if temperature > 0:
            kw.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
        else:
            kw.update(do_sample=False)
        if stop:
            kw.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        return kw

    def _expand(
        self, enc: dict[str, Any], kw: dict[str, Any], n: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Give each prompt n rows; with ``share_prefix``, prefill every prompt once.

        Shared-prefix prefill: the prompt (all but its last token) is run once per
        prompt and its KV cache repeated n times, so the m samples of a chain
        prompt do not each recompute it (what vLLM's prefix caching does on GPU).
        Position ids follow the left padding exactly as ``generate`` computes them.
        """
        ids, am = enc["input_ids"], enc["attention_mask"]
        kw = {**kw, "num_return_sequences": 1}
        if self.share_prefix and ids.shape[1] > 1:
            pos = (am.cumsum(-1) - 1).clamp(min=0)
            out = self.model(
                input_ids=ids[:, :-1],
                attention_mask=am[:, :-1],
                position_ids=pos[:, :-1],
                use_cache=True,
            )
            cache = out.past_key_values
            if hasattr(cache, "batch_repeat_interleave"):
                cache.batch_repeat_interleave(n)
                kw["past_key_values"] = cache
        enc = {k: v.repeat_interleave(n, dim=0) for k, v in enc.items()}
        return enc, kw

    # -- GenerationBackend ----------------------------------------------
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
        """``n`` completions for each prompt, batched in as few ``generate`` calls as allowed."""
        if n < 1:
            raise BackendError("n must be >= 1")
        if not prompts:
            return []
        per_call = len(prompts)
        if self.max_batch:
            per_call = max(1, self.max_batch // n)
        out: list[list[Completion]] = []
        t0 = time.perf_counter()
        tokens = 0
        with self._lock:
            if seed is not None:
                import torch

                torch.manual_seed(seed)
            for i in range(0, len(prompts), per_call):
                chunk = self._generate_chunk(
                    prompts[i : i + per_call], n, temperature, max_tokens, stop, logprobs
                )
                tokens += sum(c.tokens for group in chunk for c in group)
                out.extend(chunk)
        dt = time.perf_counter() - t0
        self.last_stats = {
            "seconds": dt,
            "tokens": tokens,
            "tokens_per_s": tokens / dt if dt else 0,
        }
        return out

    def number_logprobs(
        self, prompts: Sequence[list[ChatMessage]], numbers: Sequence[int]
    ) -> list[list[float]]:
        """``log P(the model writes exactly k next)`` per prompt and number (see ``_readout``).

        Each prompt normally ends with an assistant message that stops right where
        a number is due; it is continued, not answered. Every call prefills its
        prompts from scratch; :meth:`readout_session` keeps them between calls.
        """
        return self._number_logprobs(prompts, numbers, None)

    def readout_session(self) -> TransformersReadoutSession:
        """A :class:`~reward.protocol.ReadoutSession` keeping prompt KV caches between calls."""
        return TransformersReadoutSession(self, self.readout_cache_bytes)

    def _number_logprobs(
        self,
        prompts: Sequence[list[ChatMessage]],
        numbers: Sequence[int],
        caches: list[PromptCache] | None,
    ) -> list[list[float]]:
        """Readout in chunks of prompts; chunk ``c`` reads and refills ``caches[c]`` if given."""
        from reward.backends._readout import PromptCache, digit_start_ids, number_logprobs

        if not prompts:
            return []
        texts = [self.render(p) for p in prompts]
        # Each prompt is len(numbers) rows of the scoring step; max_batch bounds rows.
        per_call = max(1, (self.max_batch or READOUT_MAX_ROWS) // max(1, len(numbers)))
        chunks = range(0, len(texts), per_call)
        if caches is not None:  # one cache per chunk of this call
            for cache in caches[len(chunks) :]:
                cache.clear()
            del caches[len(chunks) :]
            caches.extend(PromptCache() for _ in range(len(chunks) - len(caches)))
        out: list[list[float]] = []
        with self._lock:
            if self._digit_ids is None:
                self._digit_ids = digit_start_ids(self.tokenizer)
            try:
                for c, i in enumerate(chunks):
                    out.extend(
                        number_logprobs(
                            self.model,
                            self.tokenizer,
                            texts[i : i + per_call],
                            numbers,
                            self._digit_ids,
                            self.device,
                            caches[c] if caches is not None else None,
                        )
                    )
            except (RuntimeError, ValueError) as exc:
                if caches is not None:
                    for cache in caches:
                        cache.clear()
                raise BackendError(f"number readout failed: {exc}") from exc
        return out

    def _generate_chunk(
        self,
        prompts: Sequence[list[ChatMessage]],
        n: int,
        temperature: float,
        max_tokens: int,
        stop: Sequence[str] | None,
        logprobs: bool,
    ) -> list[list[Completion]]:
        import torch

        enc = dict(self.encode(prompts))
        kw = self.generation_kwargs(n=n, temperature=temperature, max_tokens=max_tokens, stop=stop)
        try:
            with torch.inference_mode():
                if n > 1:
                    enc, kw = self._expand(enc, kw, n)
                res = self.model.generate(
                    **enc, **kw, return_dict_in_generate=True, output_scores=logprobs
                )
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"generate failed: {exc}") from exc
        prompt_len = enc["input_ids"].shape[1]
        gen = res.sequences[:, prompt_len:]
        lp = None
        if logprobs:
            lp = self.model.compute_transition_scores(
                res.sequences, res.scores, normalize_logits=True
            )
        groups: list[list[Completion]] = []
        for p in range(len(prompts)):
            group = []
            for j in range(n):
                row = p * n + j
                ids = gen[row].tolist()
                length = len(ids)
                for k, t in enumerate(ids):
                    if t in self.eos_ids:
                        length = k + 1
                        break
                text = str(
                    self.tokenizer.decode(
                        ids[:length], skip_special_tokens=True, clean_up_tokenization_spaces=False
                    )
                )
                if stop:
                    cuts = [text.find(s) for s in stop if s and s in text]
                    if cuts:
                        text = text[: min(cuts)]
                logprob = float(lp[row, :length].float().sum()) if lp is not None else None
                group.append(Completion(text=text, tokens=length, logprob=logprob))
            groups.append(group)
        return groups


class TransformersReadoutSession:
    """Readout calls of one scoring job, each prompt batch's KV cache kept for the next.

    Row ``r`` of a call should continue row ``r`` of the previous call (the same
    chain with one more score written); then only the new tokens are prefilled.
    Any other prompt is still read exactly, from its common token prefix with the
    cache (possibly none). At most ``max_bytes`` of cache is kept between calls
    (the last chunks are dropped first); :meth:`close` releases all of it.
    """

    def __init__(self, backend: TransformersBackend, max_bytes: int) -> None:
        self.backend = backend
        self.max_bytes = max_bytes
        self.caches: list[PromptCache] = []

    def number_logprobs(
        self, prompts: Sequence[list[ChatMessage]], numbers: Sequence[int]
    ) -> list[list[float]]:
        """As :meth:`TransformersBackend.number_logprobs`, reusing this session's caches."""
        out = self.backend._number_logprobs(prompts, numbers, self.caches)
        held = 0
        for cache in self.caches:
            size = cache.nbytes
            if held + size > self.max_bytes:
                cache.clear()
            else:
                held += size
        return out

    @property
    def stats(self) -> dict[str, int]:
        """Prompt tokens computed and reused by the last call, and cache bytes kept."""
        return {
            "computed": sum(c.computed for c in self.caches),
            "reused": sum(c.reused for c in self.caches),
            "bytes": sum(c.nbytes for c in self.caches),
        }

    def close(self) -> None:
        """Release every cached tensor."""
        for cache in self.caches:
            cache.clear()
        self.caches.clear()

    def __enter__(self) -> TransformersReadoutSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
