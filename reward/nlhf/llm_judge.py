"""Core-argument F1 by an LLM judge through a reward backend (RM-NLHF's method).

The judge gets the pair, the human critique and the generated critique, and
answers with one JSON object listing the key arguments of each critique (with
the response each argues about and whether for or against it), whether the
generated critique repeats itself, which human argument names a fatal error
(if any: it then becomes the only reference), and the one-to-one matches by
meaning. The F1 rules are then applied by :func:`reward.nlhf.f1.core_f1`
(stance is checked there, not trusted to the judge). An answer that does not
parse is retried up to ``retries`` times; after that the result is F1 = 0 with
reason ``judge_failed`` and the failure is counted in
:attr:`LLMJudgeMatcher.failures`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import numpy as np

from infra.contracts import ChatMessage
from reward.nlhf.arguments import Argument
from reward.nlhf.f1 import F1Result, core_f1
from reward.protocol import GenerationBackend

JUDGE_SYSTEM = """You compare two critiques of the same pair of responses (A and B).
A key argument is a decisive reason that alone would justify a choice. For each critique list its
unique key arguments; give each the response it is about ("A" or "B") and its stance ("for" or
"against" that response). When the human critique names a fatal error (a wrong, unsafe or
non-answering response), set "fatal_error" to the 0-based index of the human argument that names
it; otherwise null. Set "repetition" when the generated critique states the same
argument more than once. "matches" pairs generated and human arguments (0-based indices) that make
the same point; each argument appears in at most one pair.
Answer with one JSON object only:
{"human_arguments": [{"text": "...", "response": "A", "stance": "for"}],
 "generated_arguments": [{"text": "...", "response": "B", "stance": "against"}],
 "fatal_error": null, "repetition": false, "matches": [[0, 0]]}"""

JUDGE_USER = """[Conversation]
{context}
[Response A]
{a}
[Response B]
{b}
[Human critique]
{human}
[Generated critique]
{generated}"""


class JudgeParseError(ValueError):
    """The judge's answer is not the JSON object asked for."""


def _args(raw: Any, fatal: int | None = None) -> list[Argument]:
    if not isinstance(raw, list):
        raise JudgeParseError("arguments are not a list")
    out = []
    for k, a in enumerate(raw):
        if not isinstance(a, dict):
            raise JudgeParseError("argument is not an object")
        side = str(a.get("response", "")).strip().upper()[:1]
        stance = str(a.get("stance", "for")).strip().lower()
        target = side if side in ("A", "B") else None
        out.append(
            Argument(
                str(a.get("text", "")),
                target,  # type: ignore[arg-type]
                -1 if stance.startswith("against") else 1,
                k == fatal,
            )
        )
    return out


def _fatal_index(raw: Any, n_human: int) -> int | None:
    """The human argument that names the fatal error, from the judge's ``fatal_error``.

    An index names it; ``true`` names it only when the human critique has one argument
    (with several, which one is fatal matters: RM-NLHF makes it the sole reference).

    >>> _fatal_index(1, 2), _fatal_index(None, 2), _fatal_index(False, 2), _fatal_index(True, 1)
    (1, None, None, 0)
    """
    if raw is None or raw is False:
        return None
    if raw is True:
        if n_human == 1:
            return 0
        raise JudgeParseError("fatal_error is true but does not say which human argument")
    try:
        k = int(raw)
    except (TypeError, ValueError) as exc:
        raise JudgeParseError(f"fatal_error is not an index: {raw!r}") from exc
    if not 0 <= k < n_human:
        raise JudgeParseError(f"fatal_error {k} is not a human argument")
    return k


def parse_judgement(text: str) -> tuple[list[Argument], list[Argument], np.ndarray, bool]:
    """(generated args, human args, 0/1 similarity from matches, repetition) or raise.

    >>> g, h, sim, rep = parse_judgement('{"human_arguments": [{"text": "calm", "response": "A",'
    ...   ' "stance": "for"}], "generated_arguments": [{"text": "quiet", "response": "A",'
    ...   ' "stance": "for"}], "fatal_error": null, "repetition": false, "matches": [[0, 0]]}')
    >>> sim.tolist(), rep
    ([[1.0]], False)
    """
    m = re.search(r"\{.*\}", text or "", re.DOTALL)
    if not m:
        raise JudgeParseError("no JSON object")
    try:
        obj = json.loads(m.group(0))
    except ValueError as exc:
        raise JudgeParseError(f"invalid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise JudgeParseError("not an object")
    raw_human = obj.get("human_arguments")
    n_human = len(raw_human) if isinstance(raw_human, list) else 0
    fatal = _fatal_index(obj.get("fatal_error"), n_human)
    human = _args(raw_human, fatal)
    gen = _args(obj.get("generated_arguments"))
    sim = np.zeros((len(gen), len(human)))
    for pair in obj.get("matches") or []:
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise JudgeParseError("match is not a pair")
        try:
            i, j = int(pair[0]), int(pair[1])
        except (TypeError, ValueError) as exc:
            raise JudgeParseError(f"match is not a pair of indices: {pair!r}") from exc
        if 0 <= i < len(gen) and 0 <= j < len(human):
            sim[i, j] = 1.0
    return gen, human, sim, _flag(obj.get("repetition"), "repetition")


def _flag(raw: Any, name: str) -> bool:
    """A judge's yes/no field: JSON booleans, or the words ``"true"``/``"false"``.

    >>> _flag("false", "repetition"), _flag(True, "repetition"), _flag(None, "repetition")
    (False, True, False)
    """
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    raise JudgeParseError(f"{name} is not true or false: {raw!r}")


class LLMJudgeMatcher:
    """Core-argument F1 judged by any :class:`~reward.protocol.GenerationBackend`.

    Parameters
    ----------
    backend:
        The judge (an OpenAI-compatible server for a strong judge; any backend works).
    retries:
        Attempts per judgement before giving up with F1 = 0 (RM-NLHF: 3).
    max_tokens, temperature:
        Judge sampling settings.
    """

    name = "llm_judge"

    def __init__(
        self,
        backend: GenerationBackend,
        *,
        retries: int = 3,
        max_tokens: int = 768,
        temperature: float = 0.0,
    ) -> None:
        self.backend = backend
        self.retries = retries
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.failures: Counter[str] = Counter()
        self.calls = 0

    def prompt(
        self, generated: str, human: str, context: str, response_a: str, response_b: str
    ) -> list[ChatMessage]:
        user = JUDGE_USER.format(
            context=context, a=response_a, b=response_b, human=human, generated=generated
        )
        return [
            ChatMessage(role="system", content=JUDGE_SYSTEM),
            ChatMessage(role="user", content=user),
        ]

    def score(
        self, generated: str, human: str, *, context: str, response_a: str, response_b: str
    ) -> F1Result:
        msgs = self.prompt(generated, human, context, response_a, response_b)
        last = ""
        for _ in range(max(1, self.retries)):
            self.calls += 1
            out = self.backend.generate(
                [msgs], n=1, temperature=self.temperature, max_tokens=self.max_tokens
            )
            text = out[0][0].text if out and out[0] else ""
            try:
                gen, ref, sim, rep = parse_judgement(text)
            except JudgeParseError as exc:
                last = str(exc)
                continue
            return core_f1(gen, ref, sim, tau=0.5, repetition=rep)
        self.failures["judge_failed"] += 1
        return F1Result(0.0, reason=f"judge_failed: {last}"[:200])
