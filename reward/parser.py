"""Parse one generated evaluation chain into per-candidate scores. Never raises.

The chain's PART 2 is a JSON object between ``<JSON_START>`` and ``<JSON_END>``
(the last such block wins; without markers, the last JSON object in the text).
Scores are read from ``better_response`` or ``scores``; keys may be
``response_1`` ... (1-based, as the template asks), ``response_0`` ... (0-based),
``Response 1``, ``1`` or a list in slot order; values may be numbers, numeric
strings such as ``"7.5"``, ``"7/10"`` or ``"7.5 points"``, or objects holding a
``total``/``weighted_sum``/``score``. Where the JSON also gives criteria weights
and a per-criterion ``breakdown``, the weighted sums are recomputed and an
arithmetic mismatch (> 0.05) is flagged; a missing final score is taken from the
recomputation.

Failure reasons (``ChainParse.failure``): ``empty``, ``no_json``, ``invalid_json``,
``no_scores``, ``missing_candidate``, ``wrong_count``, ``non_numeric``,
``out_of_range``. Warnings (``ChainParse.warnings``): ``weights_not_100``,
``arithmetic_mismatch``, ``recomputed``, ``no_markers``, ``repaired_truncation`` (the
JSON was cut off, e.g. by the token limit, after every candidate's score; it is
closed and accepted only when it then scores every candidate).

Examples
--------
>>> text = ('PART 2 <JSON_START>{"better_response": {"response_1": 4, "response_2": "8.5"}}'
...         '<JSON_END>')
>>> p = parse_chain(text, 2, order=[1, 0])
>>> p.ok, p.scores
(True, [8.5, 4.0])
>>> parse_chain("I like the second one.", 2, order=[0, 1]).failure
'no_json'
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from infra.contracts import Criterion
from reward.protocol import ChainParse

SCORE_MIN = 1.0
SCORE_MAX = 10.0
"""The template's 1-10 scale: a weighted sum of 1-10 criterion scores lies in it, so a
score outside it (0.3, 85) is the model leaving the scale, counted as ``out_of_range``."""
ARITH_TOL = 0.05
_START = re.compile(r"<\s*JSON_START\s*>", re.IGNORECASE)
_END = re.compile(r"<\s*/?\s*JSON_END\s*>", re.IGNORECASE)
_NUM = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*(?:/\s*10|points?|pts)?\s*$", re.IGNORECASE)
_KEY = re.compile(r"^\s*(?:response|resp|candidate|answer|r)?[\s_#-]*(\d+)\s*$", re.IGNORECASE)
_SCORE_KEYS = ("better_response", "scores", "final_scores", "score")
_TOTAL_KEYS = ("total", "weighted_sum", "weighted_score", "final", "score", "overall")
_PART1 = re.compile(r"PART\s*1", re.IGNORECASE)
_PART2 = re.compile(r"PART\s*2|<\s*JSON_START\s*>", re.IGNORECASE)
_PERSONA_CUT = 2000
_CRIT_LINE = re.compile(
    r"^\s*(?:[-*•]|\d+[.)])?\s*\**(?P<name>[A-Za-z][^:\n()%]{0,60}?)\**\s*[:\-–—(].*?"
    r"(?P<w>\d{1,3}(?:\.\d+)?)\s*%",
    re.MULTILINE,
)


class _Fail(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _balanced_objects(text: str) -> list[str]:
    """Top-level ``{...}`` spans of ``text`` (string-aware brace matching)."""
    spans: list[str] = []
    depth = 0
    start = -1
    in_str = False
    esc = False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"' and depth > 0:
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans


def _loads(s: str) -> Any:
    try:
        return json.loads(s)
    except ValueError:
        pass
    # Common model slips: trailing commas, single quotes, // comments.
    fixed = re.sub(r",\s*([}\]])", r"\1", s)
    fixed = re.sub(r"//[^\n]*", "", fixed)
    try:
        return json.loads(fixed)
    except ValueError:
        if "'" in fixed and '"' not in fixed:
            try:
                return json.loads(fixed.replace("'", '"'))
            except ValueError:
                return None
    return None


def extract_json(text: str) -> tuple[dict[str, Any] | None, str | None, bool]:
    """The chain's JSON object, a failure reason when none, and whether markers were used."""
    starts = list(_START.finditer(text))
    if starts:
        body = text[starts[-1].end() :]
        end = _END.search(body)
        block = body[: end.start()] if end else body
        for cand in reversed(_balanced_objects(block)):
            obj = _loads(cand)
            if isinstance(obj, dict):
                return obj, None, True
        obj = _loads(block.strip())
        if isinstance(obj, dict):
            return obj, None, True
        # Markers present but their block is broken: fall back to any earlier object.
        for cand in reversed(_balanced_objects(text[: starts[-1].start()])):
            obj = _loads(cand)
            if isinstance(obj, dict) and any(k in obj for k in _SCORE_KEYS):
                return obj, None, False
        return None, "invalid_json", True
    objs = _balanced_objects(text)
    for cand in reversed(objs):
        obj = _loads(cand)
        if isinstance(obj, dict):
            return obj, None, False
    if "{" in text:
        return None, "invalid_json", False
    return None, "no_json", False


