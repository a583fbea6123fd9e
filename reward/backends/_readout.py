"""Exact-integer log-probabilities of a causal LM's next number (transformers).

For a prompt that ends right where a number is due (``..."response_1": ``) and
candidate integers ``k``, computes ``log P(the model writes exactly k here)``:
the log-probability of ``str(k)``'s tokens followed by any token that does not
start with a digit (so "1" is not counted when the model means "10").

All numbers of all prompts are scored in one prefill plus one short step: the
token prefix common to every ``prompt + str(k)`` is run once per prompt
(left-padded batch, KV cache kept), the cache is repeated once per number, and
the 1-3 number tokens of every row go through the model together.
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


def number_logprobs(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    numbers: Sequence[int],
    digit_ids: Sequence[int],
    device: str = "cpu",
) -> list[list[float]]:
    """``log P(exactly k)`` for every text (already chat-rendered) and every ``k``.

    Returns one list per text, aligned with ``numbers``. Values are <= 0 and the
    probabilities of one text sum to at most 1.
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
    width = max(len(p) for p in prefixes)
    ids = torch.full((len(texts), width), pad, dtype=torch.long)
    am = torch.zeros((len(texts), width), dtype=torch.long)
    for r, p in enumerate(prefixes):
        ids[r, width - len(p) :] = torch.tensor(p)
        am[r, width - len(p) :] = 1
    ids, am = ids.to(device), am.to(device)
    pos = (am.cumsum(-1) - 1).clamp(min=0)
    k = len(numbers)
    slen = max(len(s) for group in suffixes for s in group)
    sids = torch.full((len(texts) * k, slen), pad, dtype=torch.long)
    lens = []
    for r, group in enumerate(suffixes):
        for j, s in enumerate(group):
            sids[r * k + j, : len(s)] = torch.tensor(s)
            lens.append(len(s))
    sids = sids.to(device)
    digit = torch.tensor(list(digit_ids), dtype=torch.long, device=device)

    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=am, position_ids=pos, use_cache=True)
        first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # [texts, vocab]
        cache = out.past_key_values
        cache.batch_repeat_interleave(k)
        am_k = am.repeat_interleave(k, dim=0)
        start = pos[:, -1:].repeat_interleave(k, dim=0) + 1
        spos = start + torch.arange(slen, device=device).unsqueeze(0)
        sam = torch.cat([am_k, torch.ones_like(sids)], dim=1)
        step = model(
            input_ids=sids,
            attention_mask=sam,
            position_ids=spos,
            past_key_values=cache,
            use_cache=False,
        )
        logp = torch.log_softmax(step.logits.float(), dim=-1)  # [rows, slen, vocab]

    result: list[list[float]] = []
    for r in range(len(texts)):
        row_vals = []
        for j in range(k):
            row = r * k + j
            n = lens[row]
            toks = sids[row, :n]
            total = first[r, toks[0]]
            for i in range(1, n):
                total = total + logp[row, i - 1, toks[i]]
            p_more = logp[row, n - 1, digit].exp().sum().clamp(max=1.0 - 1e-7)
            total = total + torch.log1p(-p_more)
            row_vals.append(float(total))
        result.append(row_vals)
    return result
