"""Key arguments: what a critique claims, about which response, for or against.

An :class:`Argument` has a ``target`` (the response it talks about, A or B, or
None when it refers to neither) and a ``polarity`` (+1 praise, -1 criticism).
Its *stance* is the response it argues for: the target when positive, the
other one when negative. Matching requires equal stances.

The deterministic extractor splits a critique into sentences (and clauses at
";" and " but "), finds each one's target from explicit references ("Response
A", "the first", "the other options") or, failing that, from which response it is
closer to in embedding space, and its polarity from a small negation/criticism
lexicon. Fatal-error cues ("incorrect", "unsafe", "does not answer") flag an
argument as fatal.

Examples
--------
>>> split_arguments("I'll go with the spa. The other options seem too lively; so loud!")
["I'll go with the spa.", 'The other options seem too lively']
>>> polarity("The other options seem too lively"), polarity("It is calm and relaxing")
(-1, 1)
>>> Argument("x", target="B", polarity=-1).stance
'A'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reward.nlhf.rows import Side

_SPLIT = re.compile(r"(?<=[.!?])\s+|\s*;\s*|\n+|\s+but\s+|\s+whereas\s+|\s+while\s+", re.I)
_MIN_WORDS = 3

_NEG = re.compile(
    r"\b(not|no|never|none|nothing|lack\w*|miss\w*|fail\w*|too|overly|worse|worst|bad|poor\w*|"
    r"weak\w*|wrong|incorrect|inaccurate|irrelevant|avoid\w*|unhelpful|vague|verbose|"
    r"confus\w*|dislike\w*|hate\w*|don'?t|doesn'?t|isn'?t|aren'?t|wasn'?t|can'?t|cannot|"
    r"won'?t|less|lower|problem\w*|issue\w*|error\w*|mistake\w*|harm\w*|unsafe|dangerous|"
    r"boring|generic|redundant|unnecessary|rather than|instead of|not for me|"
    r"neglect\w*|ignor\w*)\b",
    re.IGNORECASE,
)
_FATAL = re.compile(
    r"\b(factually (?:wrong|incorrect)|incorrect|wrong answer|is wrong|false|hallucinat\w*|"
    r"unsafe|dangerous|harmful|does not answer|doesn'?t answer|fails to answer|refus\w*|"
    r"off[- ]topic|irrelevant|violates?|fatal)\b",
    re.IGNORECASE,
)
# The letters count in capitals only: "the response a busy parent wants" names no response.
_REF_A = re.compile(
    r"\b(response|answer|option|candidate|assistant)\s*((?-i:A)|1|one)\b"
    r"|\bthe first (one|response|option)\b",
    re.I,
)
_REF_B = re.compile(
    r"\b(response|answer|option|candidate|assistant)\s*((?-i:B)|2|two)\b"
    r"|\bthe second (one|response|option)\b",
    re.I,
)
_REF_OTHER = re.compile(
    r"\b(the )?other (one|options?|responses?|answers?|choices?)\b|\bthe rest\b", re.I
)


@dataclass(frozen=True)
class Argument:
    """One key argument of a critique."""

    text: str
    target: Side | None
    polarity: int = 1
    fatal: bool = False

    @property
    def stance(self) -> Side | None:
        """The response this argument argues for (None when it refers to neither)."""
        if self.target is None:
            return None
        if self.polarity >= 0:
            return self.target
        return "B" if self.target == "A" else "A"


def split_arguments(critique: str) -> list[str]:
    """Sentence/clause candidates of key arguments (fragments under 3 words dropped)."""
    parts = [p.strip(" \t-*•") for p in _SPLIT.split(critique or "")]
    return [p for p in parts if len(p.split()) >= _MIN_WORDS]


def polarity(text: str) -> int:
    """-1 when ``text`` criticises (an odd number of cues is not modelled: any cue is -1)."""
    return -1 if _NEG.search(text) else 1


def is_fatal(text: str) -> bool:
    """True when ``text`` names a fatal error (wrong, unsafe, off-topic, refusal ...)."""
    return bool(_FATAL.search(text))


def strip_references(text: str) -> str:
    """Replace explicit response references by "It" so that meaning is compared, not labels.

    >>> strip_references("Response B is too loud.")
    'It is too loud.'
    """
    out = _REF_A.sub("It", text)
    return _REF_B.sub("It", out)


def explicit_target(text: str) -> Side | str | None:
    """``"A"``/``"B"`` for an explicit reference, ``"other"`` for "the other option(s)".

    None when the text names no response.
    """
    a, b = bool(_REF_A.search(text)), bool(_REF_B.search(text))
    if a != b:
        return "A" if a else "B"
    if _REF_OTHER.search(text):
        return "other"
    return None
