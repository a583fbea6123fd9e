"""The behaviour every GenerationBackend must show, checked on a real model.

``check_backend(backend)`` is run against the transformers backend, the OpenAI
backend over real HTTP, and vLLM (where a GPU exists).
"""

from __future__ import annotations

from infra.contracts import ChatMessage
from reward.protocol import Completion, GenerationBackend

PROMPTS = [
    [ChatMessage(role="user", content="List three colours.")],
    [
        ChatMessage(role="system", content="You answer briefly."),
        ChatMessage(role="user", content="What is the capital of France?"),
    ],
]


def check_backend(backend: GenerationBackend, *, max_tokens: int = 12) -> None:
    assert isinstance(backend, GenerationBackend)
    assert isinstance(backend.model_id, str) and backend.model_id

    # Shape: len(prompts) lists of n completions, each within max_tokens.
    out = backend.generate(PROMPTS, n=3, temperature=1.0, max_tokens=max_tokens, seed=1)
    assert len(out) == len(PROMPTS)
    for group in out:
        assert len(group) == 3
        for c in group:
            assert isinstance(c, Completion) and isinstance(c.text, str)
            assert 0 < c.tokens <= max_tokens
            assert c.logprob is None
    assert backend.generate([], n=2, max_tokens=max_tokens) == []

    # Greedy decoding is deterministic: the n greedy samples of one call agree, and
    # two identical calls agree (batch shapes differ between the two calls, and
    # low-precision kernels may differ across shapes, so those are not compared).
    one = [PROMPTS[0]]
    g1 = backend.generate(one, n=2, temperature=0.0, max_tokens=max_tokens)[0]
    assert g1[0].text == g1[1].text
    g2 = backend.generate(one, n=1, temperature=0.0, max_tokens=max_tokens)[0]
    g3 = backend.generate(one, n=1, temperature=0.0, max_tokens=max_tokens)[0]
    assert g2[0].text == g3[0].text
    greedy = g2[0].text

    # A seed makes a call reproducible without collapsing its samples: the same prompt
    # given several times in one seeded call is sampled independently (P-GenRM's m
    # chains are often identical prompts), and repeating the call repeats the samples.
    same = [[ChatMessage(role="user", content="Tell me a short story.")]] * 4
    s1 = backend.generate(same, n=1, temperature=1.0, max_tokens=max_tokens, seed=7)
    texts = [g[0].text for g in s1]
    assert len(set(texts)) > 1, f"identical prompts in one seeded call drew the same text: {texts}"
    s2 = backend.generate(same, n=1, temperature=1.0, max_tokens=max_tokens, seed=7)
    assert [g[0].text for g in s2] == texts

    # Stop strings end the text before the stop string.
    words = greedy.split()
    if len(words) >= 3:
        stop = " " + words[2]
        cut = backend.generate(one, n=1, temperature=0.0, max_tokens=max_tokens, stop=[stop])[0][0]
        assert stop not in cut.text
        assert greedy.startswith(cut.text)
        assert len(cut.text) < len(greedy)

    # Log-probabilities on request: one finite, non-positive number per completion.
    lp = backend.generate(one, n=2, temperature=1.0, max_tokens=max_tokens, logprobs=True)[0]
    for c in lp:
        assert c.logprob is not None and c.logprob <= 0.0

    # Prefill: a trailing assistant message is continued, not answered anew.
    pre = [*PROMPTS[0], ChatMessage(role="assistant", content="1. Red\n2.")]
    cont = backend.generate([pre], n=1, temperature=0.0, max_tokens=max_tokens)[0][0]
    assert not cont.text.startswith("1. Red")
