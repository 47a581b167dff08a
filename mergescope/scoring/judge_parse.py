"""Reading a judge's reply: scores per criterion, or a pairwise verdict, or "missing" with the reason.

Only the judge's reply is ever parsed, never the prompt. A JSON object is preferred (the last one in the
reply, or the last fenced ```json block); without one, a labelled score ("clarity: 4/5", "Score: 4") is taken
from its LAST occurrence and a bare "4/5" only at the very end of the reply, so text the judge echoes before
its verdict cannot be mistaken for it. Anything unreadable or out of range is missing (None) with a status,
never zero; the caller keeps the raw reply and never re-samples to get a parse.

With the judge's token log-probabilities, `expected_score` also reads the probability-weighted score of each
criterion (G-Eval, Liu et al. 2023): the mean of the scale's values under the judge's distribution over the
token that wrote the score, which separates answers an integer score ties.
"""

from __future__ import annotations

import json
import math
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
_VERDICT_WORDS: dict[str, Verdict] = {
    "a": "A",
    "b": "B",
    "tie": "tie",
    "c": "tie",
    "answer_a": "A",
    "answer_b": "B",
    "first": "A",
    "second": "B",
    "equal": "tie",
    "draw": "tie",
}


@dataclass(frozen=True)
class ParsedScore:
    """One criterion's score from a reply; `value` is None unless `status` is "ok".

    `span` is where in the reply the score's number was written, when that is known.
    """

    value: float | None
    status: ParseStatus
    span: tuple[int, int] | None = None


@dataclass(frozen=True)
class ReplyToken:
    """One token of a judge's reply with its most likely alternatives, as (token text, log-probability).

    `n_bytes` is the token's length in UTF-8 bytes: a token may hold part of a character, whose text then
    is not the reply's, but the bytes still add up to it.
    """

    text: str
    top: tuple[tuple[str, float], ...]
    n_bytes: int


@dataclass(frozen=True)
class ParsedVerdict:
    """A pairwise verdict from a reply: "A" (first answer), "B" (second), "tie", or None when missing."""

    verdict: Verdict | None
    status: ParseStatus


def last_json_object(reply: str) -> dict[str, Any] | None:
    """The last JSON object in `reply` (inside a markdown fence if there is one), or None."""
    found = _last_json_region(reply)
    return found[0] if found else None


def _last_json_region(reply: str) -> tuple[dict[str, Any], int, int] | None:
    """The last JSON object of `reply` (preferring the last fenced block) and where it starts and ends."""
    fenced = [m for m in _FENCE.finditer(reply) if m.group(1).strip().startswith("{")]
    regions = ([(fenced[-1].group(1), fenced[-1].start(1))] if fenced else []) + [(reply, 0)]
    for text, offset in regions:
        found = _outermost_objects(text)
        if found:
            value, start, end = found[-1]
            return value, start + offset, end + offset
    return None


def _outermost_objects(text: str) -> list[tuple[dict[str, Any], int, int]]:
    """The JSON objects in `text` that are not nested in another one, in order, with their start and end."""
    decoder, found, position = json.JSONDecoder(), [], text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            found.append((value, position, end))
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
    scores = obj.get("scores")
    inner = scores if isinstance(scores, dict) else obj
    by_key = {_normal(k): v for k, v in inner.items()}
    found = {name: by_key[name] for name in scales if name in by_key}
    if len(scales) == 1 and not found and "score" in {_normal(k) for k in obj}:
        found = {next(iter(scales)): {_normal(k): v for k, v in obj.items()}["score"]}
    return found


def _label(name: str) -> str:
    return re.sub(r"_", r"[ _-]", re.escape(name))


def _prose_score(reply: str, name: str, only_criterion: bool) -> tuple[float, int | None, tuple[int, int]] | None:
    """The last "name: N[/M]" in the reply; for a one-criterion rubric also "Score: N" or a final bare "N/M"."""
    patterns = [re.compile(rf"(?<![\w-]){_label(name)}\b[*\s]*[:=][*\s]*{_OUT_OF}", re.IGNORECASE)]
    if only_criterion:
        patterns += [_SCORE_LABEL, _BARE_AT_END]
    stripped = reply.strip()
    offset = reply.find(stripped)
    for pattern in patterns:
        matches = list(pattern.finditer(stripped))
        if matches:
            last = matches[-1]
            span = (last.start(1) + offset, last.end(1) + offset)
            return float(last.group(1)), int(last.group(2)) if last.group(2) else None, span
    return None


def _json_value_span(reply: str, start: int, end: int, names: tuple[str, ...]) -> tuple[int, int] | None:
    """Where, between `start` and `end`, the number of the last `"name": N` key of `names` was written."""
    labels = "|".join(_label(n) for n in names)
    pattern = re.compile(rf'"\s*(?:{labels})\s*"\s*:\s*"?\s*{_NUMBER}', re.IGNORECASE)
    matches = list(pattern.finditer(reply, start, end))
    return matches[-1].span(1) if matches else None


def parse_grades(reply: str | None, scales: dict[str, tuple[int, int]]) -> dict[str, ParsedScore]:
    """Each criterion's score in `reply`; criteria the reply does not grade readably are missing."""
    if not reply or not reply.strip():
        return {name: ParsedScore(None, "empty") for name in scales}
    region = _last_json_region(reply)
    from_json = _json_scores(region[0], scales) if region is not None else {}
    parsed = {}
    for name, scale in scales.items():
        if name in from_json:
            score = _from_json_value(from_json[name], scale)
            keys = (name, "score") if len(scales) == 1 else (name,)
            span = _json_value_span(reply, region[1], region[2], keys) if region and score.status == "ok" else None
            parsed[name] = ParsedScore(score.value, score.status, span)
            continue
        prose = _prose_score(reply, name, only_criterion=len(scales) == 1)
        score = _checked(prose[0], prose[1], scale) if prose else ParsedScore(None, "unparseable")
        parsed[name] = ParsedScore(score.value, score.status, prose[2]) if prose and score.status == "ok" else score
    return parsed


def expected_score(
    reply: str, score: ParsedScore, tokens: tuple[ReplyToken, ...], scale: tuple[int, int]
) -> float | None:
    """The probability-weighted score at the token that wrote `score`, or None where it cannot be read.

    The token must hold the whole number (so a 1-10 scale whose "10" is split into "1" and "0" gives None);
    its alternatives that are whole numbers on the scale are weighted by their probabilities, renormalised.
    """
    if score.value is None or score.span is None or not tokens:
        return None
    token = _token_at(tokens, score.span[0], reply)
    if token is None or token.text.strip() != reply[score.span[0] : score.span[1]]:
        return None
    low, high = scale
    weights: dict[int, float] = {}
    for text, logprob in token.top:
        value = int(text) if text.strip().isdigit() else None
        if value is not None and low <= value <= high:
            weights[value] = weights.get(value, 0.0) + math.exp(logprob)
    total = sum(weights.values())
    return sum(value * weight for value, weight in weights.items()) / total if total > 0 else None


def _token_at(tokens: tuple[ReplyToken, ...], position: int, reply: str) -> ReplyToken | None:
    """The token covering character `position` of `reply`, when the tokens add up to the reply's bytes."""
    if sum(t.n_bytes for t in tokens) != len(reply.encode()):
        return None
    target, offset = len(reply[:position].encode()), 0
    for token in tokens:
        if offset <= target < offset + token.n_bytes:
            return token
        offset += token.n_bytes
    return None


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
