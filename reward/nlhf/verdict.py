"""What a generated judgement says: its verdict, whether its format is valid, its critique.

Two output formats are read:

- RM-NLHF's GRM format, ``<critics>...</critics>`` then ``<choice>[[A]]</choice>``
  (:func:`parse_grm_output`). A format error is a missing critique or choice, or
  a critique longer than :data:`MAX_CRITIQUE_LINES` lines or
  :data:`MAX_CRITIQUE_CHARS` characters.
- P-GenRM evaluation chains as parsed by :func:`reward.parser.parse_chain`
  (:func:`verdict_from_chain`): the format is valid when the chain parsed, the
  choice is the top-scored candidate (a tie chooses nothing), and the critique is
  the chain's prose (PART 1 and any rationale) with slot names ("Response 1")
  rewritten to the request's sides ("Response A" = candidate 0).

Examples
--------
>>> v = parse_grm_output("<critics>A is calm. B is too loud.</critics><choice>[[A]]</choice>")
>>> v.format_ok, v.choice, v.critique
(True, 'A', 'A is calm. B is too loud.')
>>> parse_grm_output("<critics>fine</critics>").failure
'missing_choice'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from reward.nlhf.rows import Side
from reward.protocol import ChainParse

MAX_CRITIQUE_LINES = 4
MAX_CRITIQUE_CHARS = 1500

_CRITICS = re.compile(r"<critics>(.*?)</critics>", re.DOTALL | re.IGNORECASE)
_CHOICE = re.compile(r"<choice>\s*\[\[\s*([AB])\s*\]\]\s*</choice>", re.IGNORECASE)
_FALLBACK = re.compile(r"\[\[\s*([AB])\s*\]\]")
_JSON_BLOCK = re.compile(r"<\s*JSON_START\s*>.*?(?:<\s*/?\s*JSON_END\s*>|$)", re.DOTALL | re.I)
_PART_HDR = re.compile(r"^\s*PART\s*[12]\b[^\n]*$", re.MULTILINE | re.IGNORECASE)
_SLOT = re.compile(r"\b(response|candidate|answer)[\s_#-]*(\d+)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """A judgement reduced to what the rewards need."""

    format_ok: bool
    choice: Side | None
    critique: str
    failure: str | None = None

    def correct(self, winner: Side) -> bool:
        """o = 1[label correct]: valid format and the choice is the user's."""
        return self.format_ok and self.choice == winner


def parse_grm_output(text: str) -> Verdict:
    """Read an RM-NLHF ``<critics>``/``<choice>`` output (never raises)."""
    m = _CRITICS.search(text or "")
    critique = m.group(1).strip() if m else ""
    c = _CHOICE.search(text or "") or _FALLBACK.search(text or "")
    choice: Side | None = "A" if c and c.group(1).upper() == "A" else ("B" if c else None)
    failure = None
    if not critique:
        failure = "missing_critique"
    elif choice is None:
        failure = "missing_choice"
    elif len(critique.splitlines()) > MAX_CRITIQUE_LINES:
        failure = "critique_too_many_lines"
    elif len(critique) > MAX_CRITIQUE_CHARS:
        failure = "critique_too_long"
    return Verdict(format_ok=failure is None, choice=choice, critique=critique, failure=failure)


def _rationale(text: str) -> str:
    """The ``rationale`` string of the chain's JSON, when it has one."""
    m = re.search(r"\{.*\}", text, re.DOTALL)
    if not m:
        return ""
    try:
        obj = json.loads(m.group(0))
    except ValueError:
        return ""
    r = obj.get("rationale") if isinstance(obj, dict) else None
    return r.strip() if isinstance(r, str) else ""


def critique_from_chain(text: str, order: list[int]) -> str:
    """The prose of an evaluation chain, with slot names mapped to request sides.

    ``order[k]`` is the request index shown in slot k (as in ``ChainParse.order``).

    >>> text = "PART 1\\nResponse 1 is calm.\\nPART 2 <JSON_START>{}<JSON_END>"
    >>> critique_from_chain(text, [1, 0])
    'Response B is calm.'
    """
    blocks = _JSON_BLOCK.findall(text)
    rationale = " ".join(_rationale(b) for b in blocks).strip()
    prose = _JSON_BLOCK.sub(" ", text)
    prose = _PART_HDR.sub(" ", prose)
    prose = " ".join(prose.split())
    if rationale:
        prose = (prose + " " + rationale).strip()

    def side(m: re.Match[str]) -> str:
        k = int(m.group(2)) - 1
        if 0 <= k < len(order) and order[k] in (0, 1):
            return f"{m.group(1)} {'AB'[order[k]]}"
        return m.group(0)

    return _SLOT.sub(side, prose)


def verdict_from_chain(chain: ChainParse) -> Verdict:
    """The verdict of one parsed P-GenRM chain over two candidates (A = candidate 0)."""
    critique = critique_from_chain(chain.text, chain.order or [0, 1])
    if not chain.ok or not chain.scores or len(chain.scores) != 2:
        return Verdict(False, None, critique, chain.failure or "unparsed")
    a, b = chain.scores
    choice: Side | None = "A" if a > b else ("B" if b > a else None)
    return Verdict(True, choice, critique, None if choice else "tie")
