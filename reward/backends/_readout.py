"""Exact-integer log-probabilities of a causal LM's next number (transformers).

For a prompt that ends right where a number is due (``..."response_1": ``) and
candidate integers ``k``, computes ``log P(the model writes exactly k here)``:
the log-probability of ``str(k)``'s tokens followed by any token that does not
start with a digit (so "1" is not counted when the model means "10").

All numbers of all prompts are scored in one prefill plus one short step: the
token prefix common to every ``prompt + str(k)`` is run once per prompt
(left-padded batch, KV cache kept), then the 1-3 tokens of every number go
through the model together, side by side after their prompt, a 4D attention
mask keeping each number's tokens apart (no copy of the cache per number).

With a :class:`PromptCache`, the prefill of one call is kept for the next: when
the next call's prompts extend the previous ones (score readout writes a score
and the next key, then reads again), only the tokens after the longest common
token prefix are run; the cache is cropped to that prefix first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    n = min(len(s) for s in seqs)
    for i in range(n):
        t = seqs[0][i]
        if any(s[i] != t for s in seqs[1:]):
            return i
    return n


def digit_start_ids(tokenizer: Any) -> list[int]:
    """Ids of vocabulary tokens whose text starts with a digit (continuations of a number)."""
    out = []
    for i in range(len(tokenizer)):
        s = tokenizer.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if s[:1].isdigit():
            out.append(i)
    return out


class PromptCache:
    """The KV cache of one batch of prompts, kept from one readout call to the next.

    Row ``r`` of the next call is assumed to continue row ``r`` of this one; any
    other text is still read exactly (only its common token prefix is reused,
    possibly none). Columns are the cache's positions: rows are left-padded and,
    after an extension, may hold padding in the middle; ``mask`` marks real tokens.

    Attributes
    ----------
    ids:
        Per row, the real token ids held in the cache, in order.
    mask:
        ``[rows, columns]`` attention mask of the cached columns (None when empty).
    kv:
        The model's cache object (a transformers ``DynamicCache``), or None.
    computed, reused:
        Prompt tokens run through the model / taken from the cache by the last call.
    """

    def __init__(self) -> None:
        self.ids: list[list[int]] = []
        self.mask: Any = None
        self.kv: Any = None
        self.computed = 0
        self.reused = 0

    def clear(self) -> None:
        """Drop the cached tensors (the next call prefills from scratch)."""
        self.ids, self.mask, self.kv = [], None, None

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached keys and values."""
        total = 0
        for layer in getattr(self.kv, "layers", ()):
            for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if t is not None:
                    total += t.numel() * t.element_size()
        return total


def _croppable(kv: Any) -> bool:
    layers = getattr(kv, "layers", None)
    return (
        layers is not None
        and hasattr(kv, "crop")
        and all(
            getattr(x, "is_croppable", True) and not getattr(x, "is_sliding", False) for x in layers
        )
    )


def _prefill(
    model: Any, prefixes: list[list[int]], pad: int, device: str, cache: PromptCache | None
) -> tuple[Any, Any, Any, int]:
    """Run ``prefixes`` (reusing ``cache`` where it holds a common prefix).

    Returns the next-token log-probabilities after each prefix ``[rows, vocab]``,
    the full attention mask and the model cache covering every prefix, and the
    number of prompt tokens taken from ``cache``.
    """
    import torch

    rows = len(prefixes)
    kept = [0] * rows
    width = 0  # cached columns kept
    if cache is not None and cache.kv is not None and len(cache.ids) == rows:
        old_w = int(cache.mask.shape[1])
        limit = old_w
        for r, (old, new) in enumerate(zip(cache.ids, prefixes, strict=True)):
            # Keep at most len(new) - 1 tokens: the last one must run to give its logits.
            lcp = min(_common_prefix([old, new]), len(new) - 1)
            if lcp < len(old):  # the column of the first cached token to drop
                cols = cache.mask[r].nonzero().flatten()
                limit = min(limit, int(cols[lcp]))
        width = limit
        if width > 0:
            if width < old_w:
                cache.kv.crop(width - old_w)  # negative: remove that many columns
            kept = [int(v) for v in cache.mask[:, :width].sum(-1)]
    new_parts = [p[k:] for p, k in zip(prefixes, kept, strict=True)]
    span = max(len(p) for p in new_parts)
    ids = torch.full((rows, span), pad, dtype=torch.long)
    am = torch.zeros((rows, span), dtype=torch.long)
    for r, p in enumerate(new_parts):
        ids[r, span - len(p) :] = torch.tensor(p)
        am[r, span - len(p) :] = 1
    ids, am = ids.to(device), am.to(device)
    past = None
    if width > 0:
        assert cache is not None
        past = cache.kv
        am = torch.cat([cache.mask[:, :width], am], dim=1)
    pos = (am.cumsum(-1) - 1).clamp(min=0)[:, width:]
    out = model(
        input_ids=ids, attention_mask=am, position_ids=pos, past_key_values=past, use_cache=True
    )
    first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
    return first, am, out.past_key_values, sum(kept)