def repair_truncated(text: str, max_tries: int = 40) -> dict[str, Any] | None:
    """Close a JSON object cut off mid-way (e.g. by the token limit), dropping the partial tail.

    The text after the last ``<JSON_START>`` (or from the first ``{``) is cut back to
    a complete value and the open brackets are closed. Returns None when no cut parses.

    >>> repair_truncated('<JSON_START>{"better_response": {"response_1": 7, "response_2": 5, "no')
    {'better_response': {'response_1': 7, 'response_2': 5}}
    """
    starts = list(_START.finditer(text))
    body = text[starts[-1].end() :] if starts else text
    i = body.find("{")
    if i < 0:
        return None
    body = body[i:]
    cuts = [k for k, ch in enumerate(body) if ch in ",}]"]
    for k in reversed(cuts[-max_tries:]):
        head = body[: k + 1] if body[k] in "}]" else body[:k]
        stack: list[str] = []
        in_str = esc = False
        for ch in head:
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch in "{[":
                stack.append("}" if ch == "{" else "]")
            elif ch in "}]" and stack:
                stack.pop()
        if in_str or not stack:
            continue
        obj = _loads(head + "".join(reversed(stack)))
        if isinstance(obj, dict):
            return obj
    return None


def _number(v: Any) -> float:
    if isinstance(v, bool):
        raise _Fail("non_numeric", f"boolean {v!r}")
    if isinstance(v, int | float):
        f = float(v)
    elif isinstance(v, str):
        m = _NUM.match(v)
        if not m:
            raise _Fail("non_numeric", f"{v[:40]!r} is not a number")
        f = float(m.group(1))
    elif isinstance(v, dict):
        for k in _TOTAL_KEYS:
            for key in v:
                if str(key).lower() == k:
                    return _number(v[key])
        raise _Fail("non_numeric", f"object without a total: {list(v)[:4]}")
    else:
        raise _Fail("non_numeric", f"{type(v).__name__} {str(v)[:40]!r}")
    if not math.isfinite(f):
        raise _Fail("non_numeric", f"{f}")
    return f


def _slot_map(keys: list[str], n: int) -> dict[str, int]:
    """Map JSON keys to 0-based presentation slots (1-based unless a 0 appears)."""
    nums: dict[str, int] = {}
    for k in keys:
        m = _KEY.match(str(k))
        if m:
            nums[k] = int(m.group(1))
        elif len(str(k).strip()) == 1 and str(k).strip().isalpha():
            nums[k] = ord(str(k).strip().upper()) - ord("A") + 1  # "A", "B", ...
    zero_based = any(v == 0 for v in nums.values())
    return {k: v if zero_based else v - 1 for k, v in nums.items()}


