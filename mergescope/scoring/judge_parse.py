"""Reading a judge's reply: scores per criterion, or a pairwise verdict, or "missing" with the reason.

Only the judge's reply is ever parsed, never the prompt. A JSON object is preferred (the last one in the
reply, or the last fenced ```json block); without one, a labelled score ("clarity: 4/5", "Score: 4") is taken
from its LAST occurrence and a bare "4/5" only at the very end of the reply, so text the judge echoes before
its verdict cannot be mistaken for it. Anything unreadable or out of range is missing (None) with a status,
never zero; the caller keeps the raw reply and never re-samples to get a parse.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

ParseStatus = Literal["ok", "empty", "unparseable", "out_of_range"]
Verdict = Literal["A", "B", "tie"]

_NUMBER = r"(\d+(?:\.\d+)?)"
_OUT_OF = rf"{_NUMBER}\s*(?:/\s*(\d+))?"
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_BARE_AT_END = re.compile(rf"(?<![\w.]){_NUMBER}\s*/\s*(\d+)[\s.!*)\]]*$")
_SCORE_LABEL = re.compile(rf"\bscore\b[*\s]*[:=][*\s]*{_OUT_OF}", re.IGNORECASE)
_VERDICT_BRACKETS = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_VERDICT_LABEL = re.compile(r"\b(?:winner|verdict|better answer)\b[*\s\"']*[:=][*\s\"']*(A|B|tie)\b", re.IGNORECASE)
_VERDICT_WORDS = {"a": "A", "b": "B", "tie": "tie", "c": "tie", "answer_a": "A", "answer_b": "B",
                  "first": "A", "second": "B", "equal": "tie", "draw": "tie"}


@dataclass(frozen=True)
class ParsedScore:
    """One criterion's score from a reply; `value` is None unless `status` is "ok"."""

    value: float | None
    status: ParseStatus


@dataclass(frozen=True)
class ParsedVerdict:
    """A pairwise verdict from a reply: "A" (first answer), "B" (second), "tie", or None when missing."""

    verdict: Verdict | None
    status: ParseStatus


def last_json_object(reply: str) -> dict[str, Any] | None:
    """The last JSON object in `reply` (inside a markdown fence if there is one), or None."""
    fenced = [block for block in _FENCE.findall(reply) if block.strip().startswith("{")]
    for text in ([fenced[-1]] if fenced else []) + [reply]:
        found = _outermost_objects(text)
        if found:
            return found[-1]
    return None


def _outermost_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects in `text` that are not nested in another one, in order."""
    decoder, found, position = json.JSONDecoder(), [], text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        position = text.find("{", end)
    return found


def _normal(key: str) -> str:
    return re.sub(r"[\s\-]+", "_", key.strip().lower())


def _checked(number: float, denominator: int | None, scale: tuple[int, int]) -> ParsedScore:
    """The score if it lies on the scale (and any "/N" names the scale's top), else out_of_range."""
    low, high = scale
    if (denominator is not None and denominator != high) or not low <= number <= high:
        return ParsedScore(None, "out_of_range")
    return ParsedScore(float(number), "ok")


def _from_json_value(value: Any, scale: tuple[int, int]) -> ParsedScore:
    if isinstance(value, bool) or value is None:
        return ParsedScore(None, "unparseable")
    if isinstance(value, (int, float)):
        return _checked(value, None, scale)
    match = re.fullmatch(rf"\s*{_OUT_OF}\s*", str(value))
    if match is None:
        return ParsedScore(None, "unparseable")
    return _checked(float(match.group(1)), int(match.group(2)) if match.group(2) else None, scale)


def _json_scores(obj: dict[str, Any], scales: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """Criterion -> raw value from a reply object: {"scores": {...}}, top-level keys, or "score" for one criterion."""
    inner = obj.get("scores") if isinstance(obj.get("scores"), dict) else obj
    by_key = {_normal(k): v for k, v in inner.items()}
    found = {name: by_key[name] for name in scales if name in by_key}
    if len(scales) == 1 and not found and "score" in {_normal(k) for k in obj}:
        found = {next(iter(scales)): {_normal(k): v for k, v in obj.items()}["score"]}
    return found


def _prose_score(reply: str, name: str, only_criterion: bool) -> tuple[float, int | None] | None:
    """The last "name: N[/M]" in the reply; for a one-criterion rubric also "Score: N" or a final bare "N/M"."""
    label = re.sub(r"_", r"[ _-]", re.escape(name))
    patterns = [re.compile(rf"(?<![\w-]){label}\b[*\s]*[:=][*\s]*{_OUT_OF}", re.IGNORECASE)]
    if only_criterion:
        patterns += [_SCORE_LABEL, _BARE_AT_END]
    for pattern in patterns:
        matches = list(pattern.finditer(reply.strip()))
        if matches:
            last = matches[-1]
            return float(last.group(1)), int(last.group(2)) if last.group(2) else None
    return None


def parse_grades(reply: str | None, scales: dict[str, tuple[int, int]]) -> dict[str, ParsedScore]:
    """Each criterion's score in `reply`; criteria the reply does not grade readably are missing."""
    if not reply or not reply.strip():
        return {name: ParsedScore(None, "empty") for name in scales}
    obj = last_json_object(reply)
    from_json = _json_scores(obj, scales) if obj is not None else {}
    parsed = {}
    for name, scale in scales.items():
        if name in from_json:
            parsed[name] = _from_json_value(from_json[name], scale)
            continue
        prose = _prose_score(reply, name, only_criterion=len(scales) == 1)
        parsed[name] = _checked(prose[0], prose[1], scale) if prose else ParsedScore(None, "unparseable")
    return parsed


def parse_verdict(reply: str | None) -> ParsedVerdict:
    """The pairwise verdict in `reply`: JSON {"winner": ...}, else the last [[A]]/[[B]]/[[C]] or "Winner: A"."""
    if not reply or not reply.strip():
        return ParsedVerdict(None, "empty")
    obj = last_json_object(reply)
    if obj is not None and "winner" in obj:
        verdict = _VERDICT_WORDS.get(_normal(str(obj["winner"])))
        return ParsedVerdict(verdict, "ok") if verdict else ParsedVerdict(None, "unparseable")
    for pattern in (_VERDICT_BRACKETS, _VERDICT_LABEL):
        matches = pattern.findall(reply)
        if matches:
            return ParsedVerdict(_VERDICT_WORDS[matches[-1].lower()], "ok")
    return ParsedVerdict(None, "unparseable")