def _number_step(
    model: Any,
    first: Any,
    am: Any,
    kv: Any,
    suffixes: list[list[list[int]]],
    digit: Any,
    pad: int,
) -> list[list[float]]:
    """Score every number's tokens after every prefix in one forward pass.

    The number tokens of one prompt are laid side by side in one row (``k`` short
    branches after the shared prefix); a 4D mask lets each token see the prefix
    and the earlier tokens of its own number only, so the prefix cache is neither
    repeated nor copied per number. ``kv`` is extended by the branch columns.
    """
    import torch

    rows, width = int(am.shape[0]), int(am.shape[1])
    device = am.device
    span = max(sum(len(s) for s in group) for group in suffixes)
    ids = torch.full((rows, span), pad, dtype=torch.long)
    pos = torch.zeros((rows, span), dtype=torch.long)
    seen = torch.zeros((rows, span, width + span), dtype=torch.bool)
    seen[:, :, :width] = am.bool().cpu().unsqueeze(1)
    start = am.sum(-1).cpu()  # the position after each prefix
    offsets: list[list[int]] = []
    for r, group in enumerate(suffixes):
        at, row_offsets = 0, []
        for toks in group:
            n = len(toks)
            ids[r, at : at + n] = torch.tensor(toks)
            pos[r, at : at + n] = start[r] + torch.arange(n)
            seen[r, at : at + n, width + at : width + at + n] = torch.ones(n, n).tril().bool()
            row_offsets.append(at)
            at += n
        for q in range(at, span):  # padding sees itself, so no query row is empty
            seen[r, q, width + q] = True
        offsets.append(row_offsets)
    dtype = next(model.parameters()).dtype
    mask = torch.zeros(seen.shape, dtype=dtype)
    mask.masked_fill_(~seen, torch.finfo(dtype).min)
    step = model(
        input_ids=ids.to(device),
        attention_mask=mask.unsqueeze(1).to(device),
        position_ids=pos.to(device),
        past_key_values=kv,
        use_cache=True,
    )
    logp = torch.log_softmax(step.logits.float(), dim=-1)  # [rows, span, vocab]
    result: list[list[float]] = []
    for r, group in enumerate(suffixes):
        row_vals = []
        for toks, at in zip(group, offsets[r], strict=True):
            total = first[r, toks[0]]
            for i in range(1, len(toks)):
                total = total + logp[r, at + i - 1, toks[i]]
            p_more = logp[r, at + len(toks) - 1, digit].exp().sum().clamp(max=1.0 - 1e-7)
            row_vals.append(float(total + torch.log1p(-p_more)))
        result.append(row_vals)
    return result


def number_logprobs(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    numbers: Sequence[int],
    digit_ids: Sequence[int],
    device: str = "cpu",
    cache: PromptCache | None = None,
) -> list[list[float]]:
    """``log P(exactly k)`` for every text (already chat-rendered) and every ``k``.

    Returns one list per text, aligned with ``numbers``. Values are <= 0 and the
    probabilities of one text sum to at most 1. With ``cache``, the prefill
    reuses what it holds and it is left holding this call's prompts.
    """
    import torch

    if not texts:
        return []
    prefixes: list[list[int]] = []
    suffixes: list[list[list[int]]] = []
    for t in texts:
        full = [tokenizer(t + str(k), add_special_tokens=False).input_ids for k in numbers]
        cut = _common_prefix(full)
        cut = max(1, min(cut, min(len(f) for f in full) - 1))  # at least one token to score
        prefixes.append(full[0][:cut])
        suffixes.append([f[cut:] for f in full])
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    digit = torch.tensor(list(digit_ids), dtype=torch.long, device=device)

    with torch.inference_mode():
        first, am, kv, reused = _prefill(model, prefixes, pad, device, cache)
        result = _number_step(model, first, am, kv, suffixes, digit, pad)
        if cache is not None:
            cache.computed = sum(len(p) for p in prefixes) - reused
            cache.reused = reused
            width = int(am.shape[1])
            if _croppable(kv):  # drop the number tokens, keep the prompts
                kv.crop(width - kv.get_seq_length())
                cache.ids, cache.mask, cache.kv = prefixes, am, kv
            else:
                cache.clear()
    return result