def _scores_by_slot(raw: Any, n: int) -> list[float]:
    if isinstance(raw, list):
        if len(raw) != n:
            raise _Fail("wrong_count", f"{len(raw)} scores for {n} candidates")
        return [_number(v) for v in raw]
    if not isinstance(raw, dict):
        raise _Fail("non_numeric", f"scores are a {type(raw).__name__}")
    slots = _slot_map(list(raw), n)
    unknown = [k for k in raw if k not in slots]
    if unknown:
        raise _Fail("no_scores", f"unrecognised candidate keys {unknown[:4]}")
    got = {slots[k]: _number(v) for k, v in raw.items()}
    missing = [s + 1 for s in range(n) if s not in got]
    extra = [s + 1 for s in got if s < 0 or s >= n]
    if extra:
        raise _Fail("wrong_count", f"scores for responses {sorted(extra)} beyond {n}")
    if missing:
        raise _Fail("missing_candidate", f"no score for response(s) {missing}")
    return [got[s] for s in range(n)]


def _find_key(obj: dict[str, Any], names: tuple[str, ...]) -> Any:
    lowered = {str(k).lower(): v for k, v in obj.items()}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None


def _criteria(obj: dict[str, Any]) -> list[tuple[str, float]]:
    raw = _find_key(obj, ("criteria", "weights", "evaluation_criteria"))
    if raw is None and isinstance(obj.get("rationale"), dict):
        raw = _find_key(obj["rationale"], ("criteria", "weights"))
    out: list[tuple[str, float]] = []
    try:
        if isinstance(raw, dict):
            out = [(str(k), _weight(v)) for k, v in raw.items()]
        elif isinstance(raw, list):
            for item in raw:
                if isinstance(item, dict):
                    name = _find_key(item, ("name", "criterion", "criteria"))
                    w = _find_key(item, ("weight", "weight_percent", "percent"))
                    if name is not None and w is not None:
                        out.append((str(name), _weight(w)))
    except _Fail:
        return []
    return out


def _weight(raw: Any) -> float:
    """A criterion weight, ``60`` or ``"60%"`` alike."""
    return _number(raw.strip().rstrip("% ") if isinstance(raw, str) else raw)


def _recompute(obj: dict[str, Any], crits: list[tuple[str, float]], n: int) -> list[float] | None:
    """Weighted sums from ``breakdown`` and criteria weights, in slot order."""
    names = ("breakdown", "criterion_scores", "per_criterion")
    bd = _find_key(obj, names)
    if bd is None and isinstance(obj.get("rationale"), dict):  # beside criteria nested there
        bd = _find_key(obj["rationale"], names)
    if not isinstance(bd, dict) or not crits:
        return None
    total_w = sum(w for _, w in crits)
    if total_w <= 0:
        return None
    slots = _slot_map(list(bd), n)
    sums: dict[int, float] = {}
    for key, per in bd.items():
        if key not in slots or not isinstance(per, dict):
            return None
        lowered = {str(k).strip().lower(): v for k, v in per.items()}
        acc = 0.0
        for name, w in crits:
            if name.strip().lower() not in lowered:
                return None
            try:
                acc += w * _number(lowered[name.strip().lower()])
            except _Fail:
                return None
        sums[slots[key]] = acc / total_w
    if sorted(sums) != list(range(n)):
        return None
    return [sums[s] for s in range(n)]


def _part1(text: str) -> str | None:
    m1 = _PART1.search(text)
    start = m1.end() if m1 else 0
    m2 = _PART2.search(text, start)
    body = text[start : m2.start() if m2 else len(text)].strip(" \n:-")
    return body[:_PERSONA_CUT] or None


