"""Prompt templates for evaluation chains, loaded from files.

A template file has sections that start with a line ``<<<NAME>>>``: ``SYSTEM``
and ``USER`` are required, ``PREFILL`` (the start of the assistant turn, used
only when prefill is on) is optional. Placeholders are written ``{{name}}``.
Set ``PGENRM_MODELS__TEMPLATE`` to use another file, e.g. the exact template of
a released P-GenRM checkpoint.

Examples
--------
>>> from reward.protocol import ScoreRequest
>>> t = PromptTemplate.load()
>>> req = ScoreRequest(context=[{"role": "user", "content": "Name a fruit"}],
...                    candidates=["Apple.", "A banana, rich in potassium."])
>>> msgs = t.render(req, order=[1, 0])
>>> [m.role for m in msgs]
['system', 'user']
>>> msgs[1].content.index("banana") < msgs[1].content.index("Apple")
True
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from infra.contracts import ChatMessage
from reward.exceptions import TemplateError
from reward.protocol import HistoryItem, ScoreRequest

_SECTION = re.compile(r"^<<<([A-Z_]+)>>>[ \t]*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
REQUIRED = {"history", "query", "responses"}
DEFAULT_READOUT_NEXT = ', "response_{{k}}": '
"""Between two scores in score readout; a template overrides it with ``<<<READOUT_NEXT>>>``."""
"""Placeholders a chain template must contain somewhere."""

# Markers that structure the prompt and the answer. Candidate and history text
# is sanitised so that it cannot open or close a block of its own.
_MARKERS = re.compile(
    r"<\s*/?\s*JSON_(START|END)\s*>|\[\s*The (Start|End) of [^\]]{0,40}\]|<<<[A-Z_]+>>>",
    re.IGNORECASE,
)


def sanitize(text: str) -> str:
    """Defuse prompt/answer markers inside user-supplied text.

    >>> sanitize('ok <JSON_START>{"a":1}<JSON_END> [The End of Response 1]')
    'ok ‹JSON_START›{"a":1}‹JSON_END› ‹The End of Response 1›'
    """

    def repl(m: re.Match[str]) -> str:
        s = m.group(0)
        return "‹" + s.strip("<>[] ").lstrip("/").strip() + "›"

    return _MARKERS.sub(repl, text)


def _default_path(name: str) -> Path:
    return Path(str(resources.files("reward") / "templates" / name))


def format_history(history: Sequence[HistoryItem]) -> str:
    """History triples as ``User:`` / ``Chosen:`` / ``Rejected:`` blocks.

    >>> h = HistoryItem(context=[{"role": "user", "content": "Hi"}], chosen="Hey", rejected="Go")
    >>> print(format_history([h]))
    ### Example 1
    User: Hi
    Chosen: Hey
    Rejected: Go
    """
    if not history:
        return "(no history yet)"
    blocks = []
    for i, item in enumerate(history, 1):
        query = "\n".join(
            (m.content if m.role == "user" else f"[{m.role}] {m.content}") for m in item.context
        )
        lines = [
            f"### Example {i}",
            f"User: {sanitize(query)}",
            f"Chosen: {sanitize(item.chosen)}",
            f"Rejected: {sanitize(item.rejected)}",
        ]
        if item.critique:
            lines.append(f"Why: {sanitize(item.critique)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def format_stated(stated: str | None) -> str:
    if not stated:
        return ""
    return (
        "\n[The Start of User's Stated Preferences]\n"
        f"{sanitize(stated)}\n[The End of User's Stated Preferences]\n"
    )


def format_query(context: Sequence[ChatMessage]) -> str:
    """The conversation so far; the last user turn is the query."""
    if len(context) == 1:
        return sanitize(context[0].content)
    return "\n".join(f"{m.role.capitalize()}: {sanitize(m.content)}" for m in context)


def format_responses(candidates: Sequence[str], order: Sequence[int]) -> str:
    """Candidates in numbered blocks, in the presentation ``order``."""
    return "\n\n".join(
        f"[The Start of Response {k}]\n{sanitize(candidates[idx])}\n[The End of Response {k}]"
        for k, idx in enumerate(order, 1)
    )


@dataclass(frozen=True)
class PromptTemplate:
    """A chain template (and the persona template that goes with it)."""

    system: str
    user: str
    prefill: str = ""
    path: Path | None = None
    persona_system: str = ""
    persona_user: str = ""
    readout_next: str = DEFAULT_READOUT_NEXT
    """Text between two read-out scores, ``{{k}}`` = the next slot (see :mod:`reward.readout`)."""

    @staticmethod
    def _sections(text: str, path: Path) -> dict[str, str]:
        parts = _SECTION.split(text)
        if len(parts) < 3:
            raise TemplateError(f"{path}: no <<<SYSTEM>>>/<<<USER>>> sections")
        out = {}
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            out[name] = body.strip("\n")
        for need in ("SYSTEM", "USER"):
            if need not in out:
                raise TemplateError(f"{path}: missing section <<<{need}>>>")
        return out

    @classmethod
    def load(cls, path: Path | None = None, persona_path: Path | None = None) -> PromptTemplate:
        """Read a chain template (default: the shipped ``pgenrm_chain.txt``).

        Raises
        ------
        TemplateError
            Missing file, missing section or missing required placeholder.
        """
        path = Path(path) if path is not None else _default_path("pgenrm_chain.txt")
        persona_path = (
            Path(persona_path) if persona_path is not None else _default_path("pgenrm_persona.txt")
        )
        try:
            text = path.read_text(encoding="utf-8")
            ptext = persona_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateError(f"cannot read template: {exc}") from exc
        sec = cls._sections(text, path)
        found = set(_PLACEHOLDER.findall(sec["SYSTEM"] + sec["USER"]))
        missing = REQUIRED - found
        if missing:
            raise TemplateError(f"{path}: missing placeholders {sorted(missing)}")
        psec = cls._sections(ptext, persona_path)
        return cls(
            system=sec["SYSTEM"],
            user=sec["USER"],
            prefill=sec.get("PREFILL", ""),
            path=path,
            persona_system=psec["SYSTEM"],
            persona_user=psec["USER"],
            readout_next=sec.get("READOUT_NEXT", DEFAULT_READOUT_NEXT),
        )

    @staticmethod
    def _fill(text: str, values: dict[str, str]) -> str:
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)

    def render(
        self,
        req: ScoreRequest,
        order: list[int],
        *,
        history_size: int | None = None,
        prefill: bool = False,
    ) -> list[ChatMessage]:
        """Chat messages for one chain; ``order[k]`` is the candidate shown as Response k+1.

        The last ``history_size`` history items are used (all when None). With
        ``prefill`` and a PREFILL section, an assistant message is appended that
        backends continue rather than answer.
        """
        if sorted(order) != list(range(len(req.candidates))):
            raise TemplateError(f"order {order} is not a permutation of the candidates")
        history = (
            req.history
            if history_size is None
            else req.history[-history_size:]
            if history_size
            else []
        )
        values = {
            "history": format_history(history),
            "stated_preferences": format_stated(req.stated_preferences),
            "query": format_query(req.context),
            "responses": format_responses(req.candidates, order),
            "n": str(len(order)),
            "response_keys": ", ".join(f'"response_{k}"' for k in range(1, len(order) + 1)),
        }
        msgs = [
            ChatMessage(role="system", content=self._fill(self.system, values)),
            ChatMessage(role="user", content=self._fill(self.user, values)),
        ]
        if prefill and self.prefill:
            msgs.append(ChatMessage(role="assistant", content=self._fill(self.prefill, values)))
        return msgs

    def render_persona(
        self, history: Sequence[HistoryItem], stated_preferences: str | None
    ) -> list[ChatMessage]:
        """Messages asking for PART 1 only (persona + weighted criteria)."""
        values = {
            "history": format_history(history),
            "stated_preferences": format_stated(stated_preferences),
        }
        return [
            ChatMessage(role="system", content=self._fill(self.persona_system, values)),
            ChatMessage(role="user", content=self._fill(self.persona_user, values)),
        ]


def render_persona(
    history: Sequence[HistoryItem], stated_preferences: str | None
) -> list[ChatMessage]:
    """PART-1-only persona prompt with the shipped template."""
    return PromptTemplate.load().render_persona(history, stated_preferences)