def criteria_from_text(text: str) -> list[Criterion]:
    """Criteria written as lines ``- name: reason (30%)`` in PART 1 prose.

    >>> [c.name for c in criteria_from_text("- Brevity: short (60%)\\n- Warmth: kind (40%)")]
    ['Brevity', 'Warmth']
    """
    out = []
    for m in _CRIT_LINE.finditer(text):
        w = float(m.group("w"))
        name = m.group("name").strip(" *")
        if 0 <= w <= 100 and name:
            out.append(Criterion(name=name[:80], weight=w))
    return out


def parse_chain(text: str, n_candidates: int, order: list[int]) -> ChainParse:
    """Parse one chain; scores come back in request order (``order[k]`` = request index in slot k).

    Never raises: every problem becomes ``ok=False`` with a ``failure`` code.
    """
    try:
        return _parse(text, n_candidates, order)
    except _Fail as f:
        return ChainParse(ok=False, failure=f.reason, detail=f.detail, order=list(order), text=text)
    except Exception as exc:  # the contract is: never raise to the caller
        return ChainParse(
            ok=False, failure="parser_error", detail=repr(exc)[:200], order=list(order), text=text
        )


def _parse(text: str, n: int, order: list[int]) -> ChainParse:
    order = list(order)
    if not isinstance(text, str) or not text.strip():
        raise _Fail("empty", "no text generated")
    if sorted(order) != list(range(n)):
        raise _Fail("wrong_count", f"order {order} is not a permutation of {n} candidates")
    persona = _part1(text)
    obj, reason, markers = extract_json(text)
    if obj is None:
        fail = _Fail(
            reason or "no_json", "no JSON object between <JSON_START>/<JSON_END> or in the text"
        )
        repaired = repair_truncated(text) if reason == "invalid_json" else None
        if repaired is None:
            raise fail
        try:  # accepted only when the repaired object scores every candidate
            return _from_obj(repaired, text, n, order, persona, ["repaired_truncation"])
        except _Fail:
            raise fail from None
    return _from_obj(obj, text, n, order, persona, [] if markers else ["no_markers"])


def _from_obj(
    obj: dict[str, Any],
    text: str,
    n: int,
    order: list[int],
    persona: str | None,
    warnings: list[str],
) -> ChainParse:
    crits = _criteria(obj)
    criteria = [Criterion(name=c[:80], weight=w) for c, w in crits if 0 <= w <= 100]
    if not criteria and persona:
        criteria = criteria_from_text(persona)
    if crits and abs(sum(w for _, w in crits) - 100) > 0.5:
        warnings.append("weights_not_100")
    raw = _find_key(obj, _SCORE_KEYS)
    if raw is None and isinstance(obj.get("rationale"), dict):
        raw = _find_key(obj["rationale"], _SCORE_KEYS)
    recomputed = _recompute(obj, crits, n)
    mismatch = False
    if raw is None:
        if recomputed is None:
            raise _Fail("no_scores", f"no better_response/scores key (keys: {list(obj)[:6]})")
        slot_scores = recomputed
        warnings.append("recomputed")
    else:
        slot_scores = _scores_by_slot(raw, n)
        if recomputed is not None and any(
            abs(a - b) > ARITH_TOL for a, b in zip(slot_scores, recomputed, strict=True)
        ):
            mismatch = True
            warnings.append("arithmetic_mismatch")
    bad = [s for s in slot_scores if not SCORE_MIN <= s <= SCORE_MAX]
    if bad:
        raise _Fail("out_of_range", f"scores {bad} outside [{SCORE_MIN:g}, {SCORE_MAX:g}]")
    scores = [0.0] * n
    for slot, idx in enumerate(order):
        scores[idx] = float(slot_scores[slot])
    return ChainParse(
        ok=True,
        scores=scores,
        criteria=criteria,
        persona=persona,
        arithmetic_mismatch=mismatch,
        order=order,
        text=text,
        warnings=warnings,
        recomputed=None if recomputed is None else [recomputed[order.index(i)] for i in range(n)],
    )
